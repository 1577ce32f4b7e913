// rg_msgpack.h - a small msgpack writer and reader that runs in device code.
//
// It writes exactly what msgpack-python writes (the smallest encoding of every int, str 8 for
// strings, bin for bytes, float 64 for double and float 32 for float) so that the generated
// rg_pack_<Msg> functions produce the bytes of Python's msg.serialize(). The reader accepts
// every encoding of a value and never reads past `len`: errors are sticky in `err`.
#ifndef RG_MSGPACK_H
#define RG_MSGPACK_H

#include "rg_platform.h"

#define RG_MP_OK 0
#define RG_MP_ERR_OVERFLOW -1   // output buffer too small
#define RG_MP_ERR_TRUNCATED -2  // input ends inside a value
#define RG_MP_ERR_TYPE -3       // a value of another msgpack type than the field's
#define RG_MP_ERR_BOUND -4      // longer than the field's MaxLen (or a count past capacity)
#define RG_MP_ERR_RANGE -5      // an int outside the field's C type, or an enum non-member
#define RG_MP_ERR_MISSING -6    // a required field is absent
#define RG_MP_ERR_TRAILING -7   // bytes left after the message
#define RG_MP_ERR_DATETIME -8   // a datetime string that is not ISO-8601, or out of range

typedef struct rg_mp_writer {
    uint8_t* buf;
    size_t cap;
    size_t len;
    int err;
} rg_mp_writer;

typedef struct rg_mp_reader {
    const uint8_t* buf;
    size_t len;
    size_t pos;
    int err;
} rg_mp_reader;

RG_FN void rg_mp_copy(void* dst, const void* src, size_t n) {
    uint8_t* d = (uint8_t*)dst;
    const uint8_t* s = (const uint8_t*)src;
    for (size_t i = 0; i < n; ++i) d[i] = s[i];
}

// ---- writer -------------------------------------------------------------------------------

RG_FN void rg_mp_put(rg_mp_writer* w, const void* data, size_t n) {
    if (w->err) return;
    if (n > w->cap - w->len) {
        w->err = RG_MP_ERR_OVERFLOW;
        return;
    }
    rg_mp_copy(w->buf + w->len, data, n);
    w->len += n;
}

