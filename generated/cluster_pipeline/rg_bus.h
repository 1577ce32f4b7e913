// rg_bus.h - what the kernel moves over the bus: the device side's accesses to the region (host
// memory mapped over PCIe on a GPU), and the meter that counts them on the CPU backend.
//
// On a GPU every load from the region is a round trip of about a microsecond, so the kernel
// moves messages in batches, with all the threads of the block, and only the bytes a message
// uses (messages.h: rg_fixed_runs / rg_used_runs); it keeps its own copies of the indices it
// alone writes, so that it reads only what the host writes.
//
// The meter models what a GPU would send: a contiguous run that a warp copies with coalesced
// loads (or stores) costs one transaction per 128-byte line it touches; a word one thread loads
// or stores costs one transaction of 8 bytes. The CPU backend counts both per block
// (rg_cpu_shim.h: bus_meter) and the kernel publishes the counts in its block status
// (bus_transactions, bus_bytes), which telemetry reads. On a GPU the meter is compiled out: its
// figures are the design's prediction of the GPU's bus traffic.
//
// RG_BUS_BASELINE (the CPU backend's "bus-baseline" build) restores the data path this replaced,
// to measure it in the same run: one message per round, the whole slot copied by thread 0 in
// 8-byte loads, each its own transaction.
#ifndef RG_BUS_H
#define RG_BUS_H

#include "rg_ring.h"

#define RG_BUS_LINE 128u  // bytes of one transaction at most (a line of the GPU's L2)

// Reads (round trips: what the kernel waits for) and writes (posted) are counted apart.
#define RG_BUS_READ 0u
#define RG_BUS_WRITE 2u

RG_FN void rg_bus_count(uint32_t way, uint64_t transactions, uint64_t bytes) {
#if defined(__CUDACC__)
    (void)way;
    (void)transactions;
    (void)bytes;
#else
    // Relaxed atomics: the first lanes of several warps count at once on a GPU, and the
    // race check (which sees the fibers as a GPU's threads) would call plain adds a race.
    __atomic_fetch_add(&rg_cpu::bus_meter[way], transactions, __ATOMIC_RELAXED);
    __atomic_fetch_add(&rg_cpu::bus_meter[way + 1], bytes, __ATOMIC_RELAXED);
#endif
}

// A point of the meter, and going back to it: the kernel does not count a poll of its rings
// that found no work, whose rate is its nap's, not its traffic's (per message figures would
// otherwise count how long the host took to send).
struct rg_bus_mark {
    uint64_t counts[4];
};
RG_FN rg_bus_mark rg_bus_now() {
    rg_bus_mark m = {};
#if !defined(__CUDACC__)
    for (int i = 0; i < 4; ++i) m.counts[i] = __atomic_load_n(&rg_cpu::bus_meter[i], __ATOMIC_RELAXED);
#endif
    return m;
}
RG_FN void rg_bus_forget_since(rg_bus_mark m) {
#if defined(__CUDACC__)
    (void)m;
#else
    for (int i = 0; i < 4; ++i) __atomic_store_n(&rg_cpu::bus_meter[i], m.counts[i], __ATOMIC_RELAXED);
#endif
}

// What one warp's copies of a batch move, counted into the meter once at the end: an atomic
// add per run would cost the CPU backend more than the copies.
struct rg_bus_tally {
    uint64_t transactions = 0, bytes = 0;
    // A warp's coalesced copy of the n bytes at `host` (the region's side of the copy).
    __device__ void run(const void* host, uint64_t n) {
        if (!n) return;
        uintptr_t a = (uintptr_t)host;
        transactions += (a + n - 1) / RG_BUS_LINE - a / RG_BUS_LINE + 1;
        bytes += n;
    }
    __device__ void count(uint32_t way) const {
        if (transactions) rg_bus_count(way, transactions, bytes);
    }
};

// The k runs (by offset) of a message in `slot`, a slot of the region, whose line alignment
// decides: two that share a line move as one, the bytes between them riding along (one
// transaction where there were two); empty ones are dropped. Returns how many are left.
RG_FN uint32_t rg_coalesce(rg_run* runs, uint32_t k, const uint8_t* slot) {
    uint32_t out = 0;
    for (uint32_t r = 0; r < k; ++r) {
        if (!runs[r].size) continue;
        if (out) {
            rg_run* last = &runs[out - 1];
            uintptr_t end = (uintptr_t)slot + last->offset + last->size - 1;
            if (end / RG_BUS_LINE == ((uintptr_t)slot + runs[r].offset) / RG_BUS_LINE) {
                last->size = runs[r].offset + runs[r].size - last->offset;
                continue;
            }
        }
        runs[out++] = runs[r];
    }
    return out;
}

