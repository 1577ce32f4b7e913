// rg_cpu_runner.cpp - main() of a CPU-backend kernel process.
//
//   <runner> REGION_FILE
//
// Maps the region the host laid out (rg_ring.h) and runs the kernel named by -DRG_ENTRY=... on
// it, one OS thread per block, until every block has acknowledged terminate. The process dies
// with its parent, and a crashing handler takes down only this process: the host sees the
// exit status and the one-line report written to stderr.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "rg_kernel.h"

#ifndef RG_ENTRY
#error "compile with -DRG_ENTRY=<kernel_id>_ring_kernel"
#endif

extern "C" void RG_ENTRY(uint8_t* region);

static void* map_file(const char* path, uint64_t* size) {
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

// A UnifiedBuffer's data is a shared-memory file the host named in the entry; each process
// maps it once (a process-local table: the entry's device_ptr belongs to the CUDA backend).
void* rg_cpu_map_buffer(rg_buffer_entry* entry) {
    static std::mutex lock;
    static std::unordered_map<uint64_t, void*> mapped;
    std::lock_guard<std::mutex> hold(lock);
    auto it = mapped.find(entry->buffer_id);
    if (it != mapped.end()) return it->second;
    uint64_t size = 0;
    void* mem = map_file(entry->path, &size);
    if (!mem || size < entry->nbytes) return nullptr;
    mapped[entry->buffer_id] = mem;
    return mem;
}

// A route's memory (rg_route.h) is a shared-memory file the host named in the link; mapped
// once per process and kept: a route is never remapped while the kernel runs.
rg_route* rg_cpu_map_route(const rg_link* link) {
    static std::mutex lock;
    static std::unordered_map<uint64_t, rg_route*> mapped;
    std::lock_guard<std::mutex> hold(lock);
    auto it = mapped.find(link->route_id);
    if (it != mapped.end()) return it->second;
    char path[sizeof link->path + 1] = {};
    memcpy(path, link->path, sizeof link->path);
    uint64_t size = 0;
    rg_route* route = (rg_route*)map_file(path, &size);
    if (!route || size < sizeof(rg_route) || route->total_size > size) return nullptr;
    mapped[link->route_id] = route;
    return route;
}

int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s REGION_FILE\n", argv[0]);
        return 2;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the Python process that launched us
    uint64_t size = 0;
    uint8_t* mem = (uint8_t*)map_file(argv[1], &size);
    rg_region* region = (rg_region*)mem;
    if (!mem || size < sizeof(rg_region) || region->magic != RG_REGION_MAGIC ||
        region->total_size > size) {
        fprintf(stderr, "ringgen: %s is not a ring region laid out by this ringgen\n", argv[1]);
        return 2;
    }
    rg_cpu::install_fault_reports();
    rg_cpu::run_grid(RG_ENTRY, mem, region->grid, region->block);
    return 0;
}
