"""Crashes, faults and concurrent use (issue 14), against real parts: a fake OpenAI-compatible server on 127.0.0.1
serving each fault, a real DuckDB store, real Dagster runs in subprocesses killed with SIGKILL."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from doubles import FakeOpenAIServer

from equal_dagster.core.extraction import Document, ExtractionConfig, StoreResponseCache, build_extractor
from equal_dagster.core.store import Store

from equal_dagster.instance import pool_holders, prepare_dagster_home, release_dead_runs
from equal_dagster.core.settings import EqualPaths

POOL_JOB = Path(__file__).parent / "pool_job.py"
EXTRACT_JOB = Path(__file__).parent / "extract_job.py"


def _start(home: Path, seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(POOL_JOB), str(home), str(seconds)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_for(condition, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


@pytest.fixture
def dagster_home(tmp_path: Path) -> Path:
    return prepare_dagster_home(EqualPaths(tmp_path / "home", tmp_path / "crawls"))


def _pending(instance: dg.DagsterInstance) -> set[str]:
    return {p.run_id for p in instance.event_log_storage.get_concurrency_info("duckdb").pending_steps}


def test_a_killed_run_does_not_hold_the_pool_and_a_waiting_run_stops_on_sigterm(dagster_home):
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    holder = _start(dagster_home, 600)
    try:
        _wait_for(lambda: pool_holders(instance), "the first run to take the duckdb slot")
        dead_run = pool_holders(instance)[0]
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        # what Dagster alone leaves: the run STARTED, holding the slot
        assert instance.get_run_by_id(dead_run).status == dg.DagsterRunStatus.STARTED
        assert pool_holders(instance) == [dead_run]

        # the next run frees it and goes through
        follower = _start(dagster_home, 0)
        out, _ = follower.communicate(timeout=120)
        assert follower.returncode == 0 and "DONE True" in out, out
        assert f"run {dead_run} (hold) had died" in out
        assert instance.get_run_by_id(dead_run).status == dg.DagsterRunStatus.FAILURE
        assert pool_holders(instance) == [] and release_dead_runs(instance) == []

        # a run waiting for a live holder stops on SIGTERM, and leaves no claim behind
        holder = _start(dagster_home, 600)
        _wait_for(lambda: pool_holders(instance), "the live holder")
        waiter = _start(dagster_home, 0)
        _wait_for(lambda: len(_pending(instance)) == 2, "the second run to wait for the slot")
        waiting_run = (_pending(instance) - set(pool_holders(instance))).pop()
        waiter.send_signal(signal.SIGTERM)
        out, _ = waiter.communicate(timeout=60)
        assert waiter.returncode == 143, out
        assert "stopped by a signal" in out
        assert instance.get_run_by_id(waiting_run).status == dg.DagsterRunStatus.FAILURE
        assert waiting_run not in _pending(instance)
    finally:
        for process in (holder,):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)


FAULTS = {  # mode: (status, retries made, in the error)
    "error500": ("backend_error", 2, "HTTP 500"),
    "error503": ("backend_error", 2, "HTTP 503"),
    "rate429": ("ok", 2, None),
    "slow": ("timeout", 2, "no response within"),
    "error400": ("rejected", 0, "HTTP 400: {\"error\": {\"message\": \"This model's maximum context length"),
    "badjson": ("rejected", 0, "malformed completion"),
    "nochoices": ("rejected", 0, "malformed completion"),
    "wrongschema": ("parse_error", 0, None),
    "garbage": ("parse_error", 0, "no JSON object"),
    "huge": ("parse_error", 0, None),
    "echo": ("ok", 0, "per_document_cap: kept the first 50 of 200 QA pairs"),
}


def test_each_fault_of_the_backend_ends_in_its_class_and_runaway_answers_are_capped(tmp_path):
    config = ExtractionConfig(backend="openai", base_url="", model="fake-model", max_in_flight=4, timeout_s=0.5,
                              max_retries=2, backoff_s=0.01)
    with FakeOpenAIServer(slow_s=1.5) as server, Store.open(tmp_path / "s.duckdb") as store:
        extractor = build_extractor(ExtractionConfig(**{**config.__dict__, "base_url": server.base_url}),
                                    StoreResponseCache(store))
        run = extractor.extract([Document(f"doc-{m}", f"DOC={m} MODE={m}\nText {m}.") for m in FAULTS])
        by_doc = {r.doc_id: r for r in run.results}
        for mode, (status, retries, error) in FAULTS.items():
            result = by_doc[f"doc-{mode}"]
            assert (result.status, result.retries) == (status, retries), (mode, result.error)
            if error:
                assert error in result.error, (mode, result.error)
        assert len(by_doc["doc-echo"].qa_pairs) == 50 and run.counters["dropped_per_document_cap"] == 150
        assert run.counters["responses_truncated"] == 1
        # the 10 MB answer is stored cut to 16 characters per token of max_tokens
        longest = store.conn.execute("SELECT max(length(response)) FROM llm_cache").fetchone()[0]
        assert longest == 16 * 1024
        # permanent failures were asked once; transient ones max_retries + 1 times
        assert server.by_mode["error400"] == server.by_mode["badjson"] == server.by_mode["nochoices"] == 1
        assert server.by_mode["error503"] == 3


def test_a_killed_extraction_repays_at_most_the_requests_in_flight(tmp_path):
    in_flight = 2
    with FakeOpenAIServer(latency_s=0.1) as server:
        store = tmp_path / "s.duckdb"
        job = subprocess.Popen([sys.executable, str(EXTRACT_JOB), server.base_url, str(store), "200", str(in_flight)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        _wait_for(lambda: server.requests >= 30, "30 answered requests")
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=30)
        before = server.requests
        rerun = subprocess.run([sys.executable, str(EXTRACT_JOB), server.base_url, str(store), "200", str(in_flight)],
                               capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        repaid = sum(1 for n in server.attempts.values() if n > 1)
        assert before >= 30 and server.requests == 200 + repaid
        assert repaid <= in_flight, f"{repaid} requests paid twice"


def test_the_rules_backend_keeps_at_most_the_per_document_cap():
    page = "\n".join(f"Q: What is item {i} of the list?\nA: Item {i} is the {i}th entry of the list." for i in range(500))
    run = build_extractor(ExtractionConfig(backend="rules"), None).extract([Document("d", page), Document("e", page)])
    assert [len(r.qa_pairs) for r in run.results] == [50, 50]
    assert run.counters["dropped_per_document_cap"] == 900
    assert run.results[0].qa_pairs[0].question == "What is item 0 of the list?"
    assert run.results[0].error == "per_document_cap: kept the first 50 of 500 QA pairs"
    uncapped = build_extractor(ExtractionConfig(backend="rules", max_pairs_per_document=None), None).extract([Document("d", page)])
    assert len(uncapped.results[0].qa_pairs) == 500


def _equal(home: Path, server: FakeOpenAIServer, *arguments: str) -> subprocess.Popen:
    env = {**os.environ, "EQUAL_LLM_BACKEND": "openai", "EQUAL_LLM_BASE_URL": server.base_url, "EQUAL_LLM_MODEL": "m",
           "EQUAL_LLM_MAX_IN_FLIGHT": "2", "EQUAL_LLM_MAX_RETRIES": "0", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "equal_dagster.cli", "--home", str(home), *arguments], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_concurrent_rounds_play_one_round_each_and_a_killed_round_repays_only_its_calls_in_flight(clustered, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(clustered.home, home)
    store = home / "equal.duckdb"
    with FakeOpenAIServer(latency_s=0.3) as server:
        # two `equal rounds 1` started together: two rounds, one after the other, not the same one twice
        first, second = _equal(home, server, "rounds", "1"), _equal(home, server, "rounds", "1")
        outputs = [p.communicate(timeout=400)[0] for p in (first, second)]
        assert [p.returncode for p in (first, second)] == [0, 0], "\n=====\n".join(o[-6000:] for o in outputs)
        with Store.open(store, read_only=True) as db:
            rounds = db.rounds().filter(db.rounds()["round_no"] >= 1)
            assert rounds["round_id"].to_list() == ["r0001", "r0002"]
            assert int(rounds["docs_spent"].sum()) == db.extractions().filter(
                db.extractions()["round_id"] != "round-0")["doc_id"].n_unique()
        assert any("played by another run meanwhile" in out for out in outputs), outputs
        assert max(server.attempts.values()) == 1  # no call paid twice

        # SIGKILL in the middle of round 3, then the next `equal rounds 1` plays it at once
        before = server.requests
        killed = _equal(home, server, "rounds", "1")
        _wait_for(lambda: server.requests >= before + 3, "round r0003 to be under way", timeout_s=300)
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait(timeout=30)
        answered = server.requests - before
        rerun = _equal(home, server, "rounds", "1")
        out = rerun.communicate(timeout=400)[0]
        assert rerun.returncode == 0, out
        assert "had died: its process" in out and "r0003:" in out
        repaid = sum(1 for n in server.attempts.values() if n > 1)
        assert answered >= 3 and repaid <= 2, f"{repaid} of {answered} calls paid twice"
        with Store.open(store, read_only=True) as db:
            assert db.rounds()["round_id"].to_list()[-1] == "r0003"
            assert db.rounds()["tokens_spent"].to_list()[-1] > 0
            extracted = db.extractions()["doc_id"]
            assert extracted.n_unique() == extracted.len()  # no document extracted twice, the warm-up's included


def test_a_store_that_cannot_be_opened_gets_one_clear_line(tmp_path, capsys):
    from equal_dagster.cli import main

    # not a DuckDB file
    home = tmp_path / "home"
    home.mkdir()
    (home / "equal.duckdb").write_text("these are my notes, not a database\n" * 50)
    assert main(["--home", str(home), "export"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is not a DuckDB store" in err and str(home / "equal.duckdb") in err
    assert main(["--home", str(home), "rounds", "1"]) == 2
    assert "is not a DuckDB store" in capsys.readouterr().err

    # busy: another process writes to it
    busy = tmp_path / "busy"
    with Store.open(busy / "equal.duckdb"):
        pass
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('holding', flush=True); time.sleep(120)", str(busy / "equal.duckdb")],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        assert main(["--home", str(busy), "lineage", "qa-1"]) == 1
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "is busy" in err and f"process {holder.pid}" in err
    finally:
        os.killpg(holder.pid, signal.SIGKILL)

    # a home that cannot be written
    if os.geteuid() == 0:  # root writes anywhere but in /sys
        unwritable = Path("/sys/equal-home-test")
    else:
        unwritable = tmp_path / "locked"
        unwritable.mkdir(mode=0o555)
    with pytest.raises(OSError):
        (unwritable / "probe").mkdir(parents=True)
    home_in_it = unwritable / "home"
    code = main(["--home", str(home_in_it), "rounds", "1"])
    err = capsys.readouterr().err.strip()
    assert code in (1, 2) and err.count("\n") == 0, err


def test_the_dead_run_sensor_fails_a_dead_run_and_frees_its_slot(dagster_home):
    from equal_dagster.automation import dead_run_sensor

    instance = dg.DagsterInstance.from_config(str(dagster_home))
    holder = _start(dagster_home, 600)
    _wait_for(lambda: pool_holders(instance), "the run to take the duckdb slot")
    dead_run = pool_holders(instance)[0]
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    result = dead_run_sensor(dg.build_sensor_context(instance=instance))
    assert "released 1 dead run(s)" in result.skip_message
    assert instance.get_run_by_id(dead_run).status == dg.DagsterRunStatus.FAILURE and pool_holders(instance) == []
    assert dead_run_sensor(dg.build_sensor_context(instance=instance)).skip_message == "no dead run"


def test_equal_run_on_a_crawl_of_invalid_rows_says_so_in_one_line(tmp_path, capsys):
    from equal_dagster.cli import main

    crawls = tmp_path / "crawls"
    (crawls / "broken").mkdir(parents=True)
    (crawls / "broken" / "part.jsonl").write_text("{not json\n" * 5 + '{"no_text": 1}\n')
    reference = tmp_path / "reference.jsonl"
    reference.write_text('{"question": "What is 2 + 2?", "answer": "4"}\n')
    assert main(["run", "--crawl-dir", str(crawls), "--reference", str(reference), "--home", str(tmp_path / "h")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no document was kept from broken: every row was quarantined (5 invalid_json, 1 missing_text)" in err


class _Root:
    def __init__(self, path):
        self.root_directory = str(path)


def test_a_run_lock_is_held_while_its_process_lives_and_free_once_it_is_killed(tmp_path):
    """How `equal` tells a live run from a dead one (no pid, no clock: those drift on virtual machines)."""
    from equal_dagster.instance import _run_lock_held

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom equal_dagster.instance import RunLock\n"
         "class Root: root_directory = sys.argv[1]\n"
         "with RunLock(Root(), 'run-1'):\n    print('LOCKED', flush=True)\n    time.sleep(120)\n", str(tmp_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "LOCKED"
        assert _run_lock_held(_Root(tmp_path), "run-1") is True
        assert _run_lock_held(_Root(tmp_path), "run-1") is True  # asking does not take it away
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert _run_lock_held(_Root(tmp_path), "run-1") is False  # SIGKILL: the kernel dropped the lock
    assert _run_lock_held(_Root(tmp_path), "run-1") is None  # and the file went with the check


def test_processes_claiming_the_one_slot_at_once_are_admitted_one_at_a_time(dagster_home):
    """Dagster's SQLite event log admitted several claimers of a one-slot pool at once (no row locks in SQLite); the
    home's storage claims in turn (equal_dagster/instance_storage.py). Four processes take the slot 40 times each;
    with Dagster's stock SQLite storage this found overlaps in each of 4 tries."""
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    from equal_dagster.instance_storage import POOL_METHODS, PoolLockedSqliteEventLogStorage

    assert all(callable(getattr(SqliteEventLogStorage, name, None)) for name in POOL_METHODS)  # Dagster still has them
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    assert isinstance(instance.event_log_storage, PoolLockedSqliteEventLogStorage)
    instance.get_runs(limit=1)
    instance.event_log_storage.initialize_concurrency_limit_to_default("duckdb")
    assert instance.event_log_storage.get_concurrency_info("duckdb").slot_count == 1
    start = time.time() + 8  # every process has opened the instance by then
    workers = [subprocess.Popen([sys.executable, str(Path(__file__).parent / "pool_claims.py"), str(dagster_home),
                                 str(start), f"w{i}", "40"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for i in range(4)]
    outputs = [worker.communicate(timeout=240)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0] * 4, outputs
    assert [int(output.split()[-1]) for output in outputs] == [0] * 4, outputs  # no one found another holder inside
    assert pool_holders(instance) == []
