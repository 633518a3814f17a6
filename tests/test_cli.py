"""The `equal` command's errors and console: one line, exit 2 for a user's mistake (before any run), JSON with --json,
the stack trace only with --debug; the status line on a terminal."""

import io
import json
import logging

import pytest

from equal_dagster import cli
from equal_dagster.cli import main
from equal_dagster.logs import STATUS, ConsoleHandler, say


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


@pytest.mark.parametrize("argv, says", [
    (["rounds", "zero"], "invalid positive integer value: 'zero'"),
    (["rounds", "0"], "invalid positive integer value: '0'"),
    (["run", "--reference", "r.jsonl"], "the following arguments are required: --crawl-dir"),
    (["run", "--crawl-dir", "c", "--reference", "r", "--policy", "ucb"], "argument --policy: invalid choice: 'ucb'"),
    (["export", "--format", "xml"], "argument --format: invalid choice: 'xml'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["maintain", "--delete-after-hours", "soon"], "argument --delete-after-hours: invalid number of hours value"),
    (["maintain", "--delete-after-hours", "-1"], "argument --delete-after-hours: invalid number of hours value"),
    (["maintain", "--delete-after-hours", "nan"], "argument --delete-after-hours: invalid number of hours value"),
])
def test_an_argument_mistake_is_one_line_and_exit_2(argv, says, capsys, tmp_path):
    assert main(["--home", str(tmp_path / "h")] + argv) == 2
    err = one_line(capsys)
    assert err.startswith("equal") and says in err and "--help" in err
    assert not (tmp_path / "h").exists()  # nothing was created, no run launched


def test_a_run_with_a_missing_folder_or_reference_says_what_and_where_before_any_run(tmp_path, capsys):
    home = tmp_path / "home"
    assert main(["run", "--crawl-dir", str(tmp_path / "nowhere"), "--reference", "r.jsonl", "--home", str(home)]) == 2
    assert one_line(capsys) == f"equal run: no crawl folder at {tmp_path / 'nowhere'}"
    crawls = tmp_path / "crawls"
    (crawls / "c1").mkdir(parents=True)
    (crawls / "c1" / "part.jsonl").write_text('{"text": "a page about sums"}\n')
    assert main(["run", "--crawl-dir", str(crawls), "--reference", str(tmp_path / "ref.jsonl"), "--home", str(home)]) == 2
    assert f"reference set {tmp_path / 'ref.jsonl'} does not exist" in one_line(capsys)
    (tmp_path / "ref.jsonl").write_text('{"question": "q"}\n')
    assert main(["run", "--crawl-dir", str(crawls), "--reference", str(tmp_path / "ref.jsonl"), "--home", str(home),
                 "--budget", "ten"]) == 2
    assert "ten" in one_line(capsys)
    assert main(["run", "--crawl-dir", str(crawls), "--reference", str(tmp_path / "ref.jsonl"), "--home", str(home),
                 "--warmup-fraction", "1.5"]) == 2
    assert "warm-up fraction" in one_line(capsys)
    assert main(["run", "--crawl-dir", str(crawls), "--reference", str(tmp_path / "ref.jsonl"), "--home", str(home)]) == 2
    assert "line 1: answer missing" in one_line(capsys)
    assert not (home / "dagster").exists()  # no Dagster run was launched for any of them


def test_errors_are_json_with_json_and_commands_without_a_store_say_so(tmp_path, capsys):
    home = str(tmp_path / "empty")
    assert main(["--home", home, "--json", "rounds", "0"]) == 2
    error = json.loads(capsys.readouterr().out)
    assert error["exit_code"] == 2 and "positive integer" in error["error"] and error["command"] == "rounds"
    for argv in (["rounds", "1"], ["export"], ["lineage", "qa-1"], ["estimate"], ["maintain"]):
        assert main(["--home", home] + argv + ["--json"]) == 2
        error = json.loads(capsys.readouterr().out)
        assert error["command"] == argv[0] and "no store at" in error["error"], error
        assert main(["--home", home] + argv) == 2
        assert "no store at" in one_line(capsys)


def test_an_internal_error_is_one_line_unless_debug(tmp_path, capsys, monkeypatch):
    def broken(args):
        raise RuntimeError("the disk said no\nsecond line")

    monkeypatch.setattr(cli, "cmd_recover", broken)
    assert main(["--home", str(tmp_path), "recover"]) == 1
    err = one_line(capsys)
    assert err == "equal recover: RuntimeError: the disk said no; rerun with --debug for the stack trace"
    with pytest.raises(RuntimeError, match="the disk said no"):
        main(["--home", str(tmp_path), "recover", "--debug"])


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_one_status_line_on_a_terminal_and_nothing_in_a_pipe(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    handler = ConsoleHandler(logging.WARNING)

    def record(level: int, message: str) -> logging.LogRecord:
        rec = logging.LogRecord("equal", level, __file__, 1, message, None, None)
        rec.dagster_meta = {"orig_message": message, "step_key": "embeddings", "dagster_event": None}
        return rec

    handler.emit(record(logging.INFO, "embedded 100/300 documents"))
    handler.emit(record(logging.INFO, "embedded 200/300 documents"))
    assert terminal.getvalue() == "\r\x1b[Kembeddings: embedded 100/300 documents\r\x1b[Kembeddings: embedded 200/300 documents"
    handler.emit(record(logging.WARNING, "3 documents had no text"))  # a whole line, the status line cleared first
    assert terminal.getvalue().endswith("\r\x1b[Kwarning: embeddings: 3 documents had no text\n")
    handler.emit(record(logging.INFO, "clustering"))
    say("done", err=True)
    assert terminal.getvalue().endswith("clustering\r\x1b[Kdone\n") and not STATUS.open

    pipe = io.StringIO()
    monkeypatch.setattr("sys.stderr", pipe)
    handler.emit(record(logging.INFO, "embedded 300/300 documents"))
    handler.emit(record(logging.ERROR, "the embedder crashed"))
    assert pipe.getvalue() == "error: embeddings: the embedder crashed\n"


def test_a_bad_setting_in_the_environment_is_the_users_mistake(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EQUAL_CONSOLE_LOG_LEVEL", "LOUD")
    assert main(["--home", str(tmp_path / "h"), "rounds", "1"]) == 2
    assert "EQUAL_CONSOLE_LOG_LEVEL='LOUD' is not a log level" in one_line(capsys)
    monkeypatch.delenv("EQUAL_CONSOLE_LOG_LEVEL")
    monkeypatch.setenv("EQUAL_STORE", "ducklake:postgres:dbname=e host=127.0.0.1")
    monkeypatch.setenv("EQUAL_STORE_WRITERS", "many")
    assert main(["run", "--crawl-dir", str(tmp_path), "--reference", "r.jsonl", "--home", str(tmp_path / "h")]) == 2
    assert "EQUAL_STORE_WRITERS='many'" in one_line(capsys)
    monkeypatch.setenv("EQUAL_STORE", "ducklake:oracle:db")
    assert main(["--home", str(tmp_path / "h"), "export"]) == 2
    assert "unknown DuckLake catalog" in one_line(capsys)
    monkeypatch.delenv("EQUAL_STORE")
    monkeypatch.delenv("EQUAL_STORE_WRITERS")
    monkeypatch.setenv("EQUAL_COMPUTE", "spark")
    assert main(["--home", str(tmp_path / "h"), "rounds", "1"]) == 2
    assert "EQUAL_COMPUTE='spark': the compute engine is one of local, ray" in one_line(capsys)
    monkeypatch.delenv("EQUAL_COMPUTE")
    # every resource's setting is named by its variable, not by the resource's field, before any run
    for variable, value, says in (("EQUAL_LLM_MAX_TOKENS", "abc", "valid integer"),
                                  ("EQUAL_MAX_DOC_BYTES", "-5", "greater than 0"),
                                  ("EQUAL_BANDIT_POLICY", "nope", "'equal_ucb'"),
                                  ("EQUAL_TRAIN_EPOCHS", "many", "valid"),
                                  ("EQUAL_EMBEDDER_BATCH_SIZE", "x", "valid integer")):
        monkeypatch.setenv(variable, value)
        assert main(["run", "--crawl-dir", str(tmp_path), "--reference", "r.jsonl", "--home", str(tmp_path / "h")]) == 2
        line = one_line(capsys)
        assert f"{variable}={value!r}: " in line and says in line, line
        monkeypatch.delenv(variable)


def test_maintain_checkpoints_a_duckdb_file_store(tmp_path, capsys):
    from equal_dagster.core.store import Store

    home = tmp_path / "home"
    home.mkdir()
    with Store.open(home / "equal.duckdb"):
        pass
    assert main(["--home", str(home), "maintain"]) == 0
    assert capsys.readouterr().out.startswith("DuckDB file checkpointed in ")
    assert main(["--home", str(home), "maintain", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["store"] == "duckdb" and report["files_deleted"] == 0
