"""Typed IR -> the C handler. Every thread of the request's group (the block, a warp or one
thread: per=, group.py) runs the handler with the same values, so control flow is uniform:
sequential code runs redundantly on each thread (a handler without a prange is run by the
group's first thread alone), a prange runs in rounds of the group's size (rank r runs iteration
base + r; one thread runs it as a plain loop), and the response and ctx.fail() are written by
the group's first thread alone. Only the group's own barrier is used: the other groups of the
block are on other requests.

Reductions, in a fixed order that is Python's: each iteration's value (`acc += v`,
`m = max(m, v)`) goes to a shared slot, and after the round's barrier the first thread folds the
slots in index order into the accumulator, as the sequential loop would (ints checked for
overflow, min/max replacing only on strictly less/greater, so NaN and -0.0 come out as in
Python, float sums rounded in the same order). The values are computed in parallel; the fold
is a few instructions an iteration. After the loop the first thread broadcasts the results
through shared memory (a slot per group). One thread folds each value as it goes."""

from __future__ import annotations

from ringgen.codegen.escape import c_literal
from ringgen.codegen.ir import CType
from ringgen.codegen.translate import tir
from ringgen.codegen.translate.group import Group
from ringgen.codegen.translate.types import BOOL, FLOAT, INT, Messages, Ty

_INT_RANGE = {8: (-2**7, 2**7 - 1), 16: (-2**15, 2**15 - 1), 32: (-2**31, 2**31 - 1)}
_UINT_RANGE = {8: 2**8 - 1, 16: 2**16 - 1, 32: 2**32 - 1, 64: 2**63 - 1}
_MATH_INT = {"floor", "ceil", "trunc"}
_MATH_BOOL = {"isnan", "isinf", "isfinite"}


def local(name: str) -> str:
    if name.startswith("%"):  # a state field, held in a local while the handler runs
        return f"rg_state_{name[1:]}"
    return f"rg_tmp{name[1:]}" if name.startswith("$") else f"py_{name}"


def _float(v: float) -> str:
    if v != v:
        return "(double)NAN"
    if v in (float("inf"), float("-inf")):
        return "(double)INFINITY" if v > 0 else "-(double)INFINITY"
    return repr(v)


