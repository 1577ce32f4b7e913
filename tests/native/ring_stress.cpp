// ring_stress.cpp - the ring protocol under ThreadSanitizer, in one process so that TSan sees
// both sides: the real kernel loop (a generated .cu, one OS thread per block, fibers within)
// and the real host side (rg_host.h, what Python's _rg_host binds), driven by one producer
// thread per block and one consumer thread.
//
// Build: g++ -fsanitize=thread -DRG_KERNEL_CU='"<pkg>/echo4.cu"' -DRG_ENTRY=echo4_ring_kernel
//        -I<pkg> -I<templates> -I<cccl> ring_stress.cpp rg_cpu_runtime.cpp
// Run:   ring_stress MESSAGES [futex|eventfd|watch]  -> "OK <received>" and exit 0, or a
//        message and exit 1.
//
// Checks: every request answered exactly once, FIFO within each (block, lane), each response's
// correlation_id the message_id of its request, and all five lanes used. How the consumer
// waits: on the output bell's futex (futex), or as an event loop does, armed and waiting on an
// eventfd that the kernel writes (eventfd, the CPU backend) or a watcher thread writes (watch,
// the CUDA backend); a lost wake-up shows as 5 s without a response.
// The standard headers rg_host.h uses come first: the CPU shim that the kernel brings defines
// CUDA's __noinline__, a name libstdc++ uses in its own attributes.
#include <memory>
#include <stdexcept>
#include <string>

#include RG_KERNEL_CU

#include <poll.h>
#include <sys/eventfd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "rg_host.h"

static const uint8_t kLanePriority[RG_LANES] = {10, 100, 128, 150, 220};

// message_id of request `seq` of (block, lane): recoverable from the response's correlation_id.
static void make_id(rg_uuid* id, uint64_t block, uint64_t lane, uint64_t seq) {
    uint64_t words[2] = {block << 32 | lane, seq};
    memcpy(id->bytes, words, 16);
}

