// rg_host.cpp - the host side of the rings, as a small shared library (librg_host) that Python
// calls through ctypes, which releases the GIL for the length of each call.
//
// The same functions serve both backends: the region is shared memory on the CPU backend and
// mapped pinned memory on CUDA. Waits sleep on the output doorbell (a futex the CPU backend's
// kernels ring) for at most `poll_ns` at a time, so on CUDA they poll at that interval.
#include <time.h>

#include "rg_ring.h"

static int64_t now_ns() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

extern "C" {

uint64_t rg_host_region_size(uint32_t grid, uint32_t block, uint32_t lane_capacity,
                             uint32_t out_capacity, uint32_t in_slot, uint32_t out_slot) {
    return rg_region_init(nullptr, grid, block, lane_capacity, out_capacity, in_slot, out_slot, 0);
}

uint64_t rg_host_region_init(void* mem, uint32_t grid, uint32_t block, uint32_t lane_capacity,
                             uint32_t out_capacity, uint32_t in_slot, uint32_t out_slot,
                             uint64_t seed) {
    return rg_region_init(mem, grid, block, lane_capacity, out_capacity, in_slot, out_slot, seed);
}

// Pushes up to n structs into lane `lane` of block `block`; returns how many fit.
uint64_t rg_host_push(void* region, uint32_t block, uint32_t lane, const void* src, uint64_t n) {
    rg_region* r = (rg_region*)region;
    uint64_t pushed = rg_ring_push(rg_region_ring(r, block, lane), src, n);
    if (pushed) rg_bell_ring(&r->control.doorbell);
    return pushed;
}

// Pushes all n structs, napping while the lane is full, for at most timeout_ns; returns how
// many went in. A full lane drains at the kernel's pace, so the nap is a plain sleep of
// nap_ns: no bell per request for the kernel to ring.
uint64_t rg_host_push_wait(void* region, uint32_t block, uint32_t lane, const void* src,
                           uint64_t n, int64_t timeout_ns, int64_t nap_ns) {
    rg_region* r = (rg_region*)region;
    rg_ring* ring = rg_region_ring(r, block, lane);
    int64_t deadline = now_ns() + timeout_ns;
    uint64_t done = 0;
    for (;;) {
        uint64_t pushed = rg_ring_push(ring, (const uint8_t*)src + done * ring->slot_size, n - done);
        if (pushed) rg_bell_ring(&r->control.doorbell);
        done += pushed;
        if (done == n) return done;
        int64_t left = deadline - now_ns();
        if (left <= 0) return done;
        struct timespec ts = {0, (long)(left < nap_ns ? left : nap_ns)};
        nanosleep(&ts, nullptr);
    }
}

// Slots waiting in a lane (pushed, not yet taken by the kernel).
uint64_t rg_host_lane_size(void* region, uint32_t block, uint32_t lane) {
    return rg_ring_size(rg_region_ring((rg_region*)region, block, lane));
}

// Pops up to `max` responses from the blocks' output rings, starting at block *next (updated,
// so that no block starves); waits up to timeout_ns for the first one. Returns the count.
uint64_t rg_host_pop(void* region, void* dst, uint64_t max, int64_t timeout_ns, uint32_t* next,
                     int64_t poll_ns) {
    rg_region* r = (rg_region*)region;
    int64_t deadline = timeout_ns > 0 ? now_ns() + timeout_ns : 0;
    uint8_t* out = (uint8_t*)dst;
    for (;;) {
        uint64_t bell = rg_load_acquire(&r->control.out_bell.value);
        uint64_t n = 0;
        for (uint32_t i = 0; i < r->grid && n < max; ++i) {
            uint32_t b = (*next + i) % r->grid;
            n += rg_ring_pop(rg_region_ring(r, b, RG_LANES), out + n * r->out_slot_size, max - n);
        }
        *next = (*next + 1) % r->grid;
        if (n) rg_bell_ring(&r->control.doorbell);  // a block waiting for room may go on
        if (n || timeout_ns <= 0) return n;
        int64_t left = deadline - now_ns();
        if (left <= 0) return 0;
        rg_bell_sleep(&r->control.out_bell, bell, (uint64_t)(left < poll_ns ? left : poll_ns));
    }
}

// Writes a command for every block; returns its sequence number, for rg_host_wait_ack.
uint64_t rg_host_command(void* region, uint32_t command) {
    rg_region* r = (rg_region*)region;
    uint64_t seq = (rg_load_relaxed(&r->control.command.value) >> 8) + 1;
    rg_store_release(&r->control.command.value, (seq << 8) | command);
    rg_bell_ring(&r->control.doorbell);
    return seq;
}

// Waits until every block has applied command `seq`; 1 if they did within timeout_ns.
int rg_host_wait_ack(void* region, uint64_t seq, int64_t timeout_ns) {
    rg_region* r = (rg_region*)region;
    int64_t deadline = now_ns() + timeout_ns;
    uint32_t sleep_ns = 1000;
    for (;;) {
        uint32_t acked = 0;
        for (uint32_t b = 0; b < r->grid; ++b)
            acked += (rg_load_acquire(&rg_region_status(r, b)->state) >> 8) >= seq;
        if (acked == r->grid) return 1;
        if (now_ns() > deadline) return 0;
        struct timespec ts = {0, (long)sleep_ns};
        nanosleep(&ts, nullptr);
        sleep_ns = sleep_ns < 200000 ? sleep_ns * 2 : sleep_ns;
    }
}

// CPU backend: how long an idle block polls before it sleeps (see rg_poller::spinning).
void rg_host_set_spin(void* region, uint64_t spin_ns) { ((rg_region*)region)->spin_ns = spin_ns; }

// An event loop's interest in responses: while armed (delta +1 .. -1), every response also
// writes to the eventfd `notify_fd` (set once, -1 for none).
void rg_host_arm(void* region, int64_t delta, int32_t notify_fd) {
    rg_region* r = (rg_region*)region;
    if (notify_fd >= 0) r->control.out_bell.notify_fd_plus1 = (uint64_t)notify_fd + 1;
    if (delta > 0) rg_atomic_u64(r->control.out_bell.sleepers).fetch_add(1, cuda::std::memory_order_seq_cst);
    if (delta < 0) rg_atomic_u64(r->control.out_bell.sleepers).fetch_sub(1, cuda::std::memory_order_seq_cst);
}

// Publishes UnifiedBuffer `buffer_id` in table slot `slot` (0 frees the slot): the fields
// first, the id last with a release store, so a kernel never sees half an entry.
int rg_host_set_buffer(void* region, uint32_t slot, uint64_t buffer_id, uint64_t device_ptr,
                       uint64_t nbytes, uint32_t dtype_code, uint32_t itemsize,
                       const char* path) {
    if (slot >= RG_MAX_BUFFERS) return 0;
    rg_buffer_entry* e = rg_region_buffers((rg_region*)region) + slot;
    rg_store_release(&e->buffer_id, 0);
    e->device_ptr = device_ptr;
    e->nbytes = nbytes;
    e->dtype_code = dtype_code;
    e->itemsize = itemsize;
    size_t n = 0;
    for (; path && path[n] && n + 1 < sizeof e->path; ++n) e->path[n] = path[n];
    e->path[n] = 0;
    rg_store_release(&e->buffer_id, buffer_id);
    return 1;
}

// Per block: state, processed, emitted, errors, heartbeat (5 values each).
void rg_host_status(void* region, uint64_t* out) {
    rg_region* r = (rg_region*)region;
    for (uint32_t b = 0; b < r->grid; ++b) {
        rg_block_status* s = rg_region_status(r, b);
        out[5 * b + 0] = rg_load_acquire(&s->state);
        out[5 * b + 1] = rg_load_acquire(&s->processed);
        out[5 * b + 2] = rg_load_acquire(&s->emitted);
        out[5 * b + 3] = rg_load_acquire(&s->errors);
        out[5 * b + 4] = rg_load_acquire(&s->heartbeat);
    }
}

}  // extern "C"
