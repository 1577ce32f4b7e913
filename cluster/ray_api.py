"""Ray, imported only when a ClusterRuntime starts: the `cluster` extra installs it."""

from __future__ import annotations

from typing import Any

from ringgen.errors import BackendUnavailableError

INSTALL = "pip install 'ringgen[cluster]'"


def ray_module() -> Any:
    """The ray package, or BackendUnavailableError saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise BackendUnavailableError(
            f"ringgen.cluster runs on Ray, which is not installed here ({e}); install the "
            f"cluster extra: {INSTALL}") from None
    return ray


def node_affinity(node_id: str) -> Any:
    """A scheduling strategy that puts an actor on that node and nowhere else."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)


def is_actor_death(error: BaseException) -> bool:
    """Whether a Ray call failed because its actor (so its node's host) is gone."""
    from ray.exceptions import RayActorError

    return isinstance(error, RayActorError)
