"""The `equal` command: demo, run, rounds, estimate, lineage, export, recover, ui.

What goes wrong is said in one line, on stderr (with ``--json``: a JSON object on stdout), with no stack trace unless
``--debug``: a user's mistake (an argument, a file, a folder, a budget, a crawl with nothing usable; checked before
any run is launched where it can be) exits 2; a stage that failed exits 1 and names its run and the log file. The
commands that run stages print a short summary and the path of their log file, which has everything else
(:mod:`equal_dagster.logs`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pydantic

from equal_dagster.core.bandit import POLICIES, BanditParams
from equal_dagster.core.ray_setup import ENGINES
from equal_dagster.core.export import FORMATS
from equal_dagster.core.settings import EqualPaths
from equal_dagster.core.store import MAINTENANCE_DELETE_AFTER_S
from equal_dagster.core.warmup import WARMUP_FRACTION
from equal_dagster.errors import HeadlessRunError, UsageError
from equal_dagster.logs import (
    CommandLog,
    command_log,
    console_level,
    last_log,
    new_command,
    quiet_progress_bars,
    say,
    say_err,
)

READER_WAIT_S = 10.0  # `equal export` and `equal lineage` wait this long for a store another process writes


def _paths(args: argparse.Namespace) -> EqualPaths:
    if args.home:
        os.environ["EQUAL_HOME"] = args.home
    paths = EqualPaths.from_env()
    os.environ["EQUAL_HOME"] = str(paths.home)
    os.environ["DAGSTER_HOME"] = str(paths.dagster_home)
    _check_environment(paths, resources=args.command in PIPELINE_COMMANDS)
    return paths


PIPELINE_COMMANDS = ("demo", "rounds", "ui")  # commands that build the Definitions' resources (`run` checks its own)


def _check_environment(paths: EqualPaths, *, resources: bool = False) -> None:
    """The settings every command reads from the environment, checked before anything runs: a bad one is the
    user's mistake (exit 2; a store location that does not parse is a StoreError, exit 2 too). With ``resources``,
    every resource's settings (EQUAL_LLM_*, EQUAL_BANDIT_*, ...), which name the variable they came from."""
    try:
        paths.writers  # noqa: B018 - EQUAL_STORE (its location) and EQUAL_STORE_WRITERS
        console_level()
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    engine = os.environ.get("EQUAL_COMPUTE", "").strip()
    if engine and engine not in ENGINES:
        raise UsageError(f"EQUAL_COMPUTE={engine!r}: the compute engine is one of {', '.join(ENGINES)}")
    if not (resources or engine == "ray"):
        return
    from equal_dagster.definitions import build_definitions

    try:
        compute = build_definitions(paths).resources["compute"]  # every resource's EQUAL_* settings
        if engine == "ray":
            compute.job_settings()  # EQUAL_RAY_*: workers, CPUs, GPUs
            import ray  # noqa: F401
            import dagster_ray  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"EQUAL_COMPUTE=ray needs Ray and dagster-ray: pip install 'equal-dagster[ray]' ({exc})") from exc
    except (ValueError, pydantic.ValidationError) as exc:
        raise _usage(exc) from exc


@contextlib.contextmanager
def _logged(paths: EqualPaths, command: str) -> Iterator[CommandLog]:
    """The command's log file (its path said once); the console keeps the command's own lines."""
    with command_log(paths.home, command) as log:
        say_err(f"equal {command}: the full log is {log.path}")
        yield log


def _usage(exc: Exception) -> UsageError:
    """A settings error (a ValueError, pydantic's ValidationError) as the user's mistake it is."""
    return exc if isinstance(exc, UsageError) else UsageError(_first_line(exc))


