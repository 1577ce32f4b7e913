// rg_cpu_shim.h - CUDA's kernel built-ins for a host compiler (the CPU backend).
//
// A kernel runs as it would on a GPU: each block on its own OS thread, the block's CUDA
// threads as fibers on it, switched in user space at __syncthreads and the warp intrinsics
// (rg_cpu_runtime.cpp). `__shared__` variables are `static thread_local`: one copy per block.
// threadIdx reads the running fiber's index. Included by rg_kernel.h when not under nvcc.
#ifndef RG_CPU_SHIM_H
#define RG_CPU_SHIM_H

#if defined(__CUDACC__)
#error "rg_cpu_shim.h is for host compilers; nvcc has the real built-ins"
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __shared__ static thread_local

struct dim3 {
    unsigned x, y, z;
};

struct alignas(16) uint4 {
    unsigned x, y, z, w;
};

namespace rg_cpu {

// The state of the block that runs on this OS thread (rg_cpu_runtime.cpp).
unsigned thread_index();
unsigned block_index();
unsigned block_size();
unsigned grid_size();
void sync_block();
void sync_warp();
void sleep_ns(unsigned ns);
[[noreturn]] void trap(const char* file, int line);
uint64_t* warp_exchange();  // one 8-byte slot per thread of the block

// The bus meter (rg_bus.h): the transactions and bytes a GPU would send over PCIe for what this
// block's threads did to the region, counted by the block's OS thread.
// Read transactions, read bytes, write transactions, write bytes.
inline thread_local uint64_t bus_meter[4];


// Runs a kernel: `grid` OS threads of `size` fibers each (rg_cpu_runtime.cpp).
void run_grid(void (*kernel)(uint8_t*), uint8_t* arg, unsigned grid, unsigned size);
void install_fault_reports();

inline unsigned lane() { return thread_index() % 32; }

template <class T>
inline uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8, "warp shuffles move at most 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof(T));
    return bits;
}

template <class T>
inline T from_bits(uint64_t bits) {
    T v;
    memcpy(&v, &bits, sizeof(T));
    return v;
}

// Every lane publishes `v`, the warp meets, each reads the lane `src(lane)` picks, the warp
// meets again so that no slot is overwritten before all have read it.
template <class T, class Pick>
inline T exchange(T v, Pick src) {
    uint64_t* slots = warp_exchange();
    unsigned me = thread_index();
    unsigned base = me - lane();
    slots[me] = to_bits(v);
    sync_warp();
    T out = from_bits<T>(slots[base + src(lane())]);
    sync_warp();
    return out;
}

template <class T>
inline T atomic_cas_loop(T* addr, T (*op)(T, T), T val) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "atomics on 4- or 8-byte values");
    using Bits = typename std::conditional<sizeof(T) == 4, uint32_t, uint64_t>::type;
    Bits* word = reinterpret_cast<Bits*>(addr);
    Bits old = __atomic_load_n(word, __ATOMIC_RELAXED);
    for (;;) {
        T cur;
        memcpy(&cur, &old, sizeof(T));
        T next = op(cur, val);
        Bits want;
        memcpy(&want, &next, sizeof(T));
        if (__atomic_compare_exchange_n(word, &old, want, true, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
            return cur;
    }
}

}  // namespace rg_cpu

#define threadIdx (dim3{rg_cpu::thread_index(), 0u, 0u})
#define blockIdx (dim3{rg_cpu::block_index(), 0u, 0u})
#define blockDim (dim3{rg_cpu::block_size(), 1u, 1u})
#define gridDim (dim3{rg_cpu::grid_size(), 1u, 1u})
#define warpSize 32

#define __syncthreads() rg_cpu::sync_block()
#define __syncwarp(...) rg_cpu::sync_warp()
#define __nanosleep(ns) rg_cpu::sleep_ns(ns)
#define __trap() rg_cpu::trap(__FILE__, __LINE__)
// Fibers of one block share an OS thread: a compiler fence orders them; other blocks and the
// host need a real one.
#define __threadfence_block() std::atomic_signal_fence(std::memory_order_seq_cst)
#define __threadfence() std::atomic_thread_fence(std::memory_order_seq_cst)
#define __threadfence_system() std::atomic_thread_fence(std::memory_order_seq_cst)

