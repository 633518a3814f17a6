"""What an `equal` command shows on the console, and where the rest goes.

The console carries each command's own summary lines, Dagster's warnings and errors (one short line each) and, on a
terminal, one status line that each step's latest progress message overwrites: one progress display at a time.
Everything else goes to one log file per command under the home, ``$EQUAL_HOME/logs/<time>-<pid>-<command>.log``, whose
path the command prints once: every Dagster event (DEBUG included), the steps' progress lines, the trainer's loss
lines, the libraries' own logging and Python warnings. The Dagster instance keeps each run's events too (the run log
in the UI). ``EQUAL_CONSOLE_LOG_LEVEL`` lowers the console's threshold (INFO: the progress lines as lines; DEBUG:
Dagster's events too).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

CONSOLE_LEVEL_ENV = "EQUAL_CONSOLE_LOG_LEVEL"
CONSOLE_LEVEL = "WARNING"  # the console's threshold for whole lines; INFO below it feeds the status line
FILE_LEVEL = "DEBUG"
_FORMAT = logging.Formatter("%(asctime)s %(levelname)-7s %(where)s%(text)s", "%Y-%m-%d %H:%M:%S")


class StatusLine:
    """One line on a terminal's stderr that the latest progress message overwrites; nothing when stderr is not a
    terminal (a CI log, a pipe): there the log file has the progress."""

    def __init__(self) -> None:
        self.open = False

    @property
    def stream(self) -> TextIO:
        return console()[1]

    def show(self, text: str) -> None:
        if not self.stream.isatty():
            return
        width = max(shutil.get_terminal_size().columns - 1, 20)
        self.stream.write("\r\x1b[K" + " ".join(text.split())[:width])
        self.stream.flush()
        self.open = True

    def clear(self) -> None:
        if self.open:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.open = False


STATUS = StatusLine()


def console() -> tuple[TextIO, TextIO]:
    """The console's (stdout, stderr): while a command log is open, what they were before it sent the libraries'
    prints to the file. Looked up each time: a test's capture replaces them."""
    return _CONSOLE or (sys.stdout, sys.stderr)


def say(message: str, *, err: bool = False) -> None:
    """Print one of the command's own lines (stdout; ``err``: stderr), clearing the status line first."""
    STATUS.clear()
    print(message, file=console()[1 if err else 0], flush=True)


def say_err(message: str) -> None:
    say(message, err=True)


def _parts(record: logging.LogRecord) -> tuple[str, str, str | None]:
    """(where, text, Dagster event type or None) of a record: a step's own message without Dagster's prefix."""
    meta = getattr(record, "dagster_meta", None) or {}
    text = meta.get("orig_message") or record.getMessage()
    where = meta.get("step_key") or meta.get("job_name") or ""
    event = meta.get("dagster_event")
    return where, str(text), getattr(event, "event_type_value", None) if event is not None else None


class ConsoleHandler(logging.Handler):
    def __init__(self, line_level: int):
        super().__init__(logging.DEBUG)
        self.line_level = line_level

    def emit(self, record: logging.LogRecord) -> None:
        where, text, event = _parts(record)
        if record.levelno >= self.line_level:
            level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
            say(f"{level}{where + ': ' if where else ''}{text.splitlines()[0] if text else ''}", err=True)
        elif record.levelno >= logging.INFO and event is None:
            STATUS.show(f"{where}: {text}" if where else text)


class _FileFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        where, text, event = _parts(record)
        record.where = f"{where}: " if where else f"{record.name}: "
        record.text = f"[{event}] {text}" if event else text
        return _FORMAT.format(record)


_FILE_HANDLERS: dict[str, logging.FileHandler] = {}


def file_handler(path: str) -> logging.FileHandler:
    """One handler per log file for the whole process (each run's logger shares it: no file left open per run)."""
    if path not in _FILE_HANDLERS:
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(_FileFormatter())
        _FILE_HANDLERS[path] = handler
    return _FILE_HANDLERS[path]


def level_number(name: str) -> int:
    level = logging.getLevelName(name.upper())
    if not isinstance(level, int):
        raise ValueError(f"{name!r} is not a log level (DEBUG, INFO, WARNING, ERROR)")
    return level


@dataclass(frozen=True)
class CommandLog:
    """The log file of one `equal` command, and the loggers its runs use."""

    path: Path

    def run_config(self) -> dict:
        """The ``loggers`` section of a run's config: the console and this file."""
        return {"equal_console": {"config": {"log_level": console_level()}},
                "equal_file": {"config": {"path": str(self.path)}}}


_LAST: CommandLog | None = None  # the log of the command under way in this process (open while _CONSOLE is set)
_CONSOLE: tuple[TextIO, TextIO] | None = None  # (stdout, stderr) of the console while a command log is open


@contextlib.contextmanager
def command_log(home: Path, command: str) -> Iterator[CommandLog]:
    """While open: ``home/logs/<time>-<pid>-<command>.log`` receives every run's events (through :data:`LOGGERS`), Python's
    logging from WARNING up, Python warnings, and whatever the libraries print (lm-eval's progress bars, a trainer's
    table); the command's own lines (:func:`say`) still reach the console."""
    global _LAST, _CONSOLE
    console_level()  # a bad EQUAL_CONSOLE_LOG_LEVEL fails here, before any run
    folder = Path(home) / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    # the process id in the name: two commands started in the same second in one home (DuckLake admits several
    # writers) keep a file each
    log = CommandLog(folder / f"{datetime.now():%Y%m%dT%H%M%S}-{os.getpid()}-{command}.log")
    _quiet_libraries()
    printed = open(log.path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - closed below
    handler = file_handler(str(log.path))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)  # the libraries' warnings (their INFO is chatter: migrations, ...)
    logging.captureWarnings(True)
    _CONSOLE = (sys.stdout, sys.stderr)
    sys.stdout = sys.stderr = printed
    _LAST = log
    try:
        yield log
    finally:
        sys.stdout, sys.stderr = _CONSOLE
        _CONSOLE = None
        STATUS.clear()
        printed.close()
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(level)
        _FILE_HANDLERS.pop(str(log.path)).close()


def active_log() -> CommandLog | None:
    """The open log of the `equal` command running in this process (None: called from a script or a test)."""
    return _LAST if _CONSOLE is not None else None


def last_log() -> CommandLog | None:
    """The log of the `equal` command under way in this process, open or closed already (an error message points
    at it); None before it opens one."""
    return _LAST


def new_command() -> None:
    """A new `equal` command begins in this process: no log of its own yet."""
    global _LAST
    _LAST = None


def console_level(default: str = CONSOLE_LEVEL) -> str:
    """The console's threshold: ``EQUAL_CONSOLE_LOG_LEVEL``, else ``default``."""
    name = os.environ.get(CONSOLE_LEVEL_ENV, "").strip() or default
    try:
        level_number(name)
    except ValueError as exc:
        raise ValueError(f"{CONSOLE_LEVEL_ENV}={exc}") from exc
    return name.upper()


def quiet_progress_bars() -> None:
    """No tqdm bars on the console (they would run into the lines): before tqdm is first imported."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _quiet_libraries() -> None:
    """transformers writes to stderr with its own handler: let its records reach the root logger (the file)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a dependency
        return
    hf_logging.disable_default_handler()
    hf_logging.enable_propagation()
    hf_logging.disable_progress_bar()
