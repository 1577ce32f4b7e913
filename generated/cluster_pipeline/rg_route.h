// rg_route.h - routes between kernels: one kernel's output straight into another's input, with
// no host hop (runtime.connect). One header for the kernels, the host and the TSan test.
//
// A route from kernel S (grid gs) to kernel D (grid gd) is its own memory (a shared-memory file
// both runner processes map on the CPU backend; device memory on a GPU), laid out by
// rg_route_init: a header line, then one SPSC ring (rg_ring.h) per (S block, D block, lane).
// Block s of S is the only producer of rings (s, *, *), block d of D the only consumer of rings
// (*, d, *): single-producer single-consumer as the host rings are, so FIFO per (sender block,
// priority class) and nothing is ever overwritten (a full ring makes the sender wait, which is
// how backpressure travels upstream).
//
// Each kernel's region is followed (after the state slots, rg_state.h) by its rg_links: the
// routes its output goes to (`out`) and the routes it takes input from (`in`), written by the
// host only, then published by bumping `version`. Thread 0 of every block applies a new version
// between two messages and acknowledges it in its own line, so once every block acknowledged
// a disconnect, no block pushes into that route any more; what is already in it is still
// delivered. While a target is gone (failed or terminated) the host drains its routes itself
// and turns what it finds into dead letters: the senders keep running.
//
// A send that a terminate interrupts while it waits for room (rg_outs::push) is not lost: the
// sender puts it into the route's abandoned rings (a second rg_route after the first's rings,
// from the same sender blocks to one consumer, the host: rg_route_abandoned), which the host
// drains into dead letters of the sender (runtime/routes.py). A block abandons the copies of one
// message at most per terminate (rg_kernel.h: rg_outs::stopped), so those rings do not fill;
// were they full even so (a kernel wrote over them), a message is counted in `lost` instead,
// which the host reports as one dead letter per count.
#ifndef RG_ROUTE_H
#define RG_ROUTE_H

#include "rg_ring.h"
#include "rg_state.h"

#define RG_MAX_LINKS 8                          // routes out of, and into, one kernel
#define RG_ROUTE_MAGIC 0x31544f5247524730ull    // "0RGROUT1"

// How a target picks the block of a routed message: round robin, or the hash of its key field
// (the same hash as runtime/keys.py: splitmix64's finalizer of an integer, FNV-1a 64 of bytes).
#define RG_KEY_NONE 0u
#define RG_KEY_INT 1u   // a signed integer of key_size bytes at key_offset
#define RG_KEY_UINT 2u  // an unsigned one
#define RG_KEY_TEXT 3u  // a bounded str/bytes: uint32 length at key_offset, bytes at key_data

typedef struct rg_route {
    uint64_t magic;
    uint64_t total_size;
    uint32_t src_grid, dst_grid;
    uint32_t capacity, slot_size;
    uint64_t ring_stride;
    uint64_t lost;  // abandoned sends that found the abandoned rings full (atomic add; host reads)
    // Set by the host before any kernel sees the route: it drains the abandoned rings while
    // the senders terminate (the route is in host memory), so a full one is worth waiting for.
    uint32_t host_drains;
    uint32_t _reserved;
    uint8_t _pad[RG_LINE - 56];
    // CPU backend: rung by a sender after each push, so that a target block asleep on it (and
    // on its region's doorbell, see rg_route_sleep) takes the message at once. A GPU neither
    // rings nor sleeps on it: a device block naps briefly and polls.
    rg_bell bell;
    // followed by src_grid * dst_grid * RG_LANES rings of ring_stride bytes
} rg_route;

// Lays out a route's header and its src_grid * dst_grid * RG_LANES rings in `mem` (or only
// measures them when mem is null); returns their size.
RG_FN uint64_t rg_route_lay_out(void* mem, uint32_t src_grid, uint32_t dst_grid,
                                uint32_t capacity, uint32_t slot_size) {
    uint64_t stride = rg_ring_bytes(capacity, slot_size, 0);
    uint64_t total = sizeof(rg_route) + (uint64_t)src_grid * dst_grid * RG_LANES * stride;
    if (!mem) return total;
    memset(mem, 0, total);
    rg_route* r = (rg_route*)mem;
    r->magic = RG_ROUTE_MAGIC;
    r->total_size = total;
    r->src_grid = src_grid;
    r->dst_grid = dst_grid;
    r->capacity = capacity;
    r->slot_size = slot_size;
    r->ring_stride = stride;
    for (uint64_t i = 0; i < (uint64_t)src_grid * dst_grid * RG_LANES; ++i) {
        rg_ring* ring = (rg_ring*)((uint8_t*)mem + sizeof(rg_route) + i * stride);
        rg_ring_layout(ring, capacity, slot_size, 0);
    }
    return total;
}

