"""The `equal` command: demo, ui."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from equal_dagster.core.settings import EqualPaths


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

    ui = sub.add_parser("ui", help="start the Dagster UI on 127.0.0.1 with this home's persistent instance")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
