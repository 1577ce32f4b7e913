// rg_cpu_runtime.cpp - how the CPU backend runs a CUDA kernel: one OS thread per block, the
// block's threads as fibers on it.
//
// A block barrier is a chain: the fiber that reaches __syncthreads switches to the next live
// fiber of the block; the last one switches back to the first, which then finds every other
// fiber waiting at the same barrier. A warp barrier is the same chain within 32 fibers. The
// switch is a few instructions of assembly on x86-64 (no system call, unlike swapcontext);
// other architectures use ucontext.
//
// Under ThreadSanitizer (the race check) each fiber is a TSan fiber, and a switch between two
// fibers of a block orders nothing: only a barrier does (a release when a fiber arrives, an
// acquire when it leaves), as on a GPU. So TSan reports what two threads of a block do to the
// same memory between two barriers -- `resp.n += 1` from every thread -- which the fibers'
// one-at-a-time schedule hides. The runtime's own words that fibers share (the running fiber,
// which are done, how many live) are relaxed atomics, which order nothing either.
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <thread>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "rg_cpu_shim.h"
#include "rg_ring.h"

#if defined(__SANITIZE_THREAD__)
#define RG_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RG_TSAN 1
#endif
#endif

#ifdef RG_TSAN
extern "C" {
void* __tsan_get_current_fiber(void);
void* __tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void* fiber);
void __tsan_switch_to_fiber(void* fiber, unsigned flags);
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
}
#endif

#if defined(__x86_64__) && !defined(RG_FIBERS_UCONTEXT)
// rg_fiber_switch(save, to): pushes the callee-saved registers on the current stack, stores the
// stack pointer in *save, loads `to` and pops the same. The SSE/x87 control words (rounding,
// flush-to-zero) are not switched: device code cannot change them (a GPU has no floating-point
// environment to set, and fesetround is host-only), so the fibers of a block share their OS
// thread's. Loading them took a third of a block barrier's time (a switch per thread:
// benchmarks/bench_ring.py (c), 410 -> 265 ns for 32 threads).
extern "C" void rg_fiber_switch(void** save, void* to);
extern "C" void rg_fiber_trampoline();
asm(R"(
    .text
    .globl rg_fiber_switch
    .type rg_fiber_switch, @function
rg_fiber_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size rg_fiber_switch, .-rg_fiber_switch

    .globl rg_fiber_trampoline
    .type rg_fiber_trampoline, @function
rg_fiber_trampoline:
    movq %r12, %rdi
    call rg_fiber_main
    ud2
    .size rg_fiber_trampoline, .-rg_fiber_trampoline
)");
#define RG_ASM_FIBERS 1
#else
#include <ucontext.h>
#endif

