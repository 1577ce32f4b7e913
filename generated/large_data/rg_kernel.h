// rg_kernel.h - the persistent ring-kernel loop that every generated kernel instantiates.
//
// Per block: thread 0 polls the control word and the input lanes (highest priority class
// first), backing off when idle, and takes a batch of the requests waiting in one lane; the
// block copies their used bytes into shared memory (rg_bus.h), each group of threads (the
// block, a warp or a thread: per=) calls the handler on one request, thread 0 stamps the
// responses (fresh UUIDv4 message_id, correlation_id = the request's message_id unless the
// handler set one, priority carried over), and the block pushes them, waiting while the
// output ring has no room for all of them: a response is never overwritten.
#ifndef RG_KERNEL_H
#define RG_KERNEL_H

#include <assert.h>  // device code may assert(); a failed assert ends the kernel
#if !defined(__CUDA_ARCH__)
#include <sched.h>  // sched_yield: the CPU backend's spin (rg_poller::spinning)
#include <stdio.h>   // rg_region_extent_check's report
#include <stdlib.h>
#endif

#include "rg_platform.h"
#if !defined(__CUDACC__)
#include "rg_cpu_shim.h"
#endif
#include "rg_ring.h"
#include "rg_state.h"
#include "rg_route.h"
#include "rg_bus.h"

#include <cuda/std/type_traits>

// A numpy-typed view of a registered UnifiedBuffer (ctx.buffer(ref)).
struct rg_buffer_view {
    void* data;         // null when the reference is to no registered buffer
    uint64_t nbytes;
    uint32_t itemsize;
    uint32_t dtype;     // the numpy type character ('f', 'd', 'i', ...) of its dtype
    template <class T>
    RG_HD T* as() const { return (T*)data; }
    RG_HD uint64_t count() const { return itemsize ? nbytes / itemsize : 0; }
};

RG_FN void* rg_map_buffer(rg_buffer_entry* entry);

