// rg_codec_module.cpp - a package's generated C codecs as a Python extension module: one native
// call turns a message's msgpack bytes (msg.serialize()) into the bytes of its C struct, the
// slot a ring holds, and one turns a slot back into msgpack for the typed decoder.
//
// Built per package by toolchain/compile.py (compile_codec_module) with
//   -include <pkg>_codec.h  -DRG_CODEC_MODULE=<module name>
//   -DRG_MESSAGES='X(Msg1) X(Msg2) ...'
// The plain CPython API (no pybind11): it compiles in about a second and a call costs ~50 ns.
//
// Functions, `i` the index of a message in RG_MESSAGES:
//   to_struct(i, msgpack: bytes) -> bytes        sizeof(Msg), via rg_unpack_<Msg>
//   to_msgpack(i, slot: bytes-like) -> bytes     via rg_pack_<Msg>; the slot is untrusted
//   ids(i, slot: bytes-like) -> (message_id, correlation_id or None)   UUIDs made in C
//   layout() -> tuple of (name, sizeof) per message, checked against the numpy dtypes
//   pack_rows(i, cls, type_id, plan, msgs) -> bytearray   a batch of messages -> their slots
//   unpack_rows(i, cls, plan, slots: bytes-like) -> list  a batch of slots -> the messages
//   pack_one(i, cls, type_id, plan, msg) -> bytes; unpack_one(i, cls, plan, slot) -> msg
//                                                 the same for one message (a lone request)
//   correlation_keys(i, slots: bytes-like) -> list of int  each slot's correlation_id, as .int
// The batch functions (one call a batch, not a message) take a `plan` that Python makes once
// per class (codecs/struct_plan.py): the message's fields, all of fixed-size C types.
// A codec error raises ValueError("rg_mp error <code>"); the caller falls back to its Python
// codec, which names the field.
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#ifndef RG_MESSAGES
#error "build with -DRG_MESSAGES='X(Msg) ...'"
#endif
#ifndef RG_CODEC_MODULE
#error "build with -DRG_CODEC_MODULE=<module name>"
#endif

#define RG_STR2(x) #x
#define RG_STR(x) RG_STR2(x)
#define RG_CAT2(a, b) a##b
#define RG_CAT(a, b) RG_CAT2(a, b)

namespace {

// Decodes `in` into a zero-initialised struct at `out` (aligned for the message).
typedef int64_t (*read_fn)(const uint8_t* in, size_t len, void* out);
// Encodes the struct at `m` (aligned) into `out`; the count of bytes, or an RG_MP_ERR_* code.
typedef int64_t (*write_fn)(const void* m, uint8_t* out, size_t cap);

struct Entry {
    const char* name;
    size_t size;
    size_t align;
    size_t max_packed;
    read_fn read;
    write_fn write;
    size_t message_id, correlation_id, type_id, flags;  // the header members' offsets
};

#define X(M)                                                                                     \
    int64_t read_##M(const uint8_t* in, size_t len, void* out) {                                 \
        return rg_unpack_##M(in, len, static_cast<M*>(out));                                     \
    }                                                                                            \
    int64_t write_##M(const void* m, uint8_t* out, size_t cap) {                                 \
        return rg_pack_##M(static_cast<const M*>(m), out, cap);                                  \
    }
RG_MESSAGES
#undef X

#define X(M)                                                                                     \
    {#M, sizeof(M), alignof(M), RG_MAX_PACKED_##M, read_##M, write_##M,                          \
     offsetof(M, message_id), offsetof(M, correlation_id), offsetof(M, type_id), offsetof(M, flags)},
const Entry entries[] = {RG_MESSAGES};
#undef X
constexpr Py_ssize_t n_entries = sizeof entries / sizeof entries[0];

const Entry* entry_at(PyObject* index) {
    Py_ssize_t i = PyLong_AsSsize_t(index);
    if (i == -1 && PyErr_Occurred()) return nullptr;
    if (i < 0 || i >= n_entries) {
        PyErr_Format(PyExc_IndexError, "no message %zd in this codec module", i);
        return nullptr;
    }
    return &entries[i];
}