namespace rg_cpu {

struct Fiber {
    void* sp = nullptr;  // saved stack pointer while switched out
    uint8_t* stack = nullptr;
    size_t stack_size = 0;
    bool done = false;  // RG_LOAD / RG_STORE: read by the other fibers
    unsigned block_syncs = 0, warp_syncs = 0;  // barriers this fiber has passed
#ifndef RG_ASM_FIBERS
    ucontext_t ctx;
#endif
#ifdef RG_TSAN
    void* tsan = nullptr;
#endif
};

// The fibers' shared bookkeeping, as relaxed atomics (see the top of the file).
#define RG_LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define RG_STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

struct Block {
    void (*kernel)(uint8_t*) = nullptr;
    uint8_t* arg = nullptr;
    unsigned index = 0, size = 0, grid = 0;
    unsigned current = 0;  // RG_LOAD / RG_STORE
    unsigned live = 0;
    std::vector<Fiber> fibers;
    std::vector<uint64_t> exchange;
    Fiber main;  // the OS thread's own context, resumed when every fiber has finished
#ifdef RG_TSAN
    // A barrier's release/acquire address, by the parity of the barrier's count: a fiber
    // leaves barrier g before any fiber can arrive at barrier g + 2, so that the acquire
    // takes what came before barrier g and nothing after it.
    char block_barrier[2];
    std::vector<char> warp_barriers;  // two per warp
#endif
};

static thread_local Block* tl_block = nullptr;

unsigned thread_index() { return RG_LOAD(tl_block->current); }
unsigned block_index() { return tl_block->index; }
unsigned block_size() { return tl_block->size; }
unsigned grid_size() { return tl_block->grid; }
uint64_t* warp_exchange() { return tl_block->exchange.data(); }

// `sync`: the switch orders what came before it for the fiber switched to (to and from the
// OS thread's own context); between the fibers of a block only barriers do.
static void switch_fiber(Fiber& from, Fiber& to, bool sync = false) {
#ifdef RG_TSAN
    __tsan_switch_to_fiber(RG_LOAD(to.tsan), sync ? 0 : 1);
#else
    (void)sync;
#endif
#ifdef RG_ASM_FIBERS
    rg_fiber_switch(&from.sp, to.sp);
#else
    swapcontext(&from.ctx, &to.ctx);
#endif
}

// Switch from the running fiber to fiber `next` of the block (nothing to do when it is itself).
static void run_fiber(Block* b, unsigned next) {
    unsigned me = RG_LOAD(b->current);
    if (next == me) return;
    RG_STORE(b->current, next);
    switch_fiber(b->fibers[me], b->fibers[next]);
}

// The next live fiber after `me` within [first, first + count), wrapping (without a division:
// this runs on every switch of a barrier).
static unsigned next_live(Block* b, unsigned me, unsigned first, unsigned count) {
    const unsigned end = first + count;
    unsigned f = me;
    for (unsigned step = 1; step <= count; ++step) {
        f = f + 1 == end ? first : f + 1;
        if (!RG_LOAD(b->fibers[f].done)) return f;
    }
    return me;
}

void sync_block() {
    Block* b = tl_block;
    unsigned me = RG_LOAD(b->current);
#ifdef RG_TSAN
    char* barrier = &b->block_barrier[b->fibers[me].block_syncs++ & 1];
    __tsan_release(barrier);
#endif
    run_fiber(b, next_live(b, me, 0, b->size));
#ifdef RG_TSAN
    __tsan_acquire(barrier);
#endif
}

void sync_warp() {
    Block* b = tl_block;
    unsigned me = RG_LOAD(b->current);
    unsigned first = me - me % 32;
    unsigned count = b->size - first < 32 ? b->size - first : 32;
#ifdef RG_TSAN
    char* barrier = &b->warp_barriers[2 * (me / 32) + (b->fibers[me].warp_syncs++ & 1)];
    __tsan_release(barrier);
#endif
    run_fiber(b, next_live(b, me, first, count));
#ifdef RG_TSAN
    __tsan_acquire(barrier);
#endif
}

}  // namespace rg_cpu

extern "C" void rg_fiber_main(rg_cpu::Block* b) {
    b->kernel(b->arg);
    unsigned me = RG_LOAD(b->current);
    RG_STORE(b->fibers[me].done, true);
    // A finished fiber hands everything it did on (a switch with sync), so that the OS thread,
    // switched to by the last one out, has every fiber's accesses before it frees the stacks.
    if (__atomic_sub_fetch(&b->live, 1u, __ATOMIC_RELAXED) == 0)
        rg_cpu::switch_fiber(b->fibers[me], b->main, true);
    unsigned next = rg_cpu::next_live(b, me, 0, b->size);
    RG_STORE(b->current, next);
    rg_cpu::switch_fiber(b->fibers[me], b->fibers[next], true);
    __builtin_unreachable();
}

#ifndef RG_ASM_FIBERS
static void rg_fiber_start(unsigned hi, unsigned lo) {
    rg_fiber_main((rg_cpu::Block*)(((uintptr_t)hi << 32) | lo));
}
#endif

