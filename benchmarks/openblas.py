"""What numpy's OpenBLAS threads cost while they wait, at OpenBLAS's own spin (OPENBLAS_THREAD_TIMEOUT=28: 2^28
cycles) and at the package's default (equal_dagster.OPENBLAS_THREAD_TIMEOUT), side by side in one run:

1. a process that imports pyarrow (and so numpy, as an ingest does) and never calls BLAS: the CPU of its threads
   other than the main one (read from /proc), 0.5 s after the import;
2. 40 back-to-back products of 600 x 600 float32 matrices (threaded in OpenBLAS): wall time;
3. 20 such products, each after 20 ms idle: wall time of the products and the process's CPU.

    .venv/bin/python benchmarks/openblas.py [--repeats 5]

Each child sets the variable itself, before numpy loads; the figures are the medians of --repeats children.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from equal_dagster import OPENBLAS_THREAD_TIMEOUT  # noqa: E402  (each child below sets the variable itself)

OPENBLAS_DEFAULT = "28"  # OpenBLAS's own THREAD_TIMEOUT (2^28 cycles)
TIMEOUTS = (OPENBLAS_DEFAULT, OPENBLAS_THREAD_TIMEOUT)


def other_threads_cpu_s() -> float:
    """CPU seconds of this process's threads other than the main one."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for task in Path("/proc/self/task").iterdir():
        if task.name != str(os.getpid()):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def child() -> None:
    import pyarrow  # noqa: F401  (loads numpy, and numpy its OpenBLAS, as the ingest's imports do)

    time.sleep(0.5)
    idle_threads_cpu = other_threads_cpu_s()
    import numpy as np

    a = np.random.default_rng(0).standard_normal((600, 600)).astype(np.float32)
    a @ a
    tick = time.perf_counter()
    for _ in range(40):
        a @ a
    back_to_back = time.perf_counter() - tick
    cpu_before, busy = time.process_time(), 0.0
    for _ in range(20):
        time.sleep(0.02)
        tick = time.perf_counter()
        a @ a
        busy += time.perf_counter() - tick
    print(json.dumps({"idle_threads_cpu_s": idle_threads_cpu, "back_to_back_s": back_to_back,
                      "intermittent_s": busy, "intermittent_cpu_s": time.process_time() - cpu_before}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child()
    print(f"command: {' '.join([Path(sys.executable).name, 'benchmarks/openblas.py', *sys.argv[1:]])}; "
          f"{os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d')}")
    runs: dict[str, list[dict]] = {t: [] for t in TIMEOUTS}
    for _ in range(args.repeats):  # alternating
        for timeout in TIMEOUTS:
            env = {**os.environ, "OPENBLAS_THREAD_TIMEOUT": timeout}
            out = subprocess.run([sys.executable, __file__, "--child"], env=env, capture_output=True, text=True,
                                 check=True).stdout
            runs[timeout].append(json.loads(out.strip().splitlines()[-1]))
    print("\n| OPENBLAS_THREAD_TIMEOUT | idle process: other threads' CPU (s) | 40 products back to back (ms) | "
          "20 products after 20 ms idle: their time (ms) | and the process's CPU (ms) |")
    print("|---|---:|---:|---:|---:|")
    for timeout, results in runs.items():
        def median(key: str) -> float:
            return statistics.median(r[key] for r in results)

        label = f"{timeout} ({'OpenBLAS' if timeout == OPENBLAS_DEFAULT else 'equal_dagster'}'s default)"
        print(f"| {label} | {median('idle_threads_cpu_s'):.2f} | {median('back_to_back_s') * 1000:.0f} | "
              f"{median('intermittent_s') * 1000:.0f} | {median('intermittent_cpu_s') * 1000:.0f} |")


if __name__ == "__main__":
    main()
