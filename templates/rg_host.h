// rg_host.h - the host side of the rings: push into lanes, pop responses, lifecycle commands,
// counters and the buffer table of one region. Plain C++ over rg_ring.h, so that the TSan
// stress test (tests/native/ring_stress.cpp) runs exactly the code that Python's _rg_host
// module (rg_host.cpp) binds.
//
// The same functions serve both backends: the region is shared memory on the CPU backend and
// mapped pinned memory on CUDA. Waits poll for a while, then sleep on the output doorbell (a
// futex the CPU backend's kernels ring) for at most `poll_ns` at a time; on CUDA, where the
// kernel rings nothing, that is how often they look.
//
// The host trusts nothing in the region: a handler bug can write anywhere in it. So the layout
// (grid, offsets, capacities, slot sizes) is kept in an rg_host from the moment the host lays
// the region out, the index each ring's host end owns (a lane's tail, an output ring's head) is
// kept there too, and the indices read back from the kernel (a lane's head and done, an output
// ring's tail) are bounded against the ring's capacity before any copy or allocation. A region
// whose indices are impossible raises rg_host_fault, which fails that kernel; the host itself
// never reads or writes outside the region.
#ifndef RG_HOST_H
#define RG_HOST_H

#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "rg_ring.h"

// A region whose kernel broke the ring protocol (wrote over the indices the host reads).
struct rg_host_fault : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A call on a region that was released (rg_host_release), or whose wait a release ended.
struct rg_host_released : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// One region as the host laid it out: where everything is, and the host's own ring indices.
struct rg_host {
    uint8_t* base = nullptr;
    uint32_t grid = 0, lane_capacity = 0, out_capacity = 0, in_slot = 0, out_slot = 0;
    uint32_t in_lead = 0, out_lead = 0;  // bytes before a ring's first slot (rg_slot_lead)
    uint64_t status_offset = 0, rings_offset = 0, lane_stride = 0, out_stride = 0;
    uint64_t buffers_offset = 0;
    std::atomic<uint64_t> command_seq{0};
    // Atomic because a thread that only looks (lane_size, a watcher) may read them while the
    // one thread that owns the index moves it.
    std::unique_ptr<std::atomic<uint64_t>[]> lane_tail;  // [grid * RG_LANES]: what the host pushed
    std::unique_ptr<std::atomic<uint64_t>[]> out_head;   // [grid]: what the host popped
    // The region's memory is about to go (rg_host_release): no new user, every wait returns.
    std::atomic<bool> released{false};
    // Threads inside a call that reads the region without the caller's lock on it (a wait
    // that dropped the GIL): the memory is freed only once none is left.
    std::mutex users_lock;
    std::condition_variable users_gone;
    uint64_t users = 0;
};

static inline bool rg_host_is_released(const rg_host* h) {
    return h->released.load(std::memory_order_seq_cst);
}

// A thread's use of a region for one call, taken before it drops the GIL: rg_host_release
// waits until the last one is given back. Throws rg_host_released once a release began, so
// no thread starts reading memory that is about to go.
class rg_host_user {
  public:
    explicit rg_host_user(rg_host* h) : h_(h) {
        std::lock_guard<std::mutex> lock(h->users_lock);
        if (rg_host_is_released(h)) throw rg_host_released("the kernel's region was released");
        ++h->users;
    }
    ~rg_host_user() {
        std::lock_guard<std::mutex> lock(h_->users_lock);
        if (--h_->users == 0) h_->users_gone.notify_all();
    }
    rg_host_user(const rg_host_user&) = delete;
    rg_host_user& operator=(const rg_host_user&) = delete;

  private:
    rg_host* h_;
};

static inline bool rg_host_pow2(uint64_t n) { return n && !(n & (n - 1)); }