PyObject* codec_error(int64_t code) {
    PyErr_Format(PyExc_ValueError, "rg_mp error %lld", static_cast<long long>(code));
    return nullptr;
}

// A buffer aligned for any message (PyBytes data is only 8-byte aligned), reused per thread.
// A call holds it as a Lease for as long as it reads from it; a decode that allocates Python
// objects can run a collection whose finalizers decode again on this thread, so a lease taken
// while the buffer is held gets a buffer of its own instead of the one being read.
struct Scratch {
    void* data = nullptr;
    size_t cap = 0;
    bool held = false;
    ~Scratch() { ::operator delete(data, std::align_val_t(64)); }
};
thread_local Scratch scratch;

class Lease {
public:
    explicit Lease(size_t n) {
        if (!scratch.held) {
            if (n > scratch.cap) {
                void* grown = ::operator new(n, std::align_val_t(64), std::nothrow);
                if (!grown) return;
                ::operator delete(scratch.data, std::align_val_t(64));
                scratch.data = grown;
                scratch.cap = n;
            }
            scratch.held = shared_ = true;
            data_ = scratch.data;
        } else {
            data_ = ::operator new(n, std::align_val_t(64), std::nothrow);
        }
    }
    ~Lease() {
        if (shared_) scratch.held = false;
        else ::operator delete(data_, std::align_val_t(64));
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    void* get() const { return data_; }  // nullptr: out of memory

private:
    void* data_ = nullptr;
    bool shared_ = false;  // the thread's buffer, not one of its own
};

PyObject* to_struct(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "to_struct(index, msgpack: bytes)");
        return nullptr;
    }
    const Entry* e = entry_at(args[0]);
    if (!e) return nullptr;
    PyObject* out = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(e->size));
    if (!out) return nullptr;
    char* dst = PyBytes_AS_STRING(out);
    const bool aligned = reinterpret_cast<uintptr_t>(dst) % e->align == 0;
    Lease lease(aligned ? 0 : e->size);
    void* target = aligned ? static_cast<void*>(dst) : lease.get();
    if (!target) {
        Py_DECREF(out);
        return PyErr_NoMemory();
    }
    const int64_t r = e->read(reinterpret_cast<const uint8_t*>(PyBytes_AS_STRING(args[1])),
                              static_cast<size_t>(PyBytes_GET_SIZE(args[1])), target);
    if (r < 0) {
        Py_DECREF(out);
        return codec_error(r);
    }
    if (!aligned) memcpy(dst, target, e->size);
    return out;
}

PyObject* to_msgpack(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "to_msgpack(index, slot: bytes-like)");
        return nullptr;
    }
    const Entry* e = entry_at(args[0]);
    if (!e) return nullptr;
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0) return nullptr;
    PyObject* result = nullptr;
    if (static_cast<size_t>(view.len) != e->size) {
        PyErr_Format(PyExc_ValueError, "a %s slot is %zu bytes, not %zd", e->name, e->size, view.len);
    } else {
        // The slot came from shared memory: copy it (aligned) before reading, so the kernel
        // cannot change a length between its check and its use.
        Lease lease(e->size + e->max_packed);
        void* m = lease.get();
        if (!m) {
            PyErr_NoMemory();
        } else {
            memcpy(m, view.buf, e->size);
            uint8_t* packed = static_cast<uint8_t*>(m) + e->size;
            const int64_t n = e->write(m, packed, e->max_packed);
            result = n < 0 ? codec_error(n)
                           : PyBytes_FromStringAndSize(reinterpret_cast<const char*>(packed), n);
        }
    }
    PyBuffer_Release(&view);
    return result;
}

