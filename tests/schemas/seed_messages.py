"""The seed's message examples (../shared/seeds/000_abf73297efdb0a8e.txt), as written plus bounds."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Any
from uuid import UUID, uuid4

from ringgen import MaxLen, message


@message
@dataclass
class WorkRequest:
    data: Annotated[list[float], MaxLen(256)]
    operation: Annotated[str, MaxLen(16)] = "sum"


@message
@dataclass
class CalculateRequest:
    expression: Annotated[str, MaxLen(64)]
    message_id: UUID = field(default_factory=uuid4)
    priority: int = 128
    correlation_id: UUID | None = None


@message
@dataclass
class CalculateResponse:
    result: float
    success: bool = True
    error: Annotated[str, MaxLen(64)] | None = None
    message_id: UUID = field(default_factory=uuid4)
    priority: int = 128
    correlation_id: UUID | None = None


@message
@dataclass
class LogEvent:
    level: Annotated[str, MaxLen(8)]
    message: Annotated[str, MaxLen(120)]
    timestamp: float = field(default_factory=time.time)


@message
@dataclass
class Response:
    success: bool = True
    error: str | None = None
    error_code: int | None = None
    result: Any = None
