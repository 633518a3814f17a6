"""Claims the one slot of the `duckdb` pool ROUNDS times, holding it 5 ms each time, from START (epoch seconds) on, so
that several of these processes claim at the same moments (tests/test_faults.py). Prints how many times it found
another holder inside while it held the slot. Usage: python pool_claims.py DAGSTER_HOME START WORKER ROUNDS"""

import os
import sys
import time

import dagster as dg

home, start, worker, rounds = sys.argv[1], float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
storage = dg.DagsterInstance.from_config(home).event_log_storage
inside = os.path.join(home, "inside")
overlaps = 0
while time.time() < start:
    time.sleep(0.001)
for n in range(rounds):
    run, step = f"{worker}-{n}", "write"
    while not storage.claim_concurrency_slot("duckdb", run, step).is_claimed:
        time.sleep(0.002)
    try:
        os.close(os.open(inside, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        time.sleep(0.005)
        os.unlink(inside)
    except FileExistsError:
        overlaps += 1
    storage.free_concurrency_slot_for_step(run, step)
print(overlaps, flush=True)
