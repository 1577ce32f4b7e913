// sends_stress.cpp - sends (ctx.send_<name>, rg_kernel.h: rg_outs) under ThreadSanitizer, in one
// process so that TSan sees every side: a worker kernel of 2 blocks of 8 threads whose handler
// sends 0..8 Audit messages per Job from that many threads at once (tests/schemas/sends.py),
// its send target "audit" (port 1) bound by a route in plain memory to an auditor kernel of 2
// blocks; one producer thread per worker block feeds Jobs through the host rings, and the main
// thread takes both kernels' responses.
//
// Build: g++ -fsanitize=thread -DRG_WORKER_CU='"<pkg>/worker.cu"'
//        -DRG_AUDITOR_CU='"<pkg>/auditor.cu"' -I<pkg> -I<templates> -I<cccl>
//        sends_stress.cpp rg_cpu_runtime.cpp
// Run:   sends_stress JOBS  -> "OK <jobs> <audits>" and exit 0, or a message and exit 1.
//
// Checks: every job answered once by the worker; every audit (job, k) reaches the auditor
// exactly once, in the job's conversation (its correlation_id is the job's message_id) and
// with the job's priority; the route's rings hold 4 slots, so the senders keep waiting for
// room while other threads of their block send too. The standard headers rg_host.h uses come
// first: the CPU shim that the kernels bring defines CUDA's __noinline__, which libstdc++ uses.
#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>

#include RG_WORKER_CU
#include RG_AUDITOR_CU

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "rg_host.h"

static const uint8_t kLanePriority[RG_LANES] = {10, 100, 128, 150, 220};

static void make_id(rg_uuid* id, uint64_t seq) {
    uint64_t words[2] = {0x5e4d5e4d5e4d5e4dull, seq};
    memcpy(id->bytes, words, 16);
}

static uint64_t id_seq(const rg_uuid& id) {
    uint64_t words[2];
    memcpy(words, id.bytes, 16);
    return words[0] == 0x5e4d5e4d5e4d5e4dull ? words[1] : ~0ull;
}

// A region with its (zeroed) links after it, its layout kept in *host as the Python side does.
static rg_region* make_region(rg_host* host, uint32_t grid, uint32_t block, uint32_t in_slot,
                              uint32_t out_slot, rg_links** links) {
    uint64_t size = rg_region_init(nullptr, grid, block, 64, 256, in_slot, out_slot, 0, 0, 0);
    uint64_t offset = rg_links_offset(size, grid, 0);
    uint64_t total = rg_round_up(offset + rg_links_bytes(grid), RG_LINE);
    uint8_t* mem = (uint8_t*)aligned_alloc(RG_LINE, total);
    memset(mem, 0, total);
    rg_host_init(host, mem, grid, block, 64, 256, in_slot, out_slot, grid, 0, 0);
    *links = (rg_links*)(mem + offset);
    return (rg_region*)mem;
}

