"""Ray's settings and session for the ``ray`` compute engine (:mod:`equal_dagster.core.compute` says what runs there):
the defaults a user gets, written once, the arguments ``ray.init`` is given, and the session a command or a job holds.
It imports nothing of the project's, so that the engines' modules and the extraction backends can all use it."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

ENGINES = ("local", "ray")
# What a Ray worker needs from the driver's environment: offline hubs, the BLAS fixes (the second set by the package's
# __init__, here from the worker's start, before Ray loads numpy), the console's quiet.
FORWARDED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "OPENBLAS_CORETYPE", "OPENBLAS_THREAD_TIMEOUT", "TQDM_DISABLE",
                 "PYTHONPATH")


@dataclass(frozen=True)
class RaySettings:
    """How the work is spread over Ray (each default written here, once)."""

    address: str | None = None  # a running cluster ("auto", "ray://head:10001"); None: a local Ray in this process
    workers: int = 2  # actors per pool (on a GPU cluster: one per GPU)
    num_cpus: float = 0.5  # per actor: fractional, see the module's rules
    num_gpus: float = 0.0  # per actor
    batch_size: int = 512  # documents per embedding batch (map_batches)
    scratch_dir: str | None = None  # staging folder for documents (default: the system's temporary folder)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"the Ray pool needs at least 1 worker, not {self.workers}")
        if self.num_cpus <= 0 and self.num_gpus <= 0:
            raise ValueError("each Ray worker needs some CPU or GPU (num_cpus or num_gpus above 0)")


def pool_size(settings: RaySettings, batches: int) -> int:
    """Actors for a pool with ``batches`` batches of work: ``workers``, but never more than there are batches (each
    actor starts a worker process and may load a model: an actor that gets no batch is paid for nothing)."""
    return max(1, min(settings.workers, batches))


def forwarded_env(names: Sequence[str] = FORWARDED_ENV) -> dict[str, str]:
    """This process's values of ``names`` that are set (what Ray workers, or a Ray job, are given)."""
    return {name: os.environ[name] for name in names if os.environ.get(name)}


def ray_init_options(settings: RaySettings, *, forward_env: bool = True) -> dict[str, Any]:
    """The arguments for ``ray.init`` (dagster-ray's ``ray_init_options``): quiet, no dashboard, and the driver's
    environment variables that workers need (a local Ray's workers run the driver's own Python); not for a Ray job's
    driver (``forward_env`` false), whose job was submitted with them."""
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "ignore_reinit_error": True}
    if forward_env:
        options["runtime_env"] = {"env_vars": forwarded_env()}
    if settings.address is None:
        options["configure_logging"] = False
    return options


def quiet_ray_data() -> None:
    """No progress bars from Ray Data (the asset logs its own progress)."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


@contextmanager
def ray_session(settings: RaySettings, *, forward_env: bool = True) -> Iterator[None]:
    """Ray connected for the block: `equal run` and `equal rounds` hold one for all their runs, as do scripts,
    benchmarks and Ray jobs (``forward_env``: see :func:`ray_init_options`); a run with no Ray yet (from the UI)
    connects through the ``compute`` resource, with dagster-ray. A Ray this block started is shut down at its end; one
    already running is left running."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=settings.address, **ray_init_options(settings, forward_env=forward_env))
    quiet_ray_data()
    try:
        yield
    finally:
        if started:
            ray.shutdown()
