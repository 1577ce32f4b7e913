// rg_host.h - the host side of the rings: push into lanes, pop responses, lifecycle commands,
// counters and the buffer table of one region. Plain C++ over rg_ring.h, so that the TSan
// stress test (tests/native/ring_stress.cpp) runs exactly the code that Python's _rg_host
// module (rg_host.cpp) binds.
//
// The same functions serve both backends: the region is shared memory on the CPU backend and
// mapped pinned memory on CUDA. Waits poll for a while, then sleep on the output doorbell (a
// futex the CPU backend's kernels ring) for at most `poll_ns` at a time; on CUDA, where the
// kernel rings nothing, that is how often they look.
#ifndef RG_HOST_H
#define RG_HOST_H

#include <time.h>
#include <unistd.h>

#include <atomic>

#include "rg_ring.h"

static inline int64_t rg_host_now_ns() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// Pushes up to n structs into lane `lane` of block `block`; returns how many fit.
static inline uint64_t rg_host_push(rg_region* r, uint32_t block, uint32_t lane, const void* src,
                                    uint64_t n) {
    uint64_t pushed = rg_lane_push(rg_region_ring(r, block, lane), src, n);
    if (pushed) rg_bell_ring(&r->control.doorbell);
    return pushed;
}

// Pushes all n structs, napping while the lane is full, for at most timeout_ns; returns how
// many went in. A full lane drains at the kernel's pace, so the nap is a plain sleep of
// nap_ns: no bell per request for the kernel to ring.
static inline uint64_t rg_host_push_wait(rg_region* r, uint32_t block, uint32_t lane,
                                         const void* src, uint64_t n, int64_t timeout_ns,
                                         int64_t nap_ns) {
    int64_t deadline = rg_host_now_ns() + timeout_ns;
    uint64_t done = 0;
    for (;;) {
        done += rg_host_push(r, block, lane, (const uint8_t*)src + done * r->in_slot_size, n - done);
        if (done == n) return done;
        int64_t left = deadline - rg_host_now_ns();
        if (left <= 0) return done;
        struct timespec ts = {0, (long)(left < nap_ns ? left : nap_ns)};
        nanosleep(&ts, nullptr);
    }
}

// Responses waiting in all output rings, at most max (a snapshot: more may come, none go,
// since only the one popping thread takes them).
static inline uint64_t rg_host_responses(rg_region* r, uint64_t max) {
    uint64_t n = 0;
    for (uint32_t b = 0; b < r->grid && n < max; ++b)
        n += rg_ring_size(rg_region_ring(r, b, RG_LANES));
    return n < max ? n : max;
}

// A spinning thread's pause: it lets a sibling hyperthread run and saves power.
static inline void rg_host_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// rg_host_responses, waiting up to timeout_ns for the first response: polling for spin_ns,
// then sleeping on the output bell for at most poll_ns at a time. A GPU rings no bell, so on
// CUDA the spin is what finds a response within microseconds; the naps only bound the cost
// of a long wait.
static inline uint64_t rg_host_wait_responses(rg_region* r, uint64_t max, int64_t timeout_ns,
                                              int64_t poll_ns, int64_t spin_ns) {
    int64_t start = rg_host_now_ns();
    int64_t deadline = start + timeout_ns, spin_until = start + spin_ns;
    for (;;) {
        uint64_t bell = rg_load_acquire(&r->control.out_bell.value);
        uint64_t n = rg_host_responses(r, max);
        int64_t now = rg_host_now_ns();
        if (n || now >= deadline) return n;
        if (now < spin_until) {
            rg_host_relax();
            continue;
        }
        int64_t left = deadline - now;
        rg_bell_sleep(&r->control.out_bell, bell, (uint64_t)(left < poll_ns ? left : poll_ns));
    }
}

