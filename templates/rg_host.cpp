// rg_host.cpp - _rg_host, the Python extension module (pybind11) over rg_host.h.
//
// One `Region` object per launched kernel drives its region in place. A call that does not
// wait takes a fraction of a microsecond, which matters because an event loop makes one push
// and one pop per request (through ctypes each took ~1 us). The calls that wait (pop and
// push_wait with a timeout, wait_ack, links_acked, state_snapshot) release the GIL while they
// wait. Each holds an rg_host_user meanwhile, so detach() (after which Python frees the
// memory) ends their waits and returns only once they have left the region: a terminate or
// close on another thread never makes them read freed memory. They then raise RegionReleased.
#include <pybind11/pybind11.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>

#include "rg_host.h"
#include "rg_route.h"
#include "rg_state.h"

namespace py = pybind11;

namespace {

struct Structs {  // a buffer of whole structs of one slot size, held while it is read
    py::buffer_info info;
    const uint8_t* data;
    uint64_t count;
};

class Region {
  public:
    // Lays a region out in the memory at `address` (at least size() bytes) and keeps its
    // layout here: nothing later is read back from the region but the kernel's ring indices,
    // bounded (rg_host.h).
    Region(uintptr_t address, uint32_t grid, uint32_t block, uint32_t lane_capacity,
           uint32_t out_capacity, uint32_t in_slot, uint32_t out_slot, uint64_t seed,
           uint32_t in_lead, uint32_t out_lead) {
        rg_host_init(&h_, (void*)address, grid, block, lane_capacity, out_capacity, in_slot,
                     out_slot, seed, in_lead, out_lead);
    }

    ~Region() { stop_watcher(); }

    static uint64_t size(uint32_t grid, uint32_t block, uint32_t lane_capacity,
                         uint32_t out_capacity, uint32_t in_slot, uint32_t out_slot,
                         uint32_t in_lead, uint32_t out_lead) {
        return rg_region_init(nullptr, grid, block, lane_capacity, out_capacity, in_slot,
                              out_slot, 0, in_lead, out_lead);
    }

    // (offset, bytes) of the state slots that follow a region of region_size bytes.
    static py::tuple state_area(uint64_t region_size, uint32_t grid, uint64_t state_size) {
        return py::make_tuple(rg_state_area_offset(region_size),
                              rg_state_area_bytes(grid, state_size));
    }

    uint64_t push(uint32_t block, uint32_t lane, const py::buffer& structs) {
        rg_host* h = lane_host(block, lane);
        Structs s = whole_structs(structs, h->in_slot);
        return rg_host_push(h, block, lane, s.data, s.count);
    }

    // push() whose doorbell the caller rings later (ring()), once for a burst of pushes.
    uint64_t push_quiet(uint32_t block, uint32_t lane, const py::buffer& structs) {
        rg_host* h = lane_host(block, lane);
        Structs s = whole_structs(structs, h->in_slot);
        return rg_host_push_quiet(h, block, lane, s.data, s.count);
    }

    void ring() { rg_host_ring_doorbell(host()); }

    uint64_t push_wait(uint32_t block, uint32_t lane, const py::buffer& structs,
                       int64_t timeout_ns, int64_t nap_ns) {
        rg_host* h = lane_host(block, lane);
        Structs s = whole_structs(structs, h->in_slot);
        uint64_t done;
        {
            rg_host_user user(h);
            py::gil_scoped_release nogil;
            done = rg_host_push_wait(h, block, lane, s.data, s.count, timeout_ns, nap_ns);
        }
        if (done < s.count && rg_host_is_released(h))
            throw rg_host_released("the kernel's region was released while a push waited for "
                                   "room; " + std::to_string(done) + " of " +
                                   std::to_string(s.count) + " went in");
        return done;
    }

    uint64_t lane_size(uint32_t block, uint32_t lane) {
        return rg_host_lane_fill(lane_host(block, lane), block, lane, false);
    }

