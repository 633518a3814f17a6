"""The Dagster loggers of the `equal` commands' runs: the console (short lines and a status line) and the command's
log file (every event). See :mod:`equal_dagster.logs`; a run launched from the UI keeps Dagster's own console logger."""

from __future__ import annotations

import logging

import dagster as dg

from equal_dagster.logs import (
    CONSOLE_LEVEL,
    FILE_LEVEL,
    ConsoleHandler,
    file_handler,
    level_number,
)


@dg.logger(
    config_schema={"log_level": dg.Field(str, default_value=CONSOLE_LEVEL,
                                         description="whole lines from this level up; INFO below it: a status line")},
    description="The console of `equal run`, `equal rounds` and `equal demo`: warnings and errors as short lines, "
                "progress on one status line (on a terminal).",
)
def equal_console(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.Logger("equal.console", level=logging.DEBUG)
    logger.addHandler(ConsoleHandler(level_number(init_context.logger_config["log_level"])))
    return logger


@dg.logger(
    config_schema={"path": dg.Field(str, description="the log file (appended to)"),
                   "log_level": dg.Field(str, default_value=FILE_LEVEL)},
    description="Every event of the run, appended to the command's log file under the home.",
)
def equal_file(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.Logger("equal.file", level=level_number(init_context.logger_config["log_level"]))
    logger.addHandler(file_handler(init_context.logger_config["path"]))
    return logger


LOGGERS = {"console": dg.colored_console_logger, "equal_console": equal_console, "equal_file": equal_file}