// uuid.UUID and SafeUUID.unknown, from the module's init; a UUID is made as
// uuid_from_bytes (codecs/converters.py) makes it: object.__new__ and its two slots set,
// without UUID.__init__'s argument parsing (most of its cost).
PyObject* uuid_type;
PyObject* safe_unknown;
PyObject* empty_args;
PyObject* name_int;
PyObject* name_is_safe;

// Where a UUID keeps `int` and `is_safe` (its __slots__), from the module's init; -1 where the
// class is not laid out so. A new UUID's slots are then filled as their member descriptors
// would fill them, without looking the descriptors up (a batch makes two UUIDs a message).
Py_ssize_t int_slot = -1, is_safe_slot = -1;

Py_ssize_t slot_offset(const char* name) {
    PyObject* d = PyDict_GetItemString(reinterpret_cast<PyTypeObject*>(uuid_type)->tp_dict, name);
    if (!d || !Py_IS_TYPE(d, &PyMemberDescr_Type)) return -1;
    const PyMemberDef* member = reinterpret_cast<PyMemberDescrObject*>(d)->d_member;
    return member->type == T_OBJECT_EX && !(member->flags & READONLY) ? member->offset : -1;
}

PyObject* new_uuid(const uint8_t* bytes16) {
    PyObject* value = _PyLong_FromByteArray(bytes16, 16, /*little_endian=*/0, /*is_signed=*/0);
    if (!value) return nullptr;
    PyObject* u = PyBaseObject_Type.tp_new(reinterpret_cast<PyTypeObject*>(uuid_type), empty_args, nullptr);
    if (u && int_slot >= 0 && is_safe_slot >= 0) {  // a new object's slots are empty
        *reinterpret_cast<PyObject**>(reinterpret_cast<char*>(u) + int_slot) = value;
        Py_INCREF(safe_unknown);
        *reinterpret_cast<PyObject**>(reinterpret_cast<char*>(u) + is_safe_slot) = safe_unknown;
        // No cycle can pass through it (an int and an enum member, and UUID refuses setattr):
        // untracked, as CPython untracks a tuple of atoms, it costs the collector nothing.
        PyObject_GC_UnTrack(u);
        return u;
    }
    if (!u || PyObject_GenericSetAttr(u, name_int, value) < 0 ||
        PyObject_GenericSetAttr(u, name_is_safe, safe_unknown) < 0) {
        Py_XDECREF(u);
        Py_DECREF(value);
        return nullptr;
    }
    Py_DECREF(value);
    return u;
}

PyObject* ids(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "ids(index, slot: bytes-like)");
        return nullptr;
    }
    const Entry* e = entry_at(args[0]);
    if (!e) return nullptr;
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0) return nullptr;
    PyObject* result = nullptr;
    if (static_cast<size_t>(view.len) != e->size) {
        PyErr_Format(PyExc_ValueError, "a %s slot is %zu bytes, not %zd", e->name, e->size, view.len);
    } else {
        const uint8_t* slot = static_cast<const uint8_t*>(view.buf);
        PyObject* message_id = new_uuid(slot + e->message_id);
        PyObject* correlation_id = nullptr;
        if (message_id) {
            if (slot[e->flags] & RG_FLAG_HAS_CORRELATION) {
                correlation_id = new_uuid(slot + e->correlation_id);
            } else {
                correlation_id = Py_None;
                Py_INCREF(Py_None);
            }
        }
        if (correlation_id) result = PyTuple_Pack(2, message_id, correlation_id);
        Py_XDECREF(message_id);
        Py_XDECREF(correlation_id);
    }
    PyBuffer_Release(&view);
    return result;
}


// -- batches ------------------------------------------------------------------------------------
// A plan is a tuple of (name: str, offset: int, code: int) per field of the message, in the
// order of its declaration; the code is a struct-module letter of the member's C type ('b' 'B'
// 'h' 'H' 'i' 'I' 'q' 'Q' 'f' 'd' '?'), 'u' for a UUID, 'c' for the header's correlation_id (a
// UUID or None, with RG_FLAG_HAS_CORRELATION in flags). Anything a plan's member cannot hold
// raises ValueError: the caller then takes its Python codec, whose error names the field.
struct Field {
    PyObject* name;  // borrowed from the plan, which the caller's arguments hold for the call
    size_t offset;
    int code;
};