// Lays the region out in `mem` (rg_region_init) and keeps its layout in `h`. Throws
// std::invalid_argument for parameters no region can have: the ring masks need power-of-two
// capacities, and a ring needs a slot.
static inline void rg_host_init(rg_host* h, void* mem, uint32_t grid, uint32_t block,
                                uint32_t lane_capacity, uint32_t out_capacity, uint32_t in_slot,
                                uint32_t out_slot, uint64_t seed, uint32_t in_lead,
                                uint32_t out_lead) {
    if (!mem) throw std::invalid_argument("a region needs memory: the address is 0");
    if (!grid || !block) throw std::invalid_argument("a region needs grid >= 1 and block >= 1");
    if (!rg_host_pow2(lane_capacity) || !rg_host_pow2(out_capacity))
        throw std::invalid_argument("lane and output ring capacities must be powers of two, not " +
                                    std::to_string(lane_capacity) + " and " +
                                    std::to_string(out_capacity));
    if (!in_slot || !out_slot) throw std::invalid_argument("ring slots must be at least a byte");
    rg_region_init(mem, grid, block, lane_capacity, out_capacity, in_slot, out_slot, seed, in_lead,
                   out_lead);
    // Read back before the kernel starts, so what is read is what rg_region_init computed.
    const rg_region* r = (const rg_region*)mem;
    h->base = (uint8_t*)mem;
    h->grid = grid;
    h->lane_capacity = lane_capacity;
    h->out_capacity = out_capacity;
    h->in_slot = in_slot;
    h->out_slot = out_slot;
    h->in_lead = (uint32_t)rg_slot_lead(in_slot, in_lead);
    h->out_lead = (uint32_t)rg_slot_lead(out_slot, out_lead);
    h->status_offset = r->status_offset;
    h->rings_offset = r->rings_offset;
    h->lane_stride = r->lane_stride;
    h->out_stride = r->out_stride;
    h->buffers_offset = r->buffers_offset;
    h->command_seq.store(0);
    h->lane_tail.reset(new std::atomic<uint64_t>[(size_t)grid * RG_LANES]());
    h->out_head.reset(new std::atomic<uint64_t>[grid]());
}

static inline rg_region* rg_host_region(const rg_host* h) { return (rg_region*)h->base; }

// Lane `l` of block `b` (l == RG_LANES: its output ring), from the host's layout.
static inline rg_ring* rg_host_ring(const rg_host* h, uint32_t b, uint32_t l) {
    return (rg_ring*)(h->base + h->rings_offset +
                      (uint64_t)b * (RG_LANES * h->lane_stride + h->out_stride) +
                      (uint64_t)l * h->lane_stride);
}

static inline rg_block_status* rg_host_status(const rg_host* h, uint32_t b) {
    return (rg_block_status*)(h->base + h->status_offset) + b;
}

[[noreturn]] static inline void rg_host_bad_ring(uint32_t b, uint32_t l, uint64_t head,
                                                 uint64_t tail, uint64_t capacity) {
    std::string ring = l < RG_LANES ? "lane " + std::to_string(l) : std::string("output ring");
    throw rg_host_fault("block " + std::to_string(b) + "'s " + ring + " has head " +
                        std::to_string(head) + " and tail " + std::to_string(tail) +
                        ", which no ring of " + std::to_string(capacity) +
                        " slots can have: the kernel wrote over its region");
}

// A ring's header as the kernel must have left it: the capacity and slot size the host laid
// out (the kernel's own copies of the layout, which it reads on every push and pop).
static inline rg_ring* rg_host_checked_ring(const rg_host* h, uint32_t b, uint32_t l) {
    rg_ring* ring = rg_host_ring(h, b, l);
    uint64_t capacity = l < RG_LANES ? h->lane_capacity : h->out_capacity;
    uint64_t slot = l < RG_LANES ? h->in_slot : h->out_slot;
    uint64_t lead = l < RG_LANES ? h->in_lead : h->out_lead;
    if (ring->capacity != capacity || ring->slot_size != slot ||
        ring->slot_stride != rg_slot_stride(slot) || ring->slot_lead != lead) {
        std::string which = l < RG_LANES ? "lane " + std::to_string(l) : std::string("output ring");
        throw rg_host_fault("block " + std::to_string(b) + "'s " + which + " says " +
                            std::to_string(ring->capacity) + " slots of " +
                            std::to_string(ring->slot_size) + " bytes where the host laid out " +
                            std::to_string(capacity) + " of " + std::to_string(slot) +
                            ": the kernel wrote over its region");
    }
    return ring;
}