// Lays out a route in `mem` (or only measures it when mem is null); returns its size: the
// route, then its abandoned rings (one target block: the host), as a route of their own.
RG_FN uint64_t rg_route_init(void* mem, uint32_t src_grid, uint32_t dst_grid, uint32_t capacity,
                             uint32_t slot_size) {
    uint64_t main = rg_route_lay_out(mem, src_grid, dst_grid, capacity, slot_size);
    uint8_t* abandoned = mem ? (uint8_t*)mem + main : nullptr;
    return main + rg_route_lay_out(abandoned, src_grid, 1, capacity, slot_size);
}

// The abandoned rings of a route: ring (s, 0, lane) of this route holds what sender block s
// gave up sending into the route at terminate.
RG_FN rg_route* rg_route_abandoned(rg_route* r) {
    return (rg_route*)((uint8_t*)r + sizeof(rg_route) +
                       (uint64_t)r->src_grid * r->dst_grid * RG_LANES * r->ring_stride);
}

RG_FN rg_ring* rg_route_ring(rg_route* r, uint32_t src, uint32_t dst, uint32_t lane) {
    uint64_t i = ((uint64_t)src * r->dst_grid + dst) * RG_LANES + lane;
    return (rg_ring*)((uint8_t*)r + sizeof(rg_route) + i * r->ring_stride);
}

// Where a route lives on a GPU, and so the scope of its acquire/release (rg_link::scope):
//  RG_ROUTE_DEVICE: both ends are blocks of one GPU and the rings are in its memory, so the
//    producer's release and the consumer's acquire need device scope only (ld.acquire.gpu /
//    st.release.gpu): nothing is fenced over the bus, unlike the host rings' system scope.
//  RG_ROUTE_SYSTEM: the other end is another GPU (peer memory: device scope covers one GPU
//    only) or the host (mapped pinned memory it drains: into a host actor, the dead letters,
//    or another GPU that cannot reach this one's memory), so system scope.
// The same single-producer single-consumer protocol as rg_ring.h either way; a push is one
// message, a pop takes what waits, up to a batch. On a host (the CPU backend, the host's drain)
// rg_ring_push/rg_ring_pop serve, whatever the scope.
#define RG_ROUTE_DEVICE 0u
#define RG_ROUTE_SYSTEM 1u

#if defined(__CUDA_ARCH__)
template <cuda::thread_scope S>
struct rg_route_ops {
    typedef cuda::atomic_ref<uint64_t, S> atomic;

    // Producer: a slot is reused once the target finished its request (head.done, as an
    // input lane's).
    static __device__ bool push(rg_ring* ring, const void* msg) {
        uint64_t tail = atomic(ring->tail.value).load(cuda::std::memory_order_relaxed);
        uint64_t done = atomic(ring->head.done).load(cuda::std::memory_order_acquire);
        if (tail - done >= ring->capacity) return false;
        rg_copy_bytes(rg_ring_slot(ring, tail), msg, ring->slot_size);
        atomic(ring->tail.value).store(tail + 1, cuda::std::memory_order_release);
        return true;
    }

    // Consumer: takes up to max messages at once (one acquire, one release for the batch).
    static __device__ uint32_t pop(rg_ring* ring, void* dst, uint32_t max) {
        uint64_t head = atomic(ring->head.value).load(cuda::std::memory_order_relaxed);
        uint64_t tail = atomic(ring->tail.value).load(cuda::std::memory_order_acquire);
        uint64_t n = tail - head < max ? tail - head : max;
        for (uint64_t i = 0; i < n; ++i)
            rg_copy_bytes((uint8_t*)dst + i * ring->slot_size, rg_ring_slot(ring, head + i),
                          ring->slot_size);
        if (n) atomic(ring->head.value).store(head + n, cuda::std::memory_order_release);
        return (uint32_t)n;
    }

    // Consumer: the requests before `done` are finished; their slots may be reused.
    static __device__ void finish(rg_ring* ring, uint64_t done) {
        atomic(ring->head.done).store(done, cuda::std::memory_order_release);
    }
};
typedef rg_route_ops<cuda::thread_scope_device> rg_route_device_ops;
typedef rg_route_ops<cuda::thread_scope_system> rg_route_system_ops;

