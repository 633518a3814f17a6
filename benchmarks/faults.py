"""Faults, measured: three rounds against a backend that fails 30% of its prompts, then a round killed with SIGKILL.

The demo corpus (1,500 rows) is ingested, warmed up (rules backend), embedded (base MiniLM) and clustered once.
Then `equal rounds 3` runs in a subprocess, as a user would, against the fake OpenAI-compatible server
(tests/doubles.py, on 127.0.0.1) which answers HTTP 503 to a fixed 30% of the prompts (the same ones every time:
a document that fails keeps failing) and after ``--latency-ms`` otherwise. The rounds draw 2 arms x 20 documents
(set here: with the default shape of about 10 documents a round, 30% failures put some rounds over the 50% limit
that stops the rounds, which is what that limit is for, but not what this run measures). Printed: requests made,
distinct documents drawn, documents charged to the budget, documents per status.

Then `equal rounds 1 --budget 20%` (the three rounds spent the default 10%) is killed with SIGKILL once its round has
made ``--kill-after`` requests, and started again: printed are the requests paid twice (a prompt answered 200 before the kill and again after), the
requests in flight at most, and the seconds from the kill to the rerun's first request and to its round written.

    .venv/bin/python benchmarks/faults.py [--latency-ms 200] [--in-flight 4] [--kill-after 20]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOUBLES = Path(__file__).resolve().parent.parent / "tests" / "doubles.py"
sys.path.insert(0, str(DOUBLES.parent))

from doubles import FakeOpenAIServer  # noqa: E402

from equal_dagster.core.settings import EqualPaths  # noqa: E402
from equal_dagster.core.store import Store  # noqa: E402
from equal_dagster.definitions import build_definitions  # noqa: E402
from equal_dagster.demo.corpus import CRAWL_NAMES, write_demo_data  # noqa: E402
from equal_dagster.headless import run_stages_before_rounds  # noqa: E402
from equal_dagster.instance import persistent_instance  # noqa: E402
from equal_dagster.resources.llm import ExtractionResource  # noqa: E402


def equal(home: Path, server: FakeOpenAIServer, in_flight: int, *arguments: str) -> subprocess.Popen:
    env = {**os.environ, "EQUAL_LLM_BACKEND": "openai", "EQUAL_LLM_BASE_URL": server.base_url, "EQUAL_LLM_MODEL": "m",
           "EQUAL_LLM_MAX_IN_FLIGHT": str(in_flight), "EQUAL_LLM_MAX_RETRIES": "1", "HF_HUB_OFFLINE": "1",
           "EQUAL_BANDIT_ARMS_PER_ROUND": "2", "EQUAL_BANDIT_DOCS_PER_ARM": "20"}
    return subprocess.Popen([sys.executable, "-m", "equal_dagster.cli", "--home", str(home), *arguments], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def prepare(home: Path) -> None:
    paths = EqualPaths(home, home / "crawls")
    write_demo_data(paths.crawl_dir, paths.reference_dir / "reference.jsonl", seed=0, n_documents=1500)
    os.environ["EQUAL_HOME"] = str(home)
    defs = build_definitions(paths, llm=ExtractionResource())
    run_stages_before_rounds(defs, persistent_instance(paths), list(CRAWL_NAMES), seed=0, tune_embedder=False,
                             say=lambda message: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--kill-after", type=int, default=20)
    parser.add_argument("--fail-share", type=float, default=0.3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        tick = time.perf_counter()
        prepare(home)
        print(f"demo home clustered in {time.perf_counter() - tick:.0f} s", flush=True)
        store_path = home / "equal.duckdb"
        with FakeOpenAIServer(latency_s=args.latency_ms / 1000, fail_share=args.fail_share) as server:
            out = equal(home, server, args.in_flight, "rounds", "3").communicate()[0]
            with Store.open(store_path, read_only=True) as store:
                rows = store.extractions().filter(store.extractions()["round_id"] != "round-0")
                rounds = store.rounds().filter(store.rounds()["round_no"] >= 1)
            if rounds.height != 3:
                sys.exit(f"the three rounds did not all play:\n{out[-3000:]}")
            statuses = dict(sorted(zip(*rows["status"].value_counts().to_dict(as_series=False).values())))
            three = {"requests": server.requests, "prompts": len(server.attempts), "extractions": rows.height,
                     "distinct_documents": rows["doc_id"].n_unique(), "documents_charged": int(rounds["docs_spent"].sum()),
                     "statuses": statuses, "paid_twice": sum(1 for n in server.answered.values() if n > 1)}
            print(f"3 rounds, {args.fail_share:.0%} of prompts failing: {three}", flush=True)

            before = server.requests
            killed = equal(home, server, args.in_flight, "rounds", "1", "--budget", "20%")
            while server.requests < before + args.kill_after:
                if killed.poll() is not None:
                    sys.exit(f"the round to kill ended first:\n{killed.stdout.read()[-3000:]}")
                time.sleep(0.02)
            os.killpg(killed.pid, signal.SIGKILL)
            killed_at = time.perf_counter()
            killed.wait()
            at_kill = server.requests
            rerun = equal(home, server, args.in_flight, "rounds", "1", "--budget", "20%")
            first_request = None
            while rerun.poll() is None:
                if first_request is None and server.requests > at_kill:
                    first_request = time.perf_counter() - killed_at
                time.sleep(0.02)
            written = time.perf_counter() - killed_at
            rerun_out = rerun.stdout.read()
            if rerun.returncode != 0:
                sys.exit(f"the round after the kill failed:\n{rerun_out[-3000:]}")
            kill = {"requests_before_kill": at_kill - before, "paid_twice": sum(1 for n in server.answered.values() if n > 1),
                    "in_flight": args.in_flight, "seconds_to_first_request": round(first_request or float("nan"), 1),
                    "seconds_to_round_written": round(written, 1),
                    "dead_run_released": "had died" in rerun_out}
            print(f"SIGKILL mid-round, then `equal rounds 1`: {kill}", flush=True)


if __name__ == "__main__":
    main()