// A region word that the kernel reads or writes (one thread, one 8-byte transaction).
RG_FN uint64_t rg_bus_load(uint64_t* p) {
    rg_bus_count(RG_BUS_READ, 1, 8);
    return rg_load_acquire(p);
}
// A block's poll words (rg_ring.h: rg_poll) in one 16-byte load: one transaction. Each word
// is read whole (a vector load is single-copy atomic per element), and the acquire fence
// after it orders what the kernel reads next after the host's writes that each word counts.
RG_FN rg_poll rg_bus_load_poll(rg_poll* p) {
    rg_bus_count(RG_BUS_READ, 1, sizeof(rg_poll));
    rg_poll v;
#if defined(__CUDA_ARCH__)
    asm volatile("ld.relaxed.sys.v2.u64 {%0, %1}, [%2];"
                 : "=l"(v.posted), "=l"(v.attention)
                 : "l"(p)
                 : "memory");
    cuda::atomic_thread_fence(cuda::std::memory_order_acquire, cuda::thread_scope_system);
#else
    v.posted = rg_load_acquire(&p->posted);
    v.attention = rg_load_acquire(&p->attention);
#endif
    return v;
}
RG_FN void rg_bus_store(uint64_t* p, uint64_t v) {
    rg_bus_count(RG_BUS_WRITE, 1, 8);
    rg_store_release(p, v);
}

// Copies n bytes with the `lanes` threads of a warp (this one is `lane`): 16-byte words where
// both sides share their alignment modulo 16, else 8-byte words where they share it modulo 8,
// else bytes; the unaligned head and tail bytewise.
RG_FN void rg_warp_copy(void* dst, const void* src, uint32_t n, uint32_t lane, uint32_t lanes) {
#if !defined(__CUDACC__)
    if (lanes == 1) {  // the CPU backend's one copier (rg_warp_of)
        memcpy(dst, src, n);
        return;
    }
#endif
    uint8_t* d = (uint8_t*)dst;
    const uint8_t* s = (const uint8_t*)src;
    uintptr_t mis = (uintptr_t)d ^ (uintptr_t)s;
    uint32_t w = (mis & 15) == 0 ? 16 : (mis & 7) == 0 ? 8 : 1;
    uint32_t head = (uint32_t)((w - ((uintptr_t)s & (w - 1))) & (w - 1));
    if (head > n) head = n;
    uint32_t body = (n - head) / w * w;
    for (uint32_t i = lane; i < head; i += lanes) d[i] = s[i];
    if (w == 16) {
        for (uint32_t i = lane; i < body / 16; i += lanes)
            ((uint4*)(d + head))[i] = ((const uint4*)(s + head))[i];
    } else if (w == 8) {
        for (uint32_t i = lane; i < body / 8; i += lanes)
            ((uint64_t*)(d + head))[i] = ((const uint64_t*)(s + head))[i];
    } else {
        for (uint32_t i = lane; i < body; i += lanes) d[head + i] = s[head + i];
    }
    for (uint32_t i = head + body + lane; i < n; i += lanes) d[i] = s[i];
}

// This thread's warp, its lane in it, and how many lanes the warp has (a last, partial warp).
// The CPU backend runs a block's threads one after another, where spreading a copy over them
// only adds turns: thread 0 alone copies there, as one warp of one lane (memcpy), the same
// runs the meter counts; the others have no messages to copy (warp past any batch).
struct rg_warp_of {
    uint32_t warp, warps, lane, lanes;
    __device__ rg_warp_of() {
#if defined(__CUDACC__)
        warp = threadIdx.x / 32;
        warps = (blockDim.x + 31) / 32;
        lane = threadIdx.x % 32;
        lanes = blockDim.x - warp * 32 < 32 ? blockDim.x - warp * 32 : 32;
#else
        warp = threadIdx.x == 0 ? 0u : 0xffffffffu;
        warps = 1;
        lane = 0;
        lanes = 1;
#endif
    }
    // A barrier of the warp's lanes (none for a warp of one).
    __device__ void sync() const {
        if (lanes > 1) __syncwarp(lanes == 32 ? 0xffffffffu : (1u << lanes) - 1);
    }
};

