// rg_state.h - per-block persistent state of a kernel declared with `state=Cls`: where the host
// puts the defaults and finds consistent snapshots, and the handshake that asks for one.
//
// The live state is a `__device__ Cls <id>_state[grid]` array in the kernel's own memory (device
// memory on a GPU: the handler never crosses the bus for it). The region is followed, at
// rg_state_area_offset(), by one rg_state_slot per block:
//
//   request   line written only by the host: the number of the snapshot it asks for
//   done      line written only by the block: the number of the last snapshot it wrote
//   bytes     the state struct: the defaults before launch, then each snapshot
//
// At launch thread 0 of each block copies its slot's bytes into the live state (the host wrote
// the defaults there before it started the kernel). The host asks for a snapshot by storing
// request + 1 (release) and ringing the doorbell; the block's thread 0 notices between two
// requests, after the barrier at which every thread of the block is done with the previous one,
// copies the live state into the slot and stores done = request (release). The host's acquire
// load of done pairs with it, so the bytes it then reads are one state between two messages.
#ifndef RG_STATE_H
#define RG_STATE_H

#include "rg_ring.h"

typedef struct rg_state_slot {
    rg_line request;  // host-owned
    rg_line done;     // block-owned
    // followed by the state struct, padded to a whole line
} rg_state_slot;

// A kernel without `state=`.
struct rg_no_state {};

RG_FN uint64_t rg_state_stride(uint64_t state_size) {
    return sizeof(rg_state_slot) + rg_round_up(state_size, RG_LINE);
}

// Where the slots start: right after the region's rings (a whole line).
RG_FN uint64_t rg_state_area_offset(uint64_t region_size) { return rg_round_up(region_size, RG_LINE); }

RG_FN uint64_t rg_state_area_bytes(uint32_t grid, uint64_t state_size) {
    return state_size ? (uint64_t)grid * rg_state_stride(state_size) : 0;
}

RG_FN rg_state_slot* rg_state_slot_of(uint8_t* area, uint32_t block, uint64_t state_size) {
    return (rg_state_slot*)(area + (uint64_t)block * rg_state_stride(state_size));
}

RG_FN uint8_t* rg_state_bytes(rg_state_slot* slot) { return (uint8_t*)(slot + 1); }

#if !defined(__CUDA_ARCH__)
#include <time.h>

#include <atomic>

// Host: asks block `slot`'s kernel for a snapshot; the number to wait for (rg_state_host_wait).
// The blocks read their slot's request only when told (rg_host_tell). One asker at a time per
// slot (the runtime's lock).
static inline uint64_t rg_state_host_request(rg_state_slot* slot) {
    uint64_t want = rg_load_relaxed(&slot->request.value) + 1;
    rg_store_release(&slot->request.value, want);
    return want;
}

// Host: waits up to timeout_ns for snapshot `want`; true when the slot's bytes are now that
// snapshot. `cancel`: a flag that, once set, ends the wait as a timeout does (the region is
// going).
static inline bool rg_state_host_wait(rg_state_slot* slot, uint64_t want, int64_t timeout_ns,
                                      const std::atomic<bool>* cancel) {
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    uint32_t nap_ns = 1000;
    for (;;) {
        if (rg_load_acquire(&slot->done.value) >= want) return true;
        if (cancel && cancel->load(std::memory_order_seq_cst)) return false;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t spent = (int64_t)(now.tv_sec - start.tv_sec) * 1000000000 + (now.tv_nsec - start.tv_nsec);
        if (spent > timeout_ns) return false;
        struct timespec ts = {0, (long)nap_ns};
        nanosleep(&ts, nullptr);
        nap_ns = nap_ns < 100000 ? nap_ns * 2 : nap_ns;
    }
}
#endif

#endif  // RG_STATE_H
