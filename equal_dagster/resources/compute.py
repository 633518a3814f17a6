"""Where the wide work inside an asset runs (:mod:`equal_dagster.core.compute`): ``local`` or ``ray``, the Ray
cluster reached through dagster-ray's resources (``LocalRay`` for a Ray in the run's own process, a cluster by its
address otherwise)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, Optional

import dagster as dg
from pydantic import Field

from equal_dagster.core.compute import RaySettings, quiet_ray_data, ray_init_options

_DEFAULT = RaySettings()


class ComputeResource(dg.ConfigurableResource):
    """``engine``: ``local`` (the default: in the asset's process) or ``ray`` (embeddings and the openai backend's calls
    fan out over Ray; ``address`` empty: a Ray started in the run's process)."""

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

    def ray_settings(self) -> RaySettings | None:
        """The Ray settings when the engine is ``ray``, else None (the local path)."""
        if self.engine != "ray":
            return None
        return RaySettings(address=self.address or None, workers=self.workers, num_cpus=self.num_cpus,
                           num_gpus=self.num_gpus, batch_size=self.batch_size, scratch_dir=self.scratch_dir)

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