// Whether the block's copies are made by more than one thread, so that a barrier must end
// them before thread 0 publishes what they wrote (not on the CPU backend: rg_warp_of).
RG_FN bool rg_bus_many_copiers() {
#if defined(__CUDACC__) && !defined(RG_BUS_BASELINE)
    return blockDim.x > 1;
#else
    return false;
#endif
}

// Copies messages [0, n) from ring slots index.. into msgs, only their used bytes; warp w
// takes messages w, w + warps, ... and, once one is whole, its lane 0 calls ready(i) (thread 0
// in the baseline build). Where the block's copies are made by more than one thread
// (rg_bus_many_copiers), every thread of the block calls it and it ends with a block barrier;
// else thread 0 alone calls it, before the barrier that ends the round's plan (rg_kernel.h).
template <class M, class Ready>
__device__ void rg_bus_pop(const rg_slots& ring, uint64_t index, M* msgs, uint32_t n, Ready ready) {
    rg_warp_of me;
    rg_run runs[rg_max_runs((const M*)nullptr)];
#if defined(RG_BUS_BASELINE)
    (void)runs;
    if (threadIdx.x == 0) {
        for (uint32_t i = 0; i < n; ++i) {
            rg_copy_bytes(&msgs[i], rg_slot_at(ring, index + i), sizeof(M));
            rg_bus_count(RG_BUS_READ, sizeof(M) / 8, sizeof(M));
            ready(i);
        }
    }
#else
    rg_bus_tally tally;
    for (uint32_t phase = 0; phase < 2; ++phase) {
        for (uint32_t i = me.warp; i < n; i += me.warps) {
            const uint8_t* slot = rg_slot_at(ring, index + i);
            uint8_t* m = (uint8_t*)&msgs[i];
            uint32_t k = phase == 0 ? rg_fixed_runs(&msgs[i], runs) : rg_used_runs(&msgs[i], runs);
            k = rg_coalesce(runs, k, slot);
            for (uint32_t r = 0; r < k; ++r) {
                rg_warp_copy(m + runs[r].offset, slot + runs[r].offset, runs[r].size, me.lane,
                             me.lanes);
                if (me.lane == 0) tally.run(slot + runs[r].offset, runs[r].size);
            }
        }
        // Phase 0: the counts the warp's used runs need are in shared memory; phase 1: its
        // messages are whole. A warp reads only what it copied itself.
        me.sync();
    }
    if (me.lane == 0) {
        tally.count(RG_BUS_READ);
        for (uint32_t i = me.warp; i < n; i += me.warps) ready(i);
    }
#endif
    if (rg_bus_many_copiers()) __syncthreads();
}

// Every thread of the block: copies the used bytes of msgs[pick[j]], j < n, into the ring's
// slots index + j. Thread 0 may publish them on return (a block barrier ends the copies where
// other threads make some).
template <class M>
__device__ void rg_bus_push(const rg_slots& ring, uint64_t index, const M* msgs, const uint16_t* pick,
                            uint32_t n) {
    rg_warp_of me;
    rg_run runs[rg_max_runs((const M*)nullptr)];
#if defined(RG_BUS_BASELINE)
    (void)runs;
    if (threadIdx.x == 0) {
        for (uint32_t j = 0; j < n; ++j) {
            rg_copy_bytes(rg_slot_at(ring, index + j), &msgs[pick[j]], sizeof(M));
            rg_bus_count(RG_BUS_WRITE, sizeof(M) / 8, sizeof(M));
        }
    }
#else
    rg_bus_tally tally;
    for (uint32_t j = me.warp; j < n; j += me.warps) {
        uint8_t* slot = rg_slot_at(ring, index + j);
        const uint8_t* m = (const uint8_t*)&msgs[pick[j]];
        for (uint32_t phase = 0; phase < 2; ++phase) {
            uint32_t k = phase == 0 ? rg_fixed_runs(&msgs[pick[j]], runs)
                                    : rg_used_runs(&msgs[pick[j]], runs);
            k = rg_coalesce(runs, k, slot);
            for (uint32_t r = 0; r < k; ++r) {
                rg_warp_copy(slot + runs[r].offset, m + runs[r].offset, runs[r].size, me.lane,
                             me.lanes);
                if (me.lane == 0) tally.run(slot + runs[r].offset, runs[r].size);
            }
        }
    }
    if (me.lane == 0) tally.count(RG_BUS_WRITE);
#endif
    if (rg_bus_many_copiers()) __syncthreads();
}

#endif  // RG_BUS_H
