"""Ring kernels found in user modules -> KernelIR."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

from ringgen.codegen.ir import KernelIR
from ringgen.codegen.layout import describe_layout
from ringgen.errors import DeviceResourceError, SchemaError
from ringgen.schema.kernels import KernelSpec, groups_of, kernel_spec
from ringgen.schema.messages import Message


def collect_kernels(modules: Sequence[ModuleType]) -> dict[str, KernelSpec]:
    """kernel_id -> spec, for every @ring_kernel defined in the modules, in definition order."""
    found: dict[str, KernelSpec] = {}
    for module in modules:
        for obj in vars(module).values():
            spec = kernel_spec(obj)
            if spec is None or getattr(obj, "__module__", None) != module.__name__:
                continue
            if spec.kernel_id in found and found[spec.kernel_id] is not spec:
                raise SchemaError(f"two ring kernels have the id {spec.kernel_id!r}; rename one")
            found[spec.kernel_id] = spec
    return found


def kernel_messages(specs: Iterable[KernelSpec]) -> list[type[Message]]:
    """The message classes that device kernels exchange, which must have a C layout."""
    out: list[type[Message]] = []
    for spec in specs:
        if spec.host_actor:
            continue
        for cls in (spec.input, spec.output):
            if cls is not None and cls not in out:
                out.append(cls)
    return out


# Shared memory a kernel's batch of requests and responses may take by default: the 48 KB of
# static shared memory less room for the handler's own __shared__ variables.
BATCH_SHARED_BYTES = 40 * 1024
BATCH_TARGET = 32  # requests a round takes by default, where they fit


# The static shared memory a kernel may declare on sm_90 (toolchain/resources.py checks ptxas'
# figure against the same limit once nvcc compiled the kernel).
STATIC_SHARED_MAX = 48 * 1024


def batch_size(spec: KernelSpec, message_bytes: int) -> int:
    """The requests a round takes at most: `batch=` as declared, else a whole number of steps
    of the block's groups, up to BATCH_TARGET, as many as fit in BATCH_SHARED_BYTES with their
    responses (`message_bytes`: one request and one response). Where not even one step fits (a
    wide block at per="thread" with large messages), as many requests as fit, at least one:
    the groups past them idle, as in a partial batch."""
    if spec.batch is not None:
        return spec.batch
    groups = groups_of(spec.per, spec.block)
    steps = max(1, -(-BATCH_TARGET // groups))
    while steps > 1 and steps * groups * message_bytes > BATCH_SHARED_BYTES:
        steps -= 1
    if steps * groups * message_bytes <= BATCH_SHARED_BYTES:
        return steps * groups
    return max(1, BATCH_SHARED_BYTES // message_bytes)


def check_batch_fits(spec: KernelSpec, batch: int, messages: list[Any]) -> None:
    """Refuses, at build and without nvcc, a kernel whose batch of requests and responses
    (`messages`: its input's and output's MessageIR) cannot be in 48 KB of static shared
    memory, where ptxas would refuse it or the GPU could not launch it: the error names the
    message, its size and the fix."""
    message_bytes = sum(m.layout.size for m in messages)
    if batch * message_bytes <= STATIC_SHARED_MAX:
        return
    big = max(messages, key=lambda m: m.layout.size)
    member, ctype, _, size = max(describe_layout(big.layout), key=lambda r: r[3])
    fits = STATIC_SHARED_MAX // message_bytes
    if spec.batch is None:  # batch_size took one request: one alone does not fit
        fix = (f"a smaller MaxLen on {big.name}.{member} ({ctype}, {size:,} bytes) or a BufferRef "
               "for the bulk data (ctx.buffer maps it)")
    else:
        groups = groups_of(spec.per, spec.block)
        smaller = fits // groups * groups
        fix = (f"a smaller batch ({f'batch={smaller}' if smaller else 'leave batch= out'}: "
               f"{fits} request(s) fit), a smaller MaxLen on {big.name}.{member} ({ctype}, "
               f"{size:,} bytes) or a BufferRef for the bulk data (ctx.buffer maps it)")
    raise DeviceResourceError(
        f"kernel {spec.kernel_id!r}: a batch of {batch} request(s) holds {batch} x ("
        + " + ".join(f"{m.name} {m.layout.size:,}" for m in messages)
        + f") = {batch * message_bytes:,} bytes in shared memory, over the {STATIC_SHARED_MAX:,} "
        f"bytes (48 KB) of static shared memory a GPU kernel may use. Fix: {fix}")


def kernel_ir(spec: KernelSpec, reader: Any) -> KernelIR:
    """`reader` lays out the messages of device kernels (host actors need no C layout)."""
    layout = None  # of the state= struct (a host actor has none: @ring_kernel refuses it)
    if spec.host_actor:
        source, file, line = "", "", 0
        names = [cls.__name__ if cls else None for cls in (spec.input, spec.output)]
    else:
        names = [reader.read_message(cls).name if cls else None for cls in (spec.input, spec.output)]
        layout = reader.read_state(spec.state) if spec.state is not None else None
        if spec.translated:
            from ringgen.codegen.translate import translate

            file = reader.shown(str(spec.module_file or "<unknown>"))
            source, line = translate(spec, {m.name: m for m in reader.messages.values()}, file, layout)
        else:
            source, file, line = spec.handler_source()
            file = reader.shown(file)
    batch = 1
    if not spec.host_actor:
        messages = [reader.read_message(cls) for cls in (spec.input, spec.output) if cls]
        batch = batch_size(spec, sum(m.layout.size for m in messages))
        check_batch_fits(spec, batch, messages)
    if spec.key is not None:  # a handler in CUDA C or in Python: the host and routes hash it
        assert spec.input is not None  # a device kernel has one
        reader.check_key(spec.input, spec.key, spec.kernel_id)
    sends = tuple((name, _send_type(reader, spec, name, cls)) for name, cls in spec.sends)
    return KernelIR(
        kernel_id=spec.kernel_id,
        input=names[0] or "",
        output=names[1],
        block=spec.block,
        grid=spec.grid,
        queue_size=spec.queue_size,
        cuda_source=source,
        cuda_file=file,
        cuda_line=line,
        python_name=spec.fn.__name__,
        host_actor=spec.host_actor,
        state=layout.c_name if layout is not None else None,
        key=spec.key,
        sends=sends,
        per=spec.per,
        batch=batch,
    )


def _send_type(reader: Any, spec: KernelSpec, name: str, cls: type[Message]) -> str:
    """The C name of a send target's message, which needs a device layout unless the sender
    is a host actor (then it only needs one to reach a device kernel)."""
    if spec.host_actor:
        return cls.__name__
    try:
        return str(reader.read_message(cls).name)
    except SchemaError as e:
        raise SchemaError(f"kernel {spec.kernel_id!r}: sends[{name!r}] = {cls.__qualname__} has no "
                          f"device layout, so the handler cannot build one; bound its fields "
                          f"(MaxLen for str/bytes/list) or send another message:\n{e}") from None