size_t width_of(int code) {
    switch (code) {
        case 'b': case 'B': case '?': return 1;
        case 'h': case 'H': return 2;
        case 'i': case 'I': case 'f': return 4;
        case 'q': case 'Q': case 'd': return 8;
        case 'u': case 'c': return 16;
        default: return 0;
    }
}

bool read_plan(PyObject* plan, const Entry* e, std::vector<Field>& out) {
    if (!PyTuple_Check(plan)) {
        PyErr_SetString(PyExc_TypeError, "a plan is a tuple of (name, offset, code)");
        return false;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(plan); ++i) {
        PyObject* item = PyTuple_GET_ITEM(plan, i);
        Py_ssize_t offset;
        int code;
        PyObject* name;
        if (!PyArg_ParseTuple(item, "Uni", &name, &offset, &code)) return false;
        const size_t width = width_of(code);
        if (!width || offset < 0 || static_cast<size_t>(offset) + width > e->size) {
            PyErr_Format(PyExc_ValueError, "plan member %R does not fit a %s", name, e->name);
            return false;
        }
        out.push_back({name, static_cast<size_t>(offset), code});
    }
    return true;
}

// The last plan read for each message, kept with the tuple it was read from: Python passes
// the same tuple on every call (struct_plan.py makes one per class and dtype), so a call
// parses no plan, which would cost about as much as moving a one-message batch. Only under
// the GIL.
typedef std::shared_ptr<const std::vector<Field>> Fields;
struct CachedPlan {
    PyObject* source = nullptr;  // a reference held, so that its identity stays its own
    Fields fields;
};
CachedPlan plans[n_entries];

// The fields of `plan`, which the caller holds for the whole call: Python code that the call
// runs (a field's __index__, a finalizer the collector runs) may pack this message by another
// plan, which replaces the cached one, and must not free the fields the call is walking.
// Null with a Python error set.
Fields plan_of(PyObject* plan, const Entry* e) {
    CachedPlan& cached = plans[e - entries];
    if (cached.source == plan) return cached.fields;
    try {
        auto fields = std::make_shared<std::vector<Field>>();
        if (!read_plan(plan, e, *fields)) return nullptr;
        Py_INCREF(plan);
        Py_XSETREF(cached.source, plan);
        cached.fields = fields;
        return fields;
    } catch (const std::bad_alloc&) {
        PyErr_NoMemory();
        return nullptr;
    }
}

bool bad_value(PyObject* name) {
    if (!PyErr_Occurred() || PyErr_ExceptionMatches(PyExc_OverflowError) ||
        PyErr_ExceptionMatches(PyExc_TypeError)) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "field %U: a value its C member cannot hold", name);
    }
    return false;
}

bool write_uuid(PyObject* v, uint8_t* at) {
    if (!PyObject_TypeCheck(v, reinterpret_cast<PyTypeObject*>(uuid_type))) return false;
    PyObject* value = PyObject_GetAttr(v, name_int);
    if (!value) return false;
    const int r = PyLong_Check(value) ? _PyLong_AsByteArray(reinterpret_cast<PyLongObject*>(value), at, 16,
                                                            /*little_endian=*/0, /*is_signed=*/0
#if PY_VERSION_HEX >= 0x030d0000
                                                            , /*with_exceptions=*/1
#endif
                                                            )
                                      : -1;
    Py_DECREF(value);
    return r == 0;
}