int main(int argc, char** argv) {
    const uint64_t total = argc > 1 ? strtoull(argv[1], nullptr, 10) : 1000000;
    const char* mode = argc > 2 ? argv[2] : "futex";
    const bool futex = !strcmp(mode, "futex"), watch = !strcmp(mode, "watch");
    if (!futex && !watch && strcmp(mode, "eventfd")) {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 1;
    }
    const uint32_t grid = 4, block = 8, lane_cap = 64, out_cap = 256;
    uint64_t size = rg_region_init(nullptr, grid, block, lane_cap, out_cap, sizeof(Ping), sizeof(Pong), 0, 0, 0);
    // The kernel also reads its links (rg_route.h) after the region: none, so all zero.
    uint64_t with_links = rg_round_up(rg_links_offset(size, grid, 0) + rg_links_bytes(grid), RG_LINE);
    rg_region* region = (rg_region*)aligned_alloc(RG_LINE, with_links);
    memset((void*)region, 0, with_links);
    rg_host host;
    // 56-byte slots 64 apart (rg_slot_stride): the copies go slot by slot.
    rg_host_init(&host, region, grid, block, lane_cap, out_cap, sizeof(Ping), sizeof(Pong), 42, 0, 0);
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    std::atomic<bool> stop_watching{false};
    std::thread watcher;
    if (!futex) {
        rg_host_set_notify(&host, fd, !watch);
        if (watch) watcher = std::thread(rg_host_watch, &host, fd, &stop_watching, 20000, 200000);
        rg_host_arm(&host, true);
    }
    std::thread kernel([&] { rg_cpu::run_grid(RG_ENTRY, (uint8_t*)region, grid, block); });
    if (!rg_host_wait_ack(&host, rg_host_command(&host, RG_CMD_ACTIVATE), 10000000000)) {
        fprintf(stderr, "activate was not acknowledged\n");
        return 1;
    }

    const uint64_t per_block = total / grid;
    std::vector<std::thread> producers;
    for (uint32_t b = 0; b < grid; ++b) {
        producers.emplace_back([=, &host] {
            uint64_t seq[RG_LANES] = {0};
            Ping batch[16];
            for (uint64_t sent = 0; sent < per_block;) {
                uint32_t lane = (uint32_t)(sent / 7 % RG_LANES);  // runs of 7 per lane
                uint64_t n = per_block - sent < 16 ? per_block - sent : 16;
                for (uint64_t i = 0; i < n; ++i) {
                    rg_init_Ping(&batch[i]);
                    make_id(&batch[i].message_id, b, lane, seq[lane] + i);
                    batch[i].priority = kLanePriority[lane];
                    batch[i].seq = (int64_t)(seq[lane] + i);
                }
                uint64_t pushed = rg_host_push(&host, b, lane, batch, n);
                seq[lane] += pushed;
                sent += pushed;
                if (!pushed) std::this_thread::yield();
            }
        });
    }

    uint64_t received = 0, errors = 0;
    std::vector<std::vector<int64_t>> next(grid, std::vector<int64_t>(RG_LANES, 0));
    std::vector<uint64_t> per_lane(RG_LANES, 0);
    std::vector<Pong> out(256);
    uint32_t cursor = 0;
    bool woken = false;
    while (received < per_block * grid && errors < 10) {
        uint64_t n;
        if (futex) {
            n = rg_host_wait_responses(&host, out.size(), 5000000000, 1000000, 20000);
        } else {  // as the event loop: clears only when the eventfd woke it, pops whatever is
                  // there, and waits on the eventfd when nothing is
            if (woken) rg_host_clear_notify(&host, fd);
            woken = false;
            n = rg_host_responses(&host, out.size(), true);
            struct pollfd pfd = {fd, POLLIN, 0};
            if (!n && poll(&pfd, 1, 5000) > 0) {
                woken = true;
                continue;
            }
        }
        if (rg_host_pop(&host, out.data(), n, &cursor) != n) {
            fprintf(stderr, "fewer responses popped than were counted\n");
            return 1;
        }
        if (!n) {
            fprintf(stderr, "no response within 5 s after %llu\n", (unsigned long long)received);
            return 1;
        }
        for (uint64_t i = 0; i < n; ++i) {
            const Pong& p = out[i];
            uint64_t words[2];
            memcpy(words, p.correlation_id.bytes, 16);
            uint64_t b = words[0] >> 32, lane = words[0] & 0xffffffff, seq = words[1];
            bool ok = (p.flags & RG_FLAG_HAS_CORRELATION) && b < grid && lane < RG_LANES &&
                      (uint64_t)p.block == b && p.priority == kLanePriority[lane] &&
                      (uint64_t)p.seq == seq && (int64_t)seq == next[b][lane];
            if (!ok) {
                fprintf(stderr, "bad response: block %llu lane %llu seq %llu expected %lld\n",
                        (unsigned long long)b, (unsigned long long)lane, (unsigned long long)seq,
                        b < grid && lane < RG_LANES ? (long long)next[b][lane] : -1LL);
                ++errors;
                continue;
            }
            ++next[b][lane];
            ++per_lane[lane];
            ++received;
        }
    }
    for (std::thread& t : producers) t.join();
    if (!rg_host_wait_ack(&host, rg_host_command(&host, RG_CMD_TERMINATE), 10000000000)) {
        fprintf(stderr, "terminate was not acknowledged\n");
        return 1;
    }
    kernel.join();
    if (watch) {
        stop_watching.store(true);
        watcher.join();
    }
    close(fd);
    uint64_t extra = rg_host_pop(&host, out.data(), out.size(), &cursor);
    // Every request was answered, so no lane holds one the kernel never finished.
    for (uint32_t b = 0; b < grid; ++b)
        for (uint32_t l = 0; l < RG_LANES; ++l) errors += rg_host_unfinished(&host, b, l).count;
    for (uint32_t l = 0; l < RG_LANES; ++l)
        if (!per_lane[l]) ++errors;
    if (errors || extra) {
        fprintf(stderr, "%llu errors, %llu unexpected responses\n", (unsigned long long)errors,
                (unsigned long long)extra);
        return 1;
    }
    printf("OK %llu\n", (unsigned long long)received);
    free(region);
    return 0;
}