    // Up to `max` responses as the bytes of their structs, waiting (without the GIL) up to
    // timeout_ns for the first (see rg_host_wait_responses); with clear_notify, the notify
    // eventfd is read first.
    py::bytes pop(uint64_t max, int64_t timeout_ns, int64_t poll_ns, int64_t spin_ns,
                  bool clear_notify) {
        rg_host* h = host();
        if (clear_notify && notify_fd_ >= 0) rg_host_clear_notify(h, notify_fd_);
        uint64_t n = rg_host_responses(h, max, true);  // at most grid * out_capacity: bounded
        if (!n && timeout_ns > 0) {
            {
                rg_host_user user(h);
                py::gil_scoped_release nogil;
                n = rg_host_wait_responses(h, max, timeout_ns, poll_ns, spin_ns);
            }
            host();  // released meanwhile: the region is no longer there to pop from
        }
        // Sized before the pop: only this thread pops, so the n responses counted are there,
        // unless the kernel moved a tail back, which is a fault like any impossible index.
        py::bytes out = take_bytes(n * h->out_slot);
        uint64_t got = rg_host_pop(h, PyBytes_AS_STRING(out.ptr()), n, &next_);
        if (got != n)
            throw rg_host_fault("an output ring's tail went back from " + std::to_string(n) +
                                " responses to " + std::to_string(got) +
                                ": the kernel wrote over its region");
        return out;
    }

    // A lone request's ring part in one call: push `structs`; if they went in, their responses
    // as pop() gives them, waiting (without the GIL, polling without a nap: a reply due within
    // microseconds is seen the moment it lands) up to spin_ns for the first. None if the lane
    // had no room for them (nothing was pushed).
    py::object push_pop(uint32_t block, uint32_t lane, const py::buffer& structs, uint64_t max,
                        int64_t spin_ns) {
        pushed_ = false;
        if (!push(block, lane, structs)) return py::none();
        pushed_ = true;
        return pop(max, spin_ns, spin_ns, spin_ns, false);
    }

    // Whether the last push_pop pushed its structs: one that raised a fault may have done so
    // (the pop half found the fault), and the host counts what it sent.
    bool push_pop_pushed() const { return pushed_; }

    // Free slots of a lane (their requests finished): what the host may push now.
    uint64_t lane_free(uint32_t block, uint32_t lane) {
        return rg_host_lane_free(lane_host(block, lane), block, lane, false);
    }

    // (structs as bytes, held): what a lane holds that the kernel never finished, the first
    // `held` of them taken by it; only once the kernel is gone (rg_host_unfinished).
    py::tuple take_lane(uint32_t block, uint32_t lane) {
        rg_host* h = lane_host(block, lane);
        rg_unfinished u = rg_host_unfinished(h, block, lane);  // at most lane_capacity: bounded
        py::bytes out = take_bytes(u.count * h->in_slot);
        rg_host_take_unfinished(h, block, lane, u, PyBytes_AS_STRING(out.ptr()));
        return py::make_tuple(out, u.held);
    }

    uint64_t command(uint32_t command) { return rg_host_command(host(), command); }

    bool wait_ack(uint64_t seq, int64_t timeout_ns) {
        rg_host* h = host();
        bool acked;
        {
            rg_host_user user(h);
            py::gil_scoped_release nogil;
            acked = rg_host_wait_ack(h, seq, timeout_ns);
        }
        if (!acked) host();  // a release, not the blocks, ended the wait
        return acked;
    }

    // Per block: (state, processed, emitted, errors, heartbeat, bus reads, read bytes, bus
    // writes, write bytes).
    py::list status() {
        rg_host* h = host();
        py::list out;
        for (uint32_t b = 0; b < h->grid; ++b) {
            rg_block_status* s = rg_host_status(h, b);
            out.append(py::make_tuple(rg_load_acquire(&s->state), rg_load_acquire(&s->processed),
                                      rg_load_acquire(&s->emitted), rg_load_acquire(&s->errors),
                                      rg_load_acquire(&s->heartbeat),
                                      rg_load_acquire(&s->bus[0]), rg_load_acquire(&s->bus[1]),
                                      rg_load_acquire(&s->bus[2]), rg_load_acquire(&s->bus[3])));
        }
        return out;
    }