// Stores `v` as the member `f` of the slot at `slot` (zeroed).
bool write_member(const Field& f, PyObject* v, uint8_t* slot, const Entry* e) {
    uint8_t* at = slot + f.offset;
    switch (f.code) {
        case 'f': case 'd': {
            const double x = PyFloat_AsDouble(v);
            if (x == -1.0 && PyErr_Occurred()) return bad_value(f.name);
            if (f.code == 'd') {
                memcpy(at, &x, 8);
            } else {
                if (std::isfinite(x) && std::fabs(x) > FLT_MAX) return bad_value(f.name);
                const float y = static_cast<float>(x);
                memcpy(at, &y, 4);
            }
            return true;
        }
        case '?': {
            const int t = PyObject_IsTrue(v);
            if (t < 0) return bad_value(f.name);
            *at = static_cast<uint8_t>(t);
            return true;
        }
        case 'u':
            return write_uuid(v, at) || bad_value(f.name);
        case 'c':
            if (v == Py_None) return true;
            if (!write_uuid(v, at)) return bad_value(f.name);
            slot[e->flags] |= RG_FLAG_HAS_CORRELATION;
            return true;
        default: break;
    }
    // an int, or a numpy integer (operator.index); a float or a str raises, as struct's would
    PyObject* index = PyNumber_Index(v);
    if (!index) return bad_value(f.name);
    if (f.code == 'Q') {
        const unsigned long long x = PyLong_AsUnsignedLongLong(index);
        Py_DECREF(index);
        if (x == static_cast<unsigned long long>(-1) && PyErr_Occurred()) return bad_value(f.name);
        memcpy(at, &x, 8);
        return true;
    }
    const long long x = PyLong_AsLongLong(index);
    Py_DECREF(index);
    if (x == -1 && PyErr_Occurred()) return bad_value(f.name);
    long long lo, hi;
    switch (f.code) {
        case 'b': lo = INT8_MIN; hi = INT8_MAX; break;
        case 'B': lo = 0; hi = UINT8_MAX; break;
        case 'h': lo = INT16_MIN; hi = INT16_MAX; break;
        case 'H': lo = 0; hi = UINT16_MAX; break;
        case 'i': lo = INT32_MIN; hi = INT32_MAX; break;
        case 'I': lo = 0; hi = UINT32_MAX; break;
        default: lo = INT64_MIN; hi = INT64_MAX; break;
    }
    if (x < lo || x > hi) return bad_value(f.name);
    // little-endian, as every target of ringgen (x86-64, aarch64, the GPU) lays it out
    memcpy(at, &x, width_of(f.code));
    return true;
}

// Message `m` (number i of its batch) into the zeroed slot at `slot`, by `plan`.
bool pack_slot(PyObject* m, Py_ssize_t i, PyObject* cls, uint32_t type_id,
               const std::vector<Field>& plan, uint8_t* slot, const Entry* e) {
    if (reinterpret_cast<PyObject*>(Py_TYPE(m)) != cls) {
        PyErr_Format(PyExc_ValueError, "message %zd is a %s", i, Py_TYPE(m)->tp_name);
        return false;
    }
    PyObject* d = PyObject_GenericGetDict(m, nullptr);
    if (!d) return false;
    memcpy(slot + e->type_id, &type_id, 4);
    bool ok = true;
    for (const Field& f : plan) {
        PyObject* v = PyDict_GetItemWithError(d, f.name);
        if (!v) {
            if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "message %zd lacks %U", i, f.name);
            ok = false;
            break;
        }
        if (!write_member(f, v, slot, e)) {
            ok = false;
            break;
        }
    }
    Py_DECREF(d);
    return ok;
}

// pack_rows of one message, as bytes (what a backlog entry and a ring push take): the lone
// request's and send's packer, one C call with no msgpack in between.
PyObject* pack_one(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "pack_one(index, cls, type_id, plan, msg)");
        return nullptr;
    }
    const Entry* e = entry_at(args[0]);
    if (!e) return nullptr;
    const unsigned long type_id = PyLong_AsUnsignedLong(args[2]);
    if (type_id == static_cast<unsigned long>(-1) && PyErr_Occurred()) return nullptr;
    const Fields plan = plan_of(args[3], e);
    if (!plan) return nullptr;
    PyObject* out = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(e->size));
    if (!out) return nullptr;
    uint8_t* slot = reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(out));
    memset(slot, 0, e->size);
    if (!pack_slot(args[4], 0, args[1], static_cast<uint32_t>(type_id), *plan, slot, e)) {
        Py_DECREF(out);
        return nullptr;
    }
    return out;
}