// A type byte followed by `n` big-endian bytes of `v`.
RG_FN void rg_mp_put_be(rg_mp_writer* w, uint8_t type, uint64_t v, int n) {
    uint8_t b[9];
    b[0] = type;
    for (int i = 0; i < n; ++i) b[1 + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    rg_mp_put(w, b, (size_t)n + 1);
}

RG_FN void rg_mp_write_nil(rg_mp_writer* w) { rg_mp_put_be(w, 0xc0, 0, 0); }

RG_FN void rg_mp_write_bool(rg_mp_writer* w, int v) { rg_mp_put_be(w, v ? 0xc3 : 0xc2, 0, 0); }

RG_FN void rg_mp_write_uint(rg_mp_writer* w, uint64_t v) {
    if (v < 0x80) rg_mp_put_be(w, (uint8_t)v, 0, 0);
    else if (v <= 0xff) rg_mp_put_be(w, 0xcc, v, 1);
    else if (v <= 0xffff) rg_mp_put_be(w, 0xcd, v, 2);
    else if (v <= 0xffffffffu) rg_mp_put_be(w, 0xce, v, 4);
    else rg_mp_put_be(w, 0xcf, v, 8);
}

RG_FN void rg_mp_write_int(rg_mp_writer* w, int64_t v) {
    if (v >= 0) rg_mp_write_uint(w, (uint64_t)v);
    else if (v >= -32) rg_mp_put_be(w, (uint8_t)(int8_t)v, 0, 0);
    else if (v >= -128) rg_mp_put_be(w, 0xd0, (uint64_t)v, 1);
    else if (v >= -32768) rg_mp_put_be(w, 0xd1, (uint64_t)v, 2);
    else if (v >= -2147483647 - 1) rg_mp_put_be(w, 0xd2, (uint64_t)v, 4);
    else rg_mp_put_be(w, 0xd3, (uint64_t)v, 8);
}

RG_FN void rg_mp_write_f64(rg_mp_writer* w, double v) {
    uint64_t bits;
    rg_mp_copy(&bits, &v, 8);
    rg_mp_put_be(w, 0xcb, bits, 8);
}

RG_FN void rg_mp_write_f32(rg_mp_writer* w, float v) {
    uint32_t bits;
    rg_mp_copy(&bits, &v, 4);
    rg_mp_put_be(w, 0xca, bits, 4);
}

// Header of a str/bin/array/map of `n` items: `fix` is the fixed form's base (0 if none),
// `fix_max` its limit, `t8`..`t32` the type bytes of the 8/16/32-bit forms (0 if none).
RG_FN void rg_mp_write_header(rg_mp_writer* w, uint32_t n, uint8_t fix, uint32_t fix_max,
                              uint8_t t8, uint8_t t16, uint8_t t32) {
    if (fix_max && n < fix_max) rg_mp_put_be(w, (uint8_t)(fix | n), 0, 0);
    else if (t8 && n <= 0xff) rg_mp_put_be(w, t8, n, 1);
    else if (n <= 0xffff) rg_mp_put_be(w, t16, n, 2);
    else rg_mp_put_be(w, t32, n, 4);
}

RG_FN void rg_mp_write_str(rg_mp_writer* w, const char* s, uint32_t n) {
    rg_mp_write_header(w, n, 0xa0, 32, 0xd9, 0xda, 0xdb);
    rg_mp_put(w, s, n);
}

RG_FN void rg_mp_write_bin(rg_mp_writer* w, const uint8_t* s, uint32_t n) {
    rg_mp_write_header(w, n, 0, 0, 0xc4, 0xc5, 0xc6);
    rg_mp_put(w, s, n);
}

RG_FN void rg_mp_write_array(rg_mp_writer* w, uint32_t n) {
    rg_mp_write_header(w, n, 0x90, 16, 0, 0xdc, 0xdd);
}

RG_FN void rg_mp_write_map(rg_mp_writer* w, uint32_t n) {
    rg_mp_write_header(w, n, 0x80, 16, 0, 0xde, 0xdf);
}

RG_FN void rg_mp_write_uuid(rg_mp_writer* w, const rg_uuid* u) { rg_mp_write_bin(w, u->bytes, 16); }

// A bounded length field that the struct's capacity does not hold is an error, not a read past
// the array.
RG_FN int rg_mp_check_len(rg_mp_writer* w, uint32_t n, uint32_t cap) {
    if (n > cap) {
        if (!w->err) w->err = RG_MP_ERR_BOUND;
        return 0;
    }
    return 1;
}

// ---- datetime: rg_datetime <-> Python's datetime.isoformat() text -----------------------------

// Days since 1970-01-01 -> civil date (proleptic Gregorian; H. Hinnant's algorithm).
RG_FN void rg_civil_from_days(int64_t z, int64_t* y, unsigned* m, unsigned* d) {
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

RG_FN int64_t rg_days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

RG_FN char* rg_put_digits(char* p, int64_t v, int n) {
    for (int i = n - 1; i >= 0; --i, v /= 10) p[i] = (char)('0' + v % 10);
    return p + n;
}

// "YYYY-MM-DDTHH:MM:SS[.ffffff]" and "+00:00" unless naive: microseconds as Python keeps them.
RG_FN_OUTLINE void rg_mp_write_datetime(rg_mp_writer* w, const rg_datetime* dt) {
    const int64_t ns = dt->ns;
    int64_t us = ns / 1000 - (ns % 1000 < 0);  // floor to microseconds
    int64_t secs = us / 1000000 - (us % 1000000 < 0);
    int64_t frac = us - secs * 1000000;
    int64_t days = secs / 86400 - (secs % 86400 < 0);
    int64_t tod = secs - days * 86400;
    int64_t y;
    unsigned mo, d;
    rg_civil_from_days(days, &y, &mo, &d);
    if (y < 1 || y > 9999) {
        if (!w->err) w->err = RG_MP_ERR_DATETIME;
        return;
    }
    char text[32];
    char* p = rg_put_digits(text, y, 4);
    *p++ = '-';
    p = rg_put_digits(p, mo, 2);
    *p++ = '-';
    p = rg_put_digits(p, d, 2);
    *p++ = 'T';
    p = rg_put_digits(p, tod / 3600, 2);
    *p++ = ':';
    p = rg_put_digits(p, tod / 60 % 60, 2);
    *p++ = ':';
    p = rg_put_digits(p, tod % 60, 2);
    if (frac) {
        *p++ = '.';
        p = rg_put_digits(p, frac, 6);
    }
    if (!dt->naive) {
        rg_mp_copy(p, "+00:00", 6);
        p += 6;
    }
    rg_mp_write_str(w, text, (uint32_t)(p - text));
}

// ---- reader -------------------------------------------------------------------------------

RG_FN void rg_mp_fail(rg_mp_reader* r, int err) {
    if (!r->err) r->err = err;
}

RG_FN int rg_mp_take(rg_mp_reader* r, size_t n, const uint8_t** out) {
    if (r->err) return 0;
    if (n > r->len - r->pos) {
        rg_mp_fail(r, RG_MP_ERR_TRUNCATED);
        return 0;
    }
    *out = r->buf + r->pos;
    r->pos += n;
    return 1;
}

RG_FN int rg_mp_be(rg_mp_reader* r, int n, uint64_t* v) {
    const uint8_t* p;
    if (!rg_mp_take(r, (size_t)n, &p)) return 0;
    uint64_t x = 0;
    for (int i = 0; i < n; ++i) x = (x << 8) | p[i];
    *v = x;
    return 1;
}

// The next type byte, without consuming it; -1 at the end or after an error.
RG_FN int rg_mp_peek(const rg_mp_reader* r) {
    return (r->err || r->pos >= r->len) ? -1 : r->buf[r->pos];
}

RG_FN int rg_mp_next_type(rg_mp_reader* r) {
    const uint8_t* p;
    return rg_mp_take(r, 1, &p) ? *p : -1;
}

// Any int encoding; *neg tells whether `*v` holds a negative int64.
RG_FN int rg_mp_read_integer(rg_mp_reader* r, uint64_t* v, int* neg) {
    int t = rg_mp_next_type(r);
    uint64_t x = 0;
    *neg = 0;
    if (t < 0) return 0;
    if (t <= 0x7f) x = (uint64_t)t;
    else if (t >= 0xe0) {
        x = (uint64_t)(int64_t)(int8_t)t;
        *neg = 1;
    } else if (t >= 0xcc && t <= 0xcf) {
        if (!rg_mp_be(r, 1 << (t - 0xcc), &x)) return 0;
    } else if (t >= 0xd0 && t <= 0xd3) {
        int n = 1 << (t - 0xd0);
        if (!rg_mp_be(r, n, &x)) return 0;
        if (n < 8 && (x >> (8 * n - 1))) x |= ~(uint64_t)0 << (8 * n);  // sign-extend
        *neg = (int64_t)x < 0;
    } else {
        rg_mp_fail(r, RG_MP_ERR_TYPE);
        return 0;
    }
    *v = x;
    return 1;
}

RG_FN int rg_mp_read_int(rg_mp_reader* r, int64_t* out, int64_t lo, int64_t hi) {
    uint64_t x;
    int neg;
    if (!rg_mp_read_integer(r, &x, &neg)) return 0;
    if ((!neg && x > (uint64_t)INT64_MAX) || (int64_t)x < lo || (int64_t)x > hi) {
        rg_mp_fail(r, RG_MP_ERR_RANGE);
        return 0;
    }
    *out = (int64_t)x;
    return 1;
}

RG_FN int rg_mp_read_uint(rg_mp_reader* r, uint64_t* out, uint64_t hi) {
    uint64_t x;
    int neg;
    if (!rg_mp_read_integer(r, &x, &neg)) return 0;
    if (neg || x > hi) {
        rg_mp_fail(r, RG_MP_ERR_RANGE);
        return 0;
    }
    *out = x;
    return 1;
}

// A float field takes float 32, float 64 or an int, as Python's decoder does.
RG_FN int rg_mp_read_f64(rg_mp_reader* r, double* out) {
    int t = rg_mp_peek(r);
    uint64_t bits;
    if (t == 0xcb || t == 0xca) {
        r->pos++;
        if (!rg_mp_be(r, t == 0xcb ? 8 : 4, &bits)) return 0;
        if (t == 0xcb) {
            rg_mp_copy(out, &bits, 8);
        } else {
            uint32_t b32 = (uint32_t)bits;
            float f;
            rg_mp_copy(&f, &b32, 4);
            *out = f;
        }
        return 1;
    }
    if (t == 0xc2 || t == 0xc3) {  // a bool is not a number here, as in Python's checks
        rg_mp_fail(r, RG_MP_ERR_TYPE);
        return 0;
    }
    uint64_t x;
    int neg;
    if (!rg_mp_read_integer(r, &x, &neg)) return 0;
    *out = neg ? (double)(int64_t)x : (double)x;
    return 1;
}

RG_FN int rg_mp_read_f32(rg_mp_reader* r, float* out) {
    double d;
    if (!rg_mp_read_f64(r, &d)) return 0;
    *out = (float)d;
    return 1;
}

RG_FN int rg_mp_read_bool(rg_mp_reader* r, uint8_t* out) {
    int t = rg_mp_next_type(r);
    if (t != 0xc2 && t != 0xc3) {
        if (t >= 0) rg_mp_fail(r, RG_MP_ERR_TYPE);
        return 0;
    }
    *out = (uint8_t)(t == 0xc3);
    return 1;
}

// Consumes a nil and returns 1, or returns 0 and consumes nothing.
RG_FN int rg_mp_read_nil(rg_mp_reader* r) {
    if (rg_mp_peek(r) != 0xc0) return 0;
    r->pos++;
    return 1;
}

// Reads the length of a str (want_str) or bin; 0 on a type mismatch.
RG_FN int rg_mp_read_len(rg_mp_reader* r, int want_str, uint32_t* n) {
    int t = rg_mp_next_type(r);
    uint64_t x;
    if (t < 0) return 0;
    if (want_str && t >= 0xa0 && t <= 0xbf) {
        *n = (uint32_t)(t & 0x1f);
        return 1;
    }
    int base = want_str ? 0xd9 : 0xc4;
    if (t < base || t > base + 2) {
        rg_mp_fail(r, RG_MP_ERR_TYPE);
        return 0;
    }
    if (!rg_mp_be(r, 1 << (t - base), &x)) return 0;
    *n = (uint32_t)x;
    return 1;
}

// A str or bin into a bounded field: data[cap] and its length; the rest of data is zeroed.
RG_FN int rg_mp_read_bytes(rg_mp_reader* r, int want_str, void* data, uint32_t* len, uint32_t cap) {
    uint32_t n;
    const uint8_t* p;
    if (!rg_mp_read_len(r, want_str, &n)) return 0;
    if (n > cap) {
        rg_mp_fail(r, RG_MP_ERR_BOUND);
        return 0;
    }
    if (!rg_mp_take(r, n, &p)) return 0;
    rg_mp_copy(data, p, n);
    for (uint32_t i = n; i < cap; ++i) ((uint8_t*)data)[i] = 0;  // a canonical struct: no stale bytes
    *len = n;
    return 1;
}

RG_FN int rg_mp_read_uuid(rg_mp_reader* r, rg_uuid* out) {
    uint32_t n = 0;
    if (!rg_mp_read_bytes(r, 0, out->bytes, &n, 16)) return 0;
    if (n != 16) {
        rg_mp_fail(r, RG_MP_ERR_TYPE);
        return 0;
    }
    return 1;
}

RG_FN int rg_mp_read_container(rg_mp_reader* r, int map, uint32_t* n) {
    int t = rg_mp_next_type(r);
    uint64_t x;
    if (t < 0) return 0;
    int fix = map ? 0x80 : 0x90;
    if (t >= fix && t <= fix + 0xf) {
        *n = (uint32_t)(t & 0xf);
        return 1;
    }
    int t16 = map ? 0xde : 0xdc;
    if (t != t16 && t != t16 + 1) {
        rg_mp_fail(r, RG_MP_ERR_TYPE);
        return 0;
    }
    if (!rg_mp_be(r, t == t16 ? 2 : 4, &x)) return 0;
    *n = (uint32_t)x;
    return 1;
}

RG_FN int rg_mp_read_array(rg_mp_reader* r, uint32_t* n) { return rg_mp_read_container(r, 0, n); }
RG_FN int rg_mp_read_map(rg_mp_reader* r, uint32_t* n) { return rg_mp_read_container(r, 1, n); }

// Skips one value of any type without recursion: `pending` counts the values still to skip,
// and since every value takes at least one byte, more pending values than bytes left is an error.
RG_FN void rg_mp_skip(rg_mp_reader* r) {
    uint64_t pending = 1;
    while (pending && !r->err) {
        if (pending > r->len - r->pos) {
            rg_mp_fail(r, RG_MP_ERR_TRUNCATED);
            return;
        }
        pending--;
        int t = rg_mp_next_type(r);
        uint64_t n = 0;
        const uint8_t* p;
        if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) continue;
        if (t >= 0x80 && t <= 0x8f) { pending += 2 * (uint64_t)(t & 0xf); continue; }
        if (t >= 0x90 && t <= 0x9f) { pending += (uint64_t)(t & 0xf); continue; }
        if (t >= 0xa0 && t <= 0xbf) { rg_mp_take(r, (size_t)(t & 0x1f), &p); continue; }
        switch (t) {
            case 0xc4: case 0xd9: rg_mp_be(r, 1, &n); rg_mp_take(r, n, &p); break;
            case 0xc5: case 0xda: rg_mp_be(r, 2, &n); rg_mp_take(r, n, &p); break;
            case 0xc6: case 0xdb: rg_mp_be(r, 4, &n); rg_mp_take(r, n, &p); break;
            case 0xc7: rg_mp_be(r, 1, &n); rg_mp_take(r, n + 1, &p); break;  // ext 8
            case 0xc8: rg_mp_be(r, 2, &n); rg_mp_take(r, n + 1, &p); break;
            case 0xc9: rg_mp_be(r, 4, &n); rg_mp_take(r, n + 1, &p); break;
            case 0xca: rg_mp_take(r, 4, &p); break;
            case 0xcb: rg_mp_take(r, 8, &p); break;
            case 0xcc: case 0xd0: rg_mp_take(r, 1, &p); break;
            case 0xcd: case 0xd1: rg_mp_take(r, 2, &p); break;
            case 0xce: case 0xd2: rg_mp_take(r, 4, &p); break;
            case 0xcf: case 0xd3: rg_mp_take(r, 8, &p); break;
            case 0xd4: rg_mp_take(r, 2, &p); break;  // fixext 1..16: type + data
            case 0xd5: rg_mp_take(r, 3, &p); break;
            case 0xd6: rg_mp_take(r, 5, &p); break;
            case 0xd7: rg_mp_take(r, 9, &p); break;
            case 0xd8: rg_mp_take(r, 17, &p); break;
            case 0xdc: if (rg_mp_be(r, 2, &n)) pending += n; break;
            case 0xdd: if (rg_mp_be(r, 4, &n)) pending += n; break;
            case 0xde: if (rg_mp_be(r, 2, &n)) pending += 2 * n; break;
            case 0xdf: if (rg_mp_be(r, 4, &n)) pending += 2 * n; break;
            default: rg_mp_fail(r, RG_MP_ERR_TYPE); break;  // 0xc1: never used
        }
    }
}

// A map key: a str (returned as pointer + length into the input) or, when it is not a str, the
// key is skipped and *n set to UINT32_MAX so that it matches no field (Python ignores it too).
RG_FN int rg_mp_read_key(rg_mp_reader* r, const uint8_t** key, uint32_t* n) {
    int t = rg_mp_peek(r);
    if (!((t >= 0xa0 && t <= 0xbf) || (t >= 0xd9 && t <= 0xdb))) {
        rg_mp_skip(r);
        *n = UINT32_MAX;
        return !r->err;
    }
    return rg_mp_read_len(r, 1, n) && rg_mp_take(r, *n, key);
}

RG_FN int rg_mp_key_is(const uint8_t* key, uint32_t n, const char* name, uint32_t name_len) {
    if (n != name_len) return 0;
    for (uint32_t i = 0; i < n; ++i)
        if (key[i] != (uint8_t)name[i]) return 0;
    return 1;
}

RG_FN int rg_parse_digits(const uint8_t* s, int n, int64_t* v) {
    int64_t x = 0;
    for (int i = 0; i < n; ++i) {
        if (s[i] < '0' || s[i] > '9') return 0;
        x = x * 10 + (s[i] - '0');
    }
    *v = x;
    return 1;
}

// Parses what datetime.isoformat() writes: YYYY-MM-DD[T| ]HH:MM[:SS[.f{1,9}]][Z|+HH:MM|-HH:MM].
// A datetime without an offset is naive, its wall time taken as UTC.
RG_FN_OUTLINE int rg_mp_read_datetime(rg_mp_reader* r, rg_datetime* out) {
    uint32_t n;
    const uint8_t* s;
    if (!rg_mp_read_len(r, 1, &n) || !rg_mp_take(r, n, &s)) return 0;
    int64_t y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, frac = 0, off = 0;
    uint8_t naive = 1;
    uint32_t i = 16;
    int ok = n >= 16 && rg_parse_digits(s, 4, &y) && s[4] == '-' && rg_parse_digits(s + 5, 2, &mo) &&
             s[7] == '-' && rg_parse_digits(s + 8, 2, &d) && (s[10] == 'T' || s[10] == ' ') &&
             rg_parse_digits(s + 11, 2, &h) && s[13] == ':' && rg_parse_digits(s + 14, 2, &mi);
    if (ok && i < n && s[i] == ':') {
        ok = i + 3 <= n && rg_parse_digits(s + i + 1, 2, &sec);
        i += 3;
        if (ok && i < n && s[i] == '.') {
            int digits = 0;
            for (++i; i < n && s[i] >= '0' && s[i] <= '9'; ++i, ++digits)
                if (digits < 9) frac = frac * 10 + (s[i] - '0');
            ok = digits >= 1 && digits <= 9;
            for (; digits < 9; ++digits) frac *= 10;
        }
    }
    if (ok && i < n) {
        naive = 0;
        if (s[i] == 'Z' && i + 1 == n) {
            ++i;
        } else if ((s[i] == '+' || s[i] == '-') && i + 6 <= n && s[i + 3] == ':') {
            int64_t oh = 0, om = 0;
            ok = rg_parse_digits(s + i + 1, 2, &oh) && rg_parse_digits(s + i + 4, 2, &om) &&
                 oh < 24 && om < 60;
            off = (s[i] == '-' ? -1 : 1) * (oh * 3600 + om * 60);
            i += 6;
        } else {
            ok = 0;
        }
    }
    ok = ok && i == n && y >= 1 && mo >= 1 && mo <= 12 && d >= 1 && h < 24 && mi < 60 && sec < 60;
    int64_t days = ok ? rg_days_from_civil(y, (unsigned)mo, (unsigned)d) : 0;
    // The day must exist (rg_days_from_civil accepts Feb 31), and the result fit int64 ns.
    ok = ok && rg_days_from_civil(y, (unsigned)mo, 1) + d - 1 < rg_days_from_civil(
                   y + (mo == 12), (unsigned)(mo % 12 + 1), 1) &&
         days > -106751 && days < 106750;
    if (!ok) {
        rg_mp_fail(r, RG_MP_ERR_DATETIME);
        return 0;
    }
    out->ns = ((days * 86400 + h * 3600 + mi * 60 + sec - off) * 1000000000) + frac;
    out->naive = naive;
    return 1;
}

#endif  // RG_MSGPACK_H
