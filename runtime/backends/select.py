"""Choosing a backend: `auto` takes CUDA where pycuda imports and a device answers, else the
CPU backend, and says which (and why) in the log."""

from __future__ import annotations

import logging

from ringgen.errors import BackendUnavailableError, ValidationError
from ringgen.runtime.backends.base import KernelDef, RingKernel

log = logging.getLogger("ringgen.runtime")

BACKENDS = ("auto", "cpu", "cuda")


def resolve_backend(requested: str) -> str:
    if requested not in BACKENDS:
        raise ValidationError(f"backend must be one of {', '.join(BACKENDS)}, not {requested!r}")
    if requested == "cpu":
        return "cpu"
    from ringgen.runtime.backends import cuda

    problem = cuda.probe()
    if problem is None:
        log.info("backend: cuda (%s)", cuda.device_name())
        return "cuda"
    if requested == "cuda":
        raise BackendUnavailableError(f"the cuda backend is not usable here: {problem}")
    log.info("backend: cpu (cuda is not usable: %s)", problem)
    return "cpu"


def create_kernel(backend: str, info: KernelDef, lane_capacity: int) -> RingKernel:
    if backend == "cuda":
        from ringgen.runtime.backends.cuda import CudaKernel

        return CudaKernel(info, lane_capacity=lane_capacity)
    from ringgen.runtime.backends.cpu import CpuKernel

    return CpuKernel(info, lane_capacity=lane_capacity)
