"""ringgen.cluster: one application's kernels spread over the nodes of a Ray cluster (the
`cluster` extra). `ClusterRuntime` has RingKernelRuntime's API; `launch(kernel_id, node=...,
device=...)` places a kernel, and every other call finds it by its id.

Ray is imported when a ClusterRuntime is entered, not when this package is: without it, that
raises BackendUnavailableError naming the extra to install.
"""

from __future__ import annotations

from ringgen.cluster.runtime import ClusterRuntime

__all__ = ["ClusterRuntime"]
