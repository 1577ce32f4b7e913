// syncthreads.cpp - the cost of one __syncthreads() of a 32-thread block on the CPU backend.
// Build with rg_cpu_runtime.cpp and the package headers; prints nanoseconds per barrier.
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "rg_kernel.h"

static unsigned rounds = 200000;

extern "C" __global__ void barriers(uint8_t*) {
    for (unsigned i = 0; i < rounds; ++i) __syncthreads();
}

int main(int argc, char** argv) {
    unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 32;
    auto start = std::chrono::steady_clock::now();
    rg_cpu::run_grid(barriers, nullptr, 1, threads);
    double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
    printf("%.1f\n", ns / rounds);
    return 0;
}
