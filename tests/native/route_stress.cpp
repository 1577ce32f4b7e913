// route_stress.cpp - the route protocol (rg_route.h) under ThreadSanitizer, in one process so
// that TSan sees every side: a sender kernel of 2 blocks and a keyed target kernel of 4 blocks
// (the real kernel loops of two generated .cu files, one OS thread per block, fibers within),
// joined by a route in plain memory; one producer thread per sender block feeds it through the
// host rings (rg_host.h) and one consumer thread takes the target's responses.
//
// Build: g++ -fsanitize=thread -DRG_SENDER_CU='"<pkg>/pub.cu"'
//        -DRG_TARGET_CU='"<pkg>/keyed_sink.cu"' -I<pkg> -I<templates> -I<cccl>
//        route_stress.cpp rg_cpu_runtime.cpp
// Run:   route_stress MESSAGES  -> "OK <received>" and exit 0, or a message and exit 1.
//
// Checks: every message arrives exactly once, after two hops, with the correlation_id of the
// request that entered the sender (a conversation), in the target block its key hashes to,
// FIFO per (sender block, priority class, key); the sender pushed nothing to the host. The
// route's rings hold 4 slots, so senders keep waiting for room: backpressure is exercised.
// The standard headers rg_host.h uses come first: the CPU shim that the kernels bring defines
// CUDA's __noinline__, a name libstdc++ uses in its own attributes.
#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>

#include RG_SENDER_CU
#include RG_TARGET_CU

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>
#include <tuple>
#include <vector>

#include "rg_host.h"

static const uint8_t kLanePriority[RG_LANES] = {10, 100, 128, 150, 220};
static const int64_t kKeys = 7;

static void make_id(rg_uuid* id, uint64_t block, uint64_t lane, uint64_t seq) {
    uint64_t words[2] = {block << 32 | lane, seq};
    memcpy(id->bytes, words, 16);
}

// A region with its (zeroed) links after it, as the runtime lays one out, its layout kept in
// *host as the Python side keeps it; *links set.
static rg_region* make_region(rg_host* host, uint32_t grid, uint32_t block, rg_links** links) {
    uint64_t size = rg_region_init(nullptr, grid, block, 64, 256, sizeof(Item), sizeof(Item), 0, 0, 0);
    uint64_t offset = rg_links_offset(size, grid, 0);
    uint64_t total = rg_round_up(offset + rg_links_bytes(grid), RG_LINE);
    uint8_t* mem = (uint8_t*)aligned_alloc(RG_LINE, total);
    memset(mem, 0, total);
    rg_host_init(host, mem, grid, block, 64, 256, sizeof(Item), sizeof(Item), grid, 0, 0);
    *links = (rg_links*)(mem + offset);
    return (rg_region*)mem;
}

