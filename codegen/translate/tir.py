"""The typed IR of a translated handler: every expression carries its type, every statement
its Python line. Made by lower.py from the function's ast, turned into C by emit.py."""

from __future__ import annotations

from dataclasses import dataclass, field

from ringgen.codegen.ir import CType
from ringgen.codegen.translate.types import Ty

# ---- expressions ----


@dataclass(frozen=True)
class Expr:
    ty: Ty


@dataclass(frozen=True)
class Const(Expr):
    value: int | float | bool | str


@dataclass(frozen=True)
class Local(Expr):
    name: str


@dataclass(frozen=True)
class Request(Expr):
    """The handler's request parameter."""


@dataclass(frozen=True)
class FieldRead(Expr):
    """`base.name`; the field's stored C type is converted to `ty` (int64/double/bool)."""

    base: Expr
    name: str


@dataclass(frozen=True)
class Unwrap(Expr):
    """The value of an Optional (a trap where Python would use None)."""

    operand: Expr


@dataclass(frozen=True)
class IsNone(Expr):
    operand: Expr
    negate: bool


@dataclass(frozen=True)
class Len(Expr):
    operand: Expr  # a list or a str (characters)


@dataclass(frozen=True)
class Index(Expr):
    seq: Expr
    index: Expr


@dataclass(frozen=True)
class Unary(Expr):
    op: str  # '-', 'not'
    operand: Expr


@dataclass(frozen=True)
class Binary(Expr):
    op: str  # + - * / // % ** and/or
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Compare(Expr):
    op: str  # < <= > >= == !=
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Cond(Expr):
    test: Expr
    then: Expr
    orelse: Expr


@dataclass(frozen=True)
class Convert(Expr):
    """int(x), float(x), bool(x) and the implicit int -> float of mixed arithmetic."""

    operand: Expr


@dataclass(frozen=True)
class Call(Expr):
    """A builtin or math function: abs, min, max, math.sqrt, ..."""

    func: str
    args: tuple[Expr, ...]


# ---- statements ----


@dataclass(frozen=True)
class Stmt:
    line: int


@dataclass(frozen=True)
class Assign(Stmt):
    target: str
    value: Expr


@dataclass(frozen=True)
class If(Stmt):
    test: Expr
    body: tuple[Stmt, ...]
    orelse: tuple[Stmt, ...]


@dataclass(frozen=True)
class While(Stmt):
    test: Expr
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class ForRange(Stmt):
    """`for var in range(start, stop, step)`: var holds the last value taken after the loop."""

    var: str
    start: Expr
    stop: Expr
    step: Expr
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class ForStr(Stmt):
    """`for var in s` of a str: var is each character (code point) in turn."""

    var: str
    seq: Expr
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class Reduction:
    """An accumulation into an outer local inside a prange: `target += value` (sum) or
    `target = max(target, value)` / min."""

    target: str
    op: str  # sum | max | min
    ty: Ty
    slot: int  # the index of its shared scratch array


@dataclass(frozen=True)
class Accumulate(Stmt):
    reduction: Reduction
    value: Expr


@dataclass(frozen=True)
class PRange(Stmt):
    """`for var in rg.prange(start, stop)` spread over the block's threads in contiguous chunks."""

    var: str
    start: Expr
    stop: Expr
    body: tuple[Stmt, ...]
    reductions: tuple[Reduction, ...]
    syncs: bool = False  # it reads or writes a buffer: a barrier before and after it


@dataclass(frozen=True)
class BufferStore(Stmt):
    """`view[index] = value` of a ctx.buffer view held in the local `view`."""

    view: str
    index: Expr
    value: Expr


@dataclass(frozen=True)
class Break(Stmt):
    pass


@dataclass(frozen=True)
class Continue(Stmt):
    pass


@dataclass(frozen=True)
class Check(Stmt):
    """A precondition Python checks by raising: `what` is the helper (rg_py_nonempty, ...)."""

    what: str
    value: Expr


@dataclass(frozen=True)
class FieldStore:
    name: str
    value: Expr
    line: int  # of the keyword argument, which may be on a line of its own


@dataclass(frozen=True)
class Construct(Expr):
    """A nested message's constructor in a response: its defaults, then `fields`."""

    fields: tuple[FieldStore, ...]


@dataclass(frozen=True)
class ListBuild(Expr):
    """`[elt for v in ... if cond]` stored into a response's list field: `index` runs over
    range(start, stop, step); `read` sets the comprehension's variable from it."""

    index: str
    start: Expr
    stop: Expr
    step: Expr
    read: tuple[Stmt, ...]
    conds: tuple[Expr, ...]
    elt: Expr


@dataclass(frozen=True)
class Return(Stmt):
    """Emit the response made of `fields` (the rest keep their defaults); no response when
    `fields` is None."""

    fields: tuple[FieldStore, ...] | None


@dataclass(frozen=True)
class Fail(Stmt):
    pass


@dataclass(frozen=True)
class Send(Stmt):
    """ctx.send("target", msg): msg a Construct, or a message read from the request."""

    target: str
    value: Expr


@dataclass
class Function:
    kernel_id: str
    input: str
    output: str | None
    block: int
    file: str
    per: str = "block"  # the threads that run one request: block | warp | thread
    state: str | None = None  # the C struct of the kernel's state=
    state_fields: dict[str, CType] = field(default_factory=dict)  # its fields, in order
    sends: dict[str, str] = field(default_factory=dict)  # its sends= targets: name -> message
    locals: dict[str, Ty] = field(default_factory=dict)
    reductions: list[Reduction] = field(default_factory=list)
    body: tuple[Stmt, ...] = ()
