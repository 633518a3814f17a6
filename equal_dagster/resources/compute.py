"""Where the wide work inside an asset runs (:mod:`equal_dagster.core.compute`): ``local`` or ``ray``, the Ray
cluster reached through dagster-ray: its resources (``LocalRay`` for a Ray in the run's own process, a cluster by its
address otherwise) connect the run's process; its ``PipesRayJobClient`` submits the ``embeddings`` and ``clusters``
work as Ray jobs when a job server is given (:mod:`equal_dagster.ray_job`)."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, Optional

import dagster as dg
from pydantic import Field

from equal_dagster.core.ray_setup import FORWARDED_ENV, RaySettings, forwarded_env, quiet_ray_data, ray_init_options

_DEFAULT = RaySettings()


class ComputeResource(dg.ConfigurableResource):
    """``engine``: ``local`` (the default: in the asset's process) or ``ray`` (embeddings, the clusters' assignment and
    the openai backend's calls fan out over Ray; ``address`` empty: a Ray started in the run's process).
    ``job_address``: a Ray job server; ``embeddings`` and ``clusters`` then run as Ray jobs (their progress in the run
    log, stopped when the run is cancelled) and the calls connect to ``address`` (none: they are made from the run's
    process)."""

    engine: Literal["local", "ray"] = Field("local", description="local | ray")
    address: Optional[str] = Field(None, description="ray: a running cluster (ray://head:10001, or auto); none: a "
                                                     "Ray in the run's own process")
    workers: int = Field(_DEFAULT.workers, description="ray: actors per pool (on a GPU cluster, one per GPU)")
    num_cpus: float = Field(_DEFAULT.num_cpus, description="ray: CPUs per actor (fractional on a small machine)")
    num_gpus: float = Field(_DEFAULT.num_gpus, description="ray: GPUs per embedding actor")
    batch_size: int = Field(_DEFAULT.batch_size, description="ray: documents per embedding batch")
    scratch_dir: Optional[str] = Field(None, description="ray: where documents are staged for the workers and their "
                                                         "vectors wait to be loaded (on a cluster, a folder every "
                                                         "node reads and writes)")
    job_address: Optional[str] = Field(None, description="ray: a Ray job server (http://head:8265): embeddings and "
                                                         "clusters run as Ray jobs submitted through dagster-ray's "
                                                         "PipesRayJobClient; none: from the run's process")
    job_python: Optional[str] = Field(None, description="ray jobs: the Python with this project installed on the "
                                                        "cluster's head node (none: this process's own)")

    def ray_settings(self) -> RaySettings | None:
        """The Ray settings for work fanned out from the run's own process (connected to ``address``, or a local Ray),
        else None: the engine is ``local``, or only a job server is given (the calls are then made from the run's
        process; the wide steps go as jobs, :meth:`submits_jobs`)."""
        if self.engine != "ray" or (self.job_address and not self.address):
            return None
        return self._settings(self.address or None)

    def _settings(self, address: str | None) -> RaySettings:
        return RaySettings(address=address, workers=self.workers, num_cpus=self.num_cpus, num_gpus=self.num_gpus,
                           batch_size=self.batch_size, scratch_dir=self.scratch_dir)

    @property
    def submits_jobs(self) -> bool:
        """Whether ``embeddings`` and ``clusters`` run as Ray jobs (the engine is ``ray`` with a job server)."""
        return self.engine == "ray" and bool(self.job_address)

    def job_settings(self) -> RaySettings:
        """The Ray settings of a job's own work (address ``auto``: the cluster the job runs on)."""
        return self._settings("auto")

    def run_job(self, context: dg.AssetExecutionContext, spec: str) -> dict:
        """Submit ``python -m equal_dagster.ray_job SPEC`` to the job server through dagster-ray's
        ``PipesRayJobClient`` and wait for it: the job's Pipes log lines go to the run log, its other output to the
        step's stdout; a run cancelled stops the job. Returns the job's result (its last Pipes message)."""
        try:
            from dagster_ray import PipesRayJobClient
        except ImportError as exc:
            raise dg.Failure(f"Ray jobs need Ray and dagster-ray: pip install 'equal-dagster[ray]' ({exc})") from exc
        python = self.job_python or sys.executable
        # not PYTHONPATH: the job runs the head node's own installation of the project
        env = forwarded_env([name for name in FORWARDED_ENV if name != "PYTHONPATH"])
        context.log.info(f"submitting a Ray job to {self.job_address} ({python} -m equal_dagster.ray_job)")
        try:
            invocation = PipesRayJobClient(address=self.job_address, poll_interval=0.5).run(
                context=context, submit_job_params={
                    "entrypoint": f"{shlex.quote(python)} -m equal_dagster.ray_job {shlex.quote(spec)}",
                    "runtime_env": {"env_vars": env}})
        except ConnectionError as exc:  # no job server at that address
            raise dg.Failure(description=f"no Ray job server answers at {self.job_address} (EQUAL_RAY_JOB_ADDRESS): "
                                         f"{str(exc).splitlines()[0][:300]}") from exc
        except RuntimeError as exc:  # the job failed or was stopped: the tail of its log says why
            raise dg.Failure(description=str(exc).replace("[pipes] ", "")[-2000:]) from exc
        messages = invocation.get_custom_messages()
        if not messages:
            raise dg.Failure(description=f"the Ray job at {self.job_address} ended without sending its result")
        if "error" in messages[-1]:  # the job's own one line (a store it cannot see, nothing to cluster)
            raise dg.Failure(description=f"the Ray job could not do its work: {messages[-1]['error']}")
        return messages[-1]

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator[ComputeResource]:
        """With ``ray``: connect through dagster-ray for the step (its log says so) and disconnect after it, which
        stops the step's Ray work when the run ends or is cancelled. A Ray already running in this process (a
        command that plays many rounds) is used as it is."""
        settings = self.ray_settings()
        if settings is None:
            yield self
            return
        try:
            import ray
            from dagster_ray import LocalRay, Lifecycle
        except ImportError as exc:
            raise dg.Failure(f"the ray compute engine needs Ray and dagster-ray: pip install 'equal-dagster[ray]' "
                             f"({exc})") from exc
        if ray.is_initialized():
            quiet_ray_data()
            yield self
            return
        options = ray_init_options(settings)
        cluster = (_ray_cluster_class()(address=settings.address, ray_init_options=options,
                                        lifecycle=Lifecycle(cleanup="never"))  # disconnect only: the cluster stays
                   if settings.address else LocalRay(ray_init_options=options))
        with cluster.yield_for_execution(context):
            quiet_ray_data()
            yield self


def _ray_cluster_class():
    """dagster-ray's resource for a running cluster reached by its address (``ray://head:10001``, or ``auto``)."""
    from dagster_ray import RayResource

    class RayCluster(RayResource):
        address: str = Field(description="the cluster: ray://host:10001, or auto")

        @property
        def host(self) -> str:
            return self.address.removeprefix("ray://").split(":")[0]

        @property
        def ray_address(self) -> str:  # type: ignore[override]
            return self.address

        @property
        def name(self) -> str:
            return f"Ray cluster {self.address}"

        @property
        def created(self) -> bool:
            return True

        @property
        def ready(self) -> bool:
            return True

    return RayCluster
