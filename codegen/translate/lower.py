"""Python ast -> typed IR. Types come from the kernel's message schemas and from literals;
a local's type is fixed by its first assignment. Anything outside the subset is an
Unsupported naming the construct and what to write instead; lowering goes on with the next
statement so that one build reports every problem of a handler."""

from __future__ import annotations

import ast
import enum
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ringgen.codegen.ir import CType
from ringgen.codegen.layout import numpy_scalar
from ringgen.codegen.translate import tir
from ringgen.codegen.translate.diagnostics import Diagnostics, Unsupported
from ringgen.codegen.translate.types import (
    BOOL,
    CHAR,
    FLOAT,
    INT,
    NONE,
    Messages,
    Ty,
    of_ctype,
    unify_numeric,
)

_MATH_FLOAT = {"sqrt", "exp", "log", "log2", "log10", "sin", "cos", "tan", "asin", "acos",
               "atan", "sinh", "cosh", "tanh", "fabs", "atan2", "hypot", "copysign", "fmod"}
_MATH_INT = {"floor", "ceil", "trunc"}  # float -> int in Python
_MATH_BOOL = {"isnan", "isinf", "isfinite"}
_MATH_CONST = {"pi": math.pi, "e": math.e, "tau": math.tau, "inf": math.inf}
_COMPARE = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
_ARITH: dict[type[ast.AST], str] = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**"}
_BUILTINS = {"len", "min", "max", "abs", "sum", "int", "float", "bool", "ord"}
_ORDER = ("<", "<=", ">", ">=")
_SEQUENTIAL_HINT = "write it with if/while/for over range(...) on the handler's scalars"


class _Scope:
    """What a prange body may do: read everything but its accumulators, assign its own
    locals, accumulate into the outer locals listed in `reductions` once an iteration."""

    def __init__(self, outer: set[str], var: str = "") -> None:
        self.outer = outer
        self.var = var
        self.reductions: dict[str, tir.Reduction] = {}
        self.reads: dict[str, ast.AST] = {}  # outer locals the body reads, where first
        # ctx.buffer views used: name -> (a write, indexed by the loop variable, where)
        self.buffers: dict[str, list[tuple[bool, bool, ast.AST]]] = {}


