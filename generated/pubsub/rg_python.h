// rg_python.h - Python's meaning in C, for handlers that ringgen translated from Python.
//
// Where C and Python differ, these helpers do what Python does: floor division and modulo
// round toward negative infinity, ints are 64-bit with every overflow checked, min/max order
// NaN as Python's builtins do (the first argument wins unless a later one is strictly
// greater/less), len of a str counts characters. What Python answers with an exception
// (ZeroDivisionError, OverflowError, IndexError, ValueError, TypeError on None) ends the kernel
// with __trap(); the caller passes __FILE__ and __LINE__, which the translator's #line
// directives make the Python file and line.
#pragma once

#include <math.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__CUDACC__)
#define RG_PY_HD __device__ __forceinline__  // handlers are device code; __trap() is device-only
#else
#define RG_PY_HD inline
#endif

// The Python position of a call: __FILE__ and __LINE__ under the translator's #line directives.
#define RG_PY_AT __FILE__, __LINE__

// Ends the kernel: the Python function raised `what` at file:line.
[[noreturn]] RG_PY_HD void rg_py_raise(const char* what, const char* file, int line) {
#if defined(__CUDACC__)
    printf("ringgen: %s at %s:%d (block %u thread %u)\n", what, file, line, blockIdx.x, threadIdx.x);
    __trap();
    for (;;) {}
#else
    fprintf(stderr, "ringgen: %s\n", what);
    rg_cpu::trap(file, line);
#endif
}

RG_PY_HD int64_t rg_py_add(int64_t a, int64_t b, const char* file, int line) {
    if ((b > 0 && a > INT64_MAX - b) || (b < 0 && a < INT64_MIN - b))
        rg_py_raise("OverflowError: int + int outside int64", file, line);
    return a + b;
}

RG_PY_HD int64_t rg_py_sub(int64_t a, int64_t b, const char* file, int line) {
    if ((b < 0 && a > INT64_MAX + b) || (b > 0 && a < INT64_MIN + b))
        rg_py_raise("OverflowError: int - int outside int64", file, line);
    return a - b;
}

RG_PY_HD int64_t rg_py_mul(int64_t a, int64_t b, const char* file, int line) {
    if (a == 0 || b == 0) return 0;
    // |a * b| fits when |a| <= INT64_MAX / |b|, with INT64_MIN's one extra value handled apart
    bool negative = (a < 0) != (b < 0);
    uint64_t ua = a < 0 ? 0 - (uint64_t)a : (uint64_t)a, ub = b < 0 ? 0 - (uint64_t)b : (uint64_t)b;
    uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    if (ua > limit / ub) rg_py_raise("OverflowError: int * int outside int64", file, line);
    uint64_t p = ua * ub;
    return negative ? (int64_t)(0 - p) : (int64_t)p;
}

RG_PY_HD int64_t rg_py_neg(int64_t a, const char* file, int line) {
    if (a == INT64_MIN) rg_py_raise("OverflowError: -int outside int64", file, line);
    return -a;
}

RG_PY_HD int64_t rg_py_floordiv(int64_t a, int64_t b, const char* file, int line) {
    if (b == 0) rg_py_raise("ZeroDivisionError: integer division by zero", file, line);
    if (a == INT64_MIN && b == -1) rg_py_raise("OverflowError: int // int outside int64", file, line);
    int64_t q = a / b;
    if (a % b != 0 && ((a < 0) != (b < 0))) --q;  // C truncates; Python floors
    return q;
}

RG_PY_HD int64_t rg_py_mod(int64_t a, int64_t b, const char* file, int line) {
    if (b == 0) rg_py_raise("ZeroDivisionError: integer modulo by zero", file, line);
    if (b == -1) return 0;  // INT64_MIN % -1 traps in C; it is 0 in Python
    int64_t r = a % b;
    if (r != 0 && ((r < 0) != (b < 0))) r += b;  // the sign of the divisor, as in Python
    return r;
}

// int ** int with a non-negative exponent (Python gives a float for a negative one).
RG_PY_HD int64_t rg_py_ipow(int64_t base, int64_t exp, const char* file, int line) {
    if (exp < 0) rg_py_raise("int ** negative int is a float in Python: write float(a) ** b", file, line);
    int64_t result = 1;
    while (exp > 0) {
        if (exp & 1) result = rg_py_mul(result, base, file, line);
        exp >>= 1;
        if (exp > 0) base = rg_py_mul(base, base, file, line);
    }
    return result;
}

RG_PY_HD int64_t rg_py_iabs(int64_t a, const char* file, int line) {
    return a < 0 ? rg_py_neg(a, file, line) : a;
}

RG_PY_HD double rg_py_div(double a, double b, const char* file, int line) {
    if (b == 0.0) rg_py_raise("ZeroDivisionError: division by zero", file, line);
    return a / b;
}