int main(int argc, char** argv) {
    const uint64_t jobs = argc > 1 ? strtoull(argv[1], nullptr, 10) : 20000;
    const uint32_t wgrid = 2, agrid = 2;
    rg_links *wlinks, *alinks;
    rg_host whost, ahost;
    rg_host* const wh = &whost;
    rg_region* worker = make_region(&whost, wgrid, 8, sizeof(Job), sizeof(Done), &wlinks);
    rg_region* auditor = make_region(&ahost, agrid, 2, sizeof(Audit), sizeof(Audit), &alinks);
    uint64_t rsize = rg_route_init(nullptr, wgrid, agrid, 4, sizeof(Audit));
    void* route = aligned_alloc(RG_LINE, rg_round_up(rsize, RG_LINE));
    rg_route_init(route, wgrid, agrid, 4, sizeof(Audit));

    rg_link link = {};
    link.route_id = 1;
    link.edge_id = 1;  // the connection (rg_outs::push sends into each once)
    link.device_ptr = (uint64_t)route;  // no path: in this process's memory
    link.src_grid = wgrid;
    link.dst_grid = agrid;
    link.port = 1;  // the worker's first send target, "audit"
    alinks->in[0] = link;
    uint64_t av = rg_links_publish(alinks);
    rg_host_tell(&ahost);
    wlinks->out[0] = link;
    uint64_t wv = rg_links_publish(wlinks);
    rg_host_tell(&whost);

    std::thread akernel([&] { rg_cpu::run_grid(auditor_ring_kernel, (uint8_t*)auditor, agrid, 2); });
    std::thread wkernel([&] { rg_cpu::run_grid(worker_ring_kernel, (uint8_t*)worker, wgrid, 8); });
    for (rg_host* h : {&ahost, &whost}) {
        if (!rg_host_wait_ack(h, rg_host_command(h, RG_CMD_ACTIVATE), 10000000000)) {
            fprintf(stderr, "activate was not acknowledged\n");
            return 1;
        }
    }
    for (int i = 0; i < 10000 && !(rg_links_acked(alinks, agrid, av) && rg_links_acked(wlinks, wgrid, wv)); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));

    // Job seq s: audits s % 9, priority of lane s % 5, message_id from s.
    std::vector<std::thread> producers;
    for (uint32_t b = 0; b < wgrid; ++b) {
        producers.emplace_back([=] {
            for (uint64_t s = b; s < jobs;) {
                Job j;
                rg_init_Job(&j);
                make_id(&j.message_id, s);
                j.seq = (int64_t)s;
                j.audits = (int64_t)(s % 9);
                j.priority = kLanePriority[s % RG_LANES];
                if (rg_host_push(wh, b, rg_lane_of(j.priority), &j, 1)) s += wgrid;
                else std::this_thread::yield();
            }
        });
    }

    uint64_t want_audits = 0;
    for (uint64_t s = 0; s < jobs; ++s) want_audits += s % 9;
    std::vector<uint16_t> seen(jobs, 0);  // per job: bit k = audit k arrived
    std::vector<uint8_t> answered(jobs, 0);
    uint64_t done = 0, audits = 0, errors = 0;
    std::vector<Done> dout(256);
    std::vector<Audit> aout(256);
    uint32_t wcursor = 0, acursor = 0;
    int64_t deadline = rg_host_now_ns() + 120000000000ll;
    while ((done < jobs || audits < want_audits) && errors < 10) {
        if (rg_host_now_ns() > deadline) {
            fprintf(stderr, "stuck at %llu jobs and %llu audits\n", (unsigned long long)done,
                    (unsigned long long)audits);
            return 1;
        }
        uint64_t n = rg_host_wait_responses(&whost, dout.size(), 1000000, 1000000, 0);
        n = rg_host_pop(&whost, dout.data(), n, &wcursor);
        for (uint64_t i = 0; i < n; ++i) {
            uint64_t s = id_seq(dout[i].correlation_id);
            if (s >= jobs || answered[s]++ || dout[i].seq != (int64_t)s) ++errors;
            ++done;
        }
        n = rg_host_wait_responses(&ahost, aout.size(), 1000000, 1000000, 0);
        n = rg_host_pop(&ahost, aout.data(), n, &acursor);
        for (uint64_t i = 0; i < n; ++i) {
            const Audit& a = aout[i];
            uint64_t s = id_seq(a.correlation_id);
            bool ok = s < jobs && a.seq == (int64_t)s && a.k >= 0 && a.k < (int64_t)(s % 9) &&
                      !(seen[s] >> a.k & 1) && a.hops == 1 &&
                      a.priority == kLanePriority[s % RG_LANES];
            if (!ok) {
                fprintf(stderr, "bad audit: seq %lld k %lld for job %llu\n", (long long)a.seq,
                        (long long)a.k, (unsigned long long)s);
                ++errors;
                continue;
            }
            seen[s] |= (uint16_t)(1u << a.k);
            ++audits;
        }
    }
    for (std::thread& t : producers) t.join();
    for (rg_host* h : {&whost, &ahost}) {
        if (!rg_host_wait_ack(h, rg_host_command(h, RG_CMD_TERMINATE), 10000000000)) {
            fprintf(stderr, "terminate was not acknowledged\n");
            return 1;
        }
    }
    wkernel.join();
    akernel.join();
    if (errors || done != jobs || audits != want_audits) {
        fprintf(stderr, "%llu errors, %llu of %llu jobs, %llu of %llu audits\n",
                (unsigned long long)errors, (unsigned long long)done, (unsigned long long)jobs,
                (unsigned long long)audits, (unsigned long long)want_audits);
        return 1;
    }
    printf("OK %llu %llu\n", (unsigned long long)jobs, (unsigned long long)audits);
    free(route);
    free(worker);
    free(auditor);
    return 0;
}