class Lowerer:
    def __init__(self, fn: Callable[..., Any], tree: ast.FunctionDef, func: tir.Function,
                 messages: Messages, diags: Diagnostics) -> None:
        self.fn = fn
        self.tree = tree
        self.func = func
        self.messages = messages
        self.diags = diags
        self.globals: dict[str, Any] = dict(getattr(fn, "__globals__", {}))
        self.request = ""
        self.state = ""  # the state parameter of a state= kernel
        self.ctx = ""
        self.loops = 0
        self.prange: _Scope | None = None
        self.pre: list[tir.Stmt] = []  # statements an expression needs before its statement
        self.temps = 0
        self.private: set[str] = set()  # locals last assigned inside a prange
        self.poisoned: set[str] = set()  # locals of statements that failed to translate
        self.aliases: dict[str, str] = {}  # a generator's variable -> its temporary

    # ---- the function ----

    def lower(self) -> tir.Function:
        args = self.tree.args
        stateful = self.func.state is not None
        if args.vararg or args.kwarg or args.kwonlyargs or args.defaults or args.posonlyargs \
                or not 1 + stateful <= len(args.args) <= 2 + stateful:
            raise Unsupported(args, "this parameter list",
                              "take the request, the state and optionally the context: "
                              "def f(req, state, ctx)" if stateful else
                              "take the request and optionally the context: def f(req, ctx)")
        names = [a.arg for a in args.args]
        self.request = names[0]
        self.state = names[1] if stateful else ""
        self.ctx = names[1 + stateful] if len(names) == 2 + stateful else ""
        for name, ctype in self.func.state_fields.items():
            ty = of_ctype(ctype)
            assert ty is not None and ty.scalar  # the reader allows numbers and bools only
            self.func.locals[state_local(name)] = ty  # read at the start, written back at returns
        body = self.tree.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:]  # the docstring
        self.func.body = self.block(body)
        return self.func

    def block(self, stmts: Sequence[ast.stmt]) -> tuple[tir.Stmt, ...]:
        out: list[tir.Stmt] = []
        for s in stmts:
            try:
                lowered = self.stmt(s)
                out += self.pre
                out += lowered
            except Unsupported as problem:
                self.diags.add(problem)
                self.poisoned |= _targets(s)
            self.pre = []
        return tuple(out)

    def line(self, node: ast.AST) -> int:
        return self.diags.line(node)

    # ---- statements ----

    def stmt(self, s: ast.stmt) -> list[tir.Stmt]:
        line = self.line(s)
        if isinstance(s, ast.Assign):
            if len(s.targets) == 1 and self.is_state_field(s.targets[0]):
                return self.assign(s, self.state_field(s.targets[0]), s.value, None)
            if len(s.targets) == 1 and isinstance(s.targets[0], ast.Subscript):
                return [self.item_store(s, s.targets[0], s.value, None)]
            if len(s.targets) != 1 or not isinstance(s.targets[0], ast.Name):
                raise Unsupported(s, _describe(s.targets[0]) if len(s.targets) == 1 else
                                  "chained assignment", "assign one local name at a time: x = ...")
            return self.assign(s, s.targets[0].id, s.value, None)
        if isinstance(s, ast.AnnAssign):
            if not isinstance(s.target, ast.Name) or s.value is None:
                raise Unsupported(s, "this annotated assignment", "write `x: float = value`")
            return self.assign(s, s.target.id, s.value, self.annotation(s.annotation))
        if isinstance(s, ast.AugAssign):
            return self.aug_assign(s)
        if isinstance(s, ast.If):
            test = self.truth(self.expr(s.test))
            return [tir.If(line, test, self.block(s.body), self.block(s.orelse))]
        if isinstance(s, ast.While):
            if s.orelse:
                raise Unsupported(s, "while ... else", "set a flag before `break` and test it after the loop")
            test = self.truth(self.expr(s.test))
            if self.pre:
                raise Unsupported(s.test, "a reduction in a while condition",
                                  "compute it into a local before the loop and at the end of its body")
            self.loops += 1
            body = self.block(s.body)
            self.loops -= 1
            return [tir.While(line, test, body)]
        if isinstance(s, ast.For):
            return self.for_loop(s)
        if isinstance(s, (ast.Break, ast.Continue)):
            if self.loops == 0 and not (isinstance(s, ast.Continue) and self.prange is not None):
                raise Unsupported(s, f"`{type(s).__name__.lower()}` here",
                                  "use break/continue in a sequential loop (not directly in a prange)")
            return [tir.Break(line) if isinstance(s, ast.Break) else tir.Continue(line)]
        if isinstance(s, ast.Pass):
            return []
        if isinstance(s, ast.Return):
            return [self.ret(s)]
        if isinstance(s, ast.Expr):
            return self.expr_stmt(s)
        raise Unsupported(s, _describe(s), _SEQUENTIAL_HINT)

    def is_state_field(self, node: ast.expr) -> bool:
        return bool(self.state) and isinstance(node, ast.Attribute) \
            and isinstance(node.value, ast.Name) and node.value.id == self.state

    def state_field(self, node: ast.expr) -> str:
        """The local that holds `state.<field>` while the handler runs."""
        assert isinstance(node, ast.Attribute)
        if node.attr not in self.func.state_fields:
            raise Unsupported(node, f"the state field .{node.attr}",
                              f"{self.func.state} has {', '.join(self.func.state_fields)}")
        return state_local(node.attr)

    def item_store(self, s: ast.stmt, target: ast.Subscript, value_node: ast.expr,
                   op: type[ast.AST] | None) -> tir.Stmt:
        """`view[i] = v` (or `view[i] += v`) of a ctx.buffer view."""
        view = self.expr(target.value)
        if view.ty.kind != "buffer" or not isinstance(view, tir.Local) or view.ty.element is None:
            raise Unsupported(target, f"assigning an item of a {view.ty}",
                              "messages are immutable: build the response with its constructor; "
                              "write to a buffer through view = ctx.buffer(ref, dtype)")
        if isinstance(target.slice, ast.Slice):
            raise Unsupported(target, "a slice", "loop over range(start, stop) and index")
        index = self.int_expr(target.slice)
        self.buffer_use(view.name, target.slice, write=True)
        value = self.expr(value_node)
        if op is not None:
            value = self.binary(s, op, tir.Index(view.ty.element, view, index), value)
        value = self.coerce(self.value(value), view.ty.element, value_node, f"an item of `{view.name}`")
        return tir.BufferStore(self.line(s), view.name, index, value)

    def buffer_use(self, name: str, index: ast.expr, write: bool) -> None:
        if self.prange is not None:
            by_var = isinstance(index, ast.Name) and index.id == self.prange.var != ""
            self.prange.buffers.setdefault(name, []).append((write, by_var, index))

    def numpy_dtype(self, node: ast.expr) -> np.dtype | None:
        obj = getattr(self.globals.get(node.value.id), node.attr, None) \
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) else \
            self.globals.get(node.id) if isinstance(node, ast.Name) else None
        try:
            return np.dtype(obj) if isinstance(obj, type) else None
        except TypeError:
            return None

    def buffer_view(self, node: ast.Call) -> tir.Expr:
        """ctx.buffer(ref, dtype): the view of a registered UnifiedBuffer's items."""
        if len(node.args) != 2:
            raise Unsupported(node, "ctx.buffer() without its dtype",
                              "name the buffer's item type: ctx.buffer(req.data, np.float64)")
        ref = self.value(self.expr(node.args[0]))
        if ref.ty.kind != "bufref":
            raise Unsupported(node.args[0], f"ctx.buffer() of a {ref.ty}",
                              "pass a BufferRef field: ctx.buffer(req.data, np.float64)")
        dtype = self.numpy_dtype(node.args[1])
        item = numpy_scalar(dtype) if dtype is not None else None
        if dtype is None or item is None:
            raise Unsupported(node.args[1], f"the dtype `{ast.unparse(node.args[1])}`",
                              "name a numpy number type: np.float64, np.float32, np.int32, np.bool_ ...")
        return tir.Call(Ty("buffer", item, of_ctype(item)), "buffer",
                        (ref, tir.Const(INT, ord(dtype.char)), tir.Const(INT, dtype.itemsize)))

    def annotation(self, node: ast.expr) -> Ty:
        name = node.id if isinstance(node, ast.Name) else None
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            module = self.globals.get(node.value.id)
            if getattr(module, "__name__", "") == "numpy":
                name = "float" if node.attr.startswith("float") else "int" \
                    if node.attr.startswith(("int", "uint")) else None
        ty = {"int": INT, "float": FLOAT, "bool": BOOL}.get(name or "")
        if ty is None:
            raise Unsupported(node, f"the annotation `{ast.unparse(node)}`",
                              "annotate locals as int, float, bool or a numpy scalar type")
        return ty

    def assign(self, s: ast.stmt, name: str, value_node: ast.expr, declared: Ty | None) -> list[tir.Stmt]:
        if name in (self.request, self.state, self.ctx):
            raise Unsupported(s, f"assigning to the parameter `{name}`",
                              f"assign to a new local name{' or to a state field' if self.state else ''}")
        if self.prange is not None and name in self.prange.outer:
            reduced = self.reduction_call(name, value_node)
            if reduced is not None:
                return [reduced(self.line(s))]
            py = shown(name)
            raise Unsupported(s, f"assigning the outer local `{py}` inside a prange",
                              f"accumulate with `{py} += ...` or `{py} = max({py}, ...)`, "
                              "or use a sequential range()")
        value = self.expr(value_node)
        if isinstance(value, tir.Const) and isinstance(value.value, str) and len(value.value) == 1:
            value = tir.Const(CHAR, ord(value.value))  # a one-character str: a character local
        if value.ty.kind == "optional" and value.ty.element is not None and value.ty.element.local:
            value = self.unwrap(value)  # Python's local would hold None; its use would raise
        if not value.ty.local:
            raise Unsupported(value_node, f"a local of type {value.ty}",
                              "keep ints, floats, bools, characters, datetimes and enum members "
                              "in locals; read the field where it is used")
        want = declared or self.func.locals.get(name) or value.ty
        if name in self.func.locals and self.func.locals[name] != want:
            raise Unsupported(s, f"`{shown(name)}` declared {self.func.locals[name]}",
                              "a local keeps the type of its first assignment; use another name")
        value = self.coerce(value, want, value_node, f"`{shown(name)}`")
        self.func.locals[name] = want
        if self.prange is None:
            self.private.discard(name)
        return [tir.Assign(self.line(s), name, value)]

    def coerce(self, value: tir.Expr, want: Ty, node: ast.AST, what: str) -> tir.Expr:
        if value.ty == want:
            return value
        if want == FLOAT and value.ty in (INT, BOOL):
            return tir.Convert(FLOAT, value)
        if want == INT and value.ty == BOOL:
            return tir.Convert(INT, value)
        raise Unsupported(node, f"a {value.ty} value for {what} of type {want}",
                          f"convert it explicitly ({want.kind}(...)) or start {what} as a "
                          f"{value.ty} (for a float write 0.0, not 0)")

    def reduction_call(self, name: str, node: ast.expr) -> Callable[[int], tir.Stmt] | None:
        """`m = max(m, v)` / `m = min(m, v)` inside a prange."""
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("max", "min") and len(node.args) == 2 and not node.keywords):
            return None
        first, second = node.args
        same = first.id == name if isinstance(first, ast.Name) else \
            self.is_state_field(first) and self.state_field(first) == name
        if not same:
            return None
        red = self.reduction(node, name, node.func.id)
        value = self.coerce(self.expr(second), red.ty, second, f"`{shown(name)}`")
        return lambda line: tir.Accumulate(line, red, value)

    def reduction(self, node: ast.AST, name: str, op: str) -> tir.Reduction:
        assert self.prange is not None
        ty = self.func.locals[name]
        if name in self.prange.reductions:
            raise Unsupported(node, f"a second accumulation into `{shown(name)}` in one prange",
                              f"accumulate into `{shown(name)}` once an iteration: compute the value "
                              "into a local first (`v = a if c else b`)")
        if self.loops:
            raise Unsupported(node, f"accumulating into `{shown(name)}` in a loop inside a prange",
                              "accumulate once an iteration: sum the inner loop into a local first")
        if ty == BOOL:
            raise Unsupported(node, f"accumulating the bool `{shown(name)}`", "count into an int")
        red = tir.Reduction(name, op, ty, len(self.func.reductions))
        self.func.reductions.append(red)
        self.prange.reductions[name] = red
        return red

    def aug_assign(self, s: ast.AugAssign) -> list[tir.Stmt]:
        if isinstance(s.target, ast.Subscript):
            return [self.item_store(s, s.target, s.value, type(s.op))]
        if self.is_state_field(s.target):
            name = self.state_field(s.target)
        elif isinstance(s.target, ast.Name):
            name = s.target.id
        else:
            raise Unsupported(s, f"augmented assignment to {_describe(s.target)}",
                              "compute into a local; build the response with its constructor at `return`")
        if name not in self.func.locals:
            raise Unsupported(s, f"`{shown(name)} {_op(s.op)}= ...` before `{shown(name)}` is assigned",
                              f"assign `{shown(name)}` first")
        if self.prange is not None and name in self.prange.outer:
            if not isinstance(s.op, ast.Add):
                raise Unsupported(s, f"`{_op(s.op)}=` on an outer local inside a prange",
                                  "only `+=`, `x = max(x, v)` and `x = min(x, v)` are block reductions")
            red = self.reduction(s, name, "sum")
            value = self.coerce(self.expr(s.value), red.ty, s.value, f"`{shown(name)}`")
            return [tir.Accumulate(self.line(s), red, value)]
        value = self.binary(s, type(s.op), tir.Local(self.func.locals[name], name), self.expr(s.value))
        value = self.coerce(value, self.func.locals[name], s, f"`{shown(name)}`")
        return [tir.Assign(self.line(s), name, value)]

    def for_loop(self, s: ast.For) -> list[tir.Stmt]:
        if s.orelse:
            raise Unsupported(s, "for ... else", "set a flag before `break` and test it after the loop")
        if not isinstance(s.target, ast.Name):
            raise Unsupported(s.target, f"the loop target {_describe(s.target)}", "loop over one name")
        var = s.target.id
        line = self.line(s)
        it = s.iter
        if self.is_prange(it):
            assert isinstance(it, ast.Call)
            start, stop = self.range_bounds(it)
            return [self.prange_loop(s, var, start, stop, s.body)]
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range" \
                and self.globals.get("range", range) is range:
            start, stop, step = self.range_args(it)
            self.declare(s.target, var, INT)
            self.loops += 1
            body = self.block(s.body)
            self.loops -= 1
            return [tir.ForRange(line, var, start, stop, step, body)]
        seq = self.expr(it)
        if seq.ty.kind == "str":  # for c in s: one character at a time
            self.declare(s.target, var, CHAR)
            self.loops += 1
            body = self.block(s.body)
            self.loops -= 1
            return [tir.ForStr(line, var, seq, body)]
        if seq.ty.kind == "list" and seq.ty.element is not None:
            if not seq.ty.element.local:
                raise Unsupported(it, f"a loop over a list of {seq.ty.element}",
                                  "loop over range(len(...)) and index the list where it is used")
            # for x in req.items: an index loop that reads the item first
            index = self.temp(INT)
            self.declare(s.target, var, seq.ty.element)
            read = tir.Assign(line, var, tir.Index(seq.ty.element, seq, tir.Local(INT, index)))
            self.loops += 1
            body = self.block(s.body)
            self.loops -= 1
            return [tir.ForRange(line, index, tir.Const(INT, 0), tir.Len(INT, seq), tir.Const(INT, 1),
                                 (read, *body))]
        raise Unsupported(it, f"a for loop over {_describe(it)}",
                          "loop over range(...), rg.prange(...), a bounded list or a str field")

    def declare(self, node: ast.AST, name: str, ty: Ty) -> None:
        if self.func.locals.setdefault(name, ty) != ty:
            raise Unsupported(node, f"`{name}` declared {self.func.locals[name]}",
                              "a local keeps the type of its first assignment; use another name")

    def temp(self, ty: Ty) -> str:
        self.temps += 1
        name = f"${self.temps}"  # no Python name starts with $: temporaries cannot collide
        self.func.locals[name] = ty
        return name

    def is_prange(self, node: ast.expr) -> bool:
        if not isinstance(node, ast.Call):
            return False
        f = node.func
        target = self.globals.get(f.id) if isinstance(f, ast.Name) else \
            getattr(self.globals.get(f.value.id), f.attr, None) \
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else None
        return getattr(target, "__rg_prange__", False) is True

    def range_args(self, call: ast.Call) -> tuple[tir.Expr, tir.Expr, tir.Expr]:
        if call.keywords or not 1 <= len(call.args) <= 3:
            raise Unsupported(call, "this range() call", "write range(stop), range(start, stop[, step])")
        args = [self.int_expr(a) for a in call.args]
        if len(args) == 1:
            return tir.Const(INT, 0), args[0], tir.Const(INT, 1)
        return args[0], args[1], args[2] if len(args) == 3 else tir.Const(INT, 1)

    def range_bounds(self, call: ast.Call) -> tuple[tir.Expr, tir.Expr]:
        start, stop, step = self.range_args(call)
        if not (isinstance(step, tir.Const) and step.value == 1):
            raise Unsupported(call, "a prange with a step",
                              "write rg.prange(start, stop) and scale the index")
        return start, stop

    def int_expr(self, node: ast.expr) -> tir.Expr:
        e = self.expr(node)
        if e.ty not in (INT, BOOL):
            raise Unsupported(node, f"a {e.ty} where an int is needed", "convert with int(...)")
        return self.coerce(e, INT, node, "the bound")

    def prange_loop(self, node: ast.AST, var: str, start: tir.Expr, stop: tir.Expr,
                    body: Sequence[ast.stmt]) -> tir.PRange:
        if self.prange is not None:
            raise Unsupported(node, "a prange inside a prange", "make the inner loop a range()")
        self.declare(node, var, INT)
        scope = _Scope(set(self.func.locals) - {var}, var)
        self.prange, outer_loops, self.loops = scope, self.loops, 0
        try:
            lowered = self.block(body)
        finally:
            self.prange, self.loops = None, outer_loops
        self.private |= set(self.func.locals) - scope.outer - {var}
        for name, where in scope.reads.items():
            if name in scope.reductions:
                raise Unsupported(where, f"reading the accumulator `{shown(name)}` inside its prange",
                                  "its value mid-loop depends on the order of the threads; read it "
                                  "after the loop")
        for name, uses in scope.buffers.items():
            if any(write for write, _, _ in uses):
                for _, by_var, where in uses:
                    if not by_var:
                        raise Unsupported(where, f"`{name}[{ast.unparse(where)}]` in a prange that writes "
                                          f"`{name}`", f"each iteration may touch only its own item: "
                                          f"index `{name}` by `{var}`, or use a sequential range()")
        return tir.PRange(self.line(node), var, start, stop, lowered, tuple(scope.reductions.values()),
                          syncs=bool(scope.buffers))

    def ret(self, s: ast.Return) -> tir.Stmt:
        line = self.line(s)
        if self.prange is not None:
            raise Unsupported(s, "return inside a prange", "accumulate in the loop and return after it")
        v = s.value
        if v is None or (isinstance(v, ast.Constant) and v.value is None):
            return tir.Return(line, None)
        if self.func.output is None:
            raise Unsupported(s, "returning a value from a kernel without output=",
                              "return nothing, or declare output= on @ring_kernel")
        if not isinstance(v, ast.Call):
            raise Unsupported(v, f"returning {_describe(v)}",
                              f"return the response's constructor: return {self.func.output}(field=...)")
        args, keywords = list(v.args), v.keywords
        f = v.func
        if isinstance(f, ast.Attribute) and f.attr == "reply" and isinstance(f.value, ast.Name) \
                and f.value.id == self.request and args:
            cls_node = args.pop(0)
        else:
            cls_node = f
        if not self.names_class(cls_node, self.func.output) or args:
            raise Unsupported(v, f"returning {_describe(v)}",
                              f"return {self.func.output}(field=value, ...) or "
                              f"{self.request}.reply({self.func.output}, field=value, ...)")
        return tir.Return(line, self.constructor_fields(self.func.output, keywords))

    def field_value(self, node: ast.expr, ctype: CType, ty: Ty | None, name: str) -> tir.Expr:
        """The value stored into a response field of this C type (ty: its Python type): a
        number, a str, list, nested message, UUID, datetime or enum member read from the
        request (copied; a str or list checked against the field's MaxLen), a literal, or a
        nested message's constructor."""
        if ty is None:
            raise Unsupported(node, f"setting the {ctype.kind} field `{name}`",
                              "give this field a default, or use cuda=")
        if ty.kind == "optional":
            assert ty.element is not None
            if isinstance(node, ast.Constant) and node.value is None:
                return tir.Const(NONE, False)
            if not isinstance(node, (ast.Constant, ast.Call)):
                value = self.expr(node)
                if value.ty.kind == "optional" and value.ty.ctype == ctype:
                    return value  # an Optional field of the same type: copied, present or not
            return self.field_value(node, ctype.element, ty.element, name)
        if ty.kind == "list" and isinstance(node, ast.ListComp):
            return self.list_build(node, ty, name)
        if ty.kind == "message" and self.constructs(node, ctype.c_name):
            assert isinstance(node, ast.Call)
            return tir.Construct(ty, self.constructor_fields(ctype.c_name, node.keywords))
        if ty.kind == "str" and isinstance(node, ast.Constant) and isinstance(node.value, str):
            size = len(node.value.encode())
            if size > ctype.bound:
                raise Unsupported(node, f"a literal of {size} bytes for `{name}` (MaxLen {ctype.bound})",
                                  "shorten the literal")
            return tir.Const(Ty("str"), node.value)
        value = self.expr(node)
        if ty.scalar:
            return self.coerce(self.value(value), ty, node, f"the field `{name}`")
        value = self.value(value)
        if ty.kind in ("datetime", "enum"):
            same = value.ty == ty
        elif value.ty.kind != ty.kind or value.ty.ctype is None:
            same = False
        elif ty.kind in ("str", "list"):  # bounds may differ: the copy is checked
            same = ty.kind == "str" or value.ty.ctype.element == ctype.element
        else:
            same = value.ty.ctype == ctype
        if not same:
            raise Unsupported(node, f"a {value.ty} value for the {ty} field `{name}`",
                              "store a field of the same type (a list of the same item type), "
                              "a literal, or the nested message's constructor")
        return value

    def list_build(self, node: ast.ListComp, ty: Ty, name: str) -> tir.Expr:
        """A list comprehension over range(...) or a bounded list, with optional `if`s, as a
        response's list field (its items numbers, bools, enum members or datetimes)."""
        gen = node.generators[0]
        if len(node.generators) != 1 or gen.is_async or not isinstance(gen.target, ast.Name):
            raise Unsupported(node, "this list comprehension",
                              f"write [f(x) for x in xs if cond] with one `for` for `{name}`")
        item = ty.element
        assert item is not None
        if not item.local:
            raise Unsupported(node, f"a list comprehension for a list of {item}",
                              "copy the list field as it is, or give the field a default")
        line = self.line(node)
        index = self.temp(INT)
        read: tuple[tir.Stmt, ...] = ()
        it = gen.iter
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range" \
                and "range" not in self.globals:
            start, stop, step = self.range_args(it)
            var = index
        else:
            seq = self.value(self.expr(it))
            if seq.ty.kind not in ("list", "buffer") or seq.ty.element is None or not seq.ty.element.local:
                raise Unsupported(it, f"a list comprehension over {_describe(it)}",
                                  "build from range(...) or a bounded list field")
            start, stop, step = tir.Const(INT, 0), tir.Len(INT, seq), tir.Const(INT, 1)
            var = self.temp(seq.ty.element)
            read = (tir.Assign(line, var, tir.Index(seq.ty.element, seq, tir.Local(INT, index))),)
        saved_aliases, before = dict(self.aliases), len(self.pre)
        self.aliases[gen.target.id] = var  # the comprehension's own variable, as in Python 3
        try:
            conds = tuple(self.truth(self.expr(c)) for c in gen.ifs)
            value = self.value(self.expr(node.elt))
        finally:
            self.aliases = saved_aliases
        if len(self.pre) != before:
            raise Unsupported(node, "sum/min/max inside a list comprehension",
                              "compute it into a local before the return")
        if item.scalar:
            value = self.coerce(value, item, node.elt, f"an item of `{name}`")
        elif value.ty != item:
            raise Unsupported(node.elt, f"a {value.ty} item for the list[{item}] field `{name}`",
                              f"give items of type {item}")
        return tir.ListBuild(ty, index, start, stop, step, read, conds, value)

    def names_class(self, node: ast.expr, message: str) -> bool:
        """Whether `node` is a module-level name of the message class of this C name."""
        return isinstance(node, ast.Name) and getattr(self.globals.get(node.id), "__name__", None) == message

    def constructs(self, node: ast.expr, message: str) -> bool:
        """Whether `node` calls that class's constructor, by keyword only: `Tag(name="x")`."""
        return isinstance(node, ast.Call) and not node.args and self.names_class(node.func, message)

    def constructor_fields(self, message: str, keywords: list[ast.keyword]) -> tuple[tir.FieldStore, ...]:
        fields = self.messages.fields(message)
        stores = []
        for kw in keywords:
            if kw.arg is None or kw.arg not in fields:
                raise Unsupported(kw, f"the argument {kw.arg or '**'} of {message}",
                                  f"give fields of {message} by keyword: {', '.join(fields)}")
            ty = self.messages.field_ty(message, kw.arg)
            value = self.field_value(kw.value, fields[kw.arg], ty, kw.arg)
            stores.append(tir.FieldStore(kw.arg, value, self.line(kw.value)))
        return tuple(stores)

    def send(self, s: ast.stmt, call: ast.Call) -> tir.Stmt:
        """ctx.send("target", Cls(field=...)) or ctx.send("target", <a message of the request>)."""
        targets = self.func.sends
        declared = ", ".join(targets) or "none: declare @ring_kernel(..., sends={'name': Cls})"
        if len(call.args) != 2 or call.keywords or not isinstance(call.args[0], ast.Constant) \
                or call.args[0].value not in targets:
            raise Unsupported(call, "this ctx.send(...)",
                              f"write ctx.send(\"target\", Cls(field=...)) with a declared target "
                              f"({declared})")
        if self.prange is not None:
            raise Unsupported(call, "ctx.send(...) inside a prange",
                              "send after the loop: the messages go out in Python's order")
        target = str(call.args[0].value)
        cls_name = targets[target]
        node = call.args[1]
        if self.constructs(node, cls_name):
            assert isinstance(node, ast.Call)
            value: tir.Expr = tir.Construct(Ty("message", _message_ctype(self.messages, cls_name)),
                                            self.constructor_fields(cls_name, node.keywords))
        else:
            value = self.value(self.expr(node))
            if value.ty.kind != "message" or value.ty.ctype is None or value.ty.ctype.c_name != cls_name:
                raise Unsupported(node, f"sending a {value.ty} to {target!r}",
                                  f"send a {cls_name}: its constructor, or one read from the request")
        return tir.Send(self.line(s), target, value)

    def expr_stmt(self, s: ast.Expr) -> list[tir.Stmt]:
        v = s.value
        if isinstance(v, ast.Call) and isinstance(v.func, ast.Attribute) \
                and isinstance(v.func.value, ast.Name) and self.ctx and v.func.value.id == self.ctx:
            if v.func.attr == "fail" and not v.args and not v.keywords:
                return [tir.Fail(self.line(s))]
            if v.func.attr == "send":
                return [self.send(s, v)]
            raise Unsupported(v, f"ctx.{v.func.attr}(...)",
                              "the context offers ctx.fail(), ctx.send(target, msg) and "
                              "ctx.buffer(ref, dtype)")
        raise Unsupported(v, f"the expression statement {_describe(v)}",
                          "assign the value to a local, or call ctx.fail()")

    # ---- expressions ----

    def truth(self, e: tir.Expr) -> tir.Expr:
        """Python's truth value of e, as a bool."""
        if e.ty == BOOL:
            return e
        if e.ty in (INT, FLOAT):
            return tir.Compare(BOOL, "!=", e, tir.Const(e.ty, 0 if e.ty == INT else 0.0))
        if e.ty.kind in ("list", "str"):
            return tir.Compare(BOOL, "!=", tir.Len(INT, e), tir.Const(INT, 0))
        if e.ty.kind == "optional":
            return tir.IsNone(BOOL, e, negate=True)
        if e.ty.kind in ("char", "datetime", "enum", "uuid", "message"):
            return tir.Const(BOOL, True)  # a character, a datetime, a member, a UUID: truthy
        raise AssertionError(e.ty)

    def expr(self, node: ast.expr) -> tir.Expr:
        if isinstance(node, ast.Constant):
            return self.constant(node, node.value)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.Attribute):
            return self.attribute(node)
        if isinstance(node, ast.BinOp):
            return self.binary(node, type(node.op), self.expr(node.left), self.expr(node.right))
        if isinstance(node, ast.UnaryOp):
            operand = self.expr(node.operand)
            if isinstance(node.op, ast.Not):
                return tir.Unary(BOOL, "not", self.truth(operand))
            if isinstance(node.op, ast.USub):
                self.numeric(node.operand, operand)
                operand = self.coerce(operand, INT, node, "-x") if operand.ty == BOOL else operand
                return tir.Unary(operand.ty, "-", operand)
            if isinstance(node.op, ast.UAdd):
                self.numeric(node.operand, operand)
                return operand
            raise Unsupported(node, "the operator `~`", "bit operations are not translated yet")
        if isinstance(node, ast.BoolOp):
            values = [self.expr(node.values[0])] + [self.eager(v, "and/or") for v in node.values[1:]]
            if any(v.ty != BOOL for v in values):
                raise Unsupported(node, "and/or of values that are not bools",
                                  "Python returns one of the operands; compare explicitly (x != 0) "
                                  "so both sides are bools")
            op = "&&" if isinstance(node.op, ast.And) else "||"
            out = values[0]
            for v in values[1:]:
                out = tir.Binary(BOOL, op, out, v)
            return out
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.IfExp):
            test = self.truth(self.expr(node.test))
            a, b = self.eager(node.body, "a conditional expression"), \
                self.eager(node.orelse, "a conditional expression")
            if a.ty != b.ty:
                if not (a.ty.scalar and b.ty.scalar and BOOL not in (a.ty, b.ty)):
                    raise Unsupported(node, f"a conditional of {a.ty} or {b.ty}",
                                      "make both branches the same type")
                want = unify_numeric(a.ty, b.ty)
                a, b = self.coerce(a, want, node, "x"), self.coerce(b, want, node, "x")
            return tir.Cond(a.ty, test, a, b)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Subscript):
            seq = self.value(self.expr(node.value))
            if isinstance(node.slice, ast.Slice):
                raise Unsupported(node, "a slice", "loop over range(start, stop) and index")
            if seq.ty.kind == "str":  # a character, found by counting from the start
                return tir.Index(CHAR, seq, self.int_expr(node.slice))
            if seq.ty.kind == "buffer" and isinstance(seq, tir.Local) and seq.ty.element is not None:
                self.buffer_use(seq.name, node.slice, write=False)
                return tir.Index(seq.ty.element, seq, self.int_expr(node.slice))
            if seq.ty.kind != "list" or seq.ty.element is None:
                raise Unsupported(node, f"indexing a {seq.ty}", "index bounded list and str fields")
            return tir.Index(seq.ty.element, seq, self.int_expr(node.slice))
        raise Unsupported(node, _describe(node), _SEQUENTIAL_HINT)

    def eager(self, node: ast.expr, where: str) -> tir.Expr:
        """An operand Python may not evaluate: it must need no statements before it (a
        reduction there would run, and could raise, where Python's would not)."""
        before = len(self.pre)
        e = self.expr(node)
        if len(self.pre) != before:
            raise Unsupported(node, f"sum/min/max inside {where}",
                              "compute it in an if statement into a local first")
        return e

    def constant(self, node: ast.AST, v: object) -> tir.Expr:
        if isinstance(v, bool):
            return tir.Const(BOOL, v)
        if isinstance(v, int):
            if not -2**63 <= v < 2**63:
                raise Unsupported(node, f"the int {v} (over 64 bits)", "keep ints within int64")
            return tir.Const(INT, v)
        if isinstance(v, float):
            return tir.Const(FLOAT, v)
        if isinstance(v, str):
            return tir.Const(Ty("str"), v)
        raise Unsupported(node, f"the constant {v!r}", "use int, float, bool or str literals")

    def name(self, node: ast.Name) -> tir.Expr:
        if node.id in self.aliases:
            name = self.aliases[node.id]
            return tir.Local(self.func.locals[name], name)
        if node.id in self.poisoned and node.id not in self.func.locals:
            raise Unsupported(node, node.id, "", cascade=True)
        if node.id in self.private:
            raise Unsupported(node, f"`{node.id}` after the prange that assigned it",
                              "each thread ran other iterations, so its value there is undefined "
                              "in C; accumulate into an outer local, or assign it again first")
        if node.id in self.func.locals:
            if self.prange is not None and node.id in self.prange.outer:
                self.prange.reads.setdefault(node.id, node)
            return tir.Local(self.func.locals[node.id], node.id)
        if node.id == self.request:
            return tir.Request(Ty("message", _message_ctype(self.messages, self.func.input)))
        if node.id == self.state:
            raise Unsupported(node, f"the state `{node.id}` as a value",
                              f"read and assign its fields: {node.id}.{next(iter(self.func.state_fields))}")
        value = self.globals.get(node.id, _MISSING)
        if isinstance(value, (bool, int, float)):
            return self.constant(node, value)  # a module constant is a literal
        if value is _MISSING:
            raise Unsupported(node, f"the name `{node.id}` before it is assigned",
                              f"assign `{node.id}` before this line")
        raise Unsupported(node, f"the global `{node.id}` ({type(value).__name__})",
                          "use module constants of int, float or bool, or locals")

    def attribute(self, node: ast.Attribute) -> tir.Expr:
        if self.is_state_field(node):
            name = self.state_field(node)
            return self.name(ast.copy_location(ast.Name(name, ast.Load()), node))
        if isinstance(node.value, ast.Name) and node.value.id not in self.func.locals \
                and node.value.id != self.request:
            module = self.globals.get(node.value.id)
            if module is math and node.attr in _MATH_CONST:
                return tir.Const(FLOAT, _MATH_CONST[node.attr])
            if module is math and node.attr == "nan":
                return tir.Call(FLOAT, "nan", ())
            if isinstance(module, type) and issubclass(module, enum.Enum) and node.attr in module.__members__:
                member = module.__members__[node.attr]
                return tir.Const(Ty("enum", name=module.__name__), int(member.value))
            raise Unsupported(node, f"`{ast.unparse(node)}`",
                              "use math.pi, math.e, math.inf, math.nan or a member of an enum (Mode.FAST)")
        base = self.expr(node.value)
        if base.ty.kind == "optional":
            base = self.unwrap(base)
        if base.ty.kind != "message" or base.ty.ctype is None:
            raise Unsupported(node, f"the attribute .{node.attr} of a {base.ty}",
                              "read fields of messages")
        fields = self.messages.fields(base.ty.ctype.c_name)
        if node.attr not in fields:
            raise Unsupported(node, f"the field .{node.attr}",
                              f"{base.ty.ctype.c_name} has {', '.join(fields)} "
                              "(header fields are not translated)")
        ty = self.messages.field_ty(base.ty.ctype.c_name, node.attr)
        if ty is None:
            raise Unsupported(node, f"reading the {fields[node.attr].kind} field .{node.attr} "
                              "(not yet supported by the translator)", "give the handler as cuda=...")
        return tir.FieldRead(ty, base, node.attr)

    def unwrap(self, e: tir.Expr) -> tir.Expr:
        assert e.ty.element is not None
        return tir.Unwrap(e.ty.element, e)

    def value(self, e: tir.Expr) -> tir.Expr:
        """An Optional used as its value (a trap where Python would raise on None)."""
        return self.unwrap(e) if e.ty.kind == "optional" else e

    def numeric(self, node: ast.AST, e: tir.Expr) -> None:
        if not e.ty.scalar:
            raise Unsupported(node, f"arithmetic on a {e.ty}", "compute with ints, floats and bools")

    def binary(self, node: ast.AST, op_type: type[ast.AST], left: tir.Expr, right: tir.Expr) -> tir.Expr:
        if op_type not in _ARITH:
            raise Unsupported(node, f"the operator `{_op(op_type())}`",
                              "use + - * / // % ** (bit operations are not translated yet)")
        op = _ARITH[op_type]
        left, right = self.value(left), self.value(right)
        self.numeric(node, left)
        self.numeric(node, right)
        ty = FLOAT if op == "/" else unify_numeric(left.ty, right.ty)
        return tir.Binary(ty, op, self.coerce(left, ty, node, "the operand"),
                          self.coerce(right, ty, node, "the operand"))

    def compare(self, node: ast.Compare) -> tir.Expr:
        if len(node.ops) > 1:
            if any(not isinstance(c, (ast.Name, ast.Constant)) for c in node.comparators[:-1]):
                raise Unsupported(node, "a chained comparison with a computed middle term",
                                  "compute the middle term into a local first")
            parts = [ast.Compare(left, [op], [right]) for left, op, right in
                     zip([node.left, *node.comparators[:-1]], node.ops, node.comparators, strict=True)]
            for p in parts:
                ast.copy_location(p, node)
            out = self.compare(parts[0])
            for p in parts[1:]:
                out = tir.Binary(BOOL, "&&", out, self.compare(p))
            return out
        op, right_node = node.ops[0], node.comparators[0]
        left = self.expr(node.left)
        if isinstance(op, (ast.Is, ast.IsNot)):
            if not (isinstance(right_node, ast.Constant) and right_node.value is None) \
                    or left.ty.kind != "optional":
                raise Unsupported(node, "`is` other than `optional_field is None`", "compare with ==")
            return tir.IsNone(BOOL, left, negate=isinstance(op, ast.IsNot))
        right = self.expr(right_node)
        if isinstance(op, (ast.In, ast.NotIn)):
            return self.contains(node, left, right, isinstance(op, ast.NotIn))
        if type(op) not in _COMPARE:
            raise Unsupported(node, f"the comparison `{type(op).__name__}`", "use < <= > >= == != in")
        text = _COMPARE[type(op)]
        optional = [e for e in (left, right) if e.ty.kind == "optional"]
        if optional and text in ("==", "!="):
            # Python: None == x is False (not an error); the value is compared when present
            if len(optional) == 2:  # equal when both are None, or both hold equal values
                a, b = (tir.IsNone(BOOL, e, negate=True) for e in optional)
                inner = self.compare_values(node, "==", self.unwrap(left), self.unwrap(right))
                both = tir.Binary(BOOL, "&&", tir.Binary(BOOL, "&&", a, b), inner)
                same = tir.Binary(BOOL, "||", tir.Binary(BOOL, "&&", tir.Unary(BOOL, "not", a),
                                                         tir.Unary(BOOL, "not", b)), both)
                return same if text == "==" else tir.Unary(BOOL, "not", same)
            opt = optional[0]
            present = tir.IsNone(BOOL, opt, negate=True)
            inner = self.compare_values(node, text, self.unwrap(left) if left is opt else left,
                                        self.unwrap(right) if right is opt else right)
            return tir.Binary(BOOL, "&&", present, inner) if text == "==" else \
                tir.Binary(BOOL, "||", tir.Unary(BOOL, "not", present), inner)
        return self.compare_values(node, text, self.value(left), self.value(right))

    def compare_values(self, node: ast.AST, op: str, left: tir.Expr, right: tir.Expr) -> tir.Expr:
        kinds = {left.ty.kind, right.ty.kind}
        if kinds & {"str", "char"}:
            return self.compare_str(node, op, left, right)
        if kinds & {"uuid", "datetime", "enum"}:
            if left.ty.kind != right.ty.kind or left.ty.name != right.ty.name:
                raise Unsupported(node, f"comparing a {left.ty} with a {right.ty}",
                                  "compare values of the same type (an enum field with a member: Mode.FAST)")
            if op in _ORDER and left.ty.kind != "datetime":
                raise Unsupported(node, f"ordering {left.ty} values (Python raises TypeError)",
                                  "compare with == or !=")
            return tir.Compare(BOOL, op, left, right)
        self.numeric(node, left)
        self.numeric(node, right)
        ty = unify_numeric(left.ty, right.ty) if left.ty != right.ty else left.ty
        return tir.Compare(BOOL, op, self.coerce(left, ty, node, "the operand"),
                           self.coerce(right, ty, node, "the operand"))

    def compare_str(self, node: ast.AST, op: str, left: tir.Expr, right: tir.Expr) -> tir.Expr:
        """str with str (by code point, as Python orders them); a character with a character
        or a one-character literal."""
        if "char" in (left.ty.kind, right.ty.kind):
            a, b = self.as_char(node, left), self.as_char(node, right)
            if a is None or b is None:  # a character is never equal to a longer str
                if op in _ORDER:
                    raise Unsupported(node, "ordering a character against a longer str",
                                      "compare with a one-character literal")
                return tir.Const(BOOL, op == "!=")
            return tir.Compare(BOOL, op, a, b)
        if left.ty.kind != "str" or right.ty.kind != "str":
            raise Unsupported(node, f"comparing a {left.ty} with a {right.ty}", "compare str with str")
        return tir.Compare(BOOL, op, left, right)

    def as_char(self, node: ast.AST, e: tir.Expr) -> tir.Expr | None:
        """A character, or a str literal as one (None: a literal of another length)."""
        if e.ty.kind == "char":
            return e
        if isinstance(e, tir.Const) and isinstance(e.value, str):
            return tir.Const(CHAR, ord(e.value)) if len(e.value) == 1 else None
        raise Unsupported(node, f"comparing a character with a {e.ty}",
                          "compare a character with a character or a one-character literal")

    def contains(self, node: ast.AST, left: tir.Expr, right: tir.Expr, negate: bool) -> tir.Expr:
        """`x in s` of strs: a character in a literal (the literal's characters, compared in
        turn), a character or a str in a str field."""
        if right.ty.kind == "optional":
            right = self.unwrap(right)  # `x in None` raises TypeError in Python
        if right.ty.kind != "str" or left.ty.kind not in ("str", "char"):
            raise Unsupported(node, f"`in` of a {left.ty} in a {right.ty}",
                              "test a character or a str in a str (a list: loop over it)")
        if left.ty.kind == "char" and isinstance(right, tir.Const) and isinstance(right.value, str):
            found: tir.Expr = tir.Const(BOOL, False)
            for ch in dict.fromkeys(right.value):
                test = tir.Compare(BOOL, "==", left, tir.Const(CHAR, ord(ch)))
                found = test if isinstance(found, tir.Const) else tir.Binary(BOOL, "||", found, test)
        else:
            found = tir.Compare(BOOL, "in", left, right)
        return tir.Unary(BOOL, "not", found) if negate else found

    def call(self, node: ast.Call) -> tir.Expr:
        f = node.func
        if node.keywords:
            raise Unsupported(node, f"keyword arguments to {_describe(f)}", "pass arguments by position")
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) \
                and self.globals.get(f.value.id) is math:
            return self.math_call(node, f.attr)
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and self.ctx \
                and f.value.id == self.ctx and f.attr == "buffer":
            return self.buffer_view(node)
        if not isinstance(f, ast.Name) or f.id in self.func.locals or f.id not in _BUILTINS \
                or f.id in self.globals:
            raise Unsupported(node, f"calling {_describe(f)}",
                              f"call builtins ({', '.join(sorted(_BUILTINS))}) or math functions")
        name = f.id
        if name in ("sum", "min", "max") and len(node.args) == 1:
            return self.reduce_call(node, name, node.args[0])
        args = [self.expr(a) for a in node.args]
        if name == "ord" and len(args) == 1:
            if args[0].ty.kind != "char" and not (isinstance(args[0], tir.Const) and isinstance(
                    args[0].value, str) and len(args[0].value) == 1):
                raise Unsupported(node, f"ord() of a {args[0].ty}", "take ord() of one character: ord(s[i])")
            char = self.as_char(node, args[0])
            assert char is not None
            return tir.Convert(INT, char)
        if name == "len" and len(args) == 1:
            if args[0].ty.kind not in ("list", "str", "buffer"):
                raise Unsupported(node, f"len() of a {args[0].ty}",
                                  "take len() of bounded list and str fields")
            return tir.Len(INT, args[0])
        args = [self.value(a) for a in args]
        for a, n in zip(args, node.args, strict=True):
            self.numeric(n, a)
        if name in ("min", "max") and len(args) >= 2:
            ty = unify_numeric(args[0].ty, args[1].ty) if len({a.ty for a in args}) > 1 else args[0].ty
            out = self.coerce(args[0], ty, node, "the argument")
            for a in args[1:]:
                out = tir.Call(ty, name, (out, self.coerce(a, ty, node, "the argument")))
            return out
        if name == "abs" and len(args) == 1:
            a = self.coerce(args[0], INT, node, "abs()") if args[0].ty == BOOL else args[0]
            return tir.Call(a.ty, "abs", (a,))
        if name in ("int", "float", "bool") and len(args) == 1:
            ty = {"int": INT, "float": FLOAT, "bool": BOOL}[name]
            return args[0] if args[0].ty == ty else (
                self.truth(args[0]) if ty == BOOL else tir.Convert(ty, args[0]))
        raise Unsupported(node, f"the call {name}() with {len(args)} argument(s)",
                          "call len, min, max, abs, sum, int, float or bool as Python documents them")

    def math_call(self, node: ast.Call, name: str) -> tir.Expr:
        args = [self.value(self.expr(a)) for a in node.args]
        for a, n in zip(args, node.args, strict=True):
            self.numeric(n, a)
        args = [self.coerce(a, FLOAT, node, f"math.{name}()") for a in args]
        two = {"atan2", "hypot", "copysign", "fmod"}
        if (name in _MATH_FLOAT or name in _MATH_INT or name in _MATH_BOOL) and \
                len(args) == (2 if name in two else 1):
            ty = INT if name in _MATH_INT else BOOL if name in _MATH_BOOL else FLOAT
            return tir.Call(ty, "math." + name, tuple(args))
        known = sorted(_MATH_FLOAT | _MATH_INT | _MATH_BOOL)
        raise Unsupported(node, f"math.{name}()", f"use one of {', '.join(known)}")

    def reduce_call(self, node: ast.Call, op: str, arg: ast.expr) -> tir.Expr:
        """sum/min/max of a bounded list, or of a generator over a prange, a range or a list:
        a block reduction into a temporary, computed by statements before this one."""
        if self.prange is not None:
            raise Unsupported(node, f"{op}() inside a prange", "accumulate with += or max(m, v) instead")
        line = self.line(node)
        saved_pre, self.pre = self.pre, []
        index = self.temp(INT)
        read: list[tir.Stmt] = []  # what each iteration does before its value
        buffered = False  # a generator over a buffer view
        if isinstance(arg, ast.GeneratorExp):
            gen = arg.generators[0]
            if len(arg.generators) != 1 or gen.ifs or gen.is_async or not isinstance(gen.target, ast.Name):
                raise Unsupported(arg, "this generator", f"write {op}(f(i) for i in rg.prange(n))")
            it = gen.iter
            if isinstance(it, ast.Call) and (self.is_prange(it) or (
                    isinstance(it.func, ast.Name) and it.func.id == "range" and "range" not in self.globals)):
                start, stop = self.range_bounds(it)
                var = index
            else:
                seq = self.sequence(it, op)
                buffered = seq.ty.kind == "buffer"
                start, stop = tir.Const(INT, 0), tir.Len(INT, seq)
                assert seq.ty.element is not None
                var = self.temp(seq.ty.element)  # the generator's own variable, as in Python 3
                read.append(tir.Assign(line, var, tir.Index(seq.ty.element, seq, tir.Local(INT, index))))
            scope = self.prange = _Scope(set())  # the element is evaluated per iteration, on any thread
            saved_aliases = dict(self.aliases)
            self.aliases[gen.target.id] = var
            try:
                value = self.expr(arg.elt)
            finally:
                self.prange, self.aliases = None, saved_aliases
            syncs = bool(scope.buffers) or buffered
        else:
            seq = self.sequence(arg, op)
            assert seq.ty.element is not None
            start, stop = tir.Const(INT, 0), tir.Len(INT, seq)
            value = tir.Index(seq.ty.element, seq, tir.Local(INT, index))
            syncs = seq.ty.kind == "buffer"
        value = self.value(value)
        self.numeric(arg, value)
        ty = INT if value.ty == BOOL else value.ty
        value = self.coerce(value, ty, arg, f"{op}()")
        result = self.temp(ty)
        red = tir.Reduction(result, op, ty, len(self.func.reductions))
        self.func.reductions.append(red)
        body = (*read, tir.Accumulate(line, red, value))
        out = list(saved_pre)
        if op == "sum":  # Python's sum starts from the int 0
            out.append(tir.Assign(line, result, tir.Const(ty, 0 if ty == INT else 0.0)))
            out.append(tir.PRange(line, index, start, stop, body, (red,), syncs))
        else:  # the first item starts the fold, as in Python's min/max of an iterable
            count = self.temp(INT)
            out.append(tir.Assign(line, count, tir.Binary(INT, "-", stop, start)))
            out.append(tir.Check(line, "rg_py_nonempty", tir.Local(INT, count)))
            out.append(tir.Assign(line, index, start))
            out.extend(read)
            out.append(tir.Assign(line, result, value))
            out.append(tir.PRange(line, index, tir.Binary(INT, "+", tir.Local(INT, index), tir.Const(INT, 1)),
                                  stop, body, (red,), syncs))
        self.pre = out
        return tir.Local(ty, result)

    def sequence(self, node: ast.expr, op: str) -> tir.Expr:
        seq = self.expr(node)
        if seq.ty.kind not in ("list", "buffer") or seq.ty.element is None or not seq.ty.element.scalar:
            raise Unsupported(node, f"{op}() of {_describe(node)}",
                              f"{op}() a bounded list of numbers or a generator over rg.prange(n)")
        return seq


