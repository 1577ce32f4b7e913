// rg_ring.h - the ring protocol: one header for the kernel, the host helper and the CPU backend.
//
// A kernel's shared region (mapped pinned memory on CUDA, shared memory on the CPU backend):
//
//   rg_region         sizes and offsets, written once by the host before launch
//   rg_control        host -> kernel command word and doorbell (one 128-byte line each)
//   rg_block_status   one line per block, written by that block only: state, counters, heartbeat
//   rings             per block: RG_LANES input lanes (priority classes), then one output ring
//
// Every ring is single-producer single-consumer with fixed-size slots and a power-of-two
// capacity. `head` (next slot to read) is stored only by the consumer, `tail` (next slot to
// write) only by the producer, each on its own 128-byte line; both are 64-bit and monotonic, so
// `tail - head` is the fill level and they never wrap in practice. A producer publishes slots
// with a release store of `tail`, which the consumer's acquire load of `tail` pairs with, and
// vice versa for freed slots: there is no read-modify-write across the bus.
#ifndef RG_RING_H
#define RG_RING_H

#include <cuda/atomic>

#include "rg_platform.h"

#if !defined(__CUDA_ARCH__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#endif

#define RG_LANES 5           // priority classes: 0-63, 64-127, 128, 129-191, 192-255
#define RG_LINE 128          // bytes between independently written words
#define RG_REGION_MAGIC 0x31474e4952475230ull  // "0RGRING1"

// Commands (host -> kernel) and states (kernel -> host). The host writes (seq << 8) | command;
// each block answers (seq << 8) | state once it has applied command `seq`.
#define RG_CMD_NONE 0u
#define RG_CMD_ACTIVATE 1u
#define RG_CMD_DEACTIVATE 2u
#define RG_CMD_TERMINATE 3u

#define RG_STATE_LAUNCHED 0u  // running, not yet activated: pops nothing
#define RG_STATE_ACTIVE 1u
#define RG_STATE_PAUSED 2u    // deactivated: pops nothing
#define RG_STATE_TERMINATED 3u

typedef cuda::atomic_ref<uint64_t, cuda::thread_scope_system> rg_atomic_u64;

RG_FN uint64_t rg_load_acquire(uint64_t* p) {
    return rg_atomic_u64(*p).load(cuda::std::memory_order_acquire);
}
RG_FN uint64_t rg_load_relaxed(uint64_t* p) {
    return rg_atomic_u64(*p).load(cuda::std::memory_order_relaxed);
}
RG_FN void rg_store_release(uint64_t* p, uint64_t v) {
    rg_atomic_u64(*p).store(v, cuda::std::memory_order_release);
}

typedef struct alignas(RG_LINE) rg_line {
    uint64_t value;
    uint8_t _pad[RG_LINE - 8];
} rg_line;

// A doorbell: a counter bumped after each push, and the number of threads asleep on it. On the
// host a sleeper waits on the counter with a futex (its low 32 bits) and a ringer makes the
// wake-up system call only when someone sleeps, so the CPU backend wakes at once and costs
// nothing when busy. A GPU neither rings nor sleeps on a bell: no read-modify-write crosses
// the bus; the host polls its rings, the kernel naps with __nanosleep.
//
// A host event loop cannot sleep on a futex; it arms the bell instead and watches an eventfd,
// whose number (plus one; zero: none) the ringer's process writes to. One write per wake-up
// of the loop, not one per ring: `notified` stays 1 from a write until the loop has read the
// eventfd, and the loop clears it before it looks at the rings (see rg_host_clear_notify), so
// a ring it does not hear about is one whose push that look finds.
typedef struct alignas(RG_LINE) rg_bell {
    uint64_t value;
    uint64_t sleepers;         // threads asleep on the futex
    uint64_t armed;            // event loops watching the eventfd
    uint64_t notified;         // 1: the eventfd was written and the loop has not cleared it yet
    uint64_t notify_fd_plus1;
    uint8_t _pad[RG_LINE - 40];
} rg_bell;

