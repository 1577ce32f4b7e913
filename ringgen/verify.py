"""`ringgen verify`: the Python function of a device kernel against its compiled handler.

Hypothesis draws request messages from the input schema; each one goes to the Python function
and to the kernel compiled for the CPU backend, and the two outcomes must agree: the same
response fields (floats within the kernel's rtol/atol, NaN equal to NaN; ints, bools and str
exact), the same ctx.fail(), no response on both sides, or an exception in Python where the
kernel traps. A `state=` kernel is driven with a sequence of requests from its launch state,
and after each one the state of the block that handled it must equal the Python function's,
field by field. The first difference is shrunk by hypothesis and reported with the messages
that reproduce it. The messages are drawn from a seed (0 unless given): a run repeats the last
one's, and another seed explores others. Needs the `verify` extra (hypothesis).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ringgen.errors import KernelFaultError, RinggenError
from ringgen.reference import ReferenceContext
from ringgen.schema.header import FIELDS as HEADER_FIELDS
from ringgen.schema.kernels import KernelSpec
from ringgen.schema.messages import is_message_class
from ringgen.schema.types import BufferRef, Kind, TypeNode, read_fields


class VerifyError(RinggenError):
    """The compiled kernel and its Python function disagree (the message says on what)."""


@dataclass(frozen=True)
class Outcome:
    """What one request did: the response (None: none), ctx.fail(), or an error."""

    response: Any
    failed: bool
    error: str | None
    sent: tuple[tuple[str, Any], ...] = ()  # ctx.send(target, msg), in order

    def describe(self) -> str:
        if self.error is not None:
            return f"raised {self.error}"
        return f"response {self.response!r}" + (" and ctx.fail()" if self.failed else "")


def strategy(node: TypeNode, for_codecs: bool = False) -> Any:
    """A hypothesis strategy of every value a device field of this type can hold: the one
    definition, for verify and for the tests. Verify's values are what a kernel gets (NaN,
    numpy scalars as their numpy type; no BufferRef, which would need a real buffer);
    `for_codecs` (the codec tests' round trips compare with ==) draws no NaN, plain Python
    numbers, and BufferRefs."""
    from hypothesis import strategies as st

    def typed(values: Any, py: Any) -> Any:
        return values if for_codecs else values.map(py)

    k = node.kind
    if k is Kind.INT:
        return st.integers(-(2**63), 2**63 - 1)
    if k is Kind.FLOAT:
        return st.floats(allow_nan=not for_codecs)
    if k is Kind.BOOL:
        return st.booleans()
    if k is Kind.NUMPY:
        dt = np.dtype(node.py)
        if dt.kind in "iu":
            info = np.iinfo(dt)
            return typed(st.integers(int(info.min), int(info.max)), node.py)
        if dt.kind == "f":
            return typed(st.floats(width=dt.itemsize * 8, allow_nan=not for_codecs), node.py)
        return st.booleans()
    if k is Kind.STR:
        n = node.max_len or 16  # a bound in UTF-8 bytes: cut at a character boundary
        return st.text(max_size=n).map(lambda s: s.encode()[:n].decode("utf-8", "ignore"))
    if k is Kind.BYTES:
        return st.binary(max_size=node.max_len or 16)
    if k is Kind.UUID:
        return st.uuids()
    if k is Kind.DATETIME:  # the int64 ns of rg_datetime; naive ones come back naive
        return st.datetimes(min_value=datetime(1678, 1, 1), max_value=datetime(2261, 12, 31),
                            timezones=st.sampled_from([None, timezone.utc]))
    if k is Kind.ENUM:
        return st.sampled_from(list(node.py))
    if k is Kind.BUFFER_REF and for_codecs:
        return st.builds(BufferRef, st.integers(0, 2**64 - 1))
    if k is Kind.OPTIONAL:
        return st.none() | strategy(node.args[0], for_codecs)
    if k is Kind.LIST:
        return st.lists(strategy(node.args[0], for_codecs), max_size=node.max_len or 4)
    if k is Kind.TUPLE:
        return st.lists(strategy(node.args[0], for_codecs), max_size=node.max_len or 4).map(tuple)
    if k is Kind.FIXED_TUPLE:
        return st.tuples(*(strategy(a, for_codecs) for a in node.args))
    if k is Kind.MESSAGE:
        return message_strategy(node.py, for_codecs)
    raise VerifyError(f"verify has no strategy for a field of type {node.describe()}")


def message_strategy(cls: type, for_codecs: bool = False) -> Any:
    from hypothesis import strategies as st

    fields = {}
    for spec in read_fields(cls):
        if spec.name == "priority":
            fields[spec.name] = st.integers(0, 255)
        elif spec.name not in HEADER_FIELDS:
            fields[spec.name] = strategy(spec.node, for_codecs)
    return st.builds(cls, **fields)


def differences(python: Any, kernel: Any, rtol: float, atol: float, path: str = "") -> list[str]:
    """The fields where two responses differ (header fields are the runtime's, not compared)."""
    if is_message_class(type(python)):
        if type(kernel) is not type(python):  # None for an absent Optional
            return [f"{path}: Python {python!r}, kernel {kernel!r}"]
        out: list[str] = []
        for spec in read_fields(type(python)):
            if spec.name in HEADER_FIELDS:
                continue
            out += differences(getattr(python, spec.name), getattr(kernel, spec.name, None), rtol, atol,
                               f"{path}.{spec.name}" if path else spec.name)
        return out
    if isinstance(python, (list, tuple)) and isinstance(kernel, (list, tuple)):
        if len(python) != len(kernel):
            return [f"{path}: {len(python)} items in Python, {len(kernel)} from the kernel"]
        return [d for i, (a, b) in enumerate(zip(python, kernel, strict=True))
                for d in differences(a, b, rtol, atol, f"{path}[{i}]")]
    if python is None or kernel is None:  # an Optional present on one side only
        return [] if python is kernel else [f"{path}: Python {python!r}, kernel {kernel!r}"]
    if isinstance(python, (float, np.floating)) or isinstance(kernel, (float, np.floating)):
        a, b = float(python), float(kernel)
        same = (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b) if rtol == atol == 0
            else math.isclose(a, b, rel_tol=rtol, abs_tol=atol))
        return [] if same else [f"{path}: Python {a!r}, kernel {b!r}"]
    return [] if python == kernel else [f"{path}: Python {python!r}, kernel {kernel!r}"]


def run_python(spec: KernelSpec, request: Any, state: Any = None) -> Outcome:
    """The Python function on one request (and the block's state, which it changes)."""
    ctx = ReferenceContext(spec)
    nargs = spec.fn.__code__.co_argcount
    args = (request,) if state is None else (request, state)
    try:
        response = spec.fn(*args, ctx) if nargs > len(args) else spec.fn(*args)
    except Exception as e:  # any exception of the user's function is an outcome
        return Outcome(None, ctx.failed, type(e).__name__)
    return Outcome(response, ctx.failed, None, tuple(ctx.sent))


class CompiledKernel:
    """A kernel of a built package, launched on the CPU backend; relaunched after a trap."""

    def __init__(self, runtime: Any, kernel_id: str, responds: bool = True,
                 sends: tuple[str, ...] = ()) -> None:
        self.runtime = runtime
        self.kernel_id = kernel_id
        self.responds = responds  # False: fire-and-forget, nothing to receive
        self.sends = sends  # its send targets, bound to nothing: what it sends is a dead letter
        self.seen = len(runtime.dead_letters)
        runtime.launch(kernel_id)

    def run(self, request: Any, expect_sends: int = 0) -> Outcome:
        """The request's outcome; with sends=, what it sent (the UNBOUND dead letters of its
        targets, awaited until `expect_sends` came, and a moment more for any extra)."""
        rt = self.runtime
        errors = rt.telemetry(self.kernel_id).errors
        try:
            rt.send(self.kernel_id, request, timeout=10.0)
            rt.drain(self.kernel_id, timeout=30.0)
            # A kernel that trapped before drain() began has nothing in flight (the request is
            # a dead letter): drain returns, and the fault shows here.
            got = rt.receive_many(self.kernel_id, 2, timeout=0.0) if self.responds else []
        except KernelFaultError as e:
            self.reset()
            return Outcome(None, False, f"a kernel fault ({str(e).splitlines()[0]})")
        failed = rt.telemetry(self.kernel_id).errors != errors
        return Outcome(got[0] if got else None, failed, None, self.sent(expect_sends))

    def sent(self, expect: int) -> tuple[tuple[str, Any], ...]:
        if not self.sends:
            return ()
        from ringgen.runtime.dead_letters import DeadLetterReason

        start = time.monotonic()
        while True:
            letters = self.runtime.dead_letters
            found = [d for d in letters[self.seen:] if d.kernel_id == self.kernel_id
                     and d.reason is DeadLetterReason.UNBOUND]
            waited = time.monotonic() - start
            if (len(found) >= expect and waited >= 0.05) or waited > 2.0:
                break  # what was expected, and 50 ms for a send more than Python's
            time.sleep(0.01)
        self.seen = len(letters)
        # the detail names the target: "sent to '<kernel_id>.<target>', which is bound to no kernel"
        return tuple((next((n for n in self.sends if f"'{self.kernel_id}.{n}'" in d.detail), "?"),
                      d.message) for d in found)


    def reset(self) -> None:
        """Relaunch: every block starts again from the state's defaults."""
        self.runtime.terminate(self.kernel_id)
        self.runtime.launch(self.kernel_id)

    def states(self) -> list[Any]:
        return list(self.runtime.read_state(self.kernel_id, timeout=10.0))


def state_differences(spec: KernelSpec, python: Any, kernel: Any) -> list[str]:
    """The state fields that differ; a numpy-typed field compares Python's value as the
    field's type holds it (the compiled state is that struct)."""
    assert spec.state is not None
    out: list[str] = []
    for f in read_fields(spec.state):
        value = getattr(python, f.name)
        if f.node.kind is Kind.NUMPY and np.dtype(f.node.py).kind == "f":
            with np.errstate(over="ignore"):
                value = f.node.py(value)
        out += differences(value, getattr(kernel, f.name), spec.rtol, spec.atol, f"state.{f.name}")
    return out


class StatefulCheck:
    """A state= kernel against its Python function: each block's Python state, stepped with
    the kernel. The block that handled a request is the one whose state changed (any block
    whose Python state stays as it is, when none changed)."""

    def __init__(self, spec: KernelSpec, kernel: CompiledKernel) -> None:
        assert spec.state is not None
        self.spec = spec
        self.kernel = kernel
        self.python = [spec.state() for _ in range(spec.grid)]
        self.before = kernel.states()

    def step(self, request: Any) -> list[str]:
        # how many sends to await: what block 0's Python would send (the block is not known yet)
        guess = run_python(self.spec, request, copy.deepcopy(self.python[0]))
        compiled = self.kernel.run(request, len(guess.sent))
        if compiled.error is not None:  # relaunched: every block from its defaults again
            assert self.spec.state is not None
            self.python = [self.spec.state() for _ in range(self.spec.grid)]
            self.before = self.kernel.states()
            return agree(self.spec, guess, compiled)
        after = self.kernel.states()
        changed = [b for b in range(self.spec.grid) if _as_tuple(after[b]) != _as_tuple(self.before[b])]
        if len(changed) > 1:
            return [f"one request changed the state of blocks {changed}"]
        first: list[str] | None = None
        for b in changed or range(self.spec.grid):
            state = copy.deepcopy(self.python[b])
            python = run_python(self.spec, request, state)
            found = agree(self.spec, python, compiled) or state_differences(self.spec, state, after[b])
            if not found:
                self.python[b], self.before = state, after
                return []
            first = first if first is not None else [f"block {b}: {d}" for d in found]
        assert first is not None
        return first


def _as_tuple(state: Any) -> tuple[Any, ...]:
    return tuple(repr(getattr(state, f.name)) for f in dataclasses.fields(state))


def agree(spec: KernelSpec, python: Outcome, kernel: Outcome) -> list[str]:
    if (python.error is None) != (kernel.error is None):
        return [f"Python {python.describe()}; the kernel {kernel.describe()}"]
    if python.error is not None:
        return []  # Python raised and the kernel trapped: both refused the request
    if python.failed != kernel.failed:
        return [f"ctx.fail(): Python {python.failed}, kernel {kernel.failed}"]
    if (python.response is None) != (kernel.response is None):
        return [f"Python {python.describe()}; the kernel {kernel.describe()}"]
    out = [] if python.response is None else \
        differences(python.response, kernel.response, spec.rtol, spec.atol)
    return out + sends_differences(spec, python.sent, kernel.sent)


def sends_differences(spec: KernelSpec, python: tuple[tuple[str, Any], ...],
                      kernel: tuple[tuple[str, Any], ...]) -> list[str]:
    """The sends compared per target, in order (FIFO holds per target, not across them)."""
    out: list[str] = []
    for target in dict.fromkeys([t for t, _ in python] + [t for t, _ in kernel]):
        a = [m for t, m in python if t == target]
        b = [m for t, m in kernel if t == target]
        if len(a) != len(b):
            out.append(f"sends to {target!r}: {len(a)} from Python, {len(b)} from the kernel")
            continue
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out += differences(x, y, spec.rtol, spec.atol, f"send {i + 1} to {target!r}")
    return out


def load_package(package_dir: Path) -> ModuleType:
    """Import a generated package from its folder (under a name of its own)."""
    name = package_dir.name
    init = importlib.util.spec_from_file_location(name, package_dir / "__init__.py",
                                                  submodule_search_locations=[str(package_dir)])
    assert init is not None and init.loader is not None
    module = importlib.util.module_from_spec(init)
    sys.modules[name] = module
    init.loader.exec_module(module)
    return module


@contextmanager
def built(module: str, out: Path | None = None) -> Iterator[tuple[ModuleType, dict[str, KernelSpec]]]:
    """The module's package, built (the CPU backend compiles each kernel at its launch,
    cached), and its kernels by id."""
    from ringgen.codegen.build import build

    with tempfile.TemporaryDirectory(prefix="ringgen-verify-") as tmp:
        stem = Path(module).stem if module.endswith(".py") else module.rsplit(".", 1)[-1]
        result = build([module], out or Path(tmp), f"{stem}_verify")
        yield load_package(result.plan.package_dir), dict(result.plan.schema.kernels)


def verify_kernel(runtime: Any, spec: KernelSpec, examples: int,
                  progress: Callable[[str], None] = print, seed: int = 0) -> None:
    """Raise VerifyError with the shrunk first difference, if any (`seed`: the messages drawn,
    the same for the same seed)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as seeded
    from hypothesis import strategies as st

    assert spec.input is not None
    kernel = CompiledKernel(runtime, spec.kernel_id, spec.output is not None,
                            tuple(name for name, _ in spec.sends))
    seen: list[str] = []
    requests = message_strategy(spec.input)

    def run(request: Any) -> list[str]:
        with np.errstate(over="ignore"):  # float32 fields round big values to inf, as meant
            python = run_python(spec, request)
        return agree(spec, python, kernel.run(request, len(python.sent)))

    def run_sequence(sequence: list[Any]) -> list[str]:
        """From the launch state, each request in turn (the first difference ends it)."""
        kernel.reset()
        check = StatefulCheck(spec, kernel)
        for i, request in enumerate(sequence):
            with np.errstate(over="ignore"):
                found = check.step(request)
            if found:
                return [f"  request {j + 1} of {len(sequence)}: {r!r}" for j, r in
                        enumerate(sequence[:i + 1])] + [f"  {d}" for d in found]
        return []

    @seeded(seed)
    @settings(max_examples=examples, deadline=None, database=None, print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(requests if spec.state is None else st.lists(requests, min_size=1, max_size=6))
    def check(drawn: Any) -> None:
        found = run(drawn) if spec.state is None else run_sequence(drawn)
        if found:
            seen[:] = found if spec.state is not None else \
                [f"  request: {drawn!r}", *(f"  {d}" for d in found)]
            raise AssertionError("\n".join(seen))

    try:
        with np.errstate(over="ignore"):
            check()
    except AssertionError:
        raise VerifyError(f"kernel {spec.kernel_id!r}: the compiled handler and the Python function "
                          f"differ (seed {seed}, shrunk; send this request to reproduce):\n"
                          + "\n".join(seen)) from None
    finally:
        runtime.terminate(spec.kernel_id)
    progress(f"{spec.kernel_id}: {examples} examples agree (seed {seed})")


def device_kernels(kernels: dict[str, KernelSpec], kernel: str | None = None) -> list[KernelSpec]:
    """The kernels verify can run: device kernels (the one named), without BufferRef fields
    (their buffers live in a runtime that verify cannot make up)."""
    chosen = [s for s in kernels.values() if not s.host_actor and kernel in (None, s.kernel_id)]
    if kernel is not None and not chosen:
        raise VerifyError(f"no device kernel {kernel!r}; the device kernels are "
                          f"{', '.join(k for k, s in kernels.items() if not s.host_actor) or 'none'}")
    if kernel is not None:
        return chosen
    return [s for s in chosen if s.input is not None
            and not any(_has_buffer(f.node) for f in read_fields(s.input))]


def _has_buffer(node: TypeNode) -> bool:
    if node.kind is Kind.MESSAGE:
        return any(_has_buffer(f.node) for f in read_fields(node.py))
    return node.kind is Kind.BUFFER_REF or any(_has_buffer(a) for a in node.args)


def verify_package(package: ModuleType, specs: list[KernelSpec], examples: int,
                   progress: Callable[[str], None] = print, seed: int = 0) -> None:
    """Verify the kernels of a built package on the CPU backend."""
    from ringgen.runtime.sync import SyncRuntime

    with SyncRuntime(package, backend="cpu") as runtime:
        for spec in specs:
            verify_kernel(runtime, spec, examples, progress, seed)


def verify(module: str, kernel: str | None = None, examples: int = 100,
           progress: Callable[[str], None] = print, seed: int = 0) -> list[str]:
    """Verify every device kernel of the module (or the one named); returns their ids."""
    with built(module) as (package, kernels):
        specs = device_kernels(kernels, kernel)
        if not specs:
            progress(f"{module}: no device kernel to verify (host actors and kernels that read "
                     "a BufferRef are not verified)")
            return []
        verify_package(package, specs, examples, progress, seed)
        return [s.kernel_id for s in specs]