RG_FN bool rg_route_push(rg_ring* ring, const void* msg, uint32_t scope) {
    return scope == RG_ROUTE_DEVICE ? rg_route_device_ops::push(ring, msg)
                                    : rg_route_system_ops::push(ring, msg);
}
RG_FN uint32_t rg_route_pop(rg_ring* ring, void* dst, uint32_t max, uint32_t scope) {
    return scope == RG_ROUTE_DEVICE ? rg_route_device_ops::pop(ring, dst, max)
                                    : rg_route_system_ops::pop(ring, dst, max);
}
RG_FN void rg_route_finish(rg_ring* ring, uint64_t done, uint32_t scope) {
    if (scope == RG_ROUTE_DEVICE) rg_route_device_ops::finish(ring, done);
    else rg_route_system_ops::finish(ring, done);
}
#else
RG_FN bool rg_route_push(rg_ring* ring, const void* msg, uint32_t) {
    return rg_ring_push_until(ring, &ring->head.done, msg, 1) == 1;
}
RG_FN uint32_t rg_route_pop(rg_ring* ring, void* dst, uint32_t max, uint32_t) {
    return (uint32_t)rg_ring_pop(ring, dst, max);
}
RG_FN void rg_route_finish(rg_ring* ring, uint64_t done, uint32_t) {
    rg_store_release(&ring->head.done, done);
}
#endif

// A sender block gives up a message at terminate: into its abandoned ring of the route, for the
// host to dead-letter. Where that ring is full, the sender waits for the host to drain it, if
// the host does so while senders terminate (host_drains), out of *wait_ns: what is left of the
// block's RG_ABANDON_WAIT_NS for all its abandons at this terminate (K responses into several
// routes would otherwise wait that long each; a runtime that closes drains nothing more); else
// the message is counted in `lost`.
#define RG_ABANDON_WAIT_NS 500000000ull  // 0.5 s: under the host's 1 s wait for a terminate
RG_FN void rg_route_abandon(rg_route* r, uint32_t src, const void* msg, uint32_t lane,
                            uint32_t scope, uint64_t* wait_ns) {
    rg_ring* ring = rg_route_ring(rg_route_abandoned(r), src, 0, lane);
    for (uint32_t nap = 1000; !rg_route_push(ring, msg, scope); nap = nap < 1000000u ? nap * 2 : nap) {
        if (!r->host_drains || *wait_ns == 0) {
#if defined(__CUDA_ARCH__)
            if (scope == RG_ROUTE_DEVICE)
                cuda::atomic_ref<uint64_t, cuda::thread_scope_device>(r->lost).fetch_add(
                    1, cuda::std::memory_order_relaxed);
            else
                rg_atomic_u64(r->lost).fetch_add(1, cuda::std::memory_order_relaxed);
#else
            rg_atomic_u64(r->lost).fetch_add(1, cuda::std::memory_order_relaxed);
#endif
            return;
        }
        if (nap > *wait_ns) nap = (uint32_t)*wait_ns;
        // The device, or the CPU shim's (a macro). Not `!defined(__CUDACC__)` as in
        // rg_kernel.h: the host module (rg_host.cpp) includes this file without the shim.
#if defined(__CUDA_ARCH__) || defined(__nanosleep)
        __nanosleep(nap);
#endif
        *wait_ns -= nap;
    }
}

typedef struct rg_link {
    uint64_t route_id;    // 0: an empty entry
    // The connection (a kernel's End and its target) the route carries: a retired route's
    // successor keeps it, so a send that follows new links mid-way (rg_outs::push) pushes
    // into each connection once, whichever route carries it now.
    uint64_t edge_id;
    uint64_t device_ptr;  // CUDA: the route's device address; CPU: 0 (mapped from `path`)
    uint32_t src_grid, dst_grid;
    uint32_t key_kind, key_offset, key_size, key_data;
    uint32_t port;        // out links: 0 the kernel's response, p its p-th sends= target
    uint32_t scope;       // RG_ROUTE_DEVICE or RG_ROUTE_SYSTEM: where the route lives (GPU)
    char path[80];        // CPU backend: the shared-memory file of the route
} rg_link;

typedef struct rg_links {
    rg_line version;             // host-owned: bumped after out/in changed
    rg_link out[RG_MAX_LINKS];   // where this kernel's output goes (none: to the host)
    rg_link in[RG_MAX_LINKS];    // whose output comes in
    // followed by one rg_link_block line per block
} rg_links;

typedef struct alignas(RG_LINE) rg_link_block {
    uint64_t ack;        // the version this block applied
    uint64_t routed_in;  // messages it took from routes (the host did not send them)
    uint64_t routed_out; // messages it pushed into routes (one per route of a fan-out)
    uint64_t _pad[13];
} rg_link_block;

RG_FN uint64_t rg_links_bytes(uint32_t grid) {
    return sizeof(rg_links) + (uint64_t)grid * sizeof(rg_link_block);
}

// Where the links start: after the state slots of a region of region_size bytes.
RG_FN uint64_t rg_links_offset(uint64_t region_size, uint32_t grid, uint64_t state_size) {
    return rg_state_area_offset(region_size) + rg_state_area_bytes(grid, state_size);
}

RG_FN rg_link_block* rg_links_block(rg_links* links, uint32_t b) {
    return (rg_link_block*)(links + 1) + b;
}