#if !defined(__CUDA_ARCH__)
// Wakes an armed event loop through eventfd `fd`, unless a write since it last cleared
// `notified` is still unread.
RG_FN void rg_bell_notify(rg_bell* bell, int fd) {
    uint64_t one = 1;
    if (rg_atomic_u64(bell->armed).load(cuda::std::memory_order_seq_cst) &&
        !rg_atomic_u64(bell->notified).exchange(1, cuda::std::memory_order_seq_cst)) {
        if (write(fd, &one, sizeof one) < 0) {
            // the eventfd's counter is full, so the loop is already being woken
        }
    }
}
#endif

RG_FN void rg_bell_ring(rg_bell* bell) {
#if defined(__CUDA_ARCH__)
    (void)bell;
#else
    rg_atomic_u64(bell->value).fetch_add(1, cuda::std::memory_order_seq_cst);
    if (rg_atomic_u64(bell->sleepers).load(cuda::std::memory_order_seq_cst))
        syscall(SYS_futex, &bell->value, FUTEX_WAKE, 0x7fffffff, nullptr, nullptr, 0);
    if (bell->notify_fd_plus1) rg_bell_notify(bell, (int)(bell->notify_fd_plus1 - 1));
#endif
}

// Sleeps up to `ns` unless the bell rang since its value was `seen` (read before looking for
// work: a push after that look changes the value, and the futex then returns at once).
RG_FN void rg_bell_sleep(rg_bell* bell, uint64_t seen, uint64_t ns) {
#if defined(__CUDA_ARCH__)
    (void)bell;
    (void)seen;
    __nanosleep((unsigned)ns);
#else
    rg_atomic_u64(bell->sleepers).fetch_add(1, cuda::std::memory_order_seq_cst);
    if (rg_atomic_u64(bell->value).load(cuda::std::memory_order_seq_cst) == seen) {
        struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
        syscall(SYS_futex, &bell->value, FUTEX_WAIT, (uint32_t)seen, &ts, nullptr, 0);
    }
    rg_atomic_u64(bell->sleepers).fetch_sub(1, cuda::std::memory_order_seq_cst);
#endif
}

// A ring's consumer line: `value` is its head (next slot to read). On an input lane `done`
// counts the requests the kernel has finished (answered, or handled without a response): the
// slots in [done, head) hold the requests a block took and has not finished, so the host
// pushes only up to `done + capacity` and those slots stay readable. A kernel that dies
// leaves in them exactly what it took and never answered (see rg_kernel.h: finish()).
typedef struct alignas(RG_LINE) rg_consumer_line {
    uint64_t value;
    uint64_t done;
    uint8_t _pad[RG_LINE - 16];
} rg_consumer_line;

// What a block polls every round, one 16-byte load (rg_bus.h: rg_bus_load_poll), in lane 0's
// producer line of its region. `posted` counts the host's pushes into any of the block's
// lanes, each bumped after the push's tail: a kernel that finds it as it last saw it knows
// that no lane's tail moved since it last read them, and reads none (rg_kernel.h: next()).
// `attention` counts the host's other writes a block must look at, each bumped after the
// write: a command, new links (rg_route.h), a snapshot request (rg_state.h). A kernel reads
// the command word, the links version and its state slot's request only when it moved.
typedef struct alignas(16) rg_poll {
    uint64_t posted;
    uint64_t attention;
} rg_poll;

// A ring's producer line: `value` is its tail (next slot to write); `poll` is used in lane 0
// of a block's region only.
typedef struct alignas(RG_LINE) rg_producer_line {
    uint64_t value;
    rg_poll poll;  // at offset 16: a 16-byte load needs it 16-byte aligned
    uint8_t _pad[RG_LINE - 32];
} rg_producer_line;
static_assert(sizeof(rg_producer_line) == RG_LINE, "rg_producer_line is one line");

typedef struct rg_ring {
    rg_consumer_line head;  // consumer-owned
    rg_producer_line tail;  // producer-owned
    uint64_t capacity;
    uint64_t slot_size;    // the message's struct
    uint64_t slot_stride;  // bytes from one slot to the next (rg_slot_stride)
    uint64_t slot_lead;    // bytes before the first slot
    uint8_t _pad[RG_LINE - 32];
    // followed by slot_lead bytes, then capacity slots of slot_stride bytes
} rg_ring;

typedef struct rg_control {
    rg_line command;   // host-owned: (seq << 8) | RG_CMD_*
    rg_bell doorbell;  // rung by the host after its pushes and every command (idle blocks sleep on it)
    rg_bell out_bell;  // rung by the kernel after every response (a waiting host sleeps on it)
} rg_control;

