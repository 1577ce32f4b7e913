// rg_cpu_runner.cpp - main() of a CPU-backend kernel process.
//
//   <runner> REGION_FILE PARENT_PID
//
// Maps the region the host laid out (rg_ring.h) and runs the kernel named by -DRG_ENTRY=... on
// it, one OS thread per block, until every block has acknowledged terminate. The process dies
// with its parent (PARENT_PID, the Python process), and a crashing handler takes down only this
// process: the host sees the exit status and the one-line report written to stderr.
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "rg_kernel.h"

#ifndef RG_ENTRY
#error "compile with -DRG_ENTRY=<kernel_id>_ring_kernel"
#endif

extern "C" void RG_ENTRY(uint8_t* region);

// Maps a whole file shared and writable (rg_cpu_runtime.cpp); null if it cannot.
void* rg_cpu_map_file(const char* path, uint64_t* size);

// A route's memory (rg_route.h) is a memory file the host named in the link (/proc/<host
// pid>/fd/N); mapped once per process and kept: a route is never remapped while the kernel runs.
rg_route* rg_cpu_map_route(const rg_link* link) {
    static std::mutex lock;
    static std::unordered_map<uint64_t, rg_route*> mapped;
    std::lock_guard<std::mutex> hold(lock);
    auto it = mapped.find(link->route_id);
    if (it != mapped.end()) return it->second;
    char path[sizeof link->path + 1] = {};
    memcpy(path, link->path, sizeof link->path);
    uint64_t size = 0;
    rg_route* route = (rg_route*)rg_cpu_map_file(path, &size);
    if (!route || size < sizeof(rg_route) || route->total_size > size) return nullptr;
    mapped[link->route_id] = route;
    return route;
}

// The bytes of the region file mapped: its state slots and links must end within them
// (rg_kernel.h: rg_region_extent_check).
static uint64_t region_bytes;
uint64_t rg_cpu_region_bytes() { return region_bytes; }

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s REGION_FILE PARENT_PID\n", argv[0]);
        return 2;
    }
    // Never outlive the Python process that launched us. A parent that died before the death
    // signal was asked for sends none: we are then some other process's child already.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != (pid_t)strtol(argv[2], nullptr, 10)) return 2;
    uint64_t size = 0;
    uint8_t* mem = (uint8_t*)rg_cpu_map_file(argv[1], &size);
    rg_region* region = (rg_region*)mem;
    if (!mem || size < sizeof(rg_region) || region->magic != RG_REGION_MAGIC ||
        region->total_size > size) {
        fprintf(stderr, "ringgen: %s is not a ring region laid out by this ringgen\n", argv[1]);
        return 2;
    }
    region_bytes = size;
    rg_cpu::install_fault_reports();
    rg_cpu::run_grid(RG_ENTRY, mem, region->grid, region->block);
    return 0;
}