PyObject* pack_rows(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "pack_rows(index, cls, type_id, plan, msgs)");
        return nullptr;
    }
    const Entry* e = entry_at(args[0]);
    if (!e) return nullptr;
    PyObject* cls = args[1];
    const unsigned long type_id = PyLong_AsUnsignedLong(args[2]);
    if (type_id == static_cast<unsigned long>(-1) && PyErr_Occurred()) return nullptr;
    const Fields plan = plan_of(args[3], e);
    if (!plan) return nullptr;
    PyObject* msgs = PySequence_Fast(args[4], "pack_rows takes a sequence of messages");
    if (!msgs) return nullptr;
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(msgs);
    PyObject* out = PyByteArray_FromStringAndSize(nullptr, n * static_cast<Py_ssize_t>(e->size));
    if (!out) {
        Py_DECREF(msgs);
        return nullptr;
    }
    uint8_t* rows = reinterpret_cast<uint8_t*>(PyByteArray_AS_STRING(out));
    memset(rows, 0, static_cast<size_t>(n) * e->size);
    const uint32_t type_id32 = static_cast<uint32_t>(type_id);
    PyObject** items = PySequence_Fast_ITEMS(msgs);
    bool ok = true;
    for (Py_ssize_t i = 0; ok && i < n; ++i)
        ok = pack_slot(items[i], i, cls, type_id32, *plan, rows + static_cast<size_t>(i) * e->size, e);
    Py_DECREF(msgs);
    if (!ok) {
        Py_DECREF(out);
        return nullptr;
    }
    return out;
}

PyObject* read_member(const Field& f, const uint8_t* slot, const Entry* e) {
    const uint8_t* at = slot + f.offset;
    switch (f.code) {
        case 'b': { int8_t x; memcpy(&x, at, 1); return PyLong_FromLong(x); }
        case 'B': return PyLong_FromLong(*at);
        case 'h': { int16_t x; memcpy(&x, at, 2); return PyLong_FromLong(x); }
        case 'H': { uint16_t x; memcpy(&x, at, 2); return PyLong_FromLong(x); }
        case 'i': { int32_t x; memcpy(&x, at, 4); return PyLong_FromLong(x); }
        case 'I': { uint32_t x; memcpy(&x, at, 4); return PyLong_FromUnsignedLong(x); }
        case 'q': { int64_t x; memcpy(&x, at, 8); return PyLong_FromLongLong(x); }
        case 'Q': { uint64_t x; memcpy(&x, at, 8); return PyLong_FromUnsignedLongLong(x); }
        case 'f': { float x; memcpy(&x, at, 4); return PyFloat_FromDouble(x); }
        case 'd': { double x; memcpy(&x, at, 8); return PyFloat_FromDouble(x); }
        case '?': return PyBool_FromLong(*at != 0);
        case 'u': return new_uuid(at);
        default:  // 'c'
            if (slot[e->flags] & RG_FLAG_HAS_CORRELATION) return new_uuid(at);
            Py_RETURN_NONE;
    }
}

// The message a slot (copied out of shared memory already) holds, by `plan`; left untracked
// by the collector with `untracked` (the caller tracks it).
PyObject* new_message(PyTypeObject* cls, const std::vector<Field>& plan, const uint8_t* slot,
                      const Entry* e, bool untracked) {
    // object.__new__(cls) and object.__setattr__ (a frozen class's own refuses), as the Python
    // engines make a message: its __init__ would check what the struct holds again. Set
    // attribute by attribute, an object keeps its values without a dict.
    PyObject* o = PyBaseObject_Type.tp_new(cls, empty_args, nullptr);
    if (o && untracked) PyObject_GC_UnTrack(o);
    bool ok = o != nullptr;
    for (size_t k = 0; ok && k < plan.size(); ++k) {
        PyObject* v = read_member(plan[k], slot, e);
        ok = v && PyObject_GenericSetAttr(o, plan[k].name, v) == 0;
        Py_XDECREF(v);
    }
    if (!ok) Py_CLEAR(o);
    return o;
}

