// rg_platform.h - the one macro layer that lets ringgen's C compile with nvcc and with g++.
//
// Everything ringgen generates is written against these macros: with nvcc they expand to the
// CUDA qualifiers, with a host compiler to nothing (the CPU backend adds its own shim for the
// kernel built-ins on top of this file).
#pragma once

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

// A 16-byte UUID, big-endian as Python's UUID.bytes.
typedef struct rg_uuid {
    uint8_t bytes[16];
} rg_uuid;

// Bits of every message's `flags` header member.
#define RG_FLAG_HAS_CORRELATION 0x01u