namespace rg_cpu {

static size_t fiber_stack_size() {
    const char* env = getenv("RINGGEN_FIBER_STACK_KB");
    size_t kb = env ? strtoul(env, nullptr, 10) : 256;
    return (kb < 16 ? 16 : kb) * 1024;
}

static void make_fiber(Block* b, Fiber& f) {
    long page = sysconf(_SC_PAGESIZE);
    f.stack_size = fiber_stack_size();
    // One guard page below the stack: an overflow faults instead of corrupting a neighbour.
    void* mem = mmap(nullptr, f.stack_size + page, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) {
        perror("ringgen: fiber stack");
        abort();
    }
    mprotect(mem, page, PROT_NONE);
    f.stack = (uint8_t*)mem;
    uint8_t* top = f.stack + page + f.stack_size;
#ifdef RG_ASM_FIBERS
    // `ret` of the first switch pops the trampoline's address and leaves the stack 16-byte
    // aligned, as the System V ABI wants it at the trampoline's `call`.
    uint64_t* sp = (uint64_t*)((uintptr_t)top & ~(uintptr_t)15);
    *--sp = (uint64_t)&rg_fiber_trampoline;
    *--sp = 0;                                   // rbp
    *--sp = 0;                                   // rbx
    *--sp = (uint64_t)b;                         // r12: the trampoline's argument
    *--sp = 0;                                   // r13
    *--sp = 0;                                   // r14
    *--sp = 0;                                   // r15
    f.sp = sp;
#else
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack + page;
    f.ctx.uc_stack.ss_size = f.stack_size;
    f.ctx.uc_link = nullptr;
    uintptr_t p = (uintptr_t)b;
    makecontext(&f.ctx, (void (*)())rg_fiber_start, 2, (unsigned)(p >> 32), (unsigned)p);
#endif
#ifdef RG_TSAN
    RG_STORE(f.tsan, __tsan_create_fiber(0));  // set after the fibers made before it began
#endif
}

// Runs block `index` of `kernel` on the calling OS thread until all its threads return.
void run_block(void (*kernel)(uint8_t*), uint8_t* arg, unsigned index, unsigned grid,
               unsigned size) {
    Block b;
    b.kernel = kernel;
    b.arg = arg;
    b.index = index;
    b.grid = grid;
    b.size = size;
    b.live = size;
    b.fibers.resize(size);
    b.exchange.assign(size, 0);
#ifdef RG_TSAN
    b.warp_barriers.assign(2 * ((size + 31) / 32), 0);
    b.main.tsan = __tsan_get_current_fiber();
#endif
    tl_block = &b;  // before the fibers exist: a fiber sees what its creator did before
    for (Fiber& f : b.fibers) make_fiber(&b, f);
    // Faults are reported on an alternate stack (per thread): a fiber's own may have overflowed.
    static thread_local uint8_t alt[64 * 1024];
    stack_t ss = {};
    ss.ss_sp = alt;
    ss.ss_size = sizeof alt;
    sigaltstack(&ss, nullptr);
    switch_fiber(b.main, b.fibers[0], true);
    tl_block = nullptr;
    long page = sysconf(_SC_PAGESIZE);
    for (Fiber& f : b.fibers) {
#ifdef RG_TSAN
        __tsan_destroy_fiber(f.tsan);
#endif
        munmap(f.stack, f.stack_size + page);
    }
}

void run_grid(void (*kernel)(uint8_t*), uint8_t* arg, unsigned grid, unsigned size) {
    std::vector<std::thread> blocks;
    for (unsigned i = 0; i < grid; ++i)
        blocks.emplace_back([=] { run_block(kernel, arg, i, grid, size); });
    for (std::thread& t : blocks) t.join();
}

void sleep_ns(unsigned ns) {
    if (ns < 2000) {
        for (unsigned i = 0; i < ns / 10 + 1; ++i) std::atomic_signal_fence(std::memory_order_seq_cst);
        return;
    }
    struct timespec ts = {0, (long)ns};
    nanosleep(&ts, nullptr);
}

// Writes "ringgen: <what> in block B thread T\n" with async-signal-safe calls only.
static void report(const char* what) {
    char buf[320];
    size_t n = 0;
    auto put = [&](const char* s) {
        while (*s && n < sizeof buf - 1) buf[n++] = *s++;
    };
    auto put_uint = [&](unsigned v) {
        char d[12];
        int k = 0;
        do d[k++] = (char)('0' + v % 10); while ((v /= 10) && k < 11);
        while (k && n < sizeof buf - 1) buf[n++] = d[--k];
    };
    put("ringgen: ");
    put(what);
    if (tl_block) {
        put(" in block ");
        put_uint(tl_block->index);
        put(" thread ");
        put_uint(RG_LOAD(tl_block->current));
    }
    put("\n");
    ssize_t ignored = write(2, buf, n);
    (void)ignored;
}

void trap(const char* file, int line) {
    fprintf(stderr, "ringgen: __trap() at %s:%d", file, line);
    if (tl_block) fprintf(stderr, " in block %u thread %u", tl_block->index, RG_LOAD(tl_block->current));
    fprintf(stderr, "\n");
    fflush(stderr);
    signal(SIGABRT, SIG_DFL);
    abort();
}

// Whether `addr` is in the guard page below the running fiber's stack: its stack overflowed.
static bool in_guard_page(const void* addr) {
    if (!tl_block) return false;
    const Fiber& f = tl_block->fibers[RG_LOAD(tl_block->current)];
    long page = sysconf(_SC_PAGESIZE);
    return (const uint8_t*)addr >= f.stack && (const uint8_t*)addr < f.stack + page;
}

static void on_fault(int sig, siginfo_t* info, void*) {
    const char* name = sig == SIGSEGV && in_guard_page(info->si_addr)
                         ? "fiber stack overflow (SIGSEGV: raise RINGGEN_FIBER_STACK_KB, KiB per "
                           "thread, 256 by default, or move large arrays off the stack)"
                     : sig == SIGSEGV ? "segmentation fault (SIGSEGV)"
                     : sig == SIGBUS  ? "bus error (SIGBUS)"
                     : sig == SIGFPE  ? "arithmetic fault (SIGFPE)"
                     : sig == SIGILL  ? "illegal instruction (SIGILL)"
                                      : "abort (SIGABRT)";
    report(name);
    signal(sig, SIG_DFL);
    raise(sig);
}

void install_fault_reports() {
    struct sigaction sa = {};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_ONSTACK | SA_RESETHAND | SA_SIGINFO;
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) sigaction(sig, &sa, nullptr);
}

}  // namespace rg_cpu