// Pops up to n responses into dst from the blocks' output rings, starting at block *next
// (advanced, so that no block starves); returns how many.
static inline uint64_t rg_host_pop(rg_region* r, void* dst, uint64_t n, uint32_t* next) {
    uint8_t* out = (uint8_t*)dst;
    uint64_t got = 0;
    for (uint32_t i = 0; i < r->grid && got < n; ++i) {
        uint32_t b = (*next + i) % r->grid;
        got += rg_ring_pop(rg_region_ring(r, b, RG_LANES), out + got * r->out_slot_size, n - got);
    }
    *next = (*next + 1) % r->grid;
    if (got) rg_bell_ring(&r->control.doorbell);  // a block waiting for room may go on
    return got;
}

// Free slots of an input lane: those whose request the kernel has finished (see rg_ring).
static inline uint64_t rg_host_lane_free(rg_region* r, uint32_t block, uint32_t lane) {
    rg_ring* ring = rg_region_ring(r, block, lane);
    uint64_t used = rg_load_relaxed(&ring->tail.value) - rg_load_acquire(&ring->head.done);
    return used < ring->capacity ? ring->capacity - used : 0;
}

// What a lane holds that the kernel never finished, once the kernel is gone (the host then
// owns both ends of the ring): the requests a block took and never answered, [done, head),
// then those it never took, [head, tail). The first taken one is left out when its response
// went out before the kernel died (see rg_block_status: finishing). Indices that do not
// fit the lane (a kernel that scribbled over them) are narrowed to what can be read.
struct rg_unfinished {
    uint64_t first;  // the index of the first unfinished request
    uint64_t held;   // how many from `first` on the kernel had taken
    uint64_t count;  // how many in all
};

static inline rg_unfinished rg_host_unfinished(rg_region* r, uint32_t block, uint32_t lane) {
    rg_ring* ring = rg_region_ring(r, block, lane);
    uint64_t done = rg_load_acquire(&ring->head.done), head = rg_load_acquire(&ring->head.value);
    uint64_t tail = rg_load_acquire(&ring->tail.value);
    rg_block_status* s = rg_region_status(r, block);
    if (rg_load_acquire(&s->finishing) == (done << 8 | (lane + 1)) && head != done &&
        head - done <= ring->capacity &&
        rg_load_acquire(&rg_region_ring(r, block, RG_LANES)->tail.value) ==
            rg_load_acquire(&s->emitted))
        ++done;  // its response went out before the kernel died
    if (tail - head > ring->capacity) head = tail;  // nothing readable is left untaken
    if (head - done > ring->capacity || tail - done > ring->capacity) done = head;
    return rg_unfinished{done, head - done, tail - done};
}

// Copies the unfinished requests of a lane into dst (room for u.count structs) and empties the
// lane; only once the kernel is gone.
static inline void rg_host_take_unfinished(rg_region* r, uint32_t block, uint32_t lane,
                                           rg_unfinished u, void* dst) {
    rg_ring* ring = rg_region_ring(r, block, lane);
    uint8_t* d = (uint8_t*)dst;
    for (uint64_t i = 0; i < u.count; ++i)
        rg_copy_bytes(d + i * ring->slot_size, rg_ring_slot(ring, u.first + i), ring->slot_size);
    rg_store_release(&ring->head.value, u.first + u.count);
    rg_store_release(&ring->head.done, u.first + u.count);
}

// Writes a command for every block; returns its sequence number, for rg_host_wait_ack.
static inline uint64_t rg_host_command(rg_region* r, uint32_t command) {
    uint64_t seq = (rg_load_relaxed(&r->control.command.value) >> 8) + 1;
    rg_store_release(&r->control.command.value, (seq << 8) | command);
    rg_bell_ring(&r->control.doorbell);
    return seq;
}

