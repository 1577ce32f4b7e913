"""Choosing a backend: `auto` takes CUDA where pycuda imports and a device answers, else the
CPU backend, and says which (and why) in the log."""

from __future__ import annotations

import logging

from ringgen.errors import BackendUnavailableError, ValidationError
from ringgen.runtime.backends.base import KernelDef, RingKernel

log = logging.getLogger("ringgen.runtime")

BACKENDS = ("auto", "cpu", "cuda")


def resolve_backend(requested: str, cpu_only: str | None = None) -> str:
    """`cpu_only`: a mode that only the CPU backend has (debug, race check), which makes `auto`
    the CPU backend and `cuda` an error."""
    if requested not in BACKENDS:
        raise ValidationError(f"backend must be one of {', '.join(BACKENDS)}, not {requested!r}")
    if cpu_only is not None:
        if requested == "cuda":
            raise ValidationError(f"{cpu_only} is a mode of the CPU backend; use backend='cpu' "
                                  "(or 'auto') with it")
        log.info("backend: cpu (for %s)", cpu_only)
        return "cpu"
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


def create_kernel(backend: str, info: KernelDef, lane_capacity: int,
                  cpu_build: str | None = None, device: int = 0) -> RingKernel:
    """`cpu_build`: the CPU runner's build (CpuKernel), None for the environment's choice.
    `device`: the GPU (CUDA), or the runner group (CPU: runners share nothing but the host's
    memory, so device numbers there only group kernels the way GPUs would)."""
    if backend == "cuda":
        from ringgen.runtime.backends.cuda import CudaKernel

        return CudaKernel(info, lane_capacity=lane_capacity, device=device)
    from ringgen.runtime.backends.cpu import CpuKernel

    return CpuKernel(info, lane_capacity=lane_capacity, build=cpu_build, device=device)