// float // float and float % float: CPython's float_divmod (Objects/floatobject.c).
RG_PY_HD double rg_py_fmod(double vx, double wx, const char* file, int line) {
    if (wx == 0.0) rg_py_raise("ZeroDivisionError: float modulo by zero", file, line);
    double mod = fmod(vx, wx);
    if (mod != 0.0) {
        if ((wx < 0) != (mod < 0)) mod += wx;
    } else {
        mod = copysign(0.0, wx);
    }
    return mod;
}

RG_PY_HD double rg_py_ffloordiv(double vx, double wx, const char* file, int line) {
    if (wx == 0.0) rg_py_raise("ZeroDivisionError: float floor division by zero", file, line);
    double mod = fmod(vx, wx);
    double div = (vx - mod) / wx;
    if (mod != 0.0 && ((wx < 0) != (mod < 0))) div -= 1.0;
    double floordiv;
    if (div != 0.0) {
        floordiv = floor(div);
        if (div - floordiv > 0.5) floordiv += 1.0;
    } else {
        floordiv = copysign(0.0, vx / wx);
    }
    return floordiv;
}

// float ** float: the cases where Python raises instead of returning C's pow().
RG_PY_HD double rg_py_pow(double x, double y, const char* file, int line) {
    if (x == 0.0 && y < 0.0) rg_py_raise("ZeroDivisionError: 0.0 cannot be raised to a negative power", file, line);
    if (x < 0.0 && isfinite(x) && isfinite(y) && floor(y) != y)
        rg_py_raise("negative float ** non-integer is a complex number in Python", file, line);
    double r = pow(x, y);
    if (isinf(r) && isfinite(x) && isfinite(y)) rg_py_raise("OverflowError: float ** float", file, line);
    return r;
}

// int(x) of a float: truncation, as Python does, with its errors for NaN, inf and big values.
RG_PY_HD int64_t rg_py_int(double x, const char* file, int line) {
    if (isnan(x)) rg_py_raise("ValueError: cannot convert float NaN to integer", file, line);
    if (!(x > -9223372036854775808.0 - 1.0 && x < 9223372036854775808.0))  // |x| >= 2**63
        rg_py_raise("OverflowError: int(float) outside int64", file, line);
    return (int64_t)x;
}

// The math module's errors (CPython's math_1): a NaN from arguments that are not NaN is a
// ValueError (math domain error), an infinity from finite arguments an OverflowError.
RG_PY_HD double rg_py_math(double r, double x, double y, const char* file, int line) {
    if (isnan(r) && !isnan(x) && !isnan(y)) rg_py_raise("ValueError: math domain error", file, line);
    if (isinf(r) && isfinite(x) && isfinite(y)) rg_py_raise("ValueError/OverflowError: math range error", file, line);
    return r;
}

// min/max of two values as Python's builtins order them: the first wins unless the second is
// strictly smaller/greater, so a NaN first argument is the result and a NaN later one is not.
template <typename T> RG_PY_HD T rg_py_max(T a, T b) { return b > a ? b : a; }
template <typename T> RG_PY_HD T rg_py_min(T a, T b) { return b < a ? b : a; }

// A narrower integer field receiving a Python int: Python's message check raises ValueError.
template <typename T> RG_PY_HD T rg_py_narrow(int64_t v, int64_t lo, int64_t hi, const char* file, int line) {
    if (v < lo || v > hi) rg_py_raise("ValueError: int outside the field's numpy type", file, line);
    return (T)v;
}

// A uint64 field read as a Python int: values over INT64_MAX do not fit the 64-bit ints.
RG_PY_HD int64_t rg_py_from_u64(uint64_t v, const char* file, int line) {
    if (v > (uint64_t)INT64_MAX) rg_py_raise("OverflowError: uint64 field over int64 max", file, line);
    return (int64_t)v;
}

// A Python index into a sequence of `count` items: negative counts from the end.
RG_PY_HD uint32_t rg_py_index(int64_t i, uint32_t count, const char* file, int line) {
    if (i < 0) i += count;
    if (i < 0 || i >= (int64_t)count) rg_py_raise("IndexError: index out of range", file, line);
    return (uint32_t)i;
}

// len() of a str: characters, i.e. the UTF-8 bytes that do not continue a character.
RG_PY_HD int64_t rg_py_strlen(const char* data, uint32_t len) {
    int64_t n = 0;
    for (uint32_t i = 0; i < len; ++i) n += ((uint8_t)data[i] & 0xC0) != 0x80;
    return n;
}

RG_PY_HD bool rg_py_streq(const char* a, uint32_t na, const char* b, uint32_t nb) {
    if (na != nb) return false;
    for (uint32_t i = 0; i < na; ++i)
        if (a[i] != b[i]) return false;
    return true;
}

RG_PY_HD void rg_py_strcpy(char* dst, uint32_t* len, const char* src, uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) dst[i] = src[i];
    *len = n;
}

// Reads an Optional field's value: Python would raise TypeError on None in arithmetic.
RG_PY_HD void rg_py_present(uint8_t present, const char* file, int line) {
    if (!present) rg_py_raise("TypeError: the Optional field is None", file, line);
}

