"""A schema with every type that has a C layout, nested two deep."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated
from uuid import UUID

import numpy as np

from ringgen import BufferRef, MaxLen, message


class Mode(enum.IntEnum):
    IDLE = 0
    RUN = 1
    STOP = -7


@message
@dataclass
class Leaf:
    value: float
    label: Annotated[str, MaxLen(8)] = "leaf"


@message
@dataclass
class Branch:
    leaves: Annotated[list[Leaf], MaxLen(3)]
    best: Leaf | None = None
    weight: np.float32 = 1.0


@message
@dataclass
class Everything:
    count: int
    ratio: float
    enabled: bool
    name: Annotated[str, MaxLen(24)]
    blob: Annotated[bytes, MaxLen(16)]
    samples: Annotated[list[float], MaxLen(8)]
    ids: Annotated[tuple[np.int32, ...], MaxLen(4)]
    position: tuple[float, float, float]
    owner: UUID
    created: datetime
    mode: Mode
    tree: Branch
    i8: np.int8 = 0
    u16: np.uint16 = 0
    u64: np.uint64 = 0
    f32: np.float32 = 0.0
    maybe_int: int | None = None
    maybe_text: Annotated[str, MaxLen(4)] | None = None
    buffer: BufferRef | None = None
    flags_list: Annotated[list[bool], MaxLen(5)] = field(default_factory=list)