def cmd_demo(args: argparse.Namespace) -> int:
    from equal_dagster.demo.run import run_demo

    paths = _paths(args)
    with _logged(paths, "demo"):
        run_demo(paths, seed=args.seed, n_documents=args.documents, say=say)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from equal_dagster import headless

    home = Path(args.home) if args.home else EqualPaths.from_env().home
    _check_environment(EqualPaths(home, Path(args.crawl_dir)), resources=True)
    try:  # everything it was given is checked before any run is launched
        plan = headless.plan_run(
            Path(args.crawl_dir), Path(args.reference), policy=args.policy, budget=args.budget, seed=args.seed,
            home=home, arms_per_round=args.arms_per_round, docs_per_arm=args.docs_per_arm,
            warmup_fraction=args.warmup_fraction, tune_embedder=not args.no_tune, budget_tokens=args.budget_tokens)
    except (ValueError, pydantic.ValidationError) as exc:
        raise _usage(exc) from exc
    with _logged(plan.paths, "run"):  # stdout carries the JSON summary alone
        summary = headless.execute_run(plan)
    if summary.get("why_no_pairs"):
        say_err(f"equal run: no QA pairs: {summary['why_no_pairs']}")
    print(headless.summary_json(summary))
    return 0


def cmd_rounds(args: argparse.Namespace) -> int:
    from equal_dagster.core.extraction.backends.vllm_offline import stop_engines
    from equal_dagster.core.store import store_exists
    from equal_dagster.definitions import build_definitions
    from equal_dagster.headless import compute_session, play_rounds
    from equal_dagster.instance import persistent_instance

    paths = _paths(args)
    if not store_exists(paths.store):
        raise UsageError(f"no store at {paths.store}: run the pipeline up to clusters first (equal demo, equal run, "
                         "or make ui)")
    from equal_dagster.definitions import bandit_resource_from_env
    from equal_dagster.headless import bandit_settings_of_last_round
    from equal_dagster.resources.bandit import BanditResource

    settings = bandit_settings_of_last_round(paths.store)
    if settings is None:  # the first round: the environment's settings (EQUAL_BANDIT_*, EQUAL_BUDGET, EQUAL_REFERENCE)
        settings = bandit_resource_from_env(paths).model_dump()
    for name in ("policy", "budget", "arms_per_round", "docs_per_arm"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    try:
        bandit = BanditResource(**settings)
        bandit.round_settings()  # a bad budget fails here, in one line, before any run is launched
    except (ValueError, pydantic.ValidationError) as exc:
        raise _usage(exc) from exc
    from equal_dagster.core.rounds import budget_status, round_key
    from equal_dagster.core.store import Store

    with Store.open(paths.store, read_only=True) as store:
        status = budget_status(store, bandit.round_settings().budget)
    if status.spent:  # said before any run is launched: no FAILED run for a budget already spent
        raise UsageError(f"{status.describe()}; raise it to go on (--budget)")
    with _logged(paths, "rounds"):
        defs = build_definitions(paths, bandit=bandit)
        with compute_session(defs):
            played = play_rounds(defs, persistent_instance(paths), paths.store, args.count)
        stop_engines()  # a vLLM engine kept across the rounds frees its GPU memory
    if args.json:
        keys = ("round_no", "documents", "qa_pairs", "round_reward", "documents_spent_total", "budget_left_documents",
                "budget_spent", "round_shape")
        print(json.dumps([{k: m.get(k) for k in keys} | {"round_id": round_key(m["round_no"])} for m in played],
                         indent=1, default=str))
        return 0
    if played:
        shape = played[0]["round_shape"]
        print(f"round shape: {shape['arms_per_round']} arm(s) x {shape['docs_per_arm']} documents ({shape['reason']})")
    for metadata in played:
        print(f"{round_key(metadata['round_no'])}: {metadata['documents']} documents, {metadata['qa_pairs']} QA pairs, "
              f"reward {metadata['round_reward']:.4f}, {metadata['documents_spent_total']} documents spent, "
              f"budget left {'no limit' if metadata['budget_left_documents'] is None else metadata['budget_left_documents']}")
    if played and played[-1]["budget_spent"]:
        print("the budget (or every candidate document) is spent")
    return 0


def _first_line(exc: Exception) -> str:
    if isinstance(exc, pydantic.ValidationError):
        error = exc.errors()[0]
        return f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']} (got {error.get('input')!r})"
    return str(exc).splitlines()[0]


def cmd_estimate(args: argparse.Namespace) -> int:
    from equal_dagster.core.bandit import Budget
    from equal_dagster.core.estimate import estimate_cost, format_estimate
    from equal_dagster.core.store import Store
    from equal_dagster.definitions import (
        bandit_resource_from_env,
        extraction_resource_from_env,
    )

    paths = _paths(args)
    try:
        budget = Budget.parse(args.budget or bandit_resource_from_env(paths).budget, args.budget_tokens)
        config = extraction_resource_from_env().extraction_config()
    except (ValueError, pydantic.ValidationError) as exc:
        raise _usage(exc) from exc
    price_in = args.price_in if args.price_in is not None else args.price_per_mtok
    price_out = args.price_out if args.price_out is not None else args.price_per_mtok
    with Store.open(paths.store, read_only=True, wait_s=READER_WAIT_S) as store:
        estimate = estimate_cost(store, config, budget, price_in=price_in, price_out=price_out)
    print(json.dumps(estimate.as_json(), indent=1) if args.json else format_estimate(estimate, config, budget))
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    from equal_dagster.core.lineage import LineageNotFound, format_lineage, qa_lineage
    from equal_dagster.core.store import Store

    paths = _paths(args)
    try:
        with Store.open(paths.store, read_only=True, wait_s=READER_WAIT_S, snapshot=args.as_of) as store:
            chain = qa_lineage(store, args.qa_id)
    except LineageNotFound as exc:
        raise UsageError(exc.args[0] if exc.args else str(exc), qa_id=args.qa_id) from exc
    print(json.dumps(chain, indent=1, default=str) if args.json else format_lineage(chain))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from equal_dagster.core.export import dataset_hash, export_dataset
    from equal_dagster.core.store import Store

    paths = _paths(args)
    with Store.open(paths.store, read_only=True, wait_s=READER_WAIT_S, snapshot=args.as_of) as store:
        rows = store.kept_pairs()
        unscored = store.unscored_pairs()
    if unscored:  # the dataset is older than the rounds: say so, then export what it holds
        say_err(f"equal export: warning: {unscored:,} QA pairs harvested since qa_dataset was last built are not "
                "scored and not in this export; materialize qa_dataset again (the build_dataset job) to include them")
    if rows.height == 0:
        raise UsageError(f"no kept QA pair in {paths.store}: materialize qa_dataset first")
    if args.limit:
        rows = rows.head(args.limit)
    files = export_dataset(rows, Path(args.out), args.format, name=args.name, system=args.system)
    if args.json:
        print(json.dumps({"files": {fmt: str(path) for fmt, path in files.items()}, "pairs": rows.height,
                          "dataset_hash": dataset_hash(rows)}, indent=1))
        return 0
    for fmt, path in files.items():
        print(f"{fmt}: {path}")
    print(f"{rows.height} pairs, dataset hash {dataset_hash(rows)}")
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    from equal_dagster.instance import persistent_instance, release_dead_runs

    paths = _paths(args)
    released = release_dead_runs(persistent_instance(paths), print)
    if not released:
        print("no dead run: nothing holds the store's duckdb pool without a live process")
    return 0


def cmd_maintain(args: argparse.Namespace) -> int:
    from equal_dagster.core.store import Store, store_exists

    paths = _paths(args)
    if not store_exists(paths.store):
        raise UsageError(f"no store at {paths.store}: materialize the corpus first (or check EQUAL_STORE)")
    with Store.open(paths.store, wait_s=READER_WAIT_S) as store:
        report = store.maintain(delete_after_s=args.delete_after_hours * 3600)
    print(json.dumps(dataclasses.asdict(report)) if args.json else report.describe())
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from equal_dagster.instance import prepare_dagster_home, serve_ui

    paths = _paths(args)
    prepare_dagster_home(paths)
    print(f"DAGSTER_HOME={paths.dagster_home}; serving http://127.0.0.1:{args.port}", flush=True)
    serve_ui(args.port)
    return 0


class _ArgumentError(Exception):
    def __init__(self, command: str | None, message: str):
        super().__init__(message)
        self.command = command


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage block and message turned into the one line every other error is."""

    def error(self, message: str):  # type: ignore[override]
        command = self.prog.split()[1] if len(self.prog.split()) > 1 else None
        raise _ArgumentError(command, f"{message} (see `{self.prog} --help`)")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


_positive_int.__name__ = "positive integer"  # argparse's message: "invalid positive integer value: '0'"


def _hours(text: str) -> float:
    value = float(text)
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(text)
    return value


_hours.__name__ = "number of hours"  # "invalid number of hours value: '-1'"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="equal", description="EQUAL on Dagster: instruction data from web crawls.")
    parser.add_argument("--home", help="EQUAL_HOME for this command (default: $EQUAL_HOME or ./.equal)")
    parser.add_argument("--json", action="store_true", help="machine-readable output, errors included")
    parser.add_argument("--debug", action="store_true", help="show the stack trace of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="generate the demo crawls and run the pipeline on them")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--documents", type=_positive_int, default=6000, help="rows to generate (default 6000)")
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser("run", help="headless: ingest, warm-up, embedder, embeddings, clusters and rounds until the "
                                     "budget; prints one JSON summary")
    run.add_argument("--crawl-dir", required=True, help="folder whose subfolders (or crawl files) are the crawls")
    run.add_argument("--reference", required=True, help="JSONL of question/answer pairs: the goal")
    run.add_argument("--policy", default=BanditParams.policy, choices=POLICIES)
    run.add_argument("--budget", default="10%", help="documents for all extraction, warm-up included: 500 or 10%%")
    run.add_argument("--budget-tokens", type=_positive_int, default=None, help="LLM tokens for all extraction (optional)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--arms-per-round", type=_positive_int, default=None, help="default: from the number of arms")
    run.add_argument("--docs-per-arm", type=_positive_int, default=None, help="default: from the budget (10 to 30 rounds)")
    run.add_argument("--warmup-fraction", type=float, default=WARMUP_FRACTION)
    run.add_argument("--no-tune", action="store_true", help="keep the base embedder (skip the contrastive step)")
    run.set_defaults(func=cmd_run)

    rounds = sub.add_parser("rounds", help="play the next N bandit rounds in order, with the settings of the last round "
                                           "unless given (stops when the budget is spent)")
    rounds.add_argument("count", type=_positive_int)
    rounds.add_argument("--budget", default=None, help="a new budget (raise it to go on once it is spent)")
    rounds.add_argument("--policy", default=None, choices=POLICIES, help="another policy from now on")
    rounds.add_argument("--arms-per-round", type=_positive_int, default=None)
    rounds.add_argument("--docs-per-arm", type=_positive_int, default=None)
    rounds.set_defaults(func=cmd_rounds)

    estimate = sub.add_parser("estimate", help="before any LLM call: the documents, calls, tokens and cost a budget "
                                                "will spend with the configured backend (EQUAL_LLM_*)")
    estimate.add_argument("--budget", default=None, help="500 or 10%% (default: EQUAL_BUDGET, else 10%%)")
    estimate.add_argument("--budget-tokens", type=_positive_int, default=None)
    estimate.add_argument("--price-per-mtok", type=float, default=None, help="price per million tokens, in and out")
    estimate.add_argument("--price-in", type=float, default=None, help="price per million input tokens")
    estimate.add_argument("--price-out", type=float, default=None, help="price per million output tokens")
    estimate.set_defaults(func=cmd_estimate)

    lineage = sub.add_parser("lineage", help="where a QA pair came from: file, crawl, document, cluster, round, extraction")
    lineage.add_argument("qa_id")
    lineage.add_argument("--as-of", type=int, default=None, metavar="SNAPSHOT",
                         help="a DuckLake store as it was at this snapshot (an asset's store_snapshot metadata)")
    lineage.set_defaults(func=cmd_lineage)

    export = sub.add_parser("export", help="write the kept QA pairs (qa_dataset) in training formats")
    export.add_argument("--format", nargs="+", default=["chat"], choices=FORMATS, help="several allowed")
    export.add_argument("--out", default=".", help="folder to write into")
    export.add_argument("--name", default="qa_dataset", help="file name stem")
    export.add_argument("--limit", type=_positive_int, default=None, help="the best-scored N pairs only")
    export.add_argument("--system", default=None, help="a system message for chat and ShareGPT rows")
    export.add_argument("--as-of", type=int, default=None, metavar="SNAPSHOT",
                        help="the dataset as a DuckLake snapshot held it (qa_dataset's store_snapshot metadata)")
    export.set_defaults(func=cmd_export)

    recover = sub.add_parser("recover", help="after a crash: fail the runs whose process is gone and free their slot of "
                                              "the duckdb pool (every `equal` command does this first)")
    recover.set_defaults(func=cmd_recover)

    maintain = sub.add_parser("maintain", help="keep a DuckLake store's reads fast: merge its small files and delete "
                                                "the ones merged away (nightly by the store_maintenance schedule); "
                                                "on a DuckDB file, a checkpoint")
    maintain.add_argument("--delete-after-hours", type=_hours, default=MAINTENANCE_DELETE_AFTER_S / 3600,
                          help="delete files DuckLake no longer reads once this old (default %(default)g; 0 deletes "
                               "them at once: only while nothing else reads or writes the store)")
    maintain.set_defaults(func=cmd_maintain)

    ui = sub.add_parser("ui", help="start the Dagster UI on 127.0.0.1 with this home's persistent instance")
    ui.add_argument("--port", type=_positive_int, default=3000)
    ui.set_defaults(func=cmd_ui)

    # --home, --json and --debug also after the command (equal run ... --home DIR)
    for command in (demo, run, rounds, estimate, lineage, export, recover, maintain, ui):
        command.add_argument("--home", default=argparse.SUPPRESS, help="EQUAL_HOME for this command")
        command.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                             help="machine-readable output, errors included")
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the stack trace of an error")
    return parser


def _explain(exc: Exception) -> tuple[str, int]:
    """The one line an error is said in, and the exit code."""
    from equal_dagster.core.store import StoreError

    log = last_log()
    see_log = f" (the full log: {log.path})" if log else ""
    if isinstance(exc, UsageError):
        return str(exc).strip().splitlines()[0], UsageError.exit_code
    if isinstance(exc, pydantic.ValidationError):
        return _first_line(exc), UsageError.exit_code
    if isinstance(exc, StoreError):  # busy, not a DuckDB file, a folder that cannot be written
        return str(exc), exc.exit_code
    if isinstance(exc, OSError) and exc.filename is not None:  # a file or folder it was pointed at cannot be used
        hint = "; EQUAL_HOME (or --home) must be a folder this user can write" if isinstance(
            exc, PermissionError | IsADirectoryError | NotADirectoryError | FileExistsError) else ""
        return f"cannot use {exc.filename}: {exc.strerror}{hint}", UsageError.exit_code
    if isinstance(exc, HeadlessRunError):  # a stage failed: its run and step error
        return str(exc).strip().splitlines()[0] + see_log, HeadlessRunError.exit_code
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}{see_log}; rerun with --debug for the stack trace", 1


def _fail(command: str | None, message: str, code: int, *, as_json: bool, details: dict | None = None) -> int:
    from equal_dagster.core.store import redacted

    message = redacted(message)  # a DuckDB error may quote the store's connection string
    if as_json:
        print(json.dumps({"command": command, "error": message, "exit_code": code, **(details or {})}))
    else:
        say_err(f"equal{' ' + command if command else ''}: {message}")
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    new_command()
    try:
        args = _parser().parse_args(argv)
    except _ArgumentError as exc:
        return _fail(exc.command, str(exc), 2, as_json="--json" in argv)
    if args.command in ("demo", "run", "rounds"):
        quiet_progress_bars()  # before tqdm is imported: the log file has the progress, the console one status line
    try:
        return args.func(args)
    except Exception as exc:  # noqa: BLE001 - every error is said in one line; --debug shows the stack trace
        if args.debug:
            raise
        message, code = _explain(exc)
        return _fail(args.command, message, code, as_json=args.json, details=getattr(exc, "details", None))


if __name__ == "__main__":
    sys.exit(main())