    void arm(bool armed) { rg_host_arm(host(), armed); }

    // The eventfd that wakes an armed event loop; `kernel_writes`: the kernel's own process
    // writes it (CPU backend), else a watcher thread must (start_watcher).
    void set_notify_fd(int fd, bool kernel_writes) {
        rg_host_set_notify(host(), fd, kernel_writes);
        notify_fd_ = fd;
    }

    // A host thread that does for a kernel that rings no bell (a GPU) what rg_bell_ring does on
    // the CPU backend: see rg_host_watch. Stopped by detach() (or when the Region goes).
    void start_watcher(int64_t nap_ns, int64_t spin_ns) {
        rg_host* h = host();
        if (notify_fd_ < 0) throw py::value_error("start_watcher needs set_notify_fd first");
        std::lock_guard<std::mutex> lock(watcher_lock_);  // never held with the GIL wanted
        if (watcher_.joinable()) throw py::value_error("the watcher runs already");
        stop_.store(false);
        watcher_ = std::thread(rg_host_watch, h, notify_fd_, &stop_, nap_ns, spin_ns);
    }

    // Without the GIL (the watcher needs none, and another thread may be stopping it too).
    void stop_watcher() {
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(watcher_lock_);
        if (!watcher_.joinable()) return;
        stop_.store(true, std::memory_order_release);
        watcher_.join();
    }

    // CPU backend: how long an idle block polls before it sleeps (see rg_poller::spinning).
    void set_spin(uint64_t spin_ns) { rg_host_region(host())->spin_ns = spin_ns; }

    void set_buffer(uint32_t slot, uint64_t buffer_id, uint64_t device_ptr, uint64_t nbytes,
                    uint32_t dtype_code, uint32_t itemsize, const std::string& path) {
        if (!rg_host_set_buffer(host(), slot, buffer_id, device_ptr, nbytes, dtype_code,
                                itemsize, path.data(), path.size()))
            throw py::index_error("no buffer slot " + std::to_string(slot) + " for a path of " +
                                  std::to_string(path.size()) + " bytes: at most " +
                                  std::to_string(RG_MAX_BUFFERS) + " buffers are registered");
    }

    // Per-block state (rg_state.h), in the slots at area_offset (the host's own figure: the
    // region's size rounded to a line). Before launch: writes a block's starting state.
    void state_write(uint64_t area_offset, uint32_t block, const py::bytes& data) {
        std::string bytes = data;
        rg_state_slot* slot = state_slot(area_offset, block, bytes.size());
        memcpy(rg_state_bytes(slot), bytes.data(), bytes.size());
    }

    // A consistent snapshot of a block's state (state_size bytes), or None if the block did
    // not answer within timeout_ns (it is inside a long handler, or gone).
    py::object state_snapshot(uint64_t area_offset, uint32_t block, uint64_t state_size,
                              int64_t timeout_ns) {
        rg_state_slot* slot = state_slot(area_offset, block, state_size);
        rg_host* h = host();
        uint64_t want = rg_state_host_request(slot);
        rg_host_tell(h);
        bool done;
        {
            rg_host_user user(h);
            py::gil_scoped_release nogil;
            done = rg_state_host_wait(slot, want, timeout_ns, &h->released);
        }
        host();  // released meanwhile: the snapshot's bytes are gone with the region
        if (!done) return py::none();
        return py::bytes((const char*)rg_state_bytes(slot), state_size);
    }