// The host's own index of a ring (`index`, in the region) is what it last stored (`own`):
// checked by the one thread that moves it, before it does.
static inline void rg_host_check_own(uint32_t b, uint32_t l, uint64_t* index, uint64_t own) {
    uint64_t seen = rg_load_relaxed(index);
    if (seen != own) {
        std::string which = l < RG_LANES ? "lane " + std::to_string(l) + "'s tail"
                                         : std::string("output ring's head");
        throw rg_host_fault("block " + std::to_string(b) + "'s " + which + " is " +
                            std::to_string(seen) + " where the host left " + std::to_string(own) +
                            ": the kernel wrote over its region");
    }
}

// Two kinds of reader. The owner of a ring's host end (the thread that pushes into a lane, the
// one that pops an output ring) sees the host's index stand still while it reads the kernel's,
// so it checks exactly: at most `capacity` slots between them. Any other thread (lane_size, a
// watcher) reads the two indices at different moments, between which both may move, so it
// checks only what no interleaving can break (a head never passes its tail, the index the
// host publishes never passes the one it keeps) and clamps the count it returns to the
// capacity; the owner's next look catches the rest.

// A lane's three indices: `done` (requests the kernel finished), `head` (requests it took),
// `tail` (requests the host pushed; the host's own copy), checked so that
// done <= head <= tail and tail - done <= capacity. The slots in [done, tail) are in use:
// those in [done, head) hold requests a block took and has not finished (see rg_ring), which
// a dead kernel's host still reads, so the host pushes only up to done + capacity.
struct rg_lane_indices {
    uint64_t done, head, tail;
};

[[noreturn]] static inline void rg_host_bad_lane(uint32_t b, uint32_t l, rg_lane_indices i,
                                                 uint64_t capacity) {
    throw rg_host_fault("block " + std::to_string(b) + "'s lane " + std::to_string(l) +
                        " has done " + std::to_string(i.done) + ", head " +
                        std::to_string(i.head) + " and tail " + std::to_string(i.tail) +
                        ", which no lane of " + std::to_string(capacity) +
                        " slots can have: the kernel wrote over its region");
}

// Lane `l` of block `b`'s indices, as its pushing thread (owner) or any thread sees them.
// `done` is read before `head`: the kernel moves a request's head before its done, so in this
// order done <= head whatever the kernel does between the two reads.
static inline rg_lane_indices rg_host_lane_indices(const rg_host* h, uint32_t b, uint32_t l,
                                                   bool owner) {
    rg_ring* ring = rg_host_checked_ring(h, b, l);
    const std::atomic<uint64_t>& own = h->lane_tail[(size_t)b * RG_LANES + l];
    if (owner) {
        rg_lane_indices i;
        i.tail = own.load(std::memory_order_relaxed);
        i.done = rg_load_acquire(&ring->head.done);
        i.head = rg_load_acquire(&ring->head.value);
        if (i.tail - i.done > h->lane_capacity || i.head - i.done > i.tail - i.done)
            rg_host_bad_lane(b, l, i, h->lane_capacity);
        return i;
    }
    // The pusher stores its own copy before the region's tail, so in this order of reads
    // done <= head <= published tail <= own tail always holds.
    rg_lane_indices i;
    i.done = rg_load_acquire(&ring->head.done);
    i.head = rg_load_acquire(&ring->head.value);
    uint64_t published = rg_load_acquire(&ring->tail.value);
    i.tail = own.load(std::memory_order_acquire);
    if ((int64_t)(i.head - i.done) < 0 || (int64_t)(published - i.head) < 0 ||
        (int64_t)(i.tail - published) < 0)
        rg_host_bad_lane(b, l, i, h->lane_capacity);
    return i;
}

static inline uint64_t rg_host_clamp(uint64_t n, uint64_t capacity) {
    return n < capacity ? n : capacity;
}

// Structs in lane `l` of block `b` that the kernel has not taken yet.
static inline uint64_t rg_host_lane_fill(const rg_host* h, uint32_t b, uint32_t l, bool owner) {
    rg_lane_indices i = rg_host_lane_indices(h, b, l, owner);
    return rg_host_clamp(i.tail - i.head, h->lane_capacity);
}

// Free slots of lane `l` of block `b`: those whose request the kernel has finished.
static inline uint64_t rg_host_lane_free(const rg_host* h, uint32_t b, uint32_t l, bool owner) {
    rg_lane_indices i = rg_host_lane_indices(h, b, l, owner);
    return h->lane_capacity - rg_host_clamp(i.tail - i.done, h->lane_capacity);
}