_MISSING: Any = object()


def state_local(field: str) -> str:
    """The local of a state field: no Python name starts with %, so it cannot collide."""
    return "%" + field


def shown(name: str) -> str:
    """A local as the user wrote it."""
    return f"state.{name[1:]}" if name.startswith("%") else name


def _message_ctype(messages: Messages, name: str) -> Any:
    from ringgen.codegen.layout import message_ctype

    m = messages.by_name[name]
    return message_ctype(m.name, m.layout.size, m.layout.align)


def _targets(s: ast.stmt) -> set[str]:
    """The local names a statement assigns."""
    targets = s.targets if isinstance(s, ast.Assign) else \
        [s.target] if isinstance(s, (ast.AnnAssign, ast.AugAssign, ast.For)) else []
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}


def _op(op: ast.AST) -> str:
    names: dict[type[ast.AST], str] = {
        **_ARITH, ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<",
            ast.RShift: ">>", ast.MatMult: "@"}
    return names.get(type(op), type(op).__name__)


def _describe(node: ast.AST) -> str:
    """A construct as a user would name it."""
    names = {ast.ListComp: "a list comprehension", ast.DictComp: "a dict comprehension",
             ast.SetComp: "a set comprehension", ast.GeneratorExp: "a generator expression",
             ast.Lambda: "a lambda", ast.List: "a list literal", ast.Dict: "a dict literal",
             ast.Tuple: "a tuple", ast.Set: "a set literal", ast.JoinedStr: "an f-string",
             ast.Try: "try/except", ast.With: "a with statement", ast.Raise: "raise",
             ast.FunctionDef: "a nested function", ast.ClassDef: "a class definition",
             ast.Import: "import", ast.ImportFrom: "import", ast.Global: "global",
             ast.Nonlocal: "nonlocal", ast.Delete: "del", ast.Assert: "assert",
             ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield from",
             ast.NamedExpr: "the walrus operator :=", ast.Starred: "a starred expression",
             ast.Match: "match", ast.AsyncFor: "async for", ast.AsyncWith: "async with",
             ast.Subscript: "a subscript target", ast.Attribute: "an attribute target"}
    text = names.get(type(node))
    if text:
        return text
    try:
        return f"`{ast.unparse(node)}`"
    except Exception:
        return type(node).__name__