typedef struct alignas(RG_LINE) rg_block_status {
    uint64_t state;      // (seq << 8) | RG_STATE_*
    uint64_t processed;  // requests handled
    uint64_t emitted;    // responses pushed
    uint64_t errors;     // handler calls that reported ctx.fail()
    uint64_t heartbeat;  // bumped on every poll round, busy or idle
    // The requests whose responses were pushed last (see rg_kernel.h: emit()); 0: none.
    // After a crash the host tells from it and `emitted` whether the responses of a lane's
    // first unfinished requests went out: they did if that lane's `done` still equals the
    // recorded one and the output ring's tail reached `emitted`.
    // Since the batched data path (rg_bus.h) it names a batch: (`done` before it << 24) |
    // (the batch's size << 8) | (lane + 1); every request of it is finished once the output
    // ring's tail reached `emitted`.
    uint64_t finishing;
    // The bus meter (rg_bus.h), CPU backend only: what a GPU would have sent over the bus for
    // this block's accesses to the region so far: read transactions, read bytes, write
    // transactions, write bytes.
    uint64_t bus[4];
    uint64_t _pad[6];
} rg_block_status;

// The `finishing` word of a batch of n requests of lane `lane` taken from index `done` on.
RG_FN uint64_t rg_finishing(uint64_t done, uint64_t n, uint32_t lane) {
    return done << 24 | (n & 0xffff) << 8 | (lane + 1);
}

// How many requests of lane `lane` from index `done` on a `finishing` word says were answered
// (if the output ring's tail reached `emitted`); 0 when it names another batch.
RG_FN uint64_t rg_finished_by(uint64_t finishing, uint64_t done, uint32_t lane) {
    bool same = (finishing >> 24) == (done & ((1ull << 40) - 1)) && (finishing & 0xff) == lane + 1;
    return same ? (finishing >> 8) & 0xffff : 0;
}

typedef struct rg_region {
    uint64_t magic;
    uint64_t total_size;
    uint32_t grid, block;
    uint32_t lane_capacity, out_capacity;
    uint32_t in_slot_size, out_slot_size;
    uint64_t seed;             // per launch: the device's UUID generator is seeded from it
    uint64_t status_offset;    // rg_block_status[grid]
    uint64_t rings_offset;     // per block: RG_LANES lanes then the output ring
    uint64_t lane_stride, out_stride;
    uint64_t buffers_offset;   // rg_buffer_entry[RG_MAX_BUFFERS]
    uint64_t spin_ns;          // CPU backend: how long an idle block polls before it sleeps
    rg_control control;        // starts on the next 128-byte line
} rg_region;

// UnifiedBuffers visible to the kernel (see rg_kernel.h: ctx.buffer(ref)).
#define RG_MAX_BUFFERS 256
typedef struct rg_buffer_entry {
    uint64_t buffer_id;  // 0: free entry
    uint64_t device_ptr; // CUDA: the managed pointer; CPU: 0 until the runner maps `path`
    uint64_t nbytes;
    uint32_t dtype_code; // numpy type character, e.g. 'f' | 'd' << 8 ... see runtime/buffers.py
    uint32_t itemsize;
    char path[96];       // CPU backend: the shared-memory file holding the data
} rg_buffer_entry;