class Emitter:
    def __init__(self, func: tir.Function, messages: Messages) -> None:
        self.func = func
        self.messages = messages
        self.lines: list[str] = []
        self.loops = 0
        self.line = 0  # the Python line of what is being emitted
        self.parallel = False  # the handler has a prange: every thread runs it
        self.in_prange = 0
        self.group = Group(func.per, func.block)

    def emit(self) -> str:
        f = self.func
        state = f"{f.state}& state, " if f.state else ""
        ctx = f"{f.kernel_id}_ctx& ctx" if f.sends else "rg_ctx& ctx"  # the former has send_<target>
        if f.output:
            sig = f"__device__ bool {f.kernel_id}_handle(const {f.input}& req, {f.output}& resp, " \
                  f"{state}{ctx})"
        else:
            sig = f"__device__ void {f.kernel_id}_handle(const {f.input}& req, {state}{ctx})"
        w = self.out
        w('#include "rg_python.h"')
        w(f"{sig} {{")
        w("    (void)req; (void)ctx;")
        group = self.group
        for line in group.prologue():
            w(line)
        if not group.alone:  # one thread folds in registers
            for r in f.reductions:
                w(f"    __shared__ {r.ty.c} rg_red{r.slot}[2][{f.block}];  // a slot per thread of the block")
                w(f"    __shared__ bool rg_has{r.slot}[2][{f.block}];")
                # a result's slot per group, two by parity: the barrier of the next run of the
                # prange is passed only once every thread has read this run's (no barrier after)
                w(f"    __shared__ {r.ty.c} rg_acc{r.slot}[2][{group.groups}];")
                w(f"    unsigned rg_par{r.slot} = 0u;  // the parity of the prange's run")
        for name, ty in f.locals.items():
            w(f"    {ty.c} {local(name)} = {_zero(ty)}; (void){local(name)};")
        parallel = self.parallel = _has_prange(f.body) and not group.alone
        if not parallel and not group.alone:  # nothing to share: the others do not repeat the work
            back = " false" if f.output else ""
            w(f"    if (rg_rank != 0) return{back};  // no prange: the group's first thread runs it")
        if f.state:
            # The state is read into locals that every thread computes on alike, and the first
            # thread writes them back at each return: no thread reads a field another one changed.
            for name, ctype in f.state_fields.items():
                w(f"    {local('%' + name)} = {self.load(f'state.{name}', ctype)};")
            barrier = group.barrier("every thread has read the state before the first writes it")
            if parallel and barrier:
                w(f"    {barrier}")
        self.block(f.body, 1)
        self.save_state("    ")
        w("    return false;" if f.output else "    return;")
        w("}")
        return "\n".join(self.lines) + "\n"

    def out(self, text: str) -> None:
        """One line of C; one that can trap gets a #line of its own, so that the trap names
        the Python line even inside a statement that takes several C lines."""
        if "RG_PY_AT" in text:
            self.lines.append(f"#line {self.line}")
        self.lines.append(text)

    def at(self, line: int) -> None:
        # the file name carries over from the template's #line before the handler, so the
        # source (part of the schema hash) does not depend on where the package is built
        self.line = line
        self.lines.append(f"#line {line}")

    def block(self, body: tuple[tir.Stmt, ...], depth: int) -> None:
        for s in body:
            self.stmt(s, depth)

    def stmt(self, s: tir.Stmt, depth: int) -> None:
        pad = "    " * depth
        w = self.out
        self.at(s.line)
        if isinstance(s, tir.Assign):
            w(f"{pad}{local(s.target)} = {self.expr(s.value)};")
        elif isinstance(s, tir.If):
            w(f"{pad}if ({self.expr(s.test)}) {{")
            self.block(s.body, depth + 1)
            if s.orelse:
                w(f"{pad}}} else {{")
                self.block(s.orelse, depth + 1)
            w(f"{pad}}}")
        elif isinstance(s, tir.While):
            w(f"{pad}while ({self.expr(s.test)}) {{")
            self.block(s.body, depth + 1)
            w(f"{pad}}}")
        elif isinstance(s, tir.ForRange):
            self.for_range(s, depth)
        elif isinstance(s, tir.ForStr):
            self.for_str(s, depth)
        elif isinstance(s, tir.PRange):
            self.prange(s, depth)
        elif isinstance(s, tir.Accumulate):
            self.accumulate(s, pad)
        elif isinstance(s, tir.BufferStore):
            self.buffer_store(s, pad)
        elif isinstance(s, tir.Break):
            w(f"{pad}break;")
        elif isinstance(s, tir.Continue):
            w(f"{pad}continue;")
        elif isinstance(s, tir.Check):
            w(f"{pad}{s.what}({self.expr(s.value)}, RG_PY_AT);")
        elif isinstance(s, tir.Fail):
            w(f"{pad}{self.group.leader('ctx.fail();')}")
        elif isinstance(s, tir.Send):
            self.send(s, pad)
        elif isinstance(s, tir.Return):
            self.ret(s, pad)
        else:
            raise AssertionError(s)

    def for_range(self, s: tir.ForRange, depth: int) -> None:
        pad, w = "    " * depth, self.out
        n = self.loops = self.loops + 1
        w(f"{pad}{{  // range(): bounds evaluated once, the variable keeps its last value")
        w(f"{pad}    const int64_t rg_lo{n} = {self.expr(s.start)}, rg_hi{n} = {self.expr(s.stop)}, "
          f"rg_st{n} = {self.expr(s.step)};")
        w(f"{pad}    rg_py_step(rg_st{n}, RG_PY_AT);")
        w(f"{pad}    for (int64_t rg_i{n} = rg_lo{n}; "
          f"rg_st{n} > 0 ? rg_i{n} < rg_hi{n} : rg_i{n} > rg_hi{n}; rg_i{n} += rg_st{n}) {{")
        w(f"{pad}        {local(s.var)} = rg_i{n};")
        self.block(s.body, depth + 2)
        w(f"{pad}    }}")
        w(f"{pad}}}")

    def buffer_store(self, s: tir.BufferStore, pad: str) -> None:
        """An item of a buffer view: in a prange, each iteration its own item; elsewhere the
        group's first thread stores, between the group's barriers when every thread runs the
        handler (they all read the old value before, and see the new one after)."""
        w = self.out
        ty = self.func.locals[s.view]
        assert ty.ctype is not None
        item = f"rg_py_buf_at<{ty.ctype.c_name}>({local(s.view)}, {self.expr(s.index)}, RG_PY_AT)"
        store = f"{item} = {self.store(s.value, ty.ctype)};"
        if self.in_prange or not self.parallel:
            w(f"{pad}{store}")
            return
        w(f"{pad}{self.group.barrier('every thread has read the old value')}")
        w(f"{pad}{self.group.leader(store)}")
        w(f"{pad}{self.group.barrier('and sees the new one')}")

    def for_str(self, s: tir.ForStr, depth: int) -> None:
        pad, w = "    " * depth, self.out
        n = self.loops = self.loops + 1
        lv = self.lvalue(s.seq)
        w(f"{pad}for (uint32_t rg_at{n} = 0; rg_at{n} < {lv}.len;) {{  // a character at a time")
        w(f"{pad}    {local(s.var)} = rg_py_decode({lv}.data, {lv}.len, &rg_at{n});")
        self.block(s.body, depth + 1)
        w(f"{pad}}}")

    def prange(self, s: tir.PRange, depth: int) -> None:
        if self.group.alone:
            self.prange_alone(s, depth)
            return
        pad, w = "    " * depth, self.out
        n = self.loops = self.loops + 1
        reds, size, group = s.reductions, self.group.size, self.group
        w(f"{pad}{{  // prange: rounds of the group's {size} threads, rank r runs iteration base + r;")
        w(f"{pad}    // the first thread folds each round's values in index order: Python's loop's result")
        w(f"{pad}    const int64_t rg_lo{n} = {self.expr(s.start)}, rg_hi{n} = {self.expr(s.stop)};")
        w(f"{pad}    unsigned rg_round{n} = 0;")
        if s.syncs:
            w(f"{pad}    {group.barrier('a buffer: what the first thread wrote before is seen by all')}")
        w(f"{pad}    for (int64_t rg_base{n} = rg_lo{n}; rg_base{n} < rg_hi{n}; "
          f"rg_base{n} += {size}, rg_round{n} ^= 1u) {{")
        for r in reds:
            w(f"{pad}        {r.ty.c} rg_term{r.slot} = {_zero(r.ty)};")
            w(f"{pad}        bool rg_got{r.slot} = false;")
        w(f"{pad}        const int64_t rg_i{n} = rg_base{n} + (int64_t)rg_rank;")
        w(f"{pad}        if (rg_i{n} < rg_hi{n}) do {{  // do/while(0): `continue` ends the iteration")
        w(f"{pad}            {local(s.var)} = rg_i{n};")
        self.in_prange += 1
        self.block(s.body, depth + 3)
        self.in_prange -= 1
        self.line = s.line  # the folds below belong to the loop's line
        w(f"{pad}        }} while (0);")
        if reds:
            for r in reds:
                w(f"{pad}        rg_red{r.slot}[rg_round{n}][threadIdx.x] = rg_term{r.slot};")
                w(f"{pad}        rg_has{r.slot}[rg_round{n}][threadIdx.x] = rg_got{r.slot};")
            w(f"{pad}        {group.barrier('slots double-buffered: one barrier a round')}")
            w(f"{pad}        if (rg_rank == 0) {{")
            first = group.first
            w(f"{pad}            for (unsigned rg_t = {first}; rg_t < {first} + {size}; ++rg_t) {{")
            for r in reds:
                acc, value = local(r.target), f"rg_red{r.slot}[rg_round{n}][rg_t]"
                w(f"{pad}                if (rg_has{r.slot}[rg_round{n}][rg_t]) {_fold(r, acc, value)}")
            w(f"{pad}            }}")
            w(f"{pad}        }}")
        w(f"{pad}    }}")
        w(f"{pad}    if (rg_hi{n} > rg_lo{n}) {local(s.var)} = rg_hi{n} - 1;  // its value after the loop")
        if s.syncs:
            w(f"{pad}    {group.barrier('a buffer: every iteration writes are seen by all')}")
        if reds:
            w(f"{pad}    if (rg_rank == 0) {{")
            for r in reds:
                w(f"{pad}        rg_acc{r.slot}[rg_par{r.slot}][{group.index}] = {local(r.target)};")
            w(f"{pad}    }}")
            w(f"{pad}    {group.barrier('the results are in the group slots')}")
            for r in reds:
                slot = f"rg_acc{r.slot}[rg_par{r.slot}][{group.index}]"
                w(f"{pad}    {local(r.target)} = {slot}; rg_par{r.slot} ^= 1u;")
        w(f"{pad}}}")

    def prange_alone(self, s: tir.PRange, depth: int) -> None:
        """A prange of one thread (per="thread"): Python's loop, each value folded as it comes."""
        pad, w = "    " * depth, self.out
        n = self.loops = self.loops + 1
        w(f"{pad}{{  // prange of one thread: the loop in order, each value folded as it comes")
        w(f"{pad}    const int64_t rg_lo{n} = {self.expr(s.start)}, rg_hi{n} = {self.expr(s.stop)};")
        w(f"{pad}    for (int64_t rg_i{n} = rg_lo{n}; rg_i{n} < rg_hi{n}; ++rg_i{n}) {{")
        for r in s.reductions:
            w(f"{pad}        {r.ty.c} rg_term{r.slot} = {_zero(r.ty)};")
            w(f"{pad}        bool rg_got{r.slot} = false;")
        w(f"{pad}        do {{  // do/while(0): `continue` ends the iteration")
        w(f"{pad}            {local(s.var)} = rg_i{n};")
        self.in_prange += 1
        self.block(s.body, depth + 3)
        self.in_prange -= 1
        self.line = s.line
        w(f"{pad}        }} while (0);")
        for r in s.reductions:
            w(f"{pad}        if (rg_got{r.slot}) {_fold(r, local(r.target), f'rg_term{r.slot}')}")
        w(f"{pad}    }}")
        w(f"{pad}    if (rg_hi{n} > rg_lo{n}) {local(s.var)} = rg_hi{n} - 1;  // its value after the loop")
        w(f"{pad}}}")

    def accumulate(self, s: tir.Accumulate, pad: str) -> None:
        r = s.reduction
        self.out(f"{pad}rg_term{r.slot} = {self.expr(s.value)}; rg_got{r.slot} = true;")

    def ret(self, s: tir.Return, pad: str) -> None:
        w = self.out
        if s.fields is None:
            self.save_state(pad)
            w(f"{pad}return{' false' if self.func.output else ''};")
            return
        assert self.func.output is not None
        w(f"{pad}{{")
        pad += "    "
        stores: list[str] = []  # the first thread's
        self.place_fields("resp", self.func.output, s.fields, pad, stores)
        w(f"{pad}{self.group.leader('{')}")
        for v in stores:  # each carries its own #line (place)
            self.lines.append(v if v.startswith("#line") else f"{pad}    {v}")
        w(f"{pad}}}")
        self.line = s.line
        self.save_state(pad)
        w(f"{pad}return true;")
        w(f"{pad[4:]}}}")

    def send(self, s: tir.Send, pad: str) -> None:
        """The first thread builds the message (its checks computed by every thread) and sends it."""
        w = self.out
        if not isinstance(s.value, tir.Construct):
            w(f"{pad}{self.group.leader(f'ctx.send_{s.target}({self.lvalue(s.value)});')}")
            return
        assert s.value.ty.ctype is not None
        n = self.loops = self.loops + 1
        msg = f"rg_msg{n}"
        w(f"{pad}{{")
        stores: list[str] = []
        self.place_fields(msg, s.value.ty.ctype.c_name, s.value.fields, pad + "    ", stores)
        w(f"{pad}    {self.group.leader('{')}")
        w(f"{pad}        {s.value.ty.ctype.c_name} {msg};")
        w(f"{pad}        rg_init_{s.value.ty.ctype.c_name}(&{msg});")
        for v in stores:
            self.lines.append(v if v.startswith("#line") else f"{pad}        {v}")
        self.line = s.line
        w(f"{pad}        ctx.send_{s.target}({msg});  // stamps message_id and type_id")
        w(f"{pad}    }}")
        w(f"{pad}}}")

    def place_fields(self, target: str, message: str, fields: tuple[tir.FieldStore, ...], pad: str,
                     stores: list[str]) -> None:
        ctypes = self.messages.fields(message)
        for f in fields:
            self.line = f.line
            self.place(f"{target}.{f.name}", ctypes[f.name], f.value, pad, stores)

    def place(self, target: str, ctype: CType, value: tir.Expr, pad: str, into: list[str]) -> None:
        """Stores `value` into the response's `target`. Values and checks are computed by
        every thread (which trap alike, at the field's line); the first thread stores."""
        stores = _Stores(into, self.line)
        if ctype.kind == "optional":
            if value.ty.kind == "none":
                stores.append(f"{target}.present = 0;")
                return
            if value.ty.kind == "optional":  # an Optional field of the same C type
                stores.append(f"{target} = {self.lvalue(value)};")
                return
            stores.append(f"{target}.present = 1;")
            target, ctype = f"{target}.value", ctype.element
        if isinstance(value, tir.Construct):
            stores.append(f"rg_init_{ctype.c_name}(&{target});")
            self.place_fields(target, ctype.c_name, value.fields, pad, into)
            return
        if isinstance(value, tir.ListBuild):
            into.extend(self.list_build(target, ctype, value))
            return
        if ctype.kind == "str" and isinstance(value, tir.Const) and isinstance(value.value, str):
            data = value.value.encode()
            stores.append(f"rg_py_strcpy({target}.data, &{target}.len, {c_literal(data)}, {len(data)});")
            return
        if ctype.kind in ("str", "list"):
            lv = self.lvalue(value)
            count = "len" if ctype.kind == "str" else "count"
            self.out(f"{pad}rg_py_fits({lv}.{count}, {ctype.bound}u, RG_PY_AT);")
            if ctype.kind == "str":
                stores.append(f"rg_py_strcpy({target}.data, &{target}.len, {lv}.data, {lv}.len);")
            else:
                stores.append(f"for (uint32_t rg_k = 0; rg_k < {lv}.count; ++rg_k) "
                              f"{target}.items[rg_k] = {lv}.items[rg_k];")
                stores.append(f"{target}.count = {lv}.count;")
            return
        if ctype.kind in ("message", "uuid") or (
                ctype.kind == "datetime" and isinstance(value, (tir.FieldRead, tir.Unwrap, tir.Index))):
            stores.append(f"{target} = {self.lvalue(value)};")  # a datetime keeps its naive flag
            return
        if ctype.kind == "datetime":  # a datetime local: its ns (the field's naive flag as set)
            n = len(into)
            self.out(f"{pad}const int64_t rg_r{n} = {self.expr(value)};")
            stores.append(f"{target}.ns = rg_r{n};")
            return
        n = len(into)
        self.out(f"{pad}const {_store_type(ctype)} rg_r{n} = {self.store(value, ctype)};")
        stores.append(f"{target} = rg_r{n};")

    def list_build(self, target: str, ctype: CType, b: tir.ListBuild) -> list[str]:
        """The first thread's loop that appends each item, checking MaxLen as Python's constructor."""
        saved, self.lines = self.lines, []
        w = self.out
        n = self.loops = self.loops + 1
        w(f"{target}.count = 0;")
        w(f"{{  // a list comprehension into {target}")
        w(f"    const int64_t rg_lo{n} = {self.expr(b.start)}, rg_hi{n} = {self.expr(b.stop)}, "
          f"rg_st{n} = {self.expr(b.step)};")
        w(f"    rg_py_step(rg_st{n}, RG_PY_AT);")
        w(f"    for (int64_t rg_i{n} = rg_lo{n}; "
          f"rg_st{n} > 0 ? rg_i{n} < rg_hi{n} : rg_i{n} > rg_hi{n}; rg_i{n} += rg_st{n}) {{")
        w(f"        {local(b.index)} = rg_i{n};")
        line = self.line
        self.block(b.read, 2)
        self.line = line
        for cond in b.conds:
            w(f"        if (!({self.expr(cond)})) continue;")
        w(f"        rg_py_fits({target}.count + 1u, {ctype.bound}u, RG_PY_AT);")
        w(f"        {target}.items[{target}.count++] = {self.store(b.elt, ctype.element)};")
        w("    }")
        w("}")
        out, self.lines = self.lines, saved
        return out

    def save_state(self, pad: str) -> None:
        """The first thread writes the state's locals back; narrow fields are checked (ints) or
        rounded (float32) here, as a store into the struct, by every thread alike."""
        fields = self.func.state_fields
        if not fields:
            return
        w = self.out
        w(f"{pad}{{")
        for i, (name, ctype) in enumerate(fields.items()):
            value = self.store(tir.Local(self.func.locals["%" + name], "%" + name), ctype)
            w(f"{pad}    const {_store_type(ctype)} rg_s{i} = {value};")
        w(f"{pad}    {self.group.leader('{')}")
        for i, name in enumerate(fields):
            w(f"{pad}        state.{name} = rg_s{i};")
        w(f"{pad}    }}")
        w(f"{pad}}}")

    def store(self, value: tir.Expr, ctype: CType) -> str:
        """A Python value converted to a field's storage type, checked where Python checks."""
        text = self.expr(value)
        if ctype.kind == "int" and ctype.bits < 64:
            lo, hi = _INT_RANGE[ctype.bits]
            return f"rg_py_narrow<{ctype.c_name}>({text}, {lo}, {hi}, RG_PY_AT)"
        if ctype.kind == "uint":
            return f"rg_py_narrow<{ctype.c_name}>({text}, 0, {_UINT_RANGE[ctype.bits]}, RG_PY_AT)"
        if ctype.kind == "float" and ctype.bits == 32:
            return f"(float)({text})"
        if ctype.kind == "bool":
            return f"(uint8_t)({text})"
        if ctype.kind == "enum":
            return f"(int32_t)({text})"  # a member's value: int32 by the schema's check
        return text

    # ---- expressions ----

    def expr(self, e: tir.Expr) -> str:
        if isinstance(e, tir.Const):
            if isinstance(e.value, bool):
                return "true" if e.value else "false"
            if isinstance(e.value, int):
                return "INT64_MIN" if e.value == -2**63 else f"INT64_C({e.value})"
            if isinstance(e.value, float):
                return _float(e.value)
            return c_literal(e.value)
        if isinstance(e, tir.Local):
            return local(e.name)
        if isinstance(e, tir.Request):
            return "req"
        if isinstance(e, tir.FieldRead):
            return self.load(f"{self.lvalue(e.base)}.{e.name}", self.field_ctype(e))
        if isinstance(e, tir.Unwrap):
            lv, ctype = self.lvalue(e.operand), self.ctype_of(e.operand)
            return f"(rg_py_present({lv}.present, RG_PY_AT), {self.load(f'{lv}.value', ctype.element)})"
        if isinstance(e, tir.IsNone):
            return f"({'' if e.negate else '!'}{self.lvalue(e.operand)}.present)"
        if isinstance(e, tir.Len) and e.operand.ty.kind == "buffer":
            return f"(int64_t){self.expr(e.operand)}.count()"
        if isinstance(e, tir.Len):
            lv = self.lvalue(e.operand)
            if e.operand.ty.kind == "str":
                return f"rg_py_strlen({lv}.data, {lv}.len)"
            return f"(int64_t){lv}.count"
        if isinstance(e, tir.Index) and e.seq.ty.kind == "buffer":
            item = e.seq.ty.ctype
            assert item is not None
            at = f"{self.expr(e.seq)}, {self.expr(e.index)}, RG_PY_AT"
            return self.load(f"rg_py_buf_at<{item.c_name}>({at})", item)
        if isinstance(e, tir.Index) and e.seq.ty.kind == "str":
            lv = self.lvalue(e.seq)
            return f"rg_py_str_at({lv}.data, {lv}.len, {self.expr(e.index)}, RG_PY_AT)"
        if isinstance(e, tir.Index):
            return self.load(self.lvalue(e), self.ctype_of(e))
        if isinstance(e, tir.Unary):
            if e.op == "not":
                return f"(!{self.expr(e.operand)})"
            inner = self.expr(e.operand)
            return f"rg_py_neg({inner}, RG_PY_AT)" if e.ty == INT else f"(-{inner})"
        if isinstance(e, tir.Binary):
            return self.binary(e)
        if isinstance(e, tir.Compare):
            if e.right.ty.kind == "str":
                return self.str_compare(e)
            places = (tir.FieldRead, tir.Unwrap, tir.Index)
            if e.left.ty.kind == "datetime" and isinstance(e.left, places) and isinstance(e.right, places):
                a, b = self.lvalue(e.left), self.lvalue(e.right)
                if e.op in ("==", "!="):  # a naive and an aware datetime are never equal
                    eq = f"({a}.naive == {b}.naive && {a}.ns == {b}.ns)"
                    return eq if e.op == "==" else f"(!{eq})"
                return f"(rg_py_same_tz({a}.naive, {b}.naive, RG_PY_AT), {a}.ns {e.op} {b}.ns)"
            if e.left.ty.kind == "uuid":
                eq = f"rg_py_uuid_eq({self.lvalue(e.left)}, {self.lvalue(e.right)})"
                return eq if e.op == "==" else f"(!{eq})"
            return f"({self.expr(e.left)} {e.op} {self.expr(e.right)})"
        if isinstance(e, tir.Cond):
            return f"({self.expr(e.test)} ? {self.expr(e.then)} : {self.expr(e.orelse)})"
        if isinstance(e, tir.Convert):
            inner = self.expr(e.operand)
            if e.ty == FLOAT:
                return f"(double)({inner})"
            if e.ty == INT:
                return f"rg_py_int({inner}, RG_PY_AT)" if e.operand.ty == FLOAT else f"(int64_t)({inner})"
            return f"(bool)({inner})"
        if isinstance(e, tir.Call):
            return self.call(e)
        raise AssertionError(e)

    def binary(self, e: tir.Binary) -> str:
        a, b = self.expr(e.left), self.expr(e.right)
        if e.ty == BOOL:
            return f"({a} {e.op} {b})"
        if e.ty == INT:
            fn = {"+": "add", "-": "sub", "*": "mul", "//": "floordiv", "%": "mod", "**": "ipow"}[e.op]
            return f"rg_py_{fn}({a}, {b}, RG_PY_AT)"
        if e.op in ("+", "-", "*"):
            return f"({a} {e.op} {b})"
        fn = {"/": "div", "//": "ffloordiv", "%": "fmod", "**": "pow"}[e.op]
        return f"rg_py_{fn}({a}, {b}, RG_PY_AT)"

    def str_compare(self, e: tir.Compare) -> str:
        def parts(x: tir.Expr) -> str:
            if isinstance(x, tir.Const) and isinstance(x.value, str):
                data = x.value.encode()
                return f"{c_literal(data)}, {len(data)}u"
            lv = self.lvalue(x)
            return f"{lv}.data, {lv}.len"
        if e.op == "in":
            if e.left.ty.kind == "char":
                return f"rg_py_char_in({parts(e.right)}, {self.expr(e.left)})"
            return f"rg_py_contains({parts(e.right)}, {parts(e.left)})"
        if e.op in ("==", "!="):
            eq = f"rg_py_streq({parts(e.left)}, {parts(e.right)})"
            return eq if e.op == "==" else f"(!{eq})"
        return f"(rg_py_strcmp({parts(e.left)}, {parts(e.right)}) {e.op} 0)"

    def call(self, e: tir.Call) -> str:
        args = [self.expr(a) for a in e.args]
        if e.func == "nan":
            return "(double)NAN"
        if e.func == "buffer":  # (ref, numpy type character, item size)
            code, size = (a.value for a in e.args[1:] if isinstance(a, tir.Const))
            return f"rg_py_buffer(ctx, {args[0]}, {code}u, {size}u, RG_PY_AT)"
        if e.func in ("min", "max"):
            return f"rg_py_{e.func}<{e.ty.c}>({args[0]}, {args[1]})"
        if e.func == "abs":
            return f"rg_py_iabs({args[0]}, RG_PY_AT)" if e.ty == INT else f"fabs({args[0]})"
        name = e.func.removeprefix("math.")
        if name in _MATH_BOOL:
            return f"(bool){name}({args[0]})"
        if name in _MATH_INT:
            return f"rg_py_int({name}({args[0]}), RG_PY_AT)"
        second = args[1] if len(args) > 1 else "0.0"
        return f"rg_py_math({name}({', '.join(args)}), {args[0]}, {second}, RG_PY_AT)"

    # ---- places in the messages ----

    def lvalue(self, e: tir.Expr) -> str:
        """The C lvalue of a message, field or list item (no conversion)."""
        if isinstance(e, tir.Request):
            return "req"
        if isinstance(e, tir.FieldRead):
            return f"{self.lvalue(e.base)}.{e.name}"
        if isinstance(e, tir.Unwrap):
            lv = self.lvalue(e.operand)
            return f"(rg_py_present({lv}.present, RG_PY_AT), {lv}.value)"
        if isinstance(e, tir.Index):
            seq = self.lvalue(e.seq)
            return f"{seq}.items[rg_py_index({self.expr(e.index)}, {seq}.count, RG_PY_AT)]"
        raise AssertionError(e)

    def field_ctype(self, e: tir.FieldRead) -> CType:
        base = self.ctype_of(e.base)
        return self.messages.fields(base.c_name)[e.name]

    def ctype_of(self, e: tir.Expr) -> CType:
        if isinstance(e, tir.Request):
            assert e.ty.ctype is not None
            return e.ty.ctype
        if isinstance(e, tir.FieldRead):
            return self.field_ctype(e)
        if isinstance(e, tir.Unwrap):
            return self.ctype_of(e.operand).element
        if isinstance(e, tir.Index):
            return self.ctype_of(e.seq).element
        raise AssertionError(e)

    def load(self, lv: str, ctype: CType) -> str:
        """A stored field as a Python value: ints as int64, floats as double, bools as bool."""
        if ctype.kind == "uint" and ctype.bits == 64:
            return f"rg_py_from_u64({lv}, RG_PY_AT)"
        if ctype.kind in ("int", "uint") and ctype.bits != 64:
            return f"(int64_t){lv}"
        if ctype.kind == "float" and ctype.bits == 32:
            return f"(double){lv}"
        if ctype.kind == "bool":
            return f"({lv} != 0)"
        if ctype.kind == "datetime":  # compared by the instant (ns since the epoch)
            return f"{lv}.ns"
        return lv