RG_PY_HD void rg_py_nonempty(int64_t n, const char* file, int line) {
    if (n <= 0) rg_py_raise("ValueError: min()/max() of an empty sequence", file, line);
}

RG_PY_HD void rg_py_step(int64_t step, const char* file, int line) {
    if (step == 0) rg_py_raise("ValueError: range() arg 3 must not be zero", file, line);
}

// ---- str as Python sees it: characters (code points) over the field's UTF-8 bytes ----

// The code point of the UTF-8 character at data[*at], and *at moved past it (a str field
// holds valid UTF-8: every str that reaches a kernel was encoded by the host).
RG_PY_HD uint32_t rg_py_decode(const char* data, uint32_t len, uint32_t* at) {
    uint8_t b = (uint8_t)data[*at];
    uint32_t n = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    uint32_t cp = n == 1 ? b : (b & (0x7Fu >> n));
    for (uint32_t k = 1; k < n && *at + k < len; ++k) cp = (cp << 6) | ((uint8_t)data[*at + k] & 0x3Fu);
    *at += n;
    return cp;
}

// s[i]: the i-th character (negative counts from the end) as a code point; a scan from the
// start, as characters are not a fixed number of bytes.
RG_PY_HD uint32_t rg_py_str_at(const char* data, uint32_t len, int64_t i, const char* file, int line) {
    int64_t n = rg_py_strlen(data, len);
    if (i < 0) i += n;
    if (i < 0 || i >= n) rg_py_raise("IndexError: string index out of range", file, line);
    uint32_t at = 0;
    for (int64_t k = 0; k < i; ++k) rg_py_decode(data, len, &at);
    return rg_py_decode(data, len, &at);
}

// Python's str order is by code point, which is the order of the UTF-8 bytes (unsigned).
RG_PY_HD int rg_py_strcmp(const char* a, uint32_t na, const char* b, uint32_t nb) {
    uint32_t n = na < nb ? na : nb;
    for (uint32_t i = 0; i < n; ++i) {
        uint8_t x = (uint8_t)a[i], y = (uint8_t)b[i];
        if (x != y) return x < y ? -1 : 1;
    }
    return na < nb ? -1 : (na > nb ? 1 : 0);
}

// `needle in hay` of two strs: a substring of the bytes (UTF-8 keeps characters whole).
RG_PY_HD bool rg_py_contains(const char* hay, uint32_t nh, const char* needle, uint32_t nn) {
    for (uint32_t i = 0; i + nn <= nh; ++i) {
        uint32_t k = 0;
        while (k < nn && hay[i + k] == needle[k]) ++k;
        if (k == nn) return true;
    }
    return false;
}

// `c in s` of one character.
RG_PY_HD bool rg_py_char_in(const char* hay, uint32_t nh, uint32_t cp) {
    for (uint32_t at = 0; at < nh;)
        if (rg_py_decode(hay, nh, &at) == cp) return true;
    return false;
}

// A str or list stored into a response field: Python's constructor checks MaxLen (bytes of a
// str's UTF-8, items of a list) and raises ValueError.
RG_PY_HD void rg_py_fits(uint32_t n, uint32_t bound, const char* file, int line) {
    if (n > bound) rg_py_raise("ValueError: longer than the field's MaxLen", file, line);
}

RG_PY_HD bool rg_py_uuid_eq(const rg_uuid& a, const rg_uuid& b) {
    for (int i = 0; i < 16; ++i)
        if (a.bytes[i] != b.bytes[i]) return false;
    return true;
}

// ---- ctx.buffer(ref, dtype): a registered UnifiedBuffer as a 1-D sequence (ringgen.reference) ----

RG_PY_HD rg_buffer_view rg_py_buffer(const rg_ctx& ctx, uint64_t ref, uint32_t dtype, uint32_t itemsize,
                                     const char* file, int line) {
    rg_buffer_view v = ctx.buffer(ref);
    if (!v.data) rg_py_raise("ValidationError: no UnifiedBuffer has this id", file, line);
    if (v.dtype != dtype || v.itemsize != itemsize)
        rg_py_raise("TypeError: the buffer holds another dtype than ctx.buffer(ref, dtype) names", file, line);
    return v;
}

// view[i]: negative counts from the end, as Python's.
template <typename T>
RG_PY_HD T& rg_py_buf_at(const rg_buffer_view& v, int64_t i, const char* file, int line) {
    int64_t n = (int64_t)v.count();
    if (i < 0) i += n;
    if (i < 0 || i >= n) rg_py_raise("IndexError: index out of range", file, line);
    return v.as<T>()[i];
}

// Ordering a naive and an aware datetime raises TypeError in Python.
RG_PY_HD void rg_py_same_tz(uint8_t a_naive, uint8_t b_naive, const char* file, int line) {
    if (a_naive != b_naive) rg_py_raise("TypeError: can't compare offset-naive and offset-aware datetimes", file, line);
}