    // (offset, bytes) of the links (rg_route.h) of a region of region_size bytes whose state
    // slots hold state_size bytes a block (0: no state).
    static py::tuple links_area(uint64_t region_size, uint32_t grid, uint64_t state_size) {
        return py::make_tuple(rg_links_offset(region_size, grid, state_size), rg_links_bytes(grid));
    }

    // Writes entry `index` of the out (or in) links; seen by the blocks at publish_links().
    void set_link(uint64_t links_offset, bool out, uint32_t index, uint64_t route_id,
                  uint64_t edge_id, uint64_t device_ptr, uint32_t src_grid, uint32_t dst_grid, uint32_t key_kind,
                  uint32_t key_offset, uint32_t key_size, uint32_t key_data,
                  const std::string& path, uint32_t port, uint32_t scope) {
        rg_links* links = links_at(links_offset);
        if (index >= RG_MAX_LINKS || path.size() >= sizeof(rg_link().path))
            throw py::index_error("no link " + std::to_string(index) + " for a path of " +
                                  std::to_string(path.size()) + " bytes: at most " +
                                  std::to_string(RG_MAX_LINKS) + " routes a kernel");
        rg_link link = {};
        link.route_id = route_id;
        link.edge_id = edge_id;
        link.device_ptr = device_ptr;
        link.src_grid = src_grid;
        link.dst_grid = dst_grid;
        link.key_kind = key_kind;
        link.key_offset = key_offset;
        link.key_size = key_size;
        link.key_data = key_data;
        link.port = port;
        link.scope = scope;
        memcpy(link.path, path.data(), path.size());
        (out ? links->out : links->in)[index] = link;
    }

    uint64_t publish_links(uint64_t links_offset) {
        rg_links* links = links_at(links_offset);
        uint64_t v = rg_links_publish(links);
        rg_host_tell(host());
        return v;
    }

    // Waits (without the GIL) up to timeout_ns until every block applied links version v.
    bool links_acked(uint64_t links_offset, uint64_t v, int64_t timeout_ns) {
        rg_links* links = links_at(links_offset);
        rg_host* h = host();
        uint32_t grid = h->grid;  // the host's figure: the region's may be overwritten
        bool acked;
        {
            rg_host_user user(h);
            py::gil_scoped_release nogil;
            int64_t deadline = rg_host_now_ns() + timeout_ns;
            while (!(acked = rg_links_acked(links, grid, v))) {
                if (rg_host_now_ns() > deadline || rg_host_is_released(h)) break;
                struct timespec ts = {0, 20000};
                nanosleep(&ts, nullptr);
            }
        }
        if (!acked) host();  // a release, not the blocks, ended the wait
        return acked;
    }

    // Per block: (routed_in, routed_out).
    py::list link_counts(uint64_t links_offset) {
        rg_links* links = links_at(links_offset);
        py::list out;
        for (uint32_t b = 0; b < host()->grid; ++b) {
            rg_link_block* s = rg_links_block(links, b);
            out.append(py::make_tuple(rg_load_acquire(&s->routed_in), rg_load_acquire(&s->routed_out)));
        }
        return out;
    }

    // The memory is about to go: from here on every call raises RegionReleased instead of
    // touching it, and a call waiting in another thread is woken and raises it too. Returns
    // once no thread reads the region (the watcher stopped, every waiter left), so the caller
    // may free it; any thread may call it, as often as it likes.
    void detach() {
        rg_host_release_begin(&h_);  // with the GIL: no call starts to use the region after this
        stop_watcher();
        py::gil_scoped_release nogil;  // the waiters need it to leave
        rg_host_release_wait(&h_);
    }

  private:
    rg_host h_;
    uint32_t next_ = 0;  // the block the next pop starts at
    bool pushed_ = false;  // see push_pop_pushed
    int notify_fd_ = -1;
    std::atomic<bool> stop_{false};
    std::thread watcher_;
    std::mutex watcher_lock_;  // start_watcher and stop_watcher: the watcher is joined once

    rg_host* host() {
        if (rg_host_is_released(&h_)) throw rg_host_released("the kernel's region was released");
        return &h_;
    }