// Maps a whole file shared and writable; null if it cannot be opened or mapped.
void* rg_cpu_map_file(const char* path, uint64_t* size) {
    int fd = open(path, O_RDWR);
    if (fd < 0) return nullptr;
    struct stat st;
    void* mem = MAP_FAILED;
    if (fstat(fd, &st) == 0)
        mem = mmap(nullptr, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (mem == MAP_FAILED) return nullptr;
    *size = (uint64_t)st.st_size;
    return mem;
}

// A UnifiedBuffer's data is a memory file the host named in the entry (a /proc path of the
// host's descriptor). Each block maps the buffers its handlers use into a table of its own
// thread, and unmaps those that left the kernel's table whenever it goes idle (when none of
// its handlers runs): a buffer the host freed does not stay alive in the runner. The entry's
// device_ptr belongs to the CUDA backend.
struct rg_cpu_mapping {
    void* mem;
    uint64_t size;
    rg_buffer_entry* entry;  // where it was: looked at first when checking it is still there
};
static thread_local std::unordered_map<uint64_t, rg_cpu_mapping> tl_mapped;
// The block's fibers share the table. They never run at once, but a race-check build tells
// ThreadSanitizer that only barriers order them (as on a GPU), so the table is locked: an
// uncontended lock per ctx.buffer() call, and what orders the fibers' uses of it for TSan.
static thread_local std::mutex tl_mapped_lock;

void* rg_cpu_map_buffer(rg_buffer_entry* entry) {
    std::lock_guard<std::mutex> hold(tl_mapped_lock);
    auto it = tl_mapped.find(entry->buffer_id);
    if (it != tl_mapped.end()) return it->second.mem;
    uint64_t size = 0;
    void* mem = rg_cpu_map_file(entry->path, &size);
    if (!mem) return nullptr;
    if (size < entry->nbytes) {
        munmap(mem, size);
        return nullptr;
    }
    tl_mapped[entry->buffer_id] = {mem, size, entry};
    return mem;
}

void rg_cpu_release_buffers(rg_region* region) {
    std::lock_guard<std::mutex> hold(tl_mapped_lock);
    if (tl_mapped.empty()) return;
    rg_buffer_entry* table = rg_region_buffers(region);
    for (auto it = tl_mapped.begin(); it != tl_mapped.end();) {
        uint64_t id = it->first;
        bool present = rg_load_relaxed(&it->second.entry->buffer_id) == id;
        for (uint32_t i = 0; !present && i < RG_MAX_BUFFERS; ++i)
            present = rg_load_relaxed(&table[i].buffer_id) == id;
        if (present) {
            ++it;
            continue;
        }
        munmap(it->second.mem, it->second.size);
        it = tl_mapped.erase(it);
    }
}