int main(int argc, char** argv) {
    const uint64_t total = argc > 1 ? strtoull(argv[1], nullptr, 10) : 200000;
    const uint32_t sgrid = 2, tgrid = 4, block = 2;
    rg_links *slinks, *tlinks;
    rg_host shost, thost;
    rg_host* const sh = &shost;  // what the producer threads use
    rg_region* sender = make_region(&shost, sgrid, block, &slinks);
    rg_region* target = make_region(&thost, tgrid, block, &tlinks);
    uint64_t rsize = rg_route_init(nullptr, sgrid, tgrid, 4, sizeof(Item));
    void* route = aligned_alloc(RG_LINE, rg_round_up(rsize, RG_LINE));
    rg_route_init(route, sgrid, tgrid, 4, sizeof(Item));

    rg_link link = {};
    link.route_id = 1;
    link.edge_id = 1;  // the connection (rg_outs::push sends into each once)
    link.device_ptr = (uint64_t)route;  // no path: in this process's memory
    link.src_grid = sgrid;
    link.dst_grid = tgrid;
    link.key_kind = RG_KEY_INT;
    link.key_offset = offsetof(Item, tag);
    link.key_size = sizeof(int64_t);
    tlinks->in[0] = link;
    uint64_t tv = rg_links_publish(tlinks);
    rg_host_tell(&thost);
    slinks->out[0] = link;
    uint64_t sv = rg_links_publish(slinks);
    rg_host_tell(&shost);

    std::thread tkernel([&] { rg_cpu::run_grid(keyed_sink_ring_kernel, (uint8_t*)target, tgrid, block); });
    std::thread skernel([&] { rg_cpu::run_grid(pub_ring_kernel, (uint8_t*)sender, sgrid, block); });
    for (rg_host* h : {&thost, &shost}) {
        if (!rg_host_wait_ack(h, rg_host_command(h, RG_CMD_ACTIVATE), 10000000000)) {
            fprintf(stderr, "activate was not acknowledged\n");
            return 1;
        }
    }
    for (int i = 0; i < 10000 && !(rg_links_acked(tlinks, tgrid, tv) && rg_links_acked(slinks, sgrid, sv)); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (!rg_links_acked(tlinks, tgrid, tv) || !rg_links_acked(slinks, sgrid, sv)) {
        fprintf(stderr, "links were not acknowledged\n");
        return 1;
    }

    const uint64_t per_block = total / sgrid;
    std::vector<std::thread> producers;
    for (uint32_t b = 0; b < sgrid; ++b) {
        producers.emplace_back([=] {
            uint64_t seq[RG_LANES] = {0};
            Item batch[16];
            for (uint64_t sent = 0; sent < per_block;) {
                uint32_t lane = (uint32_t)(sent / 5 % RG_LANES);
                uint64_t n = per_block - sent < 16 ? per_block - sent : 16;
                for (uint64_t i = 0; i < n; ++i) {
                    rg_init_Item(&batch[i]);
                    make_id(&batch[i].message_id, b, lane, seq[lane] + i);
                    batch[i].priority = kLanePriority[lane];
                    batch[i].seq = (int64_t)(seq[lane] + i);
                    batch[i].tag = (int64_t)((seq[lane] + i) % kKeys);
                }
                uint64_t pushed = rg_host_push(sh, b, lane, batch, n);
                seq[lane] += pushed;
                sent += pushed;
                if (!pushed) std::this_thread::yield();
            }
        });
    }

    uint64_t received = 0, errors = 0;
    std::map<std::tuple<uint64_t, uint64_t, int64_t>, int64_t> last;  // (block, lane, key) -> seq
    std::vector<Item> out(256);
    uint32_t cursor = 0;
    while (received < per_block * sgrid && errors < 10) {
        uint64_t n = rg_host_wait_responses(&thost, out.size(), 5000000000, 1000000, 20000);
        if (rg_host_pop(&thost, out.data(), n, &cursor) != n) {
            fprintf(stderr, "fewer responses popped than were counted\n");
            return 1;
        }
        if (!n) {
            fprintf(stderr, "no response within 5 s after %llu\n", (unsigned long long)received);
            return 1;
        }
        for (uint64_t i = 0; i < n; ++i) {
            const Item& p = out[i];
            uint64_t words[2];
            memcpy(words, p.correlation_id.bytes, 16);
            uint64_t b = words[0] >> 32, lane = words[0] & 0xffffffff, seq = words[1];
            auto key = std::make_tuple(b, lane, p.tag);
            auto it = last.find(key);
            bool ok = (p.flags & RG_FLAG_HAS_CORRELATION) && b < sgrid && lane < RG_LANES &&
                      p.hops == 2 && p.priority == kLanePriority[lane] && (uint64_t)p.seq == seq &&
                      p.tag == (int64_t)(seq % kKeys) &&
                      (uint32_t)p.block == rg_key_mix((uint64_t)p.tag) % tgrid &&
                      (it == last.end() || it->second < p.seq);
            if (!ok) {
                fprintf(stderr, "bad response: block %llu lane %llu seq %llu hops %lld\n",
                        (unsigned long long)b, (unsigned long long)lane, (unsigned long long)seq,
                        (long long)p.hops);
                ++errors;
                continue;
            }
            last[key] = p.seq;
            ++received;
        }
    }
    for (std::thread& t : producers) t.join();
    for (rg_host* h : {&shost, &thost}) {
        if (!rg_host_wait_ack(h, rg_host_command(h, RG_CMD_TERMINATE), 10000000000)) {
            fprintf(stderr, "terminate was not acknowledged\n");
            return 1;
        }
    }
    skernel.join();
    tkernel.join();
    uint64_t extra = rg_host_pop(&thost, out.data(), out.size(), &cursor);
    uint64_t to_host = rg_host_responses(&shost, 1, true), routed = 0;
    for (uint32_t b = 0; b < sgrid; ++b) routed += rg_links_block(slinks, b)->routed_out;
    if (errors || extra || to_host || routed != received) {
        fprintf(stderr, "%llu errors, %llu unexpected responses, %llu to the host, %llu routed\n",
                (unsigned long long)errors, (unsigned long long)extra,
                (unsigned long long)to_host, (unsigned long long)routed);
        return 1;
    }
    printf("OK %llu\n", (unsigned long long)received);
    free(route);
    free(sender);
    free(target);
    return 0;
}