    rg_host* lane_host(uint32_t block, uint32_t lane) {
        rg_host* h = host();
        if (block >= h->grid || lane >= RG_LANES)
            throw py::index_error("no lane " + std::to_string(lane) + " of block " +
                                  std::to_string(block));
        return h;
    }

    // An uninitialised bytes object of `size` bytes, owned (freed if what fills it throws).
    static py::bytes take_bytes(uint64_t size) {
        PyObject* out = PyBytes_FromStringAndSize(nullptr, (Py_ssize_t)size);
        if (!out) throw py::error_already_set();
        return py::reinterpret_steal<py::bytes>(out);
    }

    // The offsets are the host's (Python's, from links_area and state_area), never read from
    // the region; what the host then reads there (acks, counters, snapshot numbers) it only
    // compares or reports, and a snapshot is always state_size bytes.
    rg_links* links_at(uint64_t links_offset) { return (rg_links*)(host()->base + links_offset); }

    rg_state_slot* state_slot(uint64_t area_offset, uint32_t block, uint64_t state_size) {
        rg_host* h = host();
        if (block >= h->grid || !state_size)
            throw py::index_error("no state slot of block " + std::to_string(block));
        return rg_state_slot_of(h->base + area_offset, block, state_size);
    }

    static Structs whole_structs(const py::buffer& structs, uint64_t slot_size) {
        py::buffer_info info = structs.request();
        uint64_t bytes = (uint64_t)(info.size * info.itemsize);
        bool contiguous = info.ndim <= 1 && (info.ndim == 0 || info.strides[0] == info.itemsize);
        if (!contiguous || bytes % slot_size)
            throw py::type_error("push takes whole structs of " + std::to_string(slot_size) +
                                 " bytes in one contiguous buffer");
        const uint8_t* data = (const uint8_t*)info.ptr;
        return Structs{std::move(info), data, bytes / slot_size};
    }
};

// A route between two kernels (rg_route.h), laid out in place at an address. The host only
// drains it, as the consumer of a target that is gone. Both kernels map the route and may
// write anywhere in it, so, as with a region (rg_host.h), its layout is the host's own copy
// from init and every ring index read back is bounded before a copy.
class Route {
  public:
    Route(uintptr_t address, uint32_t src_grid, uint32_t dst_grid, uint32_t capacity,
          uint32_t slot_size, bool lay_out)
        : r_((rg_route*)address), src_grid_(src_grid), dst_grid_(dst_grid), capacity_(capacity),
          slot_(slot_size), stride_(rg_ring_bytes(capacity, slot_size, 0)) {
        if (!address) throw py::value_error("a route needs memory: the address is 0");
        if (!src_grid || !dst_grid || !rg_host_pow2(capacity) || !slot_size)
            throw py::value_error("a route needs grids >= 1, a power-of-two capacity and a slot");
        // !lay_out: a copy of a route laid out before (a GPU's, read back), whose indices the
        // host bounds as it drains, as any route's
        if (lay_out) rg_route_init(r_, src_grid, dst_grid, capacity, slot_size);
    }

    static uint64_t size(uint32_t src_grid, uint32_t dst_grid, uint32_t capacity,
                         uint32_t slot_size) {
        return rg_route_init(nullptr, src_grid, dst_grid, capacity, slot_size);
    }

    // Messages waiting in the route, for every target block. The senders may push meanwhile,
    // so only what no interleaving breaks is checked (a head never passes its tail), and each
    // ring's count is clamped to its capacity.
    uint64_t queued() { return count(false); }

    // Messages pushed into the route and not yet finished by their target (waiting, or taken
    // and in its handlers): what the target still owes, for drain(). Clamped as queued() is.
    uint64_t pending() { return count(true); }

