"""The errors an `equal` command reports in one line, with the exit code each gets."""

from __future__ import annotations


class UsageError(ValueError):
    """A mistake in what the user gave: an argument, a file, a folder's layout, a budget already spent, a crawl with
    nothing usable in it. Found before any run is launched where it can be; the command says what and where in one
    line and exits 2."""

    exit_code = 2

    def __init__(self, message: str, **details: object):
        super().__init__(message)
        self.details = details  # what a --json error carries besides the message (the QA id asked for, ...)


class HeadlessRunError(RuntimeError):
    """A stage (a Dagster run) that failed: the command names the run and its log file, and exits 1. ``refusal``:
    the class of the refusal the step failed with (``RoundAlreadyPlayed``, ...), when it says."""

    exit_code = 1

    def __init__(self, message: str, refusal: str | None = None):
        super().__init__(message)
        self.refusal = refusal