// unpack_rows of exactly one slot: the message itself, not a list of it.
PyObject* unpack_one(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyType_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "unpack_one(index, cls, plan, slot: bytes-like)");
        return nullptr;
    }
    const Entry* e = entry_at(args[0]);
    if (!e) return nullptr;
    const Fields plan = plan_of(args[2], e);
    if (!plan) return nullptr;
    Py_buffer view;
    if (PyObject_GetBuffer(args[3], &view, PyBUF_SIMPLE) < 0) return nullptr;
    PyObject* out = nullptr;
    if (static_cast<size_t>(view.len) != e->size) {
        PyErr_Format(PyExc_ValueError, "a %s slot is %zu bytes, not %zd", e->name, e->size, view.len);
    } else {
        Lease lease(e->size);
        uint8_t* slot = static_cast<uint8_t*>(lease.get());  // copied: see unpack_rows
        if (!slot) {
            PyErr_NoMemory();
        } else {
            memcpy(slot, view.buf, e->size);
            out = new_message(reinterpret_cast<PyTypeObject*>(args[1]), *plan, slot, e, false);
        }
    }
    PyBuffer_Release(&view);
    return out;
}

PyObject* unpack_rows(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyType_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "unpack_rows(index, cls, plan, slots: bytes-like)");
        return nullptr;
    }
    const Entry* e = entry_at(args[0]);
    if (!e) return nullptr;
    PyTypeObject* cls = reinterpret_cast<PyTypeObject*>(args[1]);
    const bool gc_type = PyType_IS_GC(cls);
    const Fields plan = plan_of(args[2], e);
    if (!plan) return nullptr;
    Py_buffer view;
    if (PyObject_GetBuffer(args[3], &view, PyBUF_SIMPLE) < 0) return nullptr;
    PyObject* out = nullptr;
    if (static_cast<size_t>(view.len) % e->size) {
        PyErr_Format(PyExc_ValueError, "%zd bytes are no whole number of %s slots", view.len, e->name);
    } else {
        const Py_ssize_t n = view.len / static_cast<Py_ssize_t>(e->size);
        // Slots in shared memory could change under the reads: each is copied first.
        Lease lease(e->size);
        uint8_t* slot = static_cast<uint8_t*>(lease.get());
        out = slot ? PyList_New(n) : PyErr_NoMemory();
        for (Py_ssize_t i = 0; out && i < n; ++i) {
            memcpy(slot, static_cast<const uint8_t*>(view.buf) + static_cast<size_t>(i) * e->size, e->size);
            // Untracked until the batch is made: else the collections its allocations set off
            // find the messages made so far alive (the list holds them), promote them, and
            // soon scan the whole heap (3x the cost of the batch in a process holding 10^5
            // messages; benchmarks/bench_runtime.py (b)).
            PyObject* o = new_message(cls, *plan, slot, e, gc_type);
            if (!o) {
                Py_CLEAR(out);
                break;
            }
            PyList_SET_ITEM(out, i, o);
        }
        for (Py_ssize_t i = 0; out && gc_type && i < n; ++i) {
            PyObject* o = PyList_GET_ITEM(out, i);
            if (!PyObject_GC_IsTracked(o)) PyObject_GC_Track(o);
        }
    }
    PyBuffer_Release(&view);
    return out;
}