// Responses in block `b`'s output ring, as its popping thread (owner) or any thread sees them.
static inline uint64_t rg_host_out_fill(const rg_host* h, uint32_t b, bool owner) {
    rg_ring* ring = rg_host_checked_ring(h, b, RG_LANES);
    uint64_t head = h->out_head[b].load(std::memory_order_acquire);
    uint64_t tail = rg_load_acquire(&ring->tail.value);
    if (owner ? tail - head > h->out_capacity : (int64_t)(tail - head) < 0)
        rg_host_bad_ring(b, RG_LANES, head, tail, h->out_capacity);
    return tail - head < h->out_capacity ? tail - head : h->out_capacity;
}

// Every lane of block `b` as any thread may check it: run whenever the block answered, so that
// a kernel that wrote over a lane the host is not pushing into (and that now feeds it
// garbage, or nothing) is caught while it answers.
static inline void rg_host_audit_lanes(const rg_host* h, uint32_t b) {
    for (uint32_t l = 0; l < RG_LANES; ++l) rg_host_lane_fill(h, b, l, false);
}

// Copies n slots between a ring (from ring index `index`, wrapping at `capacity`) and `flat`,
// by the layout the host laid out (not the ring header's).
static inline void rg_host_copy(rg_ring* ring, uint64_t capacity, uint64_t slot, uint64_t lead,
                                uint64_t index, uint8_t* flat, uint64_t n, bool into_ring) {
    rg_ring_copy(ring, capacity, slot, rg_slot_stride(slot), lead, index, flat, n, into_ring);
}

// rg_bell_ring for the host's doorbell, without the eventfd that rg_bell_ring would take from
// the region: that number is the kernel's to write, and the host writes no fd it was handed.
static inline void rg_host_ring_doorbell(const rg_host* h) {
    rg_bell* bell = &rg_host_region(h)->control.doorbell;
    rg_atomic_u64(bell->value).fetch_add(1, cuda::std::memory_order_seq_cst);
    if (rg_atomic_u64(bell->sleepers).load(cuda::std::memory_order_seq_cst))
        syscall(SYS_futex, &bell->value, FUTEX_WAKE, 0x7fffffff, nullptr, nullptr, 0);
}

// Tells every block to look at what the host just wrote for them all (a command, new links, a
// state request: rg_poll reads those only when `attention` moved), and wakes a sleeping one.
// By the host's own copy of the layout: the region's grid and offsets are the kernel's to
// write, and bumping by them could write anywhere in the host's memory.
static inline void rg_host_tell(const rg_host* h) {
    for (uint32_t b = 0; b < h->grid; ++b)
        rg_atomic_u64(rg_host_ring(h, b, 0)->tail.poll.attention)
            .fetch_add(1, cuda::std::memory_order_release);
    rg_host_ring_doorbell(h);
}

static inline int64_t rg_host_now_ns() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// rg_host_push without the doorbell: the caller rings it (rg_host_ring_doorbell) once for a
// burst of pushes, so a kernel asleep is woken once per burst rather than once per message.
// Until it is rung, a kernel that went to sleep just before the push takes it when its nap ends.
static inline uint64_t rg_host_push_quiet(rg_host* h, uint32_t b, uint32_t l, const void* src,
                                          uint64_t n) {
    uint64_t room = rg_host_lane_free(h, b, l, true);
    if (n > room) n = room;
    if (!n) return 0;
    std::atomic<uint64_t>& own = h->lane_tail[(size_t)b * RG_LANES + l];
    uint64_t tail = own.load(std::memory_order_relaxed);
    rg_ring* ring = rg_host_ring(h, b, l);
    rg_host_check_own(b, l, &ring->tail.value, tail);
    rg_host_copy(ring, h->lane_capacity, h->in_slot, h->in_lead, tail, (uint8_t*)src, n, true);
    own.store(tail + n, std::memory_order_release);  // first: see rg_host_lane_indices
    rg_store_release(&ring->tail.value, tail + n);
    rg_atomic_u64(rg_host_ring(h, b, 0)->tail.poll.posted).fetch_add(1, cuda::std::memory_order_release);
    return n;
}

