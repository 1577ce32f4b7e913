// release_stress.cpp - releasing a region while host threads wait on it, under ThreadSanitizer.
//
// Build: g++ -fsanitize=thread -pthread -I<templates> -I<cccl> release_stress.cpp
// Run:   release_stress ROUNDS  -> "OK <rounds> <waits ended> <refused>" and exit 0, or a
//        message and exit 1.
//
// Each round lays a region out in fresh mmap'd memory (no kernel: nothing ever answers), starts
// one thread in each wait of rg_host.h that Python's _rg_host runs without the GIL (a pop's
// wait for responses, a push waiting for room in a full lane, a command's acknowledgement, a
// state snapshot), each holding an rg_host_user as the binding does, and releases the region
// at a random moment: rg_host_release_begin, rg_host_release_wait, then munmap. A waiter that
// read the region after the release returned would fault on the unmapped page (or TSan would
// see the race); one that came too late must be refused (rg_host_released), never let in. Every
// wait must end within a second of the release although it asked for ten.
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include "rg_host.h"
#include "rg_state.h"

static const uint32_t kGrid = 2, kLane = 8, kOut = 8, kSlot = 64, kState = 64;
static const int64_t kWaitNs = 10000000000;  // 10 s: only a release ends these waits early

static std::atomic<uint64_t> ended{0}, refused{0};

// Runs one wait as the binding does: the use taken first, refused once a release began.
static void waiter(rg_host* h, const std::function<void()>& wait) {
    try {
        rg_host_user user(h);
        wait();
        ended.fetch_add(1);
    } catch (const rg_host_released&) {
        refused.fetch_add(1);
    }
}

int main(int argc, char** argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 200;
    std::mt19937 rng(7);
    uint64_t region_size = rg_region_init(nullptr, kGrid, 1, kLane, kOut, kSlot, kSlot, 0, 0, 0);
    uint64_t state_at = rg_state_area_offset(region_size);
    uint64_t bytes = state_at + rg_state_area_bytes(kGrid, kState);
    for (int round = 0; round < rounds; ++round) {
        void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) return perror("mmap"), 1;
        rg_host h;
        rg_host_init(&h, mem, kGrid, 1, kLane, kOut, kSlot, kSlot, round, 0, 0);
        std::vector<uint8_t> structs((kLane + 1) * kSlot);  // one more than a lane holds
        rg_state_slot* slot = rg_state_slot_of((uint8_t*)mem + state_at, 1, kState);
        std::vector<std::thread> threads;
        threads.emplace_back(waiter, &h, [&] {
            rg_host_wait_responses(&h, 1, kWaitNs, 20000000, 0);
        });
        threads.emplace_back(waiter, &h, [&] {
            rg_host_push_wait(&h, 1, 2, structs.data(), kLane + 1, kWaitNs, 50000);
        });
        threads.emplace_back(waiter, &h, [&] { rg_host_wait_ack(&h, 1ull << 40, kWaitNs); });
        threads.emplace_back(waiter, &h, [&] {
            uint64_t want = rg_state_host_request(slot);
            rg_host_tell(&h);
            rg_state_host_wait(slot, want, kWaitNs, &h.released);
        });
        // a quarter of the rounds release at once: some waiters come too late, and are refused
        if (rng() % 4) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
        auto begun = std::chrono::steady_clock::now();
        rg_host_release_begin(&h);
        rg_host_release_begin(&h);  // idempotent, as detach() from two threads
        rg_host_release_wait(&h);
        munmap(mem, bytes);  // from here a reader of the region faults
        for (auto& t : threads) t.join();
        auto took = std::chrono::steady_clock::now() - begun;
        if (took > std::chrono::seconds(1)) {
            fprintf(stderr, "round %d: the waits took %lld ms to end after the release\n", round,
                    (long long)std::chrono::duration_cast<std::chrono::milliseconds>(took).count());
            return 1;
        }
    }
    if (ended + refused != (uint64_t)rounds * 4) {
        fprintf(stderr, "%llu waits ended and %llu were refused of %d\n",
                (unsigned long long)ended.load(), (unsigned long long)refused.load(), rounds * 4);
        return 1;
    }
    printf("OK %d %llu %llu\n", rounds, (unsigned long long)ended.load(),
           (unsigned long long)refused.load());
    return 0;
}