// Waits until every block has applied command `seq`; true if they did within timeout_ns.
static inline bool rg_host_wait_ack(rg_region* r, uint64_t seq, int64_t timeout_ns) {
    int64_t deadline = rg_host_now_ns() + timeout_ns;
    uint32_t sleep_ns = 1000;
    for (;;) {
        uint32_t acked = 0;
        for (uint32_t b = 0; b < r->grid; ++b)
            acked += (rg_load_acquire(&rg_region_status(r, b)->state) >> 8) >= seq;
        if (acked == r->grid) return true;
        if (rg_host_now_ns() > deadline) return false;
        struct timespec ts = {0, (long)sleep_ns};
        nanosleep(&ts, nullptr);
        sleep_ns = sleep_ns < 200000 ? sleep_ns * 2 : sleep_ns;
    }
}

// An event loop's interest in responses: while armed (+1 .. -1), responses also write to the
// region's notify eventfd (once per wake-up: see rg_bell).
static inline void rg_host_arm(rg_region* r, bool armed) {
    auto count = rg_atomic_u64(r->control.out_bell.armed);
    if (armed) count.fetch_add(1, cuda::std::memory_order_seq_cst);
    else count.fetch_sub(1, cuda::std::memory_order_seq_cst);
}

// Reads (so resets) the notify eventfd `fd`, then lets the next response write it again; the
// caller looks at the rings after this, so a response it is not woken for is one it finds.
// (In the other order, a write between the two would be read here and never be followed by
// another: the loop would sleep through every later response.)
static inline void rg_host_clear_notify(rg_region* r, int fd) {
    uint64_t count;
    if (read(fd, &count, sizeof count) < 0) {
        // EAGAIN: nothing was written since the last read
    }
    rg_atomic_u64(r->control.out_bell.notified).store(0, cuda::std::memory_order_seq_cst);
}

// A GPU rings no bell, so on CUDA a host thread watches the output rings in its stead and
// wakes an armed event loop through eventfd `fd` by the same rule (rg_bell_notify). It polls
// for spin_ns after the loop arms or is woken, then looks every nap_ns; it returns once *stop.
static inline void rg_host_watch(rg_region* r, int fd, const std::atomic<bool>* stop,
                                 int64_t nap_ns, int64_t spin_ns) {
    rg_bell* bell = &r->control.out_bell;
    int64_t active_at = rg_host_now_ns();
    bool was_watching = false;
    while (!stop->load(std::memory_order_acquire)) {
        bool watching = rg_atomic_u64(bell->armed).load(cuda::std::memory_order_seq_cst) &&
                        !rg_atomic_u64(bell->notified).load(cuda::std::memory_order_seq_cst);
        int64_t now = rg_host_now_ns();
        if (watching && !was_watching) active_at = now;
        was_watching = watching;
        if (watching && rg_host_responses(r, 1)) {
            rg_bell_notify(bell, fd);
            active_at = now;
        } else if (watching && now - active_at < spin_ns) {
            rg_host_relax();
        } else {
            struct timespec ts = {0, (long)nap_ns};
            nanosleep(&ts, nullptr);
        }
    }
}

// Publishes UnifiedBuffer `buffer_id` in table slot `slot` (0 frees the slot): the fields
// first, the id last with a release store, so a kernel never sees half an entry. False if
// there is no such slot or the path does not fit.
static inline bool rg_host_set_buffer(rg_region* r, uint32_t slot, uint64_t buffer_id,
                                      uint64_t device_ptr, uint64_t nbytes, uint32_t dtype_code,
                                      uint32_t itemsize, const char* path, size_t path_len) {
    if (slot >= RG_MAX_BUFFERS) return false;
    rg_buffer_entry* e = rg_region_buffers(r) + slot;
    if (path_len >= sizeof e->path) return false;
    rg_store_release(&e->buffer_id, 0);
    e->device_ptr = device_ptr;
    e->nbytes = nbytes;
    e->dtype_code = dtype_code;
    e->itemsize = itemsize;
    for (size_t i = 0; i < path_len; ++i) e->path[i] = path[i];
    e->path[path_len] = 0;
    rg_store_release(&e->buffer_id, buffer_id);
    return true;
}

#endif  // RG_HOST_H