// Pushes up to n structs into lane `l` of block `b`, and rings the doorbell; returns how many fit.
static inline uint64_t rg_host_push(rg_host* h, uint32_t b, uint32_t l, const void* src,
                                    uint64_t n) {
    n = rg_host_push_quiet(h, b, l, src, n);
    if (n) rg_host_ring_doorbell(h);
    return n;
}

// Pushes all n structs, napping while the lane is full, for at most timeout_ns; returns how
// many went in. A full lane drains at the kernel's pace, so the nap is a plain sleep of
// nap_ns: no bell per request for the kernel to ring.
static inline uint64_t rg_host_push_wait(rg_host* h, uint32_t b, uint32_t l, const void* src,
                                         uint64_t n, int64_t timeout_ns, int64_t nap_ns) {
    int64_t deadline = rg_host_now_ns() + timeout_ns;
    uint64_t done = 0;
    for (;;) {
        if (rg_host_is_released(h)) return done;  // what a release cut short: the caller raises
        done += rg_host_push(h, b, l, (const uint8_t*)src + done * h->in_slot, n - done);
        if (done == n) return done;
        int64_t left = deadline - rg_host_now_ns();
        if (left <= 0) return done;
        struct timespec ts = {0, (long)(left < nap_ns ? left : nap_ns)};
        nanosleep(&ts, nullptr);
    }
}

