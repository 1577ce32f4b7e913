"""`@message`: immutable, typed, serializable message classes with the actor header fields.

`@message` accepts a plain annotated class or a dataclass (stacked above `@dataclass`, as in the
seed). It rebuilds the class as a frozen dataclass deriving from `Message`, adding the header
fields the class does not declare itself:

    message_id: UUID = a fresh uuid4     (keyword-only; schema/ids.py)
    priority: int = 128                 (0..255, higher first)
    correlation_id: UUID | None = None  (links a response to its request)
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import sys
import threading
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, overload
from uuid import UUID

from ringgen.codecs.msgpack import MessageCodec
from ringgen.errors import SchemaError
from ringgen.schema import header
from ringgen.schema.ids import new_message_id
from ringgen.schema.modules import public_name

M = TypeVar("M", bound="Message")
T = TypeVar("T")


def _header_field(name: str) -> Any:
    if name == "message_id":
        return dataclasses.field(default_factory=new_message_id, kw_only=True)
    if name == "priority":
        return dataclasses.field(default=header.DEFAULT_PRIORITY, kw_only=True)
    return dataclasses.field(default=None, kw_only=True)


class Message:
    """Base of every @message class; do not subclass directly, decorate with @message."""

    __rg_message__: ClassVar[bool] = True
    __rg_codec__: ClassVar[MessageCodec | None]
    message_id: UUID
    priority: int
    correlation_id: UUID | None

    @classmethod
    def _rg_codec(cls) -> MessageCodec:
        # Built on first use, not at decoration: annotations may name classes defined later.
        codec = cls.__dict__.get("__rg_codec__")
        if codec is None:
            with _codec_lock:
                codec = cls.__dict__.get("__rg_codec__")
                if codec is None:
                    codec = MessageCodec(cls)
                    cls.__rg_codec__ = codec
                    codec.install()
        return codec

    def __post_init__(self) -> None:
        type(self)._rg_codec().validate(self)

    def serialize(self) -> bytes:
        """msgpack bytes: a map of field name -> value, in declaration order."""
        return type(self)._rg_codec().serialize(self)

    @classmethod
    def deserialize(cls: type[M], data: bytes) -> M:
        """Rebuild a message from `serialize()` bytes; MessageSerializationError if malformed."""
        result: M = cls._rg_codec().deserialize(data)
        return result

    def reply(self, cls: type[M], **fields: Any) -> M:
        """A response of type `cls` correlated to this message (and of its priority by default)."""
        fields.setdefault("correlation_id", self.message_id)
        fields.setdefault("priority", self.priority)
        return cls(**fields)

    @classmethod
    def qualified_name(cls) -> str:
        return f"{public_name(cls.__module__)}.{cls.__qualname__}"

    @classmethod
    def type_id(cls) -> int:
        return type_id_of(cls.qualified_name())


_codec_lock = threading.RLock()

# What @dataclass generated on the class it was given; the rebuilt class gets its own.
_DATACLASS_ATTRS = frozenset({
    "__init__", "__repr__", "__eq__", "__hash__", "__setattr__", "__delattr__", "__match_args__",
    "__dataclass_fields__", "__dataclass_params__", "__getstate__", "__setstate__",
    "__lt__", "__le__", "__gt__", "__ge__",
})


@functools.cache  # asked per batch of structs: hash each name once
def type_id_of(qualified_name: str) -> int:
    """A stable 32-bit id of a message type: the first bytes of the SHA-256 of its name."""
    return int.from_bytes(hashlib.sha256(qualified_name.encode()).digest()[:4], "little")


@overload
def message(cls: type[T], /) -> type[T]: ...
@overload
def message() -> Callable[[type[T]], type[T]]: ...


def message(cls: type[T] | None = None, /) -> Any:
    """Make `cls` an immutable, serializable message class (see the module docstring)."""
    if cls is None:
        return _make_message
    return _make_message(cls)


def _make_message(cls: type[T]) -> type[T]:
    if not isinstance(cls, type):
        raise SchemaError(f"@message decorates a class, not {cls!r}")
    if "__slots__" in cls.__dict__:
        # A message keeps its fields in its __dict__: the compiled __init__ and the native
        # decoder fill it directly, so a slotted class cannot be rebuilt as one.
        raise SchemaError(f"@message class {cls.__qualname__} declares __slots__ (dataclass "
                          "slots=True?): message classes keep their fields in __dict__; remove "
                          "slots=True (messages are frozen and cheap to build without it)")
    namespace = _rebuilt_namespace(cls)
    bases = cls.__bases__ if issubclass(cls, Message) else (*_without_object(cls.__bases__), Message)
    metaclass: Any = type(cls)
    rebuilt = metaclass(cls.__name__, bases, namespace)
    rebuilt.__qualname__ = cls.__qualname__
    result: Any = dataclasses.dataclass(frozen=True)(rebuilt)
    result.__rg_codec__ = None
    # Names visible where the class was defined, for string annotations of a class defined in
    # a function (`from __future__ import annotations`); the class can name itself.
    result.__rg_localns__ = {**_defining_locals(), cls.__name__: result}
    return result


def _defining_locals() -> dict[str, Any]:
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None or frame.f_locals is frame.f_globals:
        return {}
    return dict(frame.f_locals)


def _without_object(bases: tuple[type, ...]) -> tuple[type, ...]:
    return tuple(b for b in bases if b is not object)


def _rebuilt_namespace(cls: type) -> dict[str, Any]:
    was_dataclass = dataclasses.is_dataclass(cls)
    namespace = {
        k: v for k, v in cls.__dict__.items()
        if k not in ("__dict__", "__weakref__") and not (was_dataclass and k in _DATACLASS_ATTRS)
    }
    annotations = dict(inspect.get_annotations(cls))
    if was_dataclass:
        for f in dataclasses.fields(cls):
            if f.name not in annotations:  # inherited: the base declares it
                continue
            namespace[f.name] = dataclasses.field(
                default=f.default, default_factory=f.default_factory, repr=f.repr, hash=f.hash,
                compare=f.compare, metadata=f.metadata, kw_only=f.kw_only,
            )
    declared = set(annotations) | {
        f.name for b in cls.__mro__[1:] if dataclasses.is_dataclass(b) for f in dataclasses.fields(b)
    }
    for name in header.FIELDS:
        if name not in declared:
            annotations[name] = header.ANNOTATIONS[name]
            namespace[name] = _header_field(name)
    namespace["__annotations__"] = annotations
    # Each class gets its own entries, which its codec replaces by compiled ones on first use;
    # a subclass must never inherit its parent's compiled functions.
    namespace["serialize"] = Message.serialize
    namespace["deserialize"] = Message.__dict__["deserialize"]
    user_post_init = namespace.pop("__post_init__", None)
    if user_post_init is not None:
        namespace["__post_init__"] = _chain_post_init(user_post_init)
        # What the codec's compiled __init__ calls after its own checks.
        namespace["__rg_user_post_init__"] = user_post_init
    return namespace


def _chain_post_init(user: Callable[[Any], None]) -> Callable[[Any], None]:
    def __post_init__(self: Message) -> None:
        Message.__post_init__(self)
        user(self)

    return __post_init__


def is_message_class(obj: object) -> bool:
    return isinstance(obj, type) and issubclass(obj, Message) and obj is not Message