RG_FN uint64_t rg_round_up(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

// Bytes from one slot to the next. A slot larger than a line takes whole lines, so that every
// slot starts at the same offset in its line (the ring's lead) and the runs a copy moves
// (rg_bus.h) cross no more lines in one slot than in another; a smaller one takes the power
// of two that holds it, so that none straddles two lines.
RG_FN uint64_t rg_slot_stride(uint64_t slot_size) {
    if (slot_size >= RG_LINE) return rg_round_up(slot_size, RG_LINE);
    uint64_t s = 1;
    while (s < slot_size) s <<= 1;
    return s;
}

// The lead a ring keeps: the package's (where the first step of a message's copy ends on a
// line boundary, codegen/runs.py: slot_lead) for slots of whole lines; none for smaller ones,
// which a lead would make straddle two lines.
RG_FN uint64_t rg_slot_lead(uint64_t slot_size, uint64_t lead) {
    return rg_slot_stride(slot_size) >= RG_LINE ? lead % RG_LINE : 0;
}

RG_FN uint64_t rg_ring_bytes(uint64_t capacity, uint64_t slot_size, uint64_t lead) {
    return rg_round_up(sizeof(rg_ring) + rg_slot_lead(slot_size, lead) +
                       capacity * rg_slot_stride(slot_size), RG_LINE);
}

// Writes a ring's layout into its header (the indices stay as they are: zero).
RG_FN void rg_ring_layout(rg_ring* ring, uint64_t capacity, uint64_t slot_size, uint64_t lead) {
    ring->capacity = capacity;
    ring->slot_size = slot_size;
    ring->slot_stride = rg_slot_stride(slot_size);
    ring->slot_lead = rg_slot_lead(slot_size, lead);
}

// Lays out a region in `mem` (or only measures it when mem is null); returns its size.
RG_FN uint64_t rg_region_init(void* mem, uint32_t grid, uint32_t block, uint32_t lane_capacity,
                              uint32_t out_capacity, uint32_t in_slot, uint32_t out_slot,
                              uint64_t seed, uint32_t in_lead, uint32_t out_lead) {
    uint64_t status = rg_round_up(sizeof(rg_region), RG_LINE);
    uint64_t buffers = status + (uint64_t)grid * sizeof(rg_block_status);
    uint64_t rings = rg_round_up(buffers + RG_MAX_BUFFERS * sizeof(rg_buffer_entry), RG_LINE);
    uint64_t lane = rg_ring_bytes(lane_capacity, in_slot, in_lead);
    uint64_t out = rg_ring_bytes(out_capacity, out_slot, out_lead);
    uint64_t total = rings + (uint64_t)grid * (RG_LANES * lane + out);
    if (!mem) return total;
    uint8_t* base = (uint8_t*)mem;
    memset(base, 0, total);
    rg_region* r = (rg_region*)mem;
    r->magic = RG_REGION_MAGIC;
    r->total_size = total;
    r->grid = grid;
    r->block = block;
    r->lane_capacity = lane_capacity;
    r->out_capacity = out_capacity;
    r->in_slot_size = in_slot;
    r->out_slot_size = out_slot;
    r->seed = seed;
    r->status_offset = status;
    r->buffers_offset = buffers;
    r->rings_offset = rings;
    r->lane_stride = lane;
    r->out_stride = out;
    for (uint32_t b = 0; b < grid; ++b) {
        for (uint32_t l = 0; l <= RG_LANES; ++l) {
            rg_ring* ring = (rg_ring*)(base + rings + b * (RG_LANES * lane + out) + l * lane);
            if (l < RG_LANES)
                rg_ring_layout(ring, lane_capacity, in_slot, in_lead);
            else
                rg_ring_layout(ring, out_capacity, out_slot, out_lead);
        }
    }
    return total;
}

// Lane `l` (0 = lowest priority class) of block `b`; lane RG_LANES is the block's output ring.
RG_FN rg_ring* rg_region_ring(rg_region* r, uint32_t b, uint32_t l) {
    uint8_t* base = (uint8_t*)r + r->rings_offset + b * (RG_LANES * r->lane_stride + r->out_stride);
    return (rg_ring*)(base + l * r->lane_stride);
}

RG_FN rg_block_status* rg_region_status(rg_region* r, uint32_t b) {
    return (rg_block_status*)((uint8_t*)r + r->status_offset) + b;
}

RG_FN rg_buffer_entry* rg_region_buffers(rg_region* r) {
    return (rg_buffer_entry*)((uint8_t*)r + r->buffers_offset);
}

// The lane of a priority: low 0-63, below normal 64-127, normal 128, above normal 129-191,
// high 192-255; lane 0 lowest.
RG_FN uint32_t rg_lane_of(uint32_t priority) {
    return priority < 64 ? 0 : priority < 128 ? 1 : priority == 128 ? 2 : priority < 192 ? 3 : 4;
}

RG_FN uint8_t* rg_ring_slot(rg_ring* ring, uint64_t index) {
    return (uint8_t*)(ring + 1) + ring->slot_lead + (index & (ring->capacity - 1)) * ring->slot_stride;
}

// A ring's slots as the kernel keeps them, read once from the ring's header (written by the
// host before launch): on a GPU the header is in host memory, where every read crosses the bus.
struct rg_slots {
    uint8_t* first;   // slot 0, past the ring's lead
    uint64_t mask;    // capacity - 1
    uint64_t stride;  // rg_slot_stride
};

RG_FN rg_slots rg_slots_of(rg_ring* ring) {
    return rg_slots{(uint8_t*)(ring + 1) + ring->slot_lead, ring->capacity - 1, ring->slot_stride};
}

RG_FN uint8_t* rg_slot_at(const rg_slots& s, uint64_t index) {
    return s.first + (index & s.mask) * s.stride;
}

// Copies n slots between the ring, from index `index` on (wrapping at its end), and `flat`,
// n structs back to back: into the ring when `into_ring`. `capacity`, `size`, `stride` and
// `lead` are the ring's layout as the caller knows it (the host keeps its own copy).
RG_FN void rg_ring_copy(rg_ring* ring, uint64_t capacity, uint64_t size, uint64_t stride,
                        uint64_t lead, uint64_t index, uint8_t* flat, uint64_t n,
                        bool into_ring) {
    uint8_t* slots = (uint8_t*)(ring + 1) + lead;
    uint64_t at = index & (capacity - 1);
    if (stride == size) {  // slots back to back: at most two copies, to the end and from the start
        uint64_t first = capacity - at < n ? capacity - at : n;
        uint8_t* a = slots + at * size;
        uint8_t* c = flat + first * size;
        if (into_ring) {
            rg_copy_bytes(a, flat, first * size);
            rg_copy_bytes(slots, c, (n - first) * size);
        } else {
            rg_copy_bytes(flat, a, first * size);
            rg_copy_bytes(c, slots, (n - first) * size);
        }
        return;
    }
    for (uint64_t i = 0; i < n; ++i) {
        uint8_t* a = slots + ((at + i) & (capacity - 1)) * stride;
        if (into_ring)
            rg_copy_bytes(a, flat + i * size, size);
        else
            rg_copy_bytes(flat + i * size, a, size);
    }
}

// Producer: copies up to n slots from src, reusing only the slots before index `*free_below`
// (the consumer's head, or an input lane's done); returns how many fit.
RG_FN uint64_t rg_ring_push_until(rg_ring* ring, uint64_t* free_below, const void* src,
                                  uint64_t n) {
    uint64_t tail = rg_load_relaxed(&ring->tail.value);
    uint64_t head = rg_load_acquire(free_below);
    uint64_t free_slots = ring->capacity - (tail - head);
    if (n > free_slots) n = free_slots;
    rg_ring_copy(ring, ring->capacity, ring->slot_size, ring->slot_stride, ring->slot_lead, tail,
                 (uint8_t*)src, n, true);
    if (n) rg_store_release(&ring->tail.value, tail + n);
    return n;
}

// Producer: copies up to n slots from src; returns how many fit.
RG_FN uint64_t rg_ring_push(rg_ring* ring, const void* src, uint64_t n) {
    return rg_ring_push_until(ring, &ring->head.value, src, n);
}

// Producer of an input lane: slots are reused only once the kernel finished their request.
RG_FN uint64_t rg_lane_push(rg_ring* lane, const void* src, uint64_t n) {
    return rg_ring_push_until(lane, &lane->head.done, src, n);
}

// Consumer: copies up to max slots into dst; returns how many there were.
RG_FN uint64_t rg_ring_pop(rg_ring* ring, void* dst, uint64_t max) {
    uint64_t head = rg_load_relaxed(&ring->head.value);
    uint64_t tail = rg_load_acquire(&ring->tail.value);
    uint64_t n = tail - head;
    if (n > max) n = max;
    rg_ring_copy(ring, ring->capacity, ring->slot_size, ring->slot_stride, ring->slot_lead, head,
                 (uint8_t*)dst, n, false);
    if (n) rg_store_release(&ring->head.value, head + n);
    return n;
}

// Slots as seen by the consumer: how many are waiting (a snapshot).
RG_FN uint64_t rg_ring_size(rg_ring* ring) {
    return rg_load_acquire(&ring->tail.value) - rg_load_acquire(&ring->head.value);
}

#endif  // RG_RING_H