RG_FN uint64_t rg_key_mix(uint64_t x) {
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

RG_FN uint64_t rg_key_fnv(const uint8_t* data, uint32_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint32_t i = 0; i < n; ++i) h = (h ^ data[i]) * 0x100000001b3ull;
    return h;
}

// The block of D that a message (its struct's bytes) goes to; `rr`: the sender block's round
// robin counter for this route, used without a key.
RG_FN uint32_t rg_link_target(const rg_link* l, const uint8_t* msg, uint32_t* rr) {
    if (l->key_kind == RG_KEY_NONE) {
        uint32_t b = *rr % l->dst_grid;
        *rr = b + 1;
        return b;
    }
    uint64_t h;
    if (l->key_kind == RG_KEY_TEXT) {
        uint32_t n;
        rg_copy_bytes(&n, msg + l->key_offset, 4);
        if (n > l->key_size) n = l->key_size;  // bounded by the field's capacity
        h = rg_key_fnv(msg + l->key_data, n);
    } else {
        uint64_t v = 0;
        rg_copy_bytes(&v, msg + l->key_offset, l->key_size);
        if (l->key_kind == RG_KEY_INT && l->key_size < 8 && (v >> (8 * l->key_size - 1)) & 1)
            v |= ~0ull << (8 * l->key_size);  // sign-extend
        h = rg_key_mix(v);
    }
    return (uint32_t)(h % l->dst_grid);
}

#if !defined(__CUDA_ARCH__)
#include <errno.h>
#include <linux/futex.h>  // struct futex_waitv, FUTEX_32

// A block with routes into it sleeps on its region's doorbell (what the host rings) and on the
// bell of every route into it (what the senders ring) at once: futex_waitv (Linux 5.16) returns
// as soon as any of them differs from the value seen before the block looked for work. Each
// bell counts the block among its sleepers meanwhile, so a ringer makes the wake-up call only
// when someone sleeps. Where the kernel lacks futex_waitv the block naps (1 ms at most).
#define RG_ROUTE_NAP_NS 1000000u  // 1 ms: the longest nap without futex_waitv (Linux < 5.16)
static inline void rg_route_sleep(rg_bell* own, uint64_t own_seen, rg_bell* const* routes,
                                  const uint64_t* seen, uint32_t n, uint64_t ns) {
    struct futex_waitv w[1 + RG_MAX_LINKS] = {};
    w[0].val = (uint32_t)own_seen;
    w[0].uaddr = (uint64_t)(uintptr_t)&own->value;
    w[0].flags = FUTEX_32;
    for (uint32_t i = 0; i < n; ++i) {
        w[1 + i].val = (uint32_t)seen[i];
        w[1 + i].uaddr = (uint64_t)(uintptr_t)&routes[i]->value;
        w[1 + i].flags = FUTEX_32;
    }
    for (uint32_t i = 0; i <= n; ++i) {
        rg_bell* b = i ? routes[i - 1] : own;
        rg_atomic_u64(b->sleepers).fetch_add(1, cuda::std::memory_order_seq_cst);
    }
    struct timespec deadline;  // futex_waitv takes an absolute time
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    uint64_t end = (uint64_t)deadline.tv_nsec + ns;
    deadline.tv_sec += (time_t)(end / 1000000000u);
    deadline.tv_nsec = (long)(end % 1000000000u);
    if (syscall(__NR_futex_waitv, w, n + 1, 0, &deadline, CLOCK_MONOTONIC) < 0 && errno == ENOSYS) {
        // No ringer can wake a nap: keep it short, or an idle block answers a push a second late.
        uint64_t nap_ns = ns < RG_ROUTE_NAP_NS ? ns : RG_ROUTE_NAP_NS;
        struct timespec nap = {(time_t)(nap_ns / 1000000000u), (long)(nap_ns % 1000000000u)};
        nanosleep(&nap, nullptr);
    }
    for (uint32_t i = 0; i <= n; ++i) {
        rg_bell* b = i ? routes[i - 1] : own;
        rg_atomic_u64(b->sleepers).fetch_sub(1, cuda::std::memory_order_seq_cst);
    }
}

// Host: publishes the links as they now are; blocks apply them between two messages, once
// told (rg_host_tell: they read the links version only when their attention moved).
static inline uint64_t rg_links_publish(rg_links* links) {
    uint64_t v = rg_load_relaxed(&links->version.value) + 1;
    rg_store_release(&links->version.value, v);
    return v;
}

// Host: whether every block has applied links version `v`.
static inline bool rg_links_acked(rg_links* links, uint32_t grid, uint64_t v) {
    for (uint32_t b = 0; b < grid; ++b)
        if (rg_load_acquire(&rg_links_block(links, b)->ack) < v) return false;
    return true;
}
#endif

#endif  // RG_ROUTE_H
