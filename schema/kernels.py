"""`@ring_kernel`: declare an actor — a device ring kernel, or a host actor (`async def f(ctx)`).

The decorator records a KernelSpec on the function and returns the function unchanged, so the
Python function stays callable: for a device kernel it is the reference semantics the CUDA
handler is tested against; for a host actor it is the actor's body.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ringgen.errors import SchemaError
from ringgen.schema.messages import Message, is_message_class

F = TypeVar("F", bound=Callable[..., Any])

BACKPRESSURE = ("block", "reject", "drop_oldest", "drop_newest")
PER = ("block", "warp", "thread")  # the threads that handle one request
MAX_BATCH = 1024
MAX_SENDS = 7  # send targets of one kernel: with its response, RG_MAX_LINKS (8) routes out


@dataclass(frozen=True)
class KernelSpec:
    kernel_id: str
    fn: Callable[..., Any]
    input: type[Message] | None
    output: type[Message] | None
    block: int
    grid: int
    queue_size: int
    cuda: str | None
    cuda_file: str | None
    backpressure: str
    rtol: float = 0.0  # `ringgen verify`'s tolerance for float fields (ints, bools: exact)
    atol: float = 0.0
    state: type | None = None  # a plain mutable dataclass: each block's persistent state
    key: str | None = None  # an input field: messages with equal keys reach the same block
    # Declared send targets, name -> message class, in declaration order: the handler's
    # ctx.send_<name>(msg) (C) / ctx.send(name, msg) (Python); bound at run time by
    # runtime.connect("<kernel_id>.<name>", target). A tuple of pairs: the spec stays hashable.
    sends: tuple[tuple[str, type[Message]], ...] = ()
    per: str = "block"  # the threads that handle one request: the block, a warp, or one thread
    batch: int | None = None  # requests one round takes at most; None: codegen picks

    @property
    def host_actor(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    @property
    def translated(self) -> bool:
        """A device kernel written in Python: `ringgen build` translates the function to C."""
        return not self.host_actor and self.cuda is None and self.cuda_file is None

    @property
    def module_file(self) -> Path | None:
        file = inspect.getsourcefile(self.fn)
        return Path(file) if file else None

    def handler_source(self) -> tuple[str, str, int]:
        """(CUDA source from its first non-blank line, file it came from, that line's number)
        of a device kernel: what #line directives need to point compiler messages home."""
        file = self.module_file
        if self.cuda_file is not None:
            path = (file.parent if file else Path()) / self.cuda_file
            try:
                return path.read_text().rstrip() + "\n", str(path), 1
            except OSError as e:
                raise SchemaError(f"kernel {self.kernel_id!r}: cannot read cuda_file {path} "
                                  f"({e}); give a path relative to the module") from None
        assert self.cuda is not None
        lines = self.cuda.rstrip().splitlines()
        skipped = next((i for i, ln in enumerate(lines) if ln.strip()), len(lines))
        text = "\n".join(lines[skipped:]) + "\n"
        return text, str(file or "<unknown>"), _line_of(self.fn, lines[skipped:])


def _line_of(fn: Callable[..., Any], lines: list[str]) -> int:
    """The line of fn's module where `lines` (an inline CUDA string) starts, 1 if not found."""
    try:
        module_lines, _ = inspect.findsource(fn)
    except (OSError, TypeError):
        return 1
    module_lines = [ln.rstrip("\n") for ln in module_lines]
    n = len(lines)
    for i in range(len(module_lines) - n + 1):
        if module_lines[i:i + n] == lines:
            return i + 1
    return 1


def ring_kernel(
    *,
    kernel_id: str,
    input: type[Message] | None = None,
    output: type[Message] | None = None,
    block: int = 32,
    grid: int = 1,
    queue_size: int = 1024,
    cuda: str | None = None,
    cuda_file: str | None = None,
    backpressure: str = "block",
    rtol: float = 0.0,
    atol: float = 0.0,
    state: type | None = None,
    key: str | None = None,
    per: str = "block",
    batch: int | None = None,
    sends: dict[str, type[Message]] | None = None,
) -> Callable[[F], F]:
    """Declare an actor. With `cuda=` or `cuda_file=` it is a device ring kernel whose handler
    `__device__ bool <kernel_id>_handle(const In&, Out&, [State&,] <kernel_id>_ctx&)` runs with
    the whole block; a plain `def f(req[, ctx])` without them is a device kernel whose handler
    `ringgen build` translates from the Python (DESIGN "Handlers in Python"); an `async def
    f(ctx)` is a host actor on the same queues. rtol/atol: the float tolerance of `ringgen
    verify`.

    `state=Cls` (a plain mutable dataclass whose fields all have defaults) gives each block
    its own `Cls` in device memory, set from the defaults at launch, kept across deactivate
    and activate, passed to the handler (and to the Python function as its second argument:
    `def f(req, state[, ctx])`).
    `key="field"` sends every message with the same value of that input field to the same
    block (a stable hash), FIFO within a priority.

    `sends={"audit": AuditEvent}` declares targets the handler may send to, zero or many times
    per request besides its response: `ctx.send_audit(const AuditEvent&)` in C, `ctx.send("audit",
    msg)` in Python (a host actor too). `runtime.connect("<kernel_id>.audit", "auditor")` binds
    a target to a running kernel or host actor; what is sent while none is bound is a dead
    letter (UNBOUND) naming the connect to make."""

    def decorate(fn: F) -> F:
        where = f"@ring_kernel(kernel_id={kernel_id!r}) on {getattr(fn, '__qualname__', fn)}"
        if not kernel_id.isidentifier():
            raise SchemaError(f"{where}: kernel_id must be a C identifier (letters, digits, _)")
        for name, cls in (("input", input), ("output", output)):
            if cls is not None and not is_message_class(cls):
                raise SchemaError(f"{where}: {name} must be a @message class, got {cls!r}")
        if backpressure not in BACKPRESSURE:
            raise SchemaError(f"{where}: backpressure must be one of {', '.join(BACKPRESSURE)}")
        if queue_size < 2 or queue_size & (queue_size - 1):
            raise SchemaError(f"{where}: queue_size must be a power of two >= 2, got {queue_size}")
        if not 1 <= block <= 1024 or not 1 <= grid <= 1024:
            raise SchemaError(f"{where}: block must be 1..1024 threads and grid 1..1024 blocks")
        _check_per(where, per, batch, block)
        device = cuda is not None or cuda_file is not None
        if inspect.iscoroutinefunction(fn):
            if device:
                raise SchemaError(f"{where}: an async def is a host actor and takes no CUDA "
                                  "source; drop cuda=/cuda_file= or make it a plain def")
        elif input is None:
            raise SchemaError(f"{where}: a device kernel needs input=<@message class>")
        elif not device and per != "block" and state is not None:
            # the groups of a block run side by side on different requests: each would read the
            # block's state before the others wrote it back, where Python steps it one request
            # after another
            raise SchemaError(f"{where}: a Python handler with state= runs per='block' (its "
                              f"requests change the block's state one after another; per={per!r} "
                              "would run several at once on it); leave per out, or keep the "
                              "state in the messages")
        if not (rtol >= 0 and atol >= 0):
            raise SchemaError(f"{where}: rtol and atol must be >= 0, got {rtol!r}, {atol!r}")
        if cuda is not None and cuda_file is not None:
            raise SchemaError(f"{where}: give cuda= or cuda_file=, not both")
        if state is not None or key is not None:
            if inspect.iscoroutinefunction(fn):
                raise SchemaError(f"{where}: state= and key= are for device kernels; a host actor "
                                  "keeps its state in its own coroutine")
            _check_state(where, state)
            _check_key(where, input, key)
        declared = _check_sends(where, sends)
        fn.__rg_kernel__ = KernelSpec(  # type: ignore[attr-defined]
            kernel_id, fn, input, output, block, grid, queue_size, cuda, cuda_file, backpressure,
            float(rtol), float(atol), state, key, declared, per, batch)
        return fn

    return decorate


def groups_of(per: str, block: int) -> int:
    """How many requests a block of `block` threads handles side by side: one per block, warp
    or thread (rg_kernel.h: rg_ring_loop's groups)."""
    return {"block": 1, "warp": (block + 31) // 32, "thread": block}[per]


def _check_per(where: str, per: str, batch: int | None, block: int) -> None:
    if per not in PER:
        raise SchemaError(f"{where}: per must be one of {', '.join(map(repr, PER))} (the threads "
                          f"that handle one request), got {per!r}")
    if batch is None:
        return
    groups = groups_of(per, block)
    if not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH or batch % groups:
        raise SchemaError(f"{where}: batch must be a whole number of the block's {groups} "
                          f"group(s) of per={per!r}, 1..{MAX_BATCH}, got {batch!r}; leave it out "
                          "for the default")


def _check_sends(where: str, sends: dict[str, type[Message]] | None
                 ) -> tuple[tuple[str, type[Message]], ...]:
    """sends= as (name, class) pairs; each name becomes a C method ctx.send_<name>."""
    if sends is None:
        return ()
    if not isinstance(sends, dict):
        raise SchemaError(f"{where}: sends must be a dict of target name -> @message class, "
                          f"e.g. sends={{'audit': AuditEvent}}; got {sends!r}")
    for name, cls in sends.items():
        if not isinstance(name, str) or not name.isidentifier() or not name.isascii():
            raise SchemaError(f"{where}: sends target {name!r} is not a C identifier; name it "
                              "with ASCII letters, digits and _ (it becomes ctx.send_<name>)")
        if not is_message_class(cls):
            raise SchemaError(f"{where}: sends[{name!r}] must be a @message class, got {cls!r}")
    if len(sends) > MAX_SENDS:
        raise SchemaError(f"{where}: {len(sends)} send targets; a kernel has at most {MAX_SENDS} "
                          "(with its response, RG_MAX_LINKS routes out)")
    return tuple(sends.items())


def _check_state(where: str, state: type | None) -> None:
    if state is None:
        return
    if not dataclasses.is_dataclass(state) or is_message_class(state):
        raise SchemaError(f"{where}: state must be a plain @dataclass (not a @message), got "
                          f"{state!r}")
    if state.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise SchemaError(f"{where}: state {state.__qualname__} is frozen; the handler changes "
                          "it, so drop frozen=True")
    missing = [f.name for f in dataclasses.fields(state)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise SchemaError(f"{where}: state {state.__qualname__} needs a default for "
                          f"{', '.join(missing)}: each block starts from the defaults")


def _check_key(where: str, input: type[Message] | None, key: str | None) -> None:
    if key is None:
        return
    names = [f.name for f in dataclasses.fields(input)] if input is not None else []  # type: ignore[arg-type]
    if key not in names:
        raise SchemaError(f"{where}: key={key!r} is not a field of the input "
                          f"{getattr(input, '__qualname__', input)}; name one of {', '.join(names)}")


def kernel_spec(obj: object) -> KernelSpec | None:
    spec = getattr(obj, "__rg_kernel__", None)
    return spec if isinstance(spec, KernelSpec) else None


def prange(*args: int) -> range:
    """`range` in Python; in a translated handler the loop's iterations are spread over the
    block's threads, its `+=` / `max(m, v)` / `min(m, v)` accumulations become block
    reductions (DESIGN "Handlers in Python")."""
    return range(*args)


prange.__rg_prange__ = True  # type: ignore[attr-defined]
