"""The `equal` command: demo, run, rounds, lineage, export, ui."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
from pathlib import Path

import pydantic

from equal_dagster.core.bandit import POLICIES, BanditParams
from equal_dagster.core.settings import EqualPaths
from equal_dagster.core.warmup import WARMUP_FRACTION

READER_WAIT_S = 10.0  # `equal export` and `equal lineage` wait this long for a store another process writes


def _paths(args: argparse.Namespace) -> EqualPaths:
    if args.home:
        os.environ["EQUAL_HOME"] = args.home
    paths = EqualPaths.from_env()
    os.environ["EQUAL_HOME"] = str(paths.home)
    os.environ["DAGSTER_HOME"] = str(paths.dagster_home)
    return paths


def cmd_demo(args: argparse.Namespace) -> int:
    from equal_dagster.demo.run import run_demo

    run_demo(_paths(args), seed=args.seed, n_documents=args.documents)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from equal_dagster.headless import HeadlessRunError, run_headless, summary_json

    home = Path(args.home) if args.home else EqualPaths.from_env().home
    try:
        # stdout carries the JSON summary alone: what the stages print (the trainer's loss lines) goes to stderr
        with contextlib.redirect_stdout(sys.stderr):
            summary = run_headless(
                Path(args.crawl_dir), Path(args.reference), policy=args.policy, budget=args.budget, seed=args.seed,
                home=home, arms_per_round=args.arms_per_round, docs_per_arm=args.docs_per_arm,
                warmup_fraction=args.warmup_fraction, tune_embedder=not args.no_tune, budget_tokens=args.budget_tokens,
            )
    except (HeadlessRunError, ValueError) as exc:
        print(f"equal run: {exc}", file=sys.stderr)
        return 1
    if summary.get("why_no_pairs"):
        print(f"equal run: no QA pairs: {summary['why_no_pairs']}", file=sys.stderr)
    print(summary_json(summary))
    return 0


def cmd_rounds(args: argparse.Namespace) -> int:
    from equal_dagster.definitions import build_definitions
    from equal_dagster.headless import HeadlessRunError, play_rounds
    from equal_dagster.instance import persistent_instance

    paths = _paths(args)
    if not paths.store.exists():
        print(f"equal rounds: no store at {paths.store}: run the pipeline up to clusters first (equal demo, equal run, "
              "or make ui)", file=sys.stderr)
        return 1
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
        print(f"equal rounds: {_first_line(exc)}", file=sys.stderr)
        return 2
    from equal_dagster.core.rounds import budget_status, round_key
    from equal_dagster.core.store import Store

    with Store.open(paths.store, read_only=True) as store:
        status = budget_status(store, bandit.round_settings().budget)
    if status.spent:  # said before any run is launched: no FAILED run for a budget already spent
        print(f"equal rounds: {status.describe()}; raise it to go on (--budget)", file=sys.stderr)
        return 1
    try:
        played = play_rounds(build_definitions(paths, bandit=bandit), persistent_instance(paths), paths.store, args.count)
    except HeadlessRunError as exc:
        print(f"equal rounds: {exc}", file=sys.stderr)
        return 1
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
    from equal_dagster.definitions import bandit_resource_from_env, extraction_resource_from_env

    paths = _paths(args)
    try:
        budget = Budget.parse(args.budget or bandit_resource_from_env(paths).budget, args.budget_tokens)
        config = extraction_resource_from_env().extraction_config()
    except (ValueError, pydantic.ValidationError) as exc:
        print(f"equal estimate: {_first_line(exc)}", file=sys.stderr)
        return 2
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
        with Store.open(paths.store, read_only=True, wait_s=READER_WAIT_S) as store:
            chain = qa_lineage(store, args.qa_id)
    except LineageNotFound as exc:
        message = exc.args[0] if exc.args else str(exc)
        if args.json:
            print(json.dumps({"error": message, "qa_id": args.qa_id}))
        else:
            print(f"equal lineage: {message}", file=sys.stderr)
        return 1
    print(json.dumps(chain, indent=1, default=str) if args.json else format_lineage(chain))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from equal_dagster.core.export import dataset_hash, export_dataset
    from equal_dagster.core.store import Store

    paths = _paths(args)
    with Store.open(paths.store, read_only=True, wait_s=READER_WAIT_S) as store:
        rows = store.kept_pairs()
        unscored = store.unscored_pairs()
    if unscored:  # the dataset is older than the rounds: say so, then export what it holds
        print(f"equal export: warning: {unscored:,} QA pairs harvested since qa_dataset was last built are not scored "
              "and not in this export; materialize qa_dataset again (the build_dataset job) to include them",
              file=sys.stderr)
    if rows.height == 0:
        print("equal export: no kept QA pair: materialize qa_dataset first", file=sys.stderr)
        return 1
    if args.limit:
        rows = rows.head(args.limit)
    try:
        files = export_dataset(rows, Path(args.out), args.format, name=args.name, system=args.system)
    except ValueError as exc:
        print(f"equal export: {exc}", file=sys.stderr)
        return 1
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


def cmd_ui(args: argparse.Namespace) -> int:
    from equal_dagster.instance import prepare_dagster_home

    paths = _paths(args)
    prepare_dagster_home(paths)
    # the dagster beside this interpreter: the venv need not be activated
    dagster = shutil.which("dagster", path=str(Path(sys.executable).parent)) or "dagster"
    command = [dagster, "dev", "-h", "127.0.0.1", "-p", str(args.port), "-m", "equal_dagster.definitions"]
    print(f"DAGSTER_HOME={paths.dagster_home}; serving http://127.0.0.1:{args.port}", flush=True)
    os.execvp(command[0], command)
    return 0  # not reached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="equal", description="EQUAL on Dagster: instruction data from web crawls.")
    parser.add_argument("--home", help="EQUAL_HOME for this command (default: $EQUAL_HOME or ./.equal)")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="generate the demo crawls and run the pipeline on them")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--documents", type=int, default=6000, help="rows to generate (default 6000)")
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser("run", help="headless: ingest, warm-up, embedder, embeddings, clusters and rounds until the "
                                     "budget; prints one JSON summary")
    run.add_argument("--crawl-dir", required=True, help="folder whose subfolders are the crawls")
    run.add_argument("--reference", required=True, help="JSONL of question/answer pairs: the goal")
    run.add_argument("--policy", default=BanditParams.policy, choices=POLICIES)
    run.add_argument("--budget", default="10%", help="documents for all extraction, warm-up included: 500 or 10%%")
    run.add_argument("--budget-tokens", type=int, default=None, help="LLM tokens for all extraction (optional)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--arms-per-round", type=int, default=None, help="default: from the number of arms")
    run.add_argument("--docs-per-arm", type=int, default=None, help="default: from the budget (10 to 30 rounds)")
    run.add_argument("--warmup-fraction", type=float, default=WARMUP_FRACTION)
    run.add_argument("--no-tune", action="store_true", help="keep the base embedder (skip the contrastive step)")
    run.set_defaults(func=cmd_run)

    rounds = sub.add_parser("rounds", help="play the next N bandit rounds in order, with the settings of the last round "
                                           "unless given (stops when the budget is spent)")
    rounds.add_argument("count", type=int)
    rounds.add_argument("--budget", default=None, help="a new budget (raise it to go on once it is spent)")
    rounds.add_argument("--policy", default=None, choices=POLICIES, help="another policy from now on")
    rounds.add_argument("--arms-per-round", type=int, default=None)
    rounds.add_argument("--docs-per-arm", type=int, default=None)
    rounds.set_defaults(func=cmd_rounds)

    estimate = sub.add_parser("estimate", help="before any LLM call: the documents, calls, tokens and cost a budget "
                                                "will spend with the configured backend (EQUAL_LLM_*)")
    estimate.add_argument("--budget", default=None, help="500 or 10%% (default: EQUAL_BUDGET, else 10%%)")
    estimate.add_argument("--budget-tokens", type=int, default=None)
    estimate.add_argument("--price-per-mtok", type=float, default=None, help="price per million tokens, in and out")
    estimate.add_argument("--price-in", type=float, default=None, help="price per million input tokens")
    estimate.add_argument("--price-out", type=float, default=None, help="price per million output tokens")
    estimate.add_argument("--json", action="store_true", help="machine-readable")
    estimate.set_defaults(func=cmd_estimate)

    lineage = sub.add_parser("lineage", help="where a QA pair came from: file, crawl, document, cluster, round, extraction")
    lineage.add_argument("qa_id")
    lineage.add_argument("--json", action="store_true", help="machine-readable")
    lineage.set_defaults(func=cmd_lineage)

    export = sub.add_parser("export", help="write the kept QA pairs (qa_dataset) in training formats")
    export.add_argument("--format", nargs="+", default=["chat"], help="chat | alpaca | sharegpt | parquet (several allowed)")
    export.add_argument("--out", default=".", help="folder to write into")
    export.add_argument("--name", default="qa_dataset", help="file name stem")
    export.add_argument("--limit", type=int, default=None, help="the best-scored N pairs only")
    export.add_argument("--system", default=None, help="a system message for chat and ShareGPT rows")
    export.set_defaults(func=cmd_export)

    recover = sub.add_parser("recover", help="after a crash: fail the runs whose process is gone and free their slot of "
                                              "the duckdb pool (every `equal` command does this first)")
    recover.set_defaults(func=cmd_recover)

    ui = sub.add_parser("ui", help="start the Dagster UI on 127.0.0.1 with this home's persistent instance")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)

    for command in (demo, run, rounds, estimate, lineage, export, recover, ui):  # --home also after the command (equal run ... --home DIR)
        command.add_argument("--home", default=argparse.SUPPRESS, help="EQUAL_HOME for this command")
    args = parser.parse_args(argv)
    from equal_dagster.core.store import StoreError

    try:
        return args.func(args)
    except StoreError as exc:  # busy, not a DuckDB file, a folder that cannot be written: one line, no traceback
        print(f"equal {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # the home or the Dagster instance cannot be created or written
        if exc.filename is None:
            raise
        print(f"equal {args.command}: cannot write {exc.filename}: {exc.strerror}; EQUAL_HOME (or --home) must be a "
              "folder this user can write", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
