"""What crosses between the driver and a node's Ray actor, besides message bytes and struct
arrays: the packages to load, the outcome of each call (its value, the dead letters the node
made meanwhile, or the error it raised), and dead letters in a form any process can decode.

Errors cross as their class name and text, and are raised again on the driver as the same
ringgen error (QueueFullError with its `accepted`), so that `except QueueFullError` works across
nodes as it does in one process; Ray's own wrapping would make them RayTaskErrors.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import math
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ringgen import errors
from ringgen.runtime.dead_letters import DeadLetter, DeadLetterReason
from ringgen.schema.package import Package, package_of


@dataclass(frozen=True)
class PackageSpec:
    """A generated package by its folder: every node imports it from the same path (a shared
    file system, or the same checkout on each machine), with the folders its user modules were
    imported from on sys.path (a package built from a dotted module name imports it by name)."""

    name: str
    path: str
    sys_path: tuple[str, ...] = ()

    @staticmethod
    def of(package: Package) -> PackageSpec:
        roots = []
        for module in package.modules:
            file = getattr(module, "__file__", None)
            if file is None:
                continue
            depth = module.__name__.count(".") + (Path(file).name == "__init__.py")
            roots.append(str(Path(file).resolve().parents[depth]))
        return PackageSpec(package.name, str(Path(package.path).resolve()),
                           tuple(dict.fromkeys(roots)))

    def load(self) -> Package:
        """Import the package in this process (once), under a name made from its path."""
        digest = hashlib.sha256(self.path.encode()).hexdigest()[:12]
        module_name = f"ringgen_cluster_{self.name}_{digest}"
        for root in self.sys_path:
            if root not in sys.path:
                sys.path.append(root)
        module = sys.modules.get(module_name)
        if module is None:
            init = Path(self.path) / "__init__.py"
            spec = importlib.util.spec_from_file_location(
                module_name, init, submodule_search_locations=[self.path])
            if spec is None or spec.loader is None or not init.exists():
                raise errors.KernelStateError(
                    f"package {self.name!r} is not at {self.path} on this node; every node "
                    "imports the generated packages from the driver's path (share the folder, "
                    "or check the project out at the same path on each machine)")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[module_name]
                raise
        return package_of(module)


@dataclass(frozen=True)
class Failure:
    """An exception raised on a node, to be raised again on the driver."""

    kind: str  # the class name: one of ringgen.errors, or a builtin named in _BUILTIN
    text: str
    accepted: list[int] | None = None  # QueueFullError.accepted

    @staticmethod
    def of(exc: BaseException) -> Failure:
        accepted = getattr(exc, "accepted", None)
        kind = "TimeoutError" if isinstance(exc, asyncio.TimeoutError) else type(exc).__name__
        return Failure(kind, str(exc), None if accepted is None else [int(i) for i in accepted])

    def error(self) -> BaseException:
        if self.kind == "QueueFullError":
            accepted = None if self.accepted is None else np.asarray(self.accepted, dtype=np.intp)
            return errors.QueueFullError(self.text, accepted=accepted)
        cls = getattr(errors, self.kind, None) or _BUILTIN.get(self.kind)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            return cls(self.text)
        return errors.RinggenError(f"{self.kind} on the node: {self.text}")


_BUILTIN: dict[str, type[BaseException]] = {
    "TimeoutError": asyncio.TimeoutError, "TypeError": TypeError, "ValueError": ValueError,
}


@dataclass(frozen=True)
class Letter:
    """A dead letter as bytes: a message as its codec's bytes and class name, struct rows as
    they are, undecodable bytes as they came."""

    kernel_id: str
    reason: str  # a DeadLetterReason value
    detail: str
    class_name: str | None = None  # set when `payload` is a message's serialize() bytes
    payload: bytes | np.ndarray = b""

    @staticmethod
    def of(letter: DeadLetter) -> Letter:
        msg = letter.message
        if hasattr(msg, "serialize") and hasattr(msg, "message_id"):
            return Letter(letter.kernel_id, letter.reason.value, letter.detail,
                          type(msg).__name__, msg.serialize())
        payload = msg if isinstance(msg, np.ndarray) else bytes(msg)
        return Letter(letter.kernel_id, letter.reason.value, letter.detail, None, payload)

    def decode(self, packages: list[Package]) -> DeadLetter:
        message: Any = self.payload
        if self.class_name is not None:
            cls: Any = next((p.classes[self.class_name] for p in packages
                             if self.class_name in p.classes), None)
            if cls is not None:
                message = cls.deserialize(self.payload)
        return DeadLetter(self.kernel_id, message, DeadLetterReason(self.reason), self.detail)


# What every call of a node returns: (its value, its failure or None, the node's new dead
# letters), so that the driver's `dead_letters` follows the nodes without a poll. A plain tuple,
# not a dataclass: Ray packs a tuple of plain values with msgpack, where a class instance costs
# a pickle on each side of every call (a request's latency).
Outcome = tuple[Any, Failure | None, list[Letter]]
# What a request returns: an Outcome, or pack_reply's bytes when that is all it would say.
Answer = bytes | Outcome


# A request: its timeout (NaN: none), the lengths of its kernel id, message class and
# reply_from (0: none), then those three names and the message's codec bytes.
_ASK = struct.Struct("<dHHH")


def pack_ask(kernel_id: str, class_name: str, data: bytes, timeout: float | None,
             reply_from: str | None) -> bytes:
    names = [kernel_id.encode(), class_name.encode(), (reply_from or "").encode()]
    head = _ASK.pack(math.nan if timeout is None else timeout, *map(len, names))
    return b"".join([head, *names, data])


def unpack_ask(ask: bytes) -> tuple[str, str, bytes, float | None, str | None]:
    """pack_ask's arguments again."""
    timeout, *lengths = _ASK.unpack_from(ask)
    at, names = _ASK.size, []
    for n in lengths:
        names.append(ask[at:at + n].decode())
        at += n
    kernel_id, class_name, reply_from = names
    return (kernel_id, class_name, ask[at:], None if math.isnan(timeout) else timeout,
            reply_from or None)


def pack_reply(class_name: str, data: bytes) -> bytes:
    """A response that is all of its Outcome (no failure, no dead letters): its class name, a
    NUL (which no class name holds) and its codec bytes."""
    return b"\0".join([class_name.encode(), data])


def unpack_reply(reply: bytes) -> tuple[str, bytes]:
    name, _, data = reply.partition(b"\0")
    return name.decode(), data