PyObject* correlation_keys(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "correlation_keys(index, slots: bytes-like)");
        return nullptr;
    }
    const Entry* e = entry_at(args[0]);
    if (!e) return nullptr;
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0) return nullptr;
    PyObject* out = nullptr;
    if (static_cast<size_t>(view.len) % e->size) {
        PyErr_Format(PyExc_ValueError, "%zd bytes are no whole number of %s slots", view.len, e->name);
    } else {
        const Py_ssize_t n = view.len / static_cast<Py_ssize_t>(e->size);
        out = PyList_New(n);
        for (Py_ssize_t i = 0; out && i < n; ++i) {
            const uint8_t* at = static_cast<const uint8_t*>(view.buf) + static_cast<size_t>(i) * e->size
                              + e->correlation_id;
            PyObject* key = _PyLong_FromByteArray(at, 16, /*little_endian=*/0, /*is_signed=*/0);
            if (!key) {
                Py_CLEAR(out);
                break;
            }
            PyList_SET_ITEM(out, i, key);
        }
    }
    PyBuffer_Release(&view);
    return out;
}

PyObject* layout(PyObject*, PyObject*) {
    PyObject* out = PyTuple_New(n_entries);
    if (!out) return nullptr;
    for (Py_ssize_t i = 0; i < n_entries; ++i) {
        PyObject* item = Py_BuildValue("(sn)", entries[i].name, static_cast<Py_ssize_t>(entries[i].size));
        if (!item) {
            Py_DECREF(out);
            return nullptr;
        }
        PyTuple_SET_ITEM(out, i, item);
    }
    return out;
}

PyMethodDef methods[] = {
    {"to_struct", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(to_struct)),
     METH_FASTCALL, "msgpack bytes -> the bytes of the message's C struct"},
    {"to_msgpack", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(to_msgpack)),
     METH_FASTCALL, "the bytes of a C struct (untrusted) -> msgpack bytes"},
    {"ids", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(ids)), METH_FASTCALL,
     "the (message_id, correlation_id or None) of a C struct's header, as UUIDs"},
    {"pack_rows", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(pack_rows)),
     METH_FASTCALL, "messages -> the bytes of their C structs, by a plan"},
    {"unpack_rows", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(unpack_rows)),
     METH_FASTCALL, "C structs -> their messages, by a plan"},
    {"pack_one", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(pack_one)),
     METH_FASTCALL, "a message -> the bytes of its C struct, by a plan"},
    {"unpack_one", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(unpack_one)),
     METH_FASTCALL, "one C struct -> its message, by a plan"},
    {"correlation_keys", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(correlation_keys)),
     METH_FASTCALL, "the correlation_id of each C struct, as an int"},
    {"layout", layout, METH_NOARGS, "(name, sizeof) of each message, in index order"},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {PyModuleDef_HEAD_INIT, RG_STR(RG_CODEC_MODULE),
                      "a package's generated C codecs (ringgen)", -1, methods};

}  // namespace

PyMODINIT_FUNC RG_CAT(PyInit_, RG_CODEC_MODULE)(void) {
    PyObject* uuid_module = PyImport_ImportModule("uuid");
    if (!uuid_module) return nullptr;
    uuid_type = PyObject_GetAttrString(uuid_module, "UUID");
    PyObject* safe = PyObject_GetAttrString(uuid_module, "SafeUUID");
    Py_DECREF(uuid_module);
    if (!uuid_type || !safe) return nullptr;
    safe_unknown = PyObject_GetAttrString(safe, "unknown");
    Py_DECREF(safe);
    empty_args = PyTuple_New(0);
    name_int = PyUnicode_InternFromString("int");
    name_is_safe = PyUnicode_InternFromString("is_safe");
    if (!safe_unknown || !empty_args || !name_int || !name_is_safe) return nullptr;
    if (!PyType_Check(uuid_type)) {
        PyErr_SetString(PyExc_TypeError, "uuid.UUID is not a class");
        return nullptr;
    }
    int_slot = slot_offset("int");
    is_safe_slot = slot_offset("is_safe");
    return PyModule_Create(&module);
}
