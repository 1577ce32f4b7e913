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
// A codec error raises ValueError("rg_mp error <code>"); the caller falls back to its Python
// codec, which names the field.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <new>

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
    size_t message_id, correlation_id, flags;  // the header members' offsets
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
     offsetof(M, message_id), offsetof(M, correlation_id), offsetof(M, flags)},
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

// A buffer aligned for any message, reused per thread: PyBytes data is only 8-byte aligned.
struct Scratch {
    void* data = nullptr;
    size_t cap = 0;
    ~Scratch() { ::operator delete(data, std::align_val_t(64)); }
    void* get(size_t n) {
        if (n > cap) {
            void* grown = ::operator new(n, std::align_val_t(64), std::nothrow);
            if (!grown) return nullptr;
            ::operator delete(data, std::align_val_t(64));
            data = grown;
            cap = n;
        }
        return data;
    }
};
thread_local Scratch scratch;

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
    void* target = aligned ? static_cast<void*>(dst) : scratch.get(e->size);
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
        void* m = scratch.get(e->size + e->max_packed);
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

PyObject* new_uuid(const uint8_t* bytes16) {
    PyObject* value = _PyLong_FromByteArray(bytes16, 16, /*little_endian=*/0, /*is_signed=*/0);
    if (!value) return nullptr;
    PyObject* u = PyBaseObject_Type.tp_new(reinterpret_cast<PyTypeObject*>(uuid_type), empty_args, nullptr);
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
    return PyModule_Create(&module);
}