// splitmix64: the per-block generators of message_ids (responses, sends).
RG_FN uint64_t rg_next_random(uint64_t* state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

RG_FN void rg_uuid4(uint64_t* state, rg_uuid* out) {
    uint64_t a = rg_next_random(state), b = rg_next_random(state);
    for (int i = 0; i < 8; ++i) {
        out->bytes[i] = (uint8_t)(a >> (8 * i));
        out->bytes[8 + i] = (uint8_t)(b >> (8 * i));
    }
    out->bytes[6] = (uint8_t)((out->bytes[6] & 0x0f) | 0x40);  // version 4
    out->bytes[8] = (uint8_t)((out->bytes[8] & 0x3f) | 0x80);  // RFC 4122 variant
}

// The block's routes out (rg_route.h), shared by its threads: those of its response (port 0)
// and those of each declared send target (port p: the p-th of sends=), as of links version
// `version`. Rewritten (relink) holding `lock`, as every send holds it, so that a send from any
// thread sees a whole table and the sends of one block into one ring stay single-producer: by
// thread 0 between two messages (rg_poller::refresh_links), and by a sender waiting for room
// in a full route, which must follow the host's new links (a target that is gone: the host
// retires its GPU route and waits for every sender to leave it). On the CPU backend a block's
// threads are fibers that switch only at barriers, so there the lock is never contended.
RG_FN rg_route* rg_map_route(const rg_link* link);  // where a link's route is mapped (below)
#define RG_ROUTE_WAIT_NS 100000u
#define RG_ANY_PORT 0xffffffffu   // rg_outs::relink: whatever the new links hold  // longest nap of a sender waiting for room in a full route

struct rg_outs {
    uint32_t lock;
    uint32_t n;       // entries in use
    uint64_t random;  // message_ids of the block's sends (under the lock)
    rg_links* links;  // the host's table (in the region)
    uint64_t version; // the links version of link[] (0: none applied yet)
    rg_link link[RG_MAX_LINKS];
    rg_route* route[RG_MAX_LINKS];
    uint32_t rr[RG_MAX_LINKS];  // each route's round robin over the target's blocks
    uint64_t abandon_wait_ns;   // left of the block's wait for room to abandon (rg_route_abandon)
    // A push was interrupted by terminate (and abandoned what it had not pushed): the block's
    // batch stops there. Every push after it returns false at once, without abandoning
    // anything, and the batch's requests that were not answered stay unfinished, for the host
    // to dead-letter from the input rings. So a terminate abandons the copies of one message
    // per block at most (fewer than an abandoned ring holds): none is only counted as lost.
    uint32_t stopped;

    // (Device code only: nvcc's host pass over these RG_HD functions sees no body.)
    RG_HD void acquire() {
#if defined(__CUDA_ARCH__) || !defined(__CUDACC__)
        while (atomicCAS(&lock, 0u, 1u) != 0u) {
        }
        __threadfence_block();
#endif
    }
    RG_HD void release() {
#if defined(__CUDA_ARCH__) || !defined(__CUDACC__)
        __threadfence_block();
        atomicExch(&lock, 0u);
#endif
    }

    // Applies the host's out links if their version moved (the caller holds the lock); true
    // if it did. `port`: only if they have a route for it (else they wait for the next
    // message, as they did before this one). The block acknowledges a version only in
    // rg_poller::refresh_links.
    RG_HD bool relink(uint32_t port = RG_ANY_PORT) {
        uint64_t v = rg_bus_load(&links->version.value);
        if (v == version) return false;
        bool wanted = port == RG_ANY_PORT;
        for (uint32_t i = 0; i < RG_MAX_LINKS && !wanted; ++i)
            wanted = links->out[i].route_id && links->out[i].port == port;
        if (!wanted) return false;
        n = 0;
        for (uint32_t i = 0; i < RG_MAX_LINKS; ++i) {
            if (!links->out[i].route_id) continue;
            uint32_t o = n++;
            link[o] = links->out[i];
            route[o] = rg_map_route(&link[o]);
            assert(route[o] && route[o]->magic == RG_ROUTE_MAGIC);
            rr[o] = 0;
        }
        version = v;
        return true;
    }

    // Pushes msg into every route of `port` (a fan-out), each into the lane of its priority in
    // the block its link picks, calling wait() while a ring is full. While it waits, new links
    // that have routes for the port are applied (relink), and the copies not yet pushed go by
    // them, into each connection once (by edge id: a retired route's successor carries the
    // connection on, and is not pushed into again); others
    // (a response whose output was disconnected) wait for the next message, and the copy for
    // room where it is. wait() returns false when the kernel is terminated:
    // the copies not yet pushed are abandoned into their routes' abandoned rings
    // (rg_route_abandon), for the host to dead-letter, the block is `stopped` and push returns
    // false (as does every push after it, which pushes nothing). *pushed counts
    // the copies sent. `ring`: wake the targets now; else the caller rings once for a batch
    // (ring_all), which spares a wake-up per message (a full ring rings first: its target may
    // sleep on it).
    template <class M, class Wait>
    RG_HD bool push(uint32_t port, const M* msg, uint32_t* pushed, Wait wait, bool ring = true) {
        if (stopped) return false;  // the batch stopped at an abandoned push: not sent
        uint64_t sent[RG_MAX_LINKS];  // the connections (edge ids) this message went into
        uint32_t n_sent = 0;
        const uint32_t lane = rg_lane_of(msg->priority);
        for (uint32_t i = 0; i < n; ++i) {
            if (link[i].port != port || in(sent, n_sent, link[i].edge_id)) continue;
            const uint64_t id = link[i].edge_id;
            rg_route* rt = route[i];
            const uint32_t scope = link[i].scope;
            uint32_t d = rg_link_target(&link[i], (const uint8_t*)msg, &rr[i]);
            rg_ring* r = rg_route_ring(rt, blockIdx.x, d, lane);
            uint32_t sleep_ns = 1000;
            bool moved = false;
            // Slots are reused once the target finished their request (rg_route_push).
            while (!rg_route_push(r, msg, scope)) {
                // Wake this target, and, in a batch pushed without rings, every target of the
                // port: one may hold this batch's earlier messages and sleep on them meanwhile.
                if (ring) rg_bell_ring(&rt->bell);
                else ring_all(port);
                if (!wait()) {
                    rg_route_abandon(rt, blockIdx.x, msg, lane, scope, &abandon_wait_ns);
                    for (uint32_t k = 0; k < n; ++k)
                        if (link[k].port == port && link[k].edge_id != id &&
                            !in(sent, n_sent, link[k].edge_id))
                            rg_route_abandon(route[k], blockIdx.x, msg, lane, link[k].scope,
                                             &abandon_wait_ns);
                    stopped = 1;
                    return false;
                }
                if (relink(port)) {  // this route may be gone from the table
                    moved = true;
                    break;
                }
#if defined(__CUDA_ARCH__) || !defined(__CUDACC__)  // the device, or the CPU shim's
                __nanosleep(sleep_ns);
#endif
                // A full route means a busy target, which frees a slot soon: short naps (a
                // target rings nothing when it finishes, so a long one would idle the line).
                sleep_ns = sleep_ns * 2 > RG_ROUTE_WAIT_NS ? RG_ROUTE_WAIT_NS : sleep_ns * 2;
            }
            if (moved) {
                i = (uint32_t)-1;  // then ++i: the new table from its first entry
                continue;
            }
            if (ring) rg_bell_ring(&rt->bell);  // CPU: wakes the target block if it sleeps
            if (n_sent < RG_MAX_LINKS) sent[n_sent++] = id;
            ++*pushed;
        }
        return true;
    }

    RG_HD static bool in(const uint64_t* ids, uint32_t count, uint64_t id) {
        for (uint32_t j = 0; j < count; ++j)
            if (ids[j] == id) return true;
        return false;
    }

    RG_HD bool has(uint32_t port) const {
        for (uint32_t i = 0; i < n; ++i)
            if (link[i].port == port) return true;
        return false;
    }

    // Wakes the targets of every route of `port` (after a batch pushed with ring = false).
    RG_HD void ring_all(uint32_t port) {
        for (uint32_t i = 0; i < n; ++i)
            if (link[i].port == port) rg_bell_ring(&route[i]->bell);
    }
};

// A message the kernel sends (a response, or a send to a target), before it is pushed: a
// fresh message_id, its type, and the conversation of the request it answers (rg_ctx) as
// correlation_id unless the handler set one.
template <class M>
RG_FN void rg_stamp(M& m, uint32_t type_id, const rg_uuid& conversation, uint64_t* random) {
    rg_uuid4(random, &m.message_id);
    m.type_id = type_id;
    if (!(m.flags & RG_FLAG_HAS_CORRELATION)) {
        m.correlation_id = conversation;
        m.flags |= RG_FLAG_HAS_CORRELATION;
    }
}

// A handler, as a @ring_kernel's cuda= source defines it:
//   __device__ bool <kernel_id>_handle(const In& req, Out& resp, rg_ctx& ctx)   (request-response)
//   __device__ void <kernel_id>_handle(const In& req, rg_ctx& ctx)              (fire-and-forget)
// Every thread of the request's group (ctx: the block, a warp or one thread, per=) calls it,
// with the same req, resp and ctx (in shared memory). resp starts from Out's field defaults,
// with the request's priority; the return value of the group's first thread alone decides
// whether it is sent, stamped with a fresh message_id and the request's message_id as
// correlation_id (unless the handler set RG_FLAG_HAS_CORRELATION). Only the bytes a request
// uses are copied in: past a list's count or a string's len lie earlier requests' leftovers.
// State that outlives a request: __shared__ (or static __device__) variables, or a
// UnifiedBuffer through ctx.buffer(ref).
//
// What a handler sees besides its messages; shared by the block.
struct rg_ctx {
    rg_region* region;
    uint32_t lane;    // the priority class the request came from (0 lowest .. 4)
    uint32_t failed;  // set by fail(): counted in the kernel's `errors`
    uint32_t routed;  // the request came over a route from another kernel (rg_route.h)
    // The group of threads that handles this request (@ring_kernel(per=...)): the whole block
    // (per="block"), a warp ("warp") or one thread ("thread"); `group` numbers it in the block,
    // `group_size` threads from thread `first` on.
    uint32_t group, group_size, first;

    // This thread's index in its group: threadIdx.x for per="block", the lane for "warp", 0
    // for "thread". A handler spreads its loops over the group: for (i = ctx.rank(); i < n;
    // i += ctx.group_size).
    __device__ uint32_t rank() const { return threadIdx.x - first; }

    // The lanes of a warp group, as __syncwarp's mask: the last warp of a block that is not a
    // whole number of warps has fewer than 32, and a full mask there is undefined on a GPU.
    __device__ unsigned lanes() const {
        return group_size >= 32u ? 0xffffffffu : (1u << group_size) - 1u;
    }

    // A barrier of the group: __syncthreads for a block, __syncwarp for a warp, none for one thread.
    __device__ void sync() const {
        if (group_size == 1) return;
        if (first == 0 && group_size == blockDim.x) __syncthreads();
        else __syncwarp(lanes());
    }
    rg_ring* routed_from;  // then: its route ring, whose `done` becomes routed_done once it is
    uint64_t routed_done;  // finished (a target that dies leaves it there for the host)
    rg_uuid conversation;  // the correlation_id of what answers the request (see rg_ring_loop)
    rg_outs* outs;         // the block's routes out
    rg_block_status* status;

    // Counts this request as a handler error (the response, if any, is still sent).
    RG_HD void fail() { failed = 1; }

    // The buffer a BufferRef field refers to; data is null if no such buffer is registered.
    RG_HD rg_buffer_view buffer(uint64_t ref) const {
        rg_buffer_entry* table = rg_region_buffers(region);
        for (uint32_t i = 0; i < RG_MAX_BUFFERS; ++i) {
            if (table[i].buffer_id == ref && ref != 0) {
                return rg_buffer_view{rg_map_buffer(&table[i]), table[i].nbytes, table[i].itemsize,
                                      table[i].dtype_code};
            }
        }
        return rg_buffer_view{nullptr, 0, 0, 0};
    }

    // One message to send target `port` (the generated <kernel_id>_ctx::send_<name> calls it
    // with the port and type id of its sends= entry): stamped with a fresh message_id, its
    // type_id and, unless the handler set RG_FLAG_HAS_CORRELATION, the conversation's
    // correlation_id; pushed into every route bound to the port (a kernel, or the host's dead
    // letters while none is bound), waiting while one is full. From one thread per message;
    // false if the kernel was terminated while it waited (then the message is not sent: a dead
    // letter of this kernel) or while another send of the block's batch did (then the message
    // is not sent and the request is left to the host: rg_outs::stopped).
    template <class M>
    RG_HD bool send(uint32_t port, const M& msg, uint32_t type_id) {
        M m = msg;
        outs->acquire();
        rg_stamp(m, type_id, conversation, &outs->random);
        uint32_t pushed = 0;
        rg_region* r = region;
        rg_block_status* s = status;
        bool sent = outs->push(port, &m, &pushed, [r, s]() {
            // waiting on a target, not hung (the watchdog reads the heartbeat)
            rg_store_release(&s->heartbeat, rg_load_relaxed(&s->heartbeat) + 1);
            return (rg_load_acquire(&r->control.command.value) & 0xff) != RG_CMD_TERMINATE;
        });
        outs->release();
        return sent;
    }
};

// ---- helpers for the bounded fields of messages ------------------------------------------
// A bounded str or bytes field is `{ uint32_t len; char data[N]; }` (data is not
// NUL-terminated); a bounded list or tuple `{ uint32_t count; T items[N]; }`. Any thread may
// call these; a handler usually lets one thread write a given field.

// The capacity N of a bounded str/bytes (`data[N]`) or list/tuple (`items[N]`).
template <class S>
RG_HD constexpr uint32_t rg_str_capacity(const S& s) { return (uint32_t)sizeof(s.data); }
template <class L>
RG_HD constexpr uint32_t rg_list_capacity(const L& l) {
    return (uint32_t)(sizeof(l.items) / sizeof(l.items[0]));
}

// Sets a bounded str/bytes field to the `n` bytes at `data`; false if they did not all fit
// (then it holds the first bytes that do, cut at a UTF-8 character boundary).
template <class S>
RG_HD bool rg_str_set_n(S& s, const char* data, uint32_t n) {
    uint32_t cap = rg_str_capacity(s), len = n;
    if (len > cap) {
        len = cap;
        while (len > 0 && ((uint8_t)data[len] & 0xc0) == 0x80) --len;  // not inside a character
    }
    for (uint32_t i = 0; i < len; ++i) s.data[i] = data[i];
    s.len = len;
    return len == n;
}

// Sets a bounded str field from a NUL-terminated string (a literal: rg_str_set(resp.name, "ok")).
template <class S>
RG_HD bool rg_str_set(S& s, const char* text) {
    uint32_t n = 0;
    while (text[n]) ++n;
    return rg_str_set_n(s, text, n);
}

// Whether a bounded str/bytes field holds exactly the NUL-terminated `text`.
template <class S>
RG_HD bool rg_str_eq(const S& s, const char* text) {
    for (uint32_t i = 0; i < s.len; ++i)  // as bytes: a bytes field's data is uint8_t
        if (text[i] == 0 || (uint8_t)text[i] != (uint8_t)s.data[i]) return false;
    return text[s.len] == 0;
}

// Whether two bounded str/bytes fields (of any bounds) hold the same bytes.
template <class A, class B>
RG_HD bool rg_str_equal(const A& a, const B& b) {
    if (a.len != b.len) return false;
    for (uint32_t i = 0; i < a.len; ++i)
        if ((uint8_t)a.data[i] != (uint8_t)b.data[i]) return false;
    return true;
}

// Copies a bounded list/tuple into another (of any bound, same item type); false if not every
// item fit (then `dst` holds the first ones).
template <class D, class S>
RG_HD bool rg_list_copy(D& dst, const S& src) {
    uint32_t cap = rg_list_capacity(dst), n = src.count < cap ? src.count : cap;
    for (uint32_t i = 0; i < n; ++i) dst.items[i] = src.items[i];
    dst.count = n;
    return n == src.count;
}

// Appends one item to a bounded list; false (and the list unchanged) when it is full.
template <class L, class T>
RG_HD bool rg_list_append(L& list, const T& item) {
    if (list.count >= rg_list_capacity(list)) return false;
    list.items[list.count++] = item;
    return true;
}

#if defined(__CUDACC__)
RG_FN void* rg_map_buffer(rg_buffer_entry* entry) { return (void*)entry->device_ptr; }
RG_FN void rg_release_buffers(rg_region* region) { (void)region; }
RG_FN rg_route* rg_map_route(const rg_link* link) { return (rg_route*)link->device_ptr; }
#else
// The CPU backend maps a buffer's (a route's) shared-memory file on first use, and unmaps the
// buffers that left the table when the block is idle (rg_cpu_runner.cpp). A route without a
// path is in this process's memory at device_ptr (the TSan stress test); rg_cpu_map_route is
// weak so that programs that have no runner (that test) link.
void* rg_cpu_map_buffer(rg_buffer_entry* entry);
void rg_cpu_release_buffers(rg_region* region);
__attribute__((weak)) rg_route* rg_cpu_map_route(const rg_link* link);
RG_FN void* rg_map_buffer(rg_buffer_entry* entry) { return rg_cpu_map_buffer(entry); }
RG_FN void rg_release_buffers(rg_region* region) { rg_cpu_release_buffers(region); }
RG_FN rg_route* rg_map_route(const rg_link* link) {
    if (!link->path[0] || !rg_cpu_map_route) return (rg_route*)link->device_ptr;
    return rg_cpu_map_route(link);
}
#endif

// The CPU backend's runner knows how many bytes of the region it mapped (rg_cpu_runner.cpp;
// weak: programs without a runner link). A region whose header puts its state slots and links
// (`end`: where they end) past them, a layout the host got wrong or a header written over,
// ends the kernel with a report before any block reads or writes there. A GPU kernel has no
// such figure: the host allocated what it computed from the same layout.
#if defined(__CUDACC__)
RG_FN void rg_region_extent_check(const rg_region*, uint64_t, uint64_t) {}
#else
__attribute__((weak)) uint64_t rg_cpu_region_bytes();
// [start, end): the state slots and links, from the end of the rings (`start`, the header's
// total_size) on; an `end` below `start` is a sum that wrapped around.
RG_FN void rg_region_extent_check(const rg_region* region, uint64_t start, uint64_t end) {
    if (!rg_cpu_region_bytes || (start <= end && end <= rg_cpu_region_bytes())) return;
    fprintf(stderr, "ringgen: the region's header puts its state slots and links at bytes "
            "%llu..%llu, not within the %llu bytes of the region (grid %u): the host laid it "
            "out wrong or it was written over\n", (unsigned long long)start,
            (unsigned long long)end, (unsigned long long)rg_cpu_region_bytes(), region->grid);
    fflush(stderr);
    abort();
}
#endif

// Fire-and-forget kernels have no output message.
struct rg_no_output {};

#define RG_ACT_HANDLE 1u    // a batch of requests is planned (rg_batch)
#define RG_ACT_EXIT 3u      // terminated
#define RG_ACT_SNAPSHOT 4u  // the host asks for a snapshot of the block's state (rg_state.h)
// Polls of an idle block before its first nap (a GPU), or before it yields its core between
// polls (the CPU backend: rg_poller::spinning). On the CPU only the first poll after work goes
// without a yield: 64 of them held the core some 30 us after every message, while a process
// queued on that core (the next stage of a pipeline, which that message just woke, or the
// host) waited (bench_pipeline's connected p50, 2 busy cores: ~70 -> ~45 us).
#if defined(__CUDA_ARCH__)
#define RG_SPIN_POLLS 64u
#else
#define RG_SPIN_POLLS 1u
#endif
// Longest sleep between polls when idle. A GPU has no bell to wake it: it naps briefly. On the
// CPU backend the host's pushes (a burst of lone sends rings once, by its event loop's next
// turn), pops and commands ring the doorbell the block sleeps on, so the nap only bounds how
// stale the heartbeat gets (the host's hang watchdog reads it): an idle kernel costs one
// wake-up a second per block.
#if defined(__CUDA_ARCH__)
#define RG_MAX_IDLE_NS 200000u
#else
#define RG_MAX_IDLE_NS 1000000000u
#endif

// How many threads handle one message (@ring_kernel(per=...)).
#define RG_PER_BLOCK 0u
#define RG_PER_WARP 1u
#define RG_PER_THREAD 2u

// What thread 0 planned for a round: `n` requests of lane `lane`, from ring index `index` on
// (or, `routed`, n requests that came over one route ring, already in the request slots).
struct rg_batch {
    uint32_t action, lane, n, routed;
    uint64_t index;  // a lane's: the first request's; routed: the route ring's `done` after them
    rg_ring* from;   // routed: the route ring it came from (rg_poller::finish_routed)
    uint32_t scope;  // routed: that route's RG_ROUTE_* (the scope its `done` is stored at)
};

// Thread 0's private state between rounds. It keeps its own copies of the indices only the
// kernel writes (heads, `done`, the output tail) and of the last host indices it read (lane
// tails, the output head), so that a round reads from the bus only what it must (rg_bus.h).
struct rg_poller {
    rg_region* region;
    rg_block_status* status;
    uint64_t seq;       // last command applied
    uint64_t state;     // RG_STATE_*
    uint64_t processed, emitted, errors, heartbeat;
    uint64_t random;
    uint64_t idle_since;
    uint64_t head[RG_LANES], tail[RG_LANES];
    // Lane 0's `posted` when the tails were last found stale (rg_ring.h: rg_poll), and the
    // lanes whose tail has not been read since (a bit each): only those may hold more than
    // tail[] says. Its `attention` as last seen, and whether the command word, the state
    // slot's request and the links version are still to be read since it moved.
    uint64_t posted_seen, attention_seen;
    uint32_t stale;
    bool look;
    uint64_t done[RG_LANES];  // each lane's `done`, which only this thread writes
    uint64_t out_tail, out_head;
    // The block's rings (lanes, then the output ring) and their capacities, read once from the
    // region's and rings' headers: on a GPU every read of them would cross the bus.
    rg_ring* ring[RG_LANES + 1];
    uint64_t lane_capacity, out_capacity;
    uint64_t metered[4];      // the bus meter as last published
    rg_state_slot* state_slot;  // null: the kernel has no state
    uint64_t state_done;        // the last snapshot written
    // Routes (rg_route.h), as of links version `links_version`.
    rg_links* links;
    rg_link_block* link_status;
    uint64_t links_version, routed_in, routed_out;
    uint32_t n_in;
    rg_outs* outs;
    rg_route* in_route[RG_MAX_LINKS];
    uint32_t in_scope[RG_MAX_LINKS];  // each in-route's RG_ROUTE_*
    uint64_t in_seen[RG_MAX_LINKS];  // CPU: each in-route's bell, read before looking for work

    RG_HD void start(rg_region* r) {
        region = r;
        status = rg_region_status(r, blockIdx.x);
        lane_capacity = r->lane_capacity;
        out_capacity = r->out_capacity;
        for (uint32_t l = 0; l <= RG_LANES; ++l) {
            ring[l] = rg_region_ring(r, blockIdx.x, l);
            uint64_t h = rg_bus_load(&ring[l]->head.value), t = rg_bus_load(&ring[l]->tail.value);
            if (l == RG_LANES) {
                out_head = h;
                out_tail = t;
            } else {
                head[l] = tail[l] = done[l] = h;
            }
        }
        posted_seen = attention_seen = ~0ull;
        stale = (1u << RG_LANES) - 1;
        look = true;
        state = RG_STATE_LAUNCHED;
        publish_state();
    }

    // The bus meter's counts into the block status (not itself metered: a GPU has no meter).
    RG_HD void publish_meter() {
#if !defined(__CUDACC__)
        rg_bus_mark now = rg_bus_now();
        if (metered[0] == now.counts[0] && metered[2] == now.counts[2]) return;
        for (int i = 0; i < 4; ++i) {
            metered[i] = now.counts[i];
            rg_store_release(&status->bus[i], metered[i]);
        }
#endif
    }

    // Applies the host's latest routes, between two messages, and acknowledges them.
    RG_HD void refresh_links() {
        uint64_t v = rg_bus_load(&links->version.value);
        if (v == links_version) return;
        n_in = 0;
        outs->acquire();  // a send of another thread may be under way
        outs->relink();   // (a sender that waited for room may have applied them already)
        v = outs->version;  // what is acknowledged: the table as applied
        for (uint32_t i = 0; i < RG_MAX_LINKS; ++i) {
            if (links->in[i].route_id) {
                in_route[n_in] = rg_map_route(&links->in[i]);
                in_scope[n_in] = links->in[i].scope;
                assert(in_route[n_in] && in_route[n_in]->magic == RG_ROUTE_MAGIC &&
                       blockIdx.x < in_route[n_in]->dst_grid);
                ++n_in;
            }
        }
        outs->release();
        links_version = v;
        rg_bus_store(&link_status->ack, v);
    }

    // Takes the messages of lane `l` waiting in one ring of the routes into this block, up to
    // max (a batch, as a lane's), into req; its ring into *from. Their slots are not reused
    // before finish_routed(), as an input lane's are not before finish().
    template <class In>
    RG_HD uint32_t pop_routed(In* req, uint32_t l, uint32_t max, rg_ring** from, uint32_t* scope) {
        for (uint32_t i = 0; i < n_in; ++i) {
            rg_route* r = in_route[i];
            for (uint32_t s = 0; s < r->src_grid; ++s) {
                rg_ring* ring = rg_route_ring(r, s, blockIdx.x, l);
                uint32_t n = rg_route_pop(ring, req, max, in_scope[i]);
                if (n) {
                    routed_in += n;
                    rg_store_release(&link_status->routed_in, routed_in);
                    *from = ring;
                    *scope = in_scope[i];
                    return n;
                }
            }
        }
        return 0;
    }

    // Pushes a batch's responses (resp[pick[j]], j < n, in request order) into every route out
    // of the kernel (fan-out), each into the lane of its priority in the block its link picks,
    // waiting while that ring is full, then wakes the targets once. Returns how many of the
    // batch's `taken` requests are answered: all of them, unless a terminate interrupted the
    // push of a response; then the copies of it not pushed are abandoned (rg_outs::push: dead
    // letters of this kernel) and the batch stops there: its request counts as answered, those
    // after it are not (their responses are not sent; the host dead-letters the requests). So
    // each request is answered, a dead letter as itself, or its response one, never two of
    // them. (While it runs no handler sends, so it uses the table without the lock.)
    template <class Out>
    RG_HD uint32_t route(const Out* resp, const uint16_t* pick, uint32_t n, uint32_t taken) {
        uint32_t pushed = 0, answered = taken;
        for (uint32_t j = 0; j < n; ++j) {
            if (!outs->push(0, &resp[pick[j]], &pushed, [this]() {
                    rg_store_release(&status->heartbeat, ++heartbeat);  // waiting on a target
                    return apply_control();
                }, false)) {
                answered = pick[j] + 1u;
                break;
            }
        }
        outs->ring_all(0);
        routed_out += pushed;
        rg_store_release(&link_status->routed_out, routed_out);
        return answered;
    }

    // CPU backend: an idle block keeps polling for region->spin_ns before it sleeps on the
    // doorbell, so that a request soon after the last one is taken without a wake-up (which
    // costs tens of microseconds on a loaded machine). It yields the core between two polls:
    // where runners outnumber cores (a pipeline's stages), a spinning stage would otherwise hold
    // the core the stage that has work needs, for a whole time slice. A GPU naps at once.
    RG_HD bool spinning(uint32_t idle) {
#if defined(__CUDA_ARCH__)
        (void)idle;
        return false;
#else
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        uint64_t t = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
        if (idle == RG_SPIN_POLLS + 1) idle_since = t;
        if (t - idle_since >= region->spin_ns) return false;
        sched_yield();
        return true;
#endif
    }

    RG_HD void publish_state() { rg_bus_store(&status->state, (seq << 8) | state); }

    // Applies a new command, if any; false once the kernel must exit.
    RG_HD bool apply_control() {
        uint64_t cmd = rg_bus_load(&region->control.command.value);
        if ((cmd >> 8) == seq) return state != RG_STATE_TERMINATED;
        seq = cmd >> 8;
        switch (cmd & 0xff) {
            case RG_CMD_ACTIVATE: state = RG_STATE_ACTIVE; break;
            case RG_CMD_DEACTIVATE: state = RG_STATE_PAUSED; break;
            case RG_CMD_TERMINATE: state = RG_STATE_TERMINATED; break;
            default: break;
        }
        publish_state();
        return state != RG_STATE_TERMINATED;
    }

    // The doorbell's value before a look for work (the CPU backend sleeps on it; a GPU does not
    // read it).
    RG_HD uint64_t bell() {
#if defined(__CUDA_ARCH__)
        return 0;
#else
        return rg_load_acquire(&region->control.doorbell.value);
#endif
    }

    // Work found in lane `l`, after the lanes above it read empty: the highest of those the
    // host fed meanwhile, else `l`. The host pushes a block's lanes highest first, each tail a
    // release store, so this lane's tail (acquired) makes the earlier pushes above it visible
    // to a re-read; without one, a scan that read a lane empty just before the host fed it and
    // then a lower one would take the lower priority first (exact order per block, README).
    RG_HD uint32_t fed_above(uint32_t l) {
        for (uint32_t h = RG_LANES; h-- > l + 1;) {
            tail[h] = rg_bus_load(&ring[h]->tail.value);
            if (tail[h] != head[h]) return h;
        }
        return l;
    }

    // Waits for work (highest lane first): up to `max` requests of one lane, taken (its head
    // published) at once; RG_ACT_EXIT on terminate. A lane's tail is read only when what is
    // known to wait there is less than a full batch and a push since it was last read moved
    // lane 0's `posted` (in the baseline build: always).
    template <class In>
    RG_HD rg_batch next(In* req, uint32_t max) {
        uint32_t idle = 0, sleep_ns = 1000;
        for (;;) {
            publish_meter();
            rg_bus_mark poll = rg_bus_now();
            rg_bus_store(&status->heartbeat, ++heartbeat);
            uint64_t seen = bell();
#if !defined(RG_BUS_BASELINE)
            // One load for what the host wrote since the last round (rg_ring.h: rg_poll); read
            // before the tails, the command word, links and state request: a write it counts
            // was stored before it (release).
            rg_poll polled = rg_bus_load_poll(&ring[0]->tail.poll);
            if (polled.posted != posted_seen) {
                posted_seen = polled.posted;
                stale = (1u << RG_LANES) - 1;
            }
            if (polled.attention != attention_seen) {
                attention_seen = polled.attention;
                look = true;
            }
#else
            look = true;  // the baseline reads them every round
#endif
            if (look) {  // else the command, the links and the state's request are as last read
                if (!apply_control()) return rg_batch{RG_ACT_EXIT, 0, 0, 0, 0, nullptr, 0};
                // (look stays set: the links are read on the round after the snapshot)
                if (state_slot && rg_bus_load(&state_slot->request.value) != state_done)
                    return rg_batch{RG_ACT_SNAPSHOT, 0, 0, 0, 0, nullptr, 0};  // paused too: the state is kept
                refresh_links();
                look = false;
            }
#if !defined(__CUDA_ARCH__)
            for (uint32_t i = 0; i < n_in; ++i) in_seen[i] = rg_load_acquire(&in_route[i]->bell.value);
#endif
            if (state == RG_STATE_ACTIVE) {
                for (uint32_t l = RG_LANES; l-- > 0;) {
                    bool fresh = true;  // tail[l] read in this scan, after the lanes above
#if !defined(RG_BUS_BASELINE)
                    fresh = (stale >> l & 1) && tail[l] - head[l] < max;
                    if (fresh) {
                        tail[l] = rg_bus_load(&ring[l]->tail.value);
                        stale &= ~(1u << l);
                    }
#else
                    tail[l] = rg_bus_load(&ring[l]->tail.value);
#endif
                    uint64_t n = tail[l] - head[l];
                    if (n) {
                        // Only a tail read now can show requests pushed after the reads above:
                        // those known before were checked against the lanes above then.
                        if (uint32_t higher = fresh ? fed_above(l) : l; higher != l) {
                            l = higher;  // returns below: the scan ends here
                            n = tail[l] - head[l];
                        }
                        rg_batch b{RG_ACT_HANDLE, l, (uint32_t)(n < max ? n : max), 0, head[l], nullptr, 0};
                        head[l] += b.n;
                        rg_bus_store(&ring[l]->head.value, head[l]);
                        return b;
                    }
                    rg_ring* from = nullptr;
                    uint32_t scope = 0;
                    if (uint32_t got = pop_routed(req, l, max, &from, &scope))  // index: `done` after
                        return rg_batch{RG_ACT_HANDLE, l, got, 1, rg_load_relaxed(&from->head.value),
                                        from, scope};
                }
            }
            rg_bus_forget_since(poll);  // found no work (rg_bus.h)
            if (++idle > RG_SPIN_POLLS && !spinning(idle)) {
                rg_release_buffers(region);  // every thread of the block is between requests
#if !defined(__CUDA_ARCH__)
                // Whatever it waits for rings a bell it sleeps on (the host's pushes, commands,
                // links and snapshots the doorbell; a sender's push its route's bell): it sleeps
                // until one rings, with no back-off of short naps, each a wake-up for nothing.
                sleep_ns = RG_MAX_IDLE_NS;
                if (n_in) {  // the host's doorbell and the senders' bells at once
                    rg_bell* route_bells[RG_MAX_LINKS];
                    for (uint32_t i = 0; i < n_in; ++i) route_bells[i] = &in_route[i]->bell;
                    rg_route_sleep(&region->control.doorbell, seen, route_bells, in_seen, n_in,
                                   sleep_ns);
                } else {
                    rg_bell_sleep(&region->control.doorbell, seen, sleep_ns);
                }
#else
                rg_bell_sleep(&region->control.doorbell, seen, sleep_ns);
                sleep_ns = sleep_ns * 2 > RG_MAX_IDLE_NS ? RG_MAX_IDLE_NS : sleep_ns * 2;
#endif
            }
        }
    }

    // Waits for room for n responses in the output ring; false if terminated meanwhile. The
    // host's head is read only when the room last seen is too small (baseline: always).
    RG_HD bool reserve(uint64_t n) {
        rg_ring* out = ring[RG_LANES];
        uint64_t cap = out_capacity;
        uint32_t sleep_ns = 1000;
#if defined(RG_BUS_BASELINE)
        out_head = rg_bus_load(&out->head.value);
#endif
        while (cap - (out_tail - out_head) < n) {
            out_head = rg_bus_load(&out->head.value);
            if (cap - (out_tail - out_head) >= n) break;
            rg_bus_store(&status->heartbeat, ++heartbeat);  // waiting on the host, not hung
            if (!apply_control()) return false;
            uint64_t seen = bell();
            rg_bell_sleep(&region->control.doorbell, seen, sleep_ns);
            sleep_ns = sleep_ns * 2 > RG_MAX_IDLE_NS ? RG_MAX_IDLE_NS : sleep_ns * 2;
        }
        return true;
    }

    // Handler calls that reported ctx.fail(): counted once the handlers returned.
    RG_HD void count_errors(uint32_t failed) {
        if (!failed) return;
        errors += failed;
        rg_bus_store(&status->errors, errors);
    }

    // Requests processed: counted once they are, their responses in the output ring (before the
    // tail that publishes them: a host that holds a response already sees its request counted)
    // or routed on. A batch left unanswered at terminate is not: the host dead-letters it.
    RG_HD void count(uint32_t n) {
        processed += n;
        rg_bus_store(&status->processed, processed);
    }

    // Before n responses to a batch of `taken` requests of `lane` are pushed: they are counted
    // as emitted, and the block records which requests they answer, so that a host looking at a
    // dead kernel's region can tell whether they went out (see rg_block_status: finishing).
    // A request that came over a route is not in the lanes and records nothing.
    RG_HD void emitting(uint32_t n, uint32_t taken, uint32_t lane, bool routed) {
        emitted += n;
        rg_bus_store(&status->emitted, emitted);
        if (!routed) rg_bus_store(&status->finishing, rg_finishing(done[lane], taken, lane));
    }

    // The n responses are in the output ring's slots: one publish for all of them.
    RG_HD void publish(uint32_t n) {
        out_tail += n;
        rg_bus_store(&ring[RG_LANES]->tail.value, out_tail);
        rg_bell_ring(&region->control.out_bell);
    }

    // The n requests of a batch from `lane` are finished (answered, or handled without a
    // response): their slots may be reused. A block finishes its requests in the order it took
    // them, so `done` of a lane counts a prefix of it.
    RG_HD void finish(uint32_t lane, uint32_t n) {
        done[lane] += n;
        rg_bus_store(&ring[lane]->head.done, done[lane]);
    }

    // The same for a request that came over a route: the sender may reuse its slot. Until
    // then a target that dies leaves it in the ring, and the host dead-letters it.
    RG_HD void finish_routed(rg_ring* from, uint64_t done_index, uint32_t scope) {
        rg_route_finish(from, done_index, scope);
    }

    // The first n requests of a batch are finished (all of them but where a terminate stopped
    // it): a request that came over a route holds a slot of its route, not of the lanes.
    RG_HD void finish_batch(const rg_batch& b, uint32_t n) {
        if (b.routed) finish_routed(b.from, b.index - (b.n - n), b.scope);
        else finish(b.lane, n);
    }
};

// The kernel body, for a generated `Kernel` type that names In and Out (rg_no_output for
// fire-and-forget), Ctx (the kernel's rg_ctx), State (rg_no_state without one) and `state()`
// (the calling block's live state), `per` (RG_PER_*), `batch` (requests a round takes at most),
// Out's type id, `init(Out*)` (its field defaults) and the handler call:
// `bool operator()(const In&, Out&, Ctx&)`, or `void operator()(const In&, Ctx&)`.
//
// A round: thread 0 takes a batch of up to `batch` waiting requests of one lane (the highest
// that has any) and publishes the lane's head once; the block copies their used bytes into
// shared memory (rg_bus.h); each group (the block, a warp, or a thread: `per`) handles one
// request at a time, the groups side by side; thread 0 stamps the responses; the block copies
// their used bytes into the output ring; thread 0 counts the batch processed, publishes the
// tail once and finishes the batch (`done`). The host sees each (block, lane)'s responses in
// the order of their requests.
template <class Kernel>
__device__ void rg_ring_loop(uint8_t* region_mem) {
    typedef typename Kernel::In In;
    typedef typename Kernel::Out Out;
    typedef typename Kernel::State State;
    constexpr bool has_output = !cuda::std::is_same<Out, rg_no_output>::value;
    constexpr bool has_state = !cuda::std::is_same<State, rg_no_state>::value;
#if defined(RG_BUS_BASELINE)
    constexpr uint32_t K = 1;  // one request per round, as before batches
#else
    constexpr uint32_t K = Kernel::batch;
#endif
    __shared__ In req[K];
    __shared__ Out resp[K];
    __shared__ typename Kernel::Ctx ctx[K];
    __shared__ uint8_t emits[K];
    __shared__ uint16_t pick[K];  // the requests whose responses go out, in request order
    __shared__ rg_batch plan[2];  // double buffered: thread 0 may plan a round ahead
    __shared__ uint32_t out_n;    // responses to push this round (0: none, or terminated)
    __shared__ uint64_t out_index;
    __shared__ rg_outs outs;
    __shared__ rg_slots slots[RG_LANES + 1];  // the block's rings' (poller.ring)
    rg_region* region = (rg_region*)region_mem;
    rg_poller poller = {};
    // The groups of the block, and this thread's.
    const uint32_t groups = Kernel::per == RG_PER_BLOCK ? 1u
                          : Kernel::per == RG_PER_WARP  ? (blockDim.x + 31) / 32
                                                        : blockDim.x;
    const uint32_t size = Kernel::per == RG_PER_BLOCK ? blockDim.x : Kernel::per == RG_PER_WARP ? 32u : 1u;
    // This thread's index, read once: on the CPU backend threadIdx.x is a call into the runtime.
    const uint32_t tid = threadIdx.x;
    const uint32_t group = tid / size;
    // A round takes no more than the output ring holds: its responses go out at once.
    const uint32_t max = K < region->out_capacity ? K : region->out_capacity;
    uint32_t cur = 0;
    if (tid == 0) {
        poller.random = region->seed ^ (0x9e3779b97f4a7c15ull * (blockIdx.x + 1));
        poller.start(region);
        for (uint32_t l = 0; l <= RG_LANES; ++l) slots[l] = rg_slots_of(poller.ring[l]);
        poller.outs = &outs;
        outs.lock = outs.n = 0;
        outs.version = 0;
        outs.abandon_wait_ns = RG_ABANDON_WAIT_NS;  // one terminate per launch
        outs.stopped = 0;
        outs.random = region->seed ^ (0xd1b54a32d192ed03ull * (blockIdx.x + 1));
        // Past the rings lie the state slots and the links, at offsets computed from the
        // region's header: they must lie within the memory mapped (rg_region_extent_check).
        // The header is read once, so a handler writing over it cannot change what was checked.
        const uint64_t total = region->total_size;
        const uint32_t grid = region->grid;
        const uint64_t links_at = rg_links_offset(total, grid, has_state ? sizeof(State) : 0);
        rg_region_extent_check(region, total, links_at + rg_links_bytes(grid));
        if constexpr (has_state) {  // the defaults (or what the host wrote) before any request
            uint8_t* area = region_mem + rg_state_area_offset(total);
            poller.state_slot = rg_state_slot_of(area, blockIdx.x, sizeof(State));
            rg_copy_bytes(Kernel::state(), rg_state_bytes(poller.state_slot), sizeof(State));
        }
        poller.links = (rg_links*)(region_mem + links_at);
        poller.link_status = rg_links_block(poller.links, blockIdx.x);
        outs.links = poller.links;
        // What every request's context holds whatever the batch: the block's, and the group
        // that handles request slot i.
        for (uint32_t i = 0; i < K; ++i) {
            uint32_t g = i % groups;
            ctx[i].region = region;
            ctx[i].outs = &outs;
            ctx[i].status = rg_region_status(region, blockIdx.x);
            ctx[i].group = g;
            ctx[i].first = g * size;
            ctx[i].group_size = blockDim.x - g * size < size ? blockDim.x - g * size : size;
        }
    }
    // Takes batch b's requests into req[0 .. n) (rg_bus.h: rg_bus_pop): every thread where many
    // copy (then it ends with a barrier), else thread 0 alone, before the barrier that ends
    // the round's plan: one barrier a round fewer where a block's threads are fibers that
    // switch at each (the CPU backend).
    auto take = [&](const rg_batch& b) {
        // What a request's handler sees of its batch, with resp's defaults: set by the thread
        // that copied the request in, before the barrier that ends the copy.
        auto ready = [&](uint32_t i) {
            ctx[i].lane = b.lane;
            ctx[i].routed = b.routed;
            ctx[i].routed_from = b.from;
            ctx[i].routed_done = b.index;
            ctx[i].failed = 0;
            // A conversation: what comes over a route (or the host forwarded from one) answers
            // the request that entered the pipeline, so its correlation_id is kept; else this
            // request's message_id.
            bool carried = (b.routed || (req[i].flags & RG_FLAG_CONVERSATION)) &&
                           (req[i].flags & RG_FLAG_HAS_CORRELATION);
            ctx[i].conversation = carried ? req[i].correlation_id : req[i].message_id;
            emits[i] = 0;
            if constexpr (has_output) {
                Kernel::init(&resp[i]);
                resp[i].priority = req[i].priority;
            }
        };
        if (b.routed) {  // already in req[0 .. n)
            uint32_t step = rg_bus_many_copiers() ? blockDim.x : 1u;
            for (uint32_t i = tid; i < b.n; i += step) ready(i);
            if (rg_bus_many_copiers()) __syncthreads();
        } else {
            rg_bus_pop(slots[b.lane], b.index, req, b.n, ready);
        }
    };
    for (;;) {
        if (tid == 0) {
            plan[cur] = poller.next(&req[0], max);
            if (!rg_bus_many_copiers() && plan[cur].action == RG_ACT_HANDLE) take(plan[cur]);
        }
        // The plan is ready (one copier: its requests too), and every thread is done with the
        // last round.
        __syncthreads();
        const rg_batch b = plan[cur];
        cur ^= 1;
        if (b.action == RG_ACT_EXIT) break;
        if (b.action == RG_ACT_SNAPSHOT) {
            // Every thread is done with the last request, and none starts the next before the
            // next barrier: the state is between two messages.
            if constexpr (has_state) {
                if (tid == 0) {
                    uint64_t asked = rg_bus_load(&poller.state_slot->request.value);
                    rg_copy_bytes(rg_state_bytes(poller.state_slot), Kernel::state(), sizeof(State));
                    rg_bus_count(RG_BUS_WRITE, (sizeof(State) + 7) / 8, sizeof(State));
                    rg_bus_store(&poller.state_slot->done.value, asked);
                    poller.state_done = asked;
                }
            }
            continue;
        }
        // RG_ACT_HANDLE.
        if (rg_bus_many_copiers()) take(b);
        // The groups side by side, each on its own request; a barrier before the next step,
        // whose handlers may reuse what these kept in __shared__.
        for (uint32_t s = 0; s < b.n; s += groups) {
            uint32_t i = s + group;
            if (i < b.n) {
                if constexpr (has_output) {
                    bool e = Kernel()(req[i], resp[i], ctx[i]);
                    if (ctx[i].rank() == 0) emits[i] = e;
                } else {
                    Kernel()(req[i], ctx[i]);
                }
            }
            if (s + groups < b.n) __syncthreads();
        }
        __syncthreads();  // every handler of the batch returned
        if (tid == 0) {
            uint32_t failed = 0, n = 0;
            for (uint32_t i = 0; i < b.n; ++i) {
                failed += ctx[i].failed != 0;
                if (has_output && emits[i]) pick[n++] = (uint16_t)i;
            }
            poller.count_errors(failed);
            // A send of the batch was abandoned at terminate (rg_outs::stopped): none of its
            // requests is finished nor answered; the host dead-letters them.
            bool finished = !outs.stopped;
            uint32_t answered = b.n;
            out_n = 0;
            if constexpr (has_output) {
                if (finished) {
                    for (uint32_t j = 0; j < n; ++j)
                        rg_stamp(resp[pick[j]], Kernel::out_type_id, ctx[pick[j]].conversation,
                                 &poller.random);
                    // Connected: the responses go to other kernels instead. Asked of the table as
                    // it is now: a send that waited for room may have applied new links this round.
                    if (outs.has(0)) {
                        answered = poller.route(resp, pick, n, b.n);  // routed, or abandoned
                    } else if (n) {
                        finished = poller.reserve(n);
                        if (finished) {
                            poller.emitting(n, b.n, b.lane, b.routed != 0);
                            out_n = n;
                            out_index = poller.out_tail;
                        }
                    }
                }
            }
            // Unfinished (a send abandoned, or terminated while waiting for room in the output
            // ring): the batch stays taken and unanswered, the host's to dead-letter; the next
            // round's look at the control word ends the kernel.
            if (finished && !out_n) {
                poller.count(answered);
                poller.finish_batch(b, answered);
                // Room in a lane, and no response to the host to tell it (they went to routes,
                // or there are none): the out bell wakes a host that feeds a backlog, once the
                // lane is down to half (a wake-up per batch would cost the host more than the
                // batch; half a lane still keeps the block busy while the host refills it).
                if (!b.routed && poller.tail[b.lane] - poller.done[b.lane] <= poller.lane_capacity / 2)
                    rg_bell_ring(&region->control.out_bell);
            }
        }
        if constexpr (has_output) {
            __syncthreads();  // out_n and the stamps
            if (out_n) {
                rg_bus_push(slots[RG_LANES], out_index, resp, pick, out_n);
                if (tid == 0) {
                    poller.count(b.n);
                    poller.publish(out_n);
                    poller.finish_batch(b, b.n);
                }
            }
        }
    }
}

#endif  // RG_KERNEL_H