class _Stores:
    """The first thread's statements of a response field; one that can trap is preceded by the
    field's #line."""

    def __init__(self, lines: list[str], line: int) -> None:
        self.lines = lines
        self.line = line

    def append(self, text: str) -> None:
        if "RG_PY_AT" in text:
            self.lines.append(f"#line {self.line}")
        self.lines.append(text)


def _has_prange(body: tuple[tir.Stmt, ...]) -> bool:
    for s in body:
        if isinstance(s, tir.PRange):
            return True
        inner = (*s.body, *s.orelse) if isinstance(s, tir.If) else \
            s.body if isinstance(s, (tir.While, tir.ForRange, tir.ForStr)) else ()
        if _has_prange(inner):
            return True
    return False


def _zero(ty: Ty) -> str:
    return {"int": "0", "float": "0.0", "bool": "false", "char": "0u", "datetime": "0", "enum": "0",
            "buffer": "rg_buffer_view{}"}[ty.kind]


def _fold(r: tir.Reduction, acc: str, value: str) -> str:
    """One step of Python's loop: acc += v (ints checked), or max/min as the builtins order
    (only a strictly greater/less value replaces, so NaN never does)."""
    if r.op == "sum":
        return f"{acc} = rg_py_add({acc}, {value}, RG_PY_AT);" if r.ty == INT else f"{acc} = {acc} + {value};"
    return f"if ({value} {'>' if r.op == 'max' else '<'} {acc}) {acc} = {value};"


def _store_type(ctype: CType) -> str:
    return "uint8_t" if ctype.kind == "bool" else ctype.c_name
