// rg_cpu_runner.cpp - main() of a CPU-backend kernel process.
//
//   <runner> REGION_FILE PARENT_PID
//
// Maps the region the host laid out (rg_ring.h) and runs the kernel named by -DRG_ENTRY=... on
// it, one OS thread per block, until every block has acknowledged terminate. The process dies
// with its parent (PARENT_PID, the Python process), and a crashing handler takes down only this
// process: the host sees the exit status and the one-line report written to stderr.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
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

void* rg_cpu_map_buffer(rg_buffer_entry* entry) {
    auto it = tl_mapped.find(entry->buffer_id);
    if (it != tl_mapped.end()) return it->second.mem;
    uint64_t size = 0;
    void* mem = map_file(entry->path, &size);
    if (!mem) return nullptr;
    if (size < entry->nbytes) {
        munmap(mem, size);
        return nullptr;
    }
    tl_mapped[entry->buffer_id] = {mem, size, entry};
    return mem;
}

void rg_cpu_release_buffers(rg_region* region) {
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