    // Takes up to max_count messages waiting for every target block, highest lane first, as
    // struct bytes. Only where the host is the rings' one consumer (a target that is gone, a
    // host actor, the dead letters of an unbound send target), so a ring with more than
    // `capacity` between head and tail was written over.
    py::bytes drain(uint64_t max_count) {
        std::string out;
        for (uint32_t l = RG_LANES; l-- > 0;)
            for (uint32_t s = 0; s < src_grid_; ++s)
                for (uint32_t d = 0; d < dst_grid_; ++d) {
                    rg_ring* r = ring(s, d, l);
                    // From `done`: what a dead target took and never finished comes first.
                    uint64_t head = rg_load_acquire(&r->head.done);
                    uint64_t tail = rg_load_acquire(&r->tail.value);
                    uint64_t n = tail - head;
                    if (n > capacity_) bad_ring(s, d, l, head, tail);
                    uint64_t room = max_count - out.size() / slot_;
                    if (n > room) n = room;
                    if (!n) continue;
                    size_t at = out.size();
                    out.resize(at + n * slot_);
                    rg_host_copy(r, capacity_, slot_, 0, head, (uint8_t*)&out[at], n, false);
                    rg_store_release(&r->head.value, head + n);
                    rg_store_release(&r->head.done, head + n);
                }
        return py::bytes(out);
    }

  private:
    rg_route* r_;
    uint32_t src_grid_, dst_grid_, capacity_, slot_;
    uint64_t stride_;

    // Ring (s, d, l), from the host's layout (rg_route_ring reads the route's header).
    rg_ring* ring(uint32_t s, uint32_t d, uint32_t l) {
        uint64_t i = ((uint64_t)s * dst_grid_ + d) * RG_LANES + l;
        return (rg_ring*)((uint8_t*)r_ + sizeof(rg_route) + i * stride_);
    }

    // Messages from each ring's head (its `done`, with since_done: taken ones too) to its tail.
    // A head past its tail is a kernel's scribble; a done past it, a target still finishing.
    uint64_t count(bool since_done) {
        uint64_t n = 0;
        for (uint32_t s = 0; s < src_grid_; ++s)
            for (uint32_t d = 0; d < dst_grid_; ++d)
                for (uint32_t l = 0; l < RG_LANES; ++l) {
                    rg_ring* r = ring(s, d, l);
                    uint64_t from = rg_load_acquire(since_done ? &r->head.done : &r->head.value);
                    uint64_t tail = rg_load_acquire(&r->tail.value);
                    if ((int64_t)(tail - from) < 0) {
                        if (!since_done) bad_ring(s, d, l, from, tail);
                        continue;
                    }
                    n += tail - from < capacity_ ? tail - from : capacity_;
                }
        return n;
    }

    [[noreturn]] void bad_ring(uint32_t s, uint32_t d, uint32_t l, uint64_t head, uint64_t tail) {
        throw rg_host_fault("route ring (sender block " + std::to_string(s) + ", target block " +
                            std::to_string(d) + ", lane " + std::to_string(l) + ") has head " +
                            std::to_string(head) + " and tail " + std::to_string(tail) +
                            ", which no ring of " + std::to_string(capacity_) +
                            " slots can have: a kernel wrote over the route");
    }
};

}  // namespace