// Responses waiting in all output rings, at most max (a snapshot: more may come, none go,
// since only the one popping thread takes them).
static inline uint64_t rg_host_responses(const rg_host* h, uint64_t max, bool owner) {
    uint64_t n = 0;
    for (uint32_t b = 0; b < h->grid && n < max; ++b) n += rg_host_out_fill(h, b, owner);
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

// How long a wait polls with a pause alone before it yields its core between polls: an answer
// due within this (a kernel that polls its lanes) is seen the moment it lands.
#define RG_HOST_SPIN_ALONE_NS 4000

// rg_host_responses, waiting up to timeout_ns for the first response: polling for spin_ns,
// then sleeping on the output bell for at most poll_ns at a time. A GPU rings no bell, so on
// CUDA the spin is what finds a response within microseconds; the naps only bound the cost
// of a long wait. Past RG_HOST_SPIN_ALONE_NS the polls yield the core in between: on a machine
// with fewer free cores than runnable threads, the kernel's runner that the push woke is
// often queued on this very core (the scheduler places a wakee beside its waker), and a
// spin that never yields only delays the answer it waits for (measured on 2 busy cores: every
// answer came ~20 us after the spin ended, whatever its length). A release ends the wait at
// once (it rings the bell after it marks the region: the bell is read before the mark, so a
// sleep that missed the mark never starts).
static inline uint64_t rg_host_wait_responses(const rg_host* h, uint64_t max, int64_t timeout_ns,
                                              int64_t poll_ns, int64_t spin_ns) {
    rg_bell* out_bell = &rg_host_region(h)->control.out_bell;
    int64_t start = rg_host_now_ns();
    int64_t deadline = start + timeout_ns, spin_until = start + spin_ns;
    int64_t alone_until = start + RG_HOST_SPIN_ALONE_NS;
    for (;;) {
        uint64_t bell = rg_load_acquire(&out_bell->value);
        if (rg_host_is_released(h)) return 0;
        uint64_t n = rg_host_responses(h, max, true);
        int64_t now = rg_host_now_ns();
        if (n || now >= deadline) return n;
        if (now < spin_until) {
            if (now < alone_until)
                rg_host_relax();
            else
                sched_yield();
            continue;
        }
        int64_t left = deadline - now;
        rg_bell_sleep(out_bell, bell, (uint64_t)(left < poll_ns ? left : poll_ns));
    }
}

// Pops up to n responses into dst from the blocks' output rings, starting at block *next
// (advanced, so that no block starves); returns how many.
static inline uint64_t rg_host_pop(rg_host* h, void* dst, uint64_t n, uint32_t* next) {
    uint8_t* out = (uint8_t*)dst;
    uint64_t got = 0;
    for (uint32_t i = 0; i < h->grid && got < n; ++i) {
        uint32_t b = (*next + i) % h->grid;
        uint64_t k = rg_host_out_fill(h, b, true);
        if (k > n - got) k = n - got;
        if (!k) continue;
        rg_host_audit_lanes(h, b);
        uint64_t head = h->out_head[b].load(std::memory_order_relaxed);
        rg_ring* ring = rg_host_ring(h, b, RG_LANES);
        rg_host_check_own(b, RG_LANES, &ring->head.value, head);
        rg_host_copy(ring, h->out_capacity, h->out_slot, h->out_lead, head, out + got * h->out_slot, k, false);
        rg_store_release(&ring->head.value, head + k);
        h->out_head[b].store(head + k, std::memory_order_release);
        got += k;
    }
    *next = (*next + 1) % h->grid;
    if (got) rg_host_ring_doorbell(h);  // a block waiting for room may go on
    return got;
}

// What a lane holds that the kernel never finished, once the kernel is gone (the host then
// owns both ends of the ring): the requests a block took and never answered, [done, head),
// then those it never took, [head, tail). The first taken ones are left out when their
// responses went out before the kernel died (see rg_block_status: finishing). The indices are checked
// like a push's (rg_host_lane_indices: a fault if impossible); the status words are only
// compared, so a kernel that wrote over them can at worst move that one request between
// "held" and "answered", never make the host read outside the lane.
struct rg_unfinished {
    uint64_t first;  // the index of the first unfinished request
    uint64_t held;   // how many from `first` on the kernel had taken
    uint64_t count;  // how many in all
};

static inline rg_unfinished rg_host_unfinished(const rg_host* h, uint32_t b, uint32_t l) {
    rg_host_check_own(b, l, &rg_host_ring(h, b, l)->tail.value,
                      h->lane_tail[(size_t)b * RG_LANES + l].load(std::memory_order_relaxed));
    rg_lane_indices i = rg_host_lane_indices(h, b, l, true);
    rg_block_status* s = rg_host_status(h, b);
    uint64_t first = i.done;
    uint64_t answered = rg_finished_by(rg_load_acquire(&s->finishing), i.done, l);
    if (answered && rg_load_acquire(&rg_host_ring(h, b, RG_LANES)->tail.value) ==
                        rg_load_acquire(&s->emitted))
        first += answered < i.head - i.done ? answered : i.head - i.done;  // their responses went out
    return rg_unfinished{first, i.head - first, i.tail - first};
}

// Copies the unfinished requests of a lane (u, from rg_host_unfinished) into dst (room for
// u.count structs) and empties the lane; only once the kernel is gone.
static inline void rg_host_take_unfinished(rg_host* h, uint32_t b, uint32_t l, rg_unfinished u,
                                           void* dst) {
    rg_ring* ring = rg_host_ring(h, b, l);
    rg_host_copy(ring, h->lane_capacity, h->in_slot, h->in_lead, u.first, (uint8_t*)dst, u.count, false);
    rg_store_release(&ring->head.value, u.first + u.count);
    rg_store_release(&ring->head.done, u.first + u.count);
}

// Writes a command for every block; returns its sequence number, for rg_host_wait_ack.
static inline uint64_t rg_host_command(rg_host* h, uint32_t command) {
    uint64_t seq = h->command_seq.fetch_add(1) + 1;
    rg_store_release(&rg_host_region(h)->control.command.value, (seq << 8) | command);
    rg_host_tell(h);  // blocks read the command word only when told
    return seq;
}

// Waits until every block has applied command `seq`; true if they did within timeout_ns.
static inline bool rg_host_wait_ack(const rg_host* h, uint64_t seq, int64_t timeout_ns) {
    int64_t deadline = rg_host_now_ns() + timeout_ns;
    uint32_t sleep_ns = 1000;
    for (;;) {
        if (rg_host_is_released(h)) return false;
        uint32_t acked = 0;
        for (uint32_t b = 0; b < h->grid; ++b)
            acked += (rg_load_acquire(&rg_host_status(h, b)->state) >> 8) >= seq;
        if (acked == h->grid) return true;
        if (rg_host_now_ns() > deadline) return false;
        struct timespec ts = {0, (long)sleep_ns};
        nanosleep(&ts, nullptr);
        sleep_ns = sleep_ns < 200000 ? sleep_ns * 2 : sleep_ns;
    }
}

// Who wakes an armed event loop through eventfd `fd`: the kernel's own process, which then
// finds the number in the region (kernel_writes, the CPU backend), or a host watcher thread.
static inline void rg_host_set_notify(rg_host* h, int fd, bool kernel_writes) {
    rg_host_region(h)->control.out_bell.notify_fd_plus1 = kernel_writes ? (uint64_t)fd + 1 : 0;
}

// An event loop's interest in responses: while armed (+1 .. -1), responses also write to the
// region's notify eventfd (once per wake-up: see rg_bell).
static inline void rg_host_arm(const rg_host* h, bool armed) {
    auto count = rg_atomic_u64(rg_host_region(h)->control.out_bell.armed);
    if (armed) count.fetch_add(1, cuda::std::memory_order_seq_cst);
    else count.fetch_sub(1, cuda::std::memory_order_seq_cst);
}

// Reads (so resets) the notify eventfd `fd`, then lets the next response write it again; the
// caller looks at the rings after this, so a response it is not woken for is one it finds.
// (In the other order, a write between the two would be read here and never be followed by
// another: the loop would sleep through every later response.)
static inline void rg_host_clear_notify(const rg_host* h, int fd) {
    uint64_t count;
    if (read(fd, &count, sizeof count) < 0) {
        // EAGAIN: nothing was written since the last read
    }
    rg_atomic_u64(rg_host_region(h)->control.out_bell.notified)
        .store(0, cuda::std::memory_order_seq_cst);
}

// A GPU rings no bell, so on CUDA a host thread watches the output rings in its stead and
// wakes an armed event loop through eventfd `fd` by the same rule (rg_bell_notify). It polls
// for spin_ns after the loop arms or is woken, then looks every nap_ns; it returns once *stop,
// or once the region is broken, after a last write that wakes the loop to find out (its pop
// raises the fault).
static inline void rg_host_watch(const rg_host* h, int fd, const std::atomic<bool>* stop,
                                 int64_t nap_ns, int64_t spin_ns) {
    rg_bell* bell = &rg_host_region(h)->control.out_bell;
    int64_t active_at = rg_host_now_ns();
    bool was_watching = false;
    while (!stop->load(std::memory_order_acquire)) {
        bool watching = rg_atomic_u64(bell->armed).load(cuda::std::memory_order_seq_cst) &&
                        !rg_atomic_u64(bell->notified).load(cuda::std::memory_order_seq_cst);
        int64_t now = rg_host_now_ns();
        if (watching && !was_watching) active_at = now;
        was_watching = watching;
        bool ready;
        try {
            ready = watching && rg_host_responses(h, 1, false);
        } catch (const rg_host_fault&) {
            uint64_t one = 1;
            if (write(fd, &one, sizeof one) < 0) {
                // the eventfd's counter is full, so the loop is already being woken
            }
            return;
        }
        if (ready) {
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
static inline bool rg_host_set_buffer(const rg_host* h, uint32_t slot, uint64_t buffer_id,
                                      uint64_t device_ptr, uint64_t nbytes, uint32_t dtype_code,
                                      uint32_t itemsize, const char* path, size_t path_len) {
    if (slot >= RG_MAX_BUFFERS) return false;
    rg_buffer_entry* e = (rg_buffer_entry*)(h->base + h->buffers_offset) + slot;
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

// Releasing the region's memory from the host's side, in two steps: rg_host_release_begin
// marks it (no new user; every wait returns within one nap) and wakes a pop asleep on the
// output bell; rg_host_release_wait then waits until the last user is gone, after which
// nothing of the host reads or writes the region and its memory may go. Both idempotent; the
// caller of the wait must not hold what a user needs to finish (the GIL).
static inline void rg_host_release_begin(rg_host* h) {
    {
        std::lock_guard<std::mutex> lock(h->users_lock);
        if (rg_host_is_released(h)) return;
        h->released.store(true, std::memory_order_seq_cst);
    }
    rg_bell* bell = &rg_host_region(h)->control.out_bell;  // still mapped: users may remain
    rg_atomic_u64(bell->value).fetch_add(1, cuda::std::memory_order_seq_cst);
    syscall(SYS_futex, &bell->value, FUTEX_WAKE, 0x7fffffff, nullptr, nullptr, 0);
}

static inline void rg_host_release_wait(rg_host* h) {
    std::unique_lock<std::mutex> lock(h->users_lock);
    h->users_gone.wait(lock, [h] { return h->users == 0; });
}

#endif  // RG_HOST_H
