"""Launch parameters, checked before anything is laid out or started: a ring's capacity must be
a power of two (its slots are indexed with a mask; any other capacity duplicates and loses
messages), and every count has a range. Each error says what to pass instead."""

from __future__ import annotations

import numbers

from ringgen.errors import ValidationError

MAX_RING_CAPACITY = 1 << 20  # slots in one lane or output ring
MAX_QUEUE_SIZE = 1 << 30  # messages a kernel's host-side backlog holds
MAX_THREADS = 1024  # block: threads of a block; grid: blocks of a kernel
MAX_DEVICES = 64  # device numbers 0..63 (the CPU backend takes any of them: runner groups)


def _integer(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValidationError(f"{name} must be an int, not {type(value).__name__} {value!r}")
    return int(value)


def ring_capacity(name: str, value: object) -> int:
    """A lane's or output ring's capacity: a power of two from 1 to MAX_RING_CAPACITY."""
    n = _integer(name, value)
    if not 1 <= n <= MAX_RING_CAPACITY or n & (n - 1):
        lower = 1 << max(n.bit_length() - 1, 0) if n > 0 else 1
        raise ValidationError(f"{name} must be a power of two from 1 to {MAX_RING_CAPACITY}, not "
                              f"{n} (a ring indexes its slots with a mask); use "
                              f"{min(lower, MAX_RING_CAPACITY)} for example")
    return n


def queue_size(value: object) -> int:
    """The host-side backlog of a kernel: 1 to MAX_QUEUE_SIZE messages."""
    n = _integer("queue_size", value)
    if not 1 <= n <= MAX_QUEUE_SIZE:
        raise ValidationError(f"queue_size must be from 1 to {MAX_QUEUE_SIZE} messages, not {n}")
    return n


def device(value: object) -> int:
    """A device number: 0 to MAX_DEVICES - 1 (the CUDA backend also checks the GPU exists)."""
    n = _integer("device", value)
    if not 0 <= n < MAX_DEVICES:
        raise ValidationError(f"device must be from 0 to {MAX_DEVICES - 1}, not {n}; device 0 "
                              "is the default")
    return n


def threads(name: str, value: object) -> int:
    """grid (blocks) or block (threads per block): 1 to MAX_THREADS."""
    n = _integer(name, value)
    if not 1 <= n <= MAX_THREADS:
        raise ValidationError(f"{name} must be from 1 to {MAX_THREADS}, not {n}; change the "
                              "kernel's @ring_kernel declaration and rebuild")
    return n
