// rg_platform.h - the one macro layer that lets ringgen's C compile with nvcc and with g++.
//
// Everything ringgen generates is written against these macros: with nvcc they expand to the
// CUDA qualifiers, with a host compiler to nothing (the CPU backend adds its own shim for the
// kernel built-ins on top of this file).
//
// Include guards, not #pragma once: a package's copy of this header and ringgen's own are
// one header to the compiler.
#ifndef RG_PLATFORM_H
#define RG_PLATFORM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define RG_HD __host__ __device__
#else
#define RG_HD
#endif

// Header-only functions: one copy per translation unit, no link-time clashes.
#define RG_FN static inline RG_HD

// Header-only functions kept out of line on the device. NVVM inlines every RG_FN into each call
// site and, where the argument is a compile-time constant (a zero-initialised message, a literal),
// unrolls and evaluates the callee there: the datetime text formatter and parser, inlined into
// one codec, took cicc from 150 MB to past 16 GB. One call per field costs nothing beside that.
#if defined(__CUDACC__)
#define RG_FN_OUTLINE __noinline__ RG_FN
#else
#define RG_FN_OUTLINE RG_FN
#endif

// Copies a ring slot or a message: memcpy on the host; on the device 8-byte words where
// both sides allow it (slots and structs of 8-byte alignment), else bytes.
RG_FN void rg_copy_bytes(void* dst, const void* src, size_t n) {
#if defined(__CUDA_ARCH__)
    if ((((uintptr_t)dst | (uintptr_t)src | n) & 7) == 0) {
        uint64_t* d = (uint64_t*)dst;
        const uint64_t* s = (const uint64_t*)src;
        for (size_t i = 0; i < n / 8; ++i) d[i] = s[i];
        return;
    }
    uint8_t* d = (uint8_t*)dst;
    const uint8_t* s = (const uint8_t*)src;
    for (size_t i = 0; i < n; ++i) d[i] = s[i];
#else
    memcpy(dst, src, n);
#endif
}

// A 16-byte UUID, big-endian as Python's UUID.bytes.
typedef struct rg_uuid {
    uint8_t bytes[16];
} rg_uuid;

// A datetime: ns since the epoch, UTC, and whether Python's value was naive (no tzinfo). A naive
// value is wall time taken as UTC; it comes back naive, an aware one as aware UTC, so a value
// that travels through a kernel compares equal to what was sent (`a.when = b.when` copies both).
typedef struct rg_datetime {
    int64_t ns;
    uint8_t naive;
    uint8_t _pad0[7];
} rg_datetime;

// Bytes [offset, offset + size) of a message struct (messages.h: rg_fixed_runs, rg_used_runs).
typedef struct rg_run {
    uint32_t offset, size;
} rg_run;

// Bits of every message's `flags` header member.
#define RG_FLAG_HAS_CORRELATION 0x01u
// A request that a supervised kernel (launch(..., redeliver=True)) had taken when it failed,
// delivered once more to its next incarnation: the handler may have seen it before.
#define RG_FLAG_REDELIVERED 0x02u
// A request the host forwarded from a route (between GPUs that cannot reach each other): it
// continues a conversation, as one popped from a route does (rg_ring_loop keeps its correlation).
#define RG_FLAG_CONVERSATION 0x04u

#endif  // RG_PLATFORM_H
