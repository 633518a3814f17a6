"""A job whose one asset sits in the `duckdb` pool and sleeps: run in a subprocess by tests/test_faults.py to hold the
pool (then killed), or to wait for it (then sent SIGTERM). Usage: python pool_job.py DAGSTER_HOME SECONDS"""

import sys
import time

import dagster as dg

from equal_dagster.headless import execute_job


@dg.asset(pool="duckdb")
def holder() -> None:
    print("HOLDING", flush=True)
    time.sleep(float(sys.argv[2]))


defs = dg.Definitions(assets=[holder], jobs=[dg.define_asset_job("hold", [holder])])

if __name__ == "__main__":
    result = execute_job(defs, "hold", dg.DagsterInstance.from_config(sys.argv[1]))
    print("DONE", result.success, flush=True)