template <class T>
inline T __ldg(const T* p) { return *p; }

inline unsigned __activemask() { return 0xffffffffu; }

template <class T>
inline T __shfl_sync(unsigned, T v, int src, int width = 32) {
    return rg_cpu::exchange(v, [&](unsigned l) { return (l & ~(unsigned)(width - 1)) + ((unsigned)src & (unsigned)(width - 1)); });
}
template <class T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
    return rg_cpu::exchange(v, [&](unsigned l) {
        unsigned seg = l & ~(unsigned)(width - 1);
        return l + delta < seg + (unsigned)width ? l + delta : l;
    });
}
template <class T>
inline T __shfl_up_sync(unsigned, T v, unsigned delta, int width = 32) {
    return rg_cpu::exchange(v, [&](unsigned l) {
        unsigned seg = l & ~(unsigned)(width - 1);
        return l >= seg + delta ? l - delta : l;
    });
}
template <class T>
inline T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
    return rg_cpu::exchange(v, [&](unsigned l) {
        unsigned seg = l & ~(unsigned)(width - 1);
        unsigned other = l ^ (unsigned)mask;
        return other >= seg && other < seg + (unsigned)width ? other : l;
    });
}

inline unsigned __ballot_sync(unsigned, int predicate) {
    uint64_t* slots = rg_cpu::warp_exchange();
    unsigned me = rg_cpu::thread_index();
    unsigned base = me - rg_cpu::lane();
    unsigned n = rg_cpu::block_size() - base < 32 ? rg_cpu::block_size() - base : 32;
    slots[me] = predicate ? 1 : 0;
    rg_cpu::sync_warp();
    unsigned bits = 0;
    for (unsigned i = 0; i < n; ++i) bits |= (unsigned)slots[base + i] << i;
    rg_cpu::sync_warp();
    return bits;
}
inline int __any_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) != 0; }
inline int __all_sync(unsigned mask, int predicate) {
    unsigned base = rg_cpu::thread_index() - rg_cpu::lane();
    unsigned n = rg_cpu::block_size() - base < 32 ? rg_cpu::block_size() - base : 32;
    unsigned full = n == 32 ? 0xffffffffu : (1u << n) - 1;
    return __ballot_sync(mask, predicate) == full;
}

// Atomics: shared memory is per OS thread, global memory is shared by all blocks and the host,
// so both are real atomic read-modify-writes here.
template <class T>
inline T atomicAdd(T* addr, T val) {
    if constexpr (std::is_integral<T>::value) return __atomic_fetch_add(addr, val, __ATOMIC_SEQ_CST);
    else return rg_cpu::atomic_cas_loop<T>(addr, [](T a, T b) { return a + b; }, val);
}
template <class T>
inline T atomicSub(T* addr, T val) { return __atomic_fetch_sub(addr, val, __ATOMIC_SEQ_CST); }
template <class T>
inline T atomicExch(T* addr, T val) {
    if constexpr (std::is_integral<T>::value) return __atomic_exchange_n(addr, val, __ATOMIC_SEQ_CST);
    else return rg_cpu::atomic_cas_loop<T>(addr, [](T, T b) { return b; }, val);
}
template <class T>
inline T atomicMax(T* addr, T val) {
    return rg_cpu::atomic_cas_loop<T>(addr, [](T a, T b) { return a > b ? a : b; }, val);
}
template <class T>
inline T atomicMin(T* addr, T val) {
    return rg_cpu::atomic_cas_loop<T>(addr, [](T a, T b) { return a < b ? a : b; }, val);
}
template <class T>
inline T atomicCAS(T* addr, T compare, T val) {
    __atomic_compare_exchange_n(addr, &compare, val, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return compare;
}

using std::max;
using std::min;

#endif  // RG_CPU_SHIM_H