PYBIND11_MODULE(_rg_host, m) {
    m.doc() = "The host side of ringgen's rings (templates/rg_host.h, bound in rg_host.cpp).";
    // The ring protocol's constants, defined once in rg_ring.h: Python reads them from here.
    m.attr("LANES") = RG_LANES;
    m.attr("MAX_BUFFERS") = RG_MAX_BUFFERS;
    m.attr("CMD_ACTIVATE") = RG_CMD_ACTIVATE;
    m.attr("CMD_DEACTIVATE") = RG_CMD_DEACTIVATE;
    m.attr("CMD_TERMINATE") = RG_CMD_TERMINATE;
    m.attr("STATE_LAUNCHED") = RG_STATE_LAUNCHED;
    m.attr("STATE_ACTIVE") = RG_STATE_ACTIVE;
    m.attr("STATE_PAUSED") = RG_STATE_PAUSED;
    m.attr("STATE_TERMINATED") = RG_STATE_TERMINATED;
    py::tuple lane_of(256);
    for (uint32_t p = 0; p < 256; ++p) lane_of[p] = rg_lane_of(p);
    m.attr("LANE_OF") = lane_of;
    // Where the host reads and writes a route's and a ring's words by address (routes.py):
    // from the structs themselves, so no offset is copied by hand.
    m.attr("ROUTE_LOST_AT") = offsetof(rg_route, lost);
    m.attr("ROUTE_HOST_DRAINS_AT") = offsetof(rg_route, host_drains);
    m.attr("RING_DONE_AT") = offsetof(rg_ring, head) + offsetof(rg_consumer_line, done);
    m.attr("RING_TAIL_AT") = offsetof(rg_ring, tail) + offsetof(rg_producer_line, value);
    m.attr("RING_HEAD_BYTES") = offsetof(rg_consumer_line, done) + sizeof(uint64_t);
    py::register_exception<rg_host_fault>(m, "RegionFault", PyExc_RuntimeError);
    // A ValueError, as a call on a released region always raised.
    py::register_exception<rg_host_released>(m, "RegionReleased", PyExc_ValueError);
    py::class_<Region>(m, "Region")
        // The leads last, 0 by default: a region laid out without them (tests) has none.
        .def(py::init<uintptr_t, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t,
                      uint64_t, uint32_t, uint32_t>(),
             py::arg("address"), py::arg("grid"), py::arg("block"), py::arg("lane_capacity"),
             py::arg("out_capacity"), py::arg("in_slot"), py::arg("out_slot"), py::arg("seed"),
             py::arg("in_lead") = 0, py::arg("out_lead") = 0)
        .def_static("size", &Region::size, py::arg("grid"), py::arg("block"),
                    py::arg("lane_capacity"), py::arg("out_capacity"), py::arg("in_slot"),
                    py::arg("out_slot"), py::arg("in_lead") = 0, py::arg("out_lead") = 0)
        .def_static("state_area", &Region::state_area)
        .def("push", &Region::push)
        .def("push_quiet", &Region::push_quiet)
        .def("ring", &Region::ring)
        .def("push_wait", &Region::push_wait)
        .def("lane_size", &Region::lane_size)
        .def("lane_free", &Region::lane_free)
        .def("pop", &Region::pop)
        .def("push_pop", &Region::push_pop)
        .def("push_pop_pushed", &Region::push_pop_pushed)
        .def("take_lane", &Region::take_lane)
        .def("command", &Region::command)
        .def("wait_ack", &Region::wait_ack)
        .def("status", &Region::status)
        .def("arm", &Region::arm)
        .def("set_notify_fd", &Region::set_notify_fd)
        .def("start_watcher", &Region::start_watcher)
        .def("set_spin", &Region::set_spin)
        .def("set_buffer", &Region::set_buffer)
        .def_static("links_area", &Region::links_area)
        .def("set_link", &Region::set_link)
        .def("publish_links", &Region::publish_links)
        .def("links_acked", &Region::links_acked)
        .def("link_counts", &Region::link_counts)
        .def("state_write", &Region::state_write)
        .def("state_snapshot", &Region::state_snapshot)
        .def("detach", &Region::detach);
    py::class_<Route>(m, "Route")
        .def(py::init<uintptr_t, uint32_t, uint32_t, uint32_t, uint32_t, bool>(), py::arg("address"),
             py::arg("src_grid"), py::arg("dst_grid"), py::arg("capacity"), py::arg("slot_size"),
             py::arg("lay_out") = true)
        .def_static("size", &Route::size)
        .def("queued", &Route::queued)
        .def("pending", &Route::pending)
        .def("drain", &Route::drain, py::arg("max_count") = UINT64_MAX);
}
