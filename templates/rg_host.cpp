// rg_host.cpp - _rg_host, the Python extension module (pybind11) over rg_host.h.
//
// One `Region` object per launched kernel drives its region in place. A call that does not
// wait takes a fraction of a microsecond, which matters because an event loop makes one push
// and one pop per request (through ctypes each took ~1 us). The calls that wait (pop and
// push_wait with a timeout, wait_ack) release the GIL while they wait.
#include <pybind11/pybind11.h>

#include <atomic>
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
    // Lays a region out in the memory at `address` (at least size() bytes).
    Region(uintptr_t address, uint32_t grid, uint32_t block, uint32_t lane_capacity,
           uint32_t out_capacity, uint32_t in_slot, uint32_t out_slot, uint64_t seed)
        : r_((rg_region*)address) {
        if (!address) throw py::value_error("a region needs memory: the address is 0");
        rg_region_init(r_, grid, block, lane_capacity, out_capacity, in_slot, out_slot, seed);
    }

    ~Region() { stop_watcher(); }

    static uint64_t size(uint32_t grid, uint32_t block, uint32_t lane_capacity,
                         uint32_t out_capacity, uint32_t in_slot, uint32_t out_slot) {
        return rg_region_init(nullptr, grid, block, lane_capacity, out_capacity, in_slot,
                              out_slot, 0);
    }

    // (offset, bytes) of the state slots that follow a region of region_size bytes.
    static py::tuple state_area(uint64_t region_size, uint32_t grid, uint64_t state_size) {
        return py::make_tuple(rg_state_area_offset(region_size),
                              rg_state_area_bytes(grid, state_size));
    }

    uint64_t push(uint32_t block, uint32_t lane, const py::buffer& structs) {
        rg_region* r = lane_region(block, lane);
        Structs s = whole_structs(structs, r->in_slot_size);
        return rg_host_push(r, block, lane, s.data, s.count);
    }

    uint64_t push_wait(uint32_t block, uint32_t lane, const py::buffer& structs,
                       int64_t timeout_ns, int64_t nap_ns) {
        rg_region* r = lane_region(block, lane);
        Structs s = whole_structs(structs, r->in_slot_size);
        py::gil_scoped_release nogil;
        return rg_host_push_wait(r, block, lane, s.data, s.count, timeout_ns, nap_ns);
    }

    uint64_t lane_size(uint32_t block, uint32_t lane) {
        return rg_ring_size(rg_region_ring(lane_region(block, lane), block, lane));
    }

    // Up to `max` responses as the bytes of their structs, waiting (without the GIL) up to
    // timeout_ns for the first (see rg_host_wait_responses); with clear_notify, the notify
    // eventfd is read first.
    py::bytes pop(uint64_t max, int64_t timeout_ns, int64_t poll_ns, int64_t spin_ns,
                  bool clear_notify) {
        rg_region* r = region();
        if (clear_notify && notify_fd_ >= 0) rg_host_clear_notify(r, notify_fd_);
        uint64_t n = rg_host_responses(r, max);
        if (!n && timeout_ns > 0) {
            py::gil_scoped_release nogil;
            n = rg_host_wait_responses(r, max, timeout_ns, poll_ns, spin_ns);
        }
        // Sized before the pop: only this thread pops, so the n responses counted are there.
        PyObject* out = PyBytes_FromStringAndSize(nullptr, (Py_ssize_t)(n * r->out_slot_size));
        if (!out) throw py::error_already_set();
        rg_host_pop(r, PyBytes_AS_STRING(out), n, &next_);
        return py::reinterpret_steal<py::bytes>(out);
    }

    // The structs left in a lane, as bytes; only once the kernel is gone (rg_host_take_lane).
    py::bytes take_lane(uint32_t block, uint32_t lane) {
        rg_region* r = lane_region(block, lane);
        uint64_t n = rg_ring_size(rg_region_ring(r, block, lane));
        PyObject* out = PyBytes_FromStringAndSize(nullptr, (Py_ssize_t)(n * r->in_slot_size));
        if (!out) throw py::error_already_set();
        rg_host_take_lane(r, block, lane, PyBytes_AS_STRING(out), n);
        return py::reinterpret_steal<py::bytes>(out);
    }

    uint64_t command(uint32_t command) { return rg_host_command(region(), command); }

    bool wait_ack(uint64_t seq, int64_t timeout_ns) {
        rg_region* r = region();
        py::gil_scoped_release nogil;
        return rg_host_wait_ack(r, seq, timeout_ns);
    }

    // Per block: (state, processed, emitted, errors, heartbeat).
    py::list status() {
        rg_region* r = region();
        py::list out;
        for (uint32_t b = 0; b < r->grid; ++b) {
            rg_block_status* s = rg_region_status(r, b);
            out.append(py::make_tuple(rg_load_acquire(&s->state), rg_load_acquire(&s->processed),
                                      rg_load_acquire(&s->emitted), rg_load_acquire(&s->errors),
                                      rg_load_acquire(&s->heartbeat)));
        }
        return out;
    }

    void arm(bool armed) { rg_host_arm(region(), armed); }

    // The eventfd that wakes an armed event loop; `kernel_writes`: the kernel's own process
    // writes it (CPU backend), else a watcher thread must (start_watcher).
    void set_notify_fd(int fd, bool kernel_writes) {
        notify_fd_ = fd;
        region()->control.out_bell.notify_fd_plus1 = kernel_writes ? (uint64_t)fd + 1 : 0;
    }

    // A host thread that does for a kernel that rings no bell (a GPU) what rg_bell_ring does on
    // the CPU backend: see rg_host_watch. Stopped by detach() (or when the Region goes).
    void start_watcher(int64_t nap_ns, int64_t spin_ns) {
        rg_region* r = region();
        if (notify_fd_ < 0) throw py::value_error("start_watcher needs set_notify_fd first");
        if (watcher_.joinable()) throw py::value_error("the watcher runs already");
        stop_.store(false);
        watcher_ = std::thread(rg_host_watch, r, notify_fd_, &stop_, nap_ns, spin_ns);
    }

    void stop_watcher() {
        if (!watcher_.joinable()) return;
        stop_.store(true, std::memory_order_release);
        py::gil_scoped_release nogil;
        watcher_.join();
    }

    // CPU backend: how long an idle block polls before it sleeps (see rg_poller::spinning).
    void set_spin(uint64_t spin_ns) { region()->spin_ns = spin_ns; }

    void set_buffer(uint32_t slot, uint64_t buffer_id, uint64_t device_ptr, uint64_t nbytes,
                    uint32_t dtype_code, uint32_t itemsize, const std::string& path) {
        if (!rg_host_set_buffer(region(), slot, buffer_id, device_ptr, nbytes, dtype_code,
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
        bool done;
        {
            py::gil_scoped_release nogil;
            done = rg_state_host_snapshot(r_, slot, timeout_ns);
        }
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
                  uint64_t device_ptr, uint32_t src_grid, uint32_t dst_grid, uint32_t key_kind,
                  uint32_t key_offset, uint32_t key_size, uint32_t key_data,
                  const std::string& path) {
        rg_links* links = links_at(links_offset);
        if (index >= RG_MAX_LINKS || path.size() >= sizeof(rg_link().path))
            throw py::index_error("no link " + std::to_string(index) + " for a path of " +
                                  std::to_string(path.size()) + " bytes: at most " +
                                  std::to_string(RG_MAX_LINKS) + " routes a kernel");
        rg_link link = {};
        link.route_id = route_id;
        link.device_ptr = device_ptr;
        link.src_grid = src_grid;
        link.dst_grid = dst_grid;
        link.key_kind = key_kind;
        link.key_offset = key_offset;
        link.key_size = key_size;
        link.key_data = key_data;
        memcpy(link.path, path.data(), path.size());
        (out ? links->out : links->in)[index] = link;
    }

    uint64_t publish_links(uint64_t links_offset) {
        return rg_links_publish(region(), links_at(links_offset));
    }

    // Waits (without the GIL) up to timeout_ns until every block applied links version v.
    bool links_acked(uint64_t links_offset, uint64_t v, int64_t timeout_ns) {
        rg_links* links = links_at(links_offset);
        uint32_t grid = region()->grid;
        py::gil_scoped_release nogil;
        int64_t deadline = rg_host_now_ns() + timeout_ns;
        while (!rg_links_acked(links, grid, v)) {
            if (rg_host_now_ns() > deadline) return false;
            struct timespec ts = {0, 20000};
            nanosleep(&ts, nullptr);
        }
        return true;
    }

    // Per block: (routed_in, routed_out).
    py::list link_counts(uint64_t links_offset) {
        rg_links* links = links_at(links_offset);
        py::list out;
        for (uint32_t b = 0; b < region()->grid; ++b) {
            rg_link_block* s = rg_links_block(links, b);
            out.append(py::make_tuple(rg_load_acquire(&s->routed_in), rg_load_acquire(&s->routed_out)));
        }
        return out;
    }

    // The memory is about to go: from here on every call raises instead of touching it.
    void detach() {
        stop_watcher();
        r_ = nullptr;
    }

  private:
    rg_region* r_;
    uint32_t next_ = 0;  // the block the next pop starts at
    int notify_fd_ = -1;
    std::atomic<bool> stop_{false};
    std::thread watcher_;

    rg_region* region() {
        if (!r_) throw py::value_error("the kernel's region was released");
        return r_;
    }

    rg_region* lane_region(uint32_t block, uint32_t lane) {
        rg_region* r = region();
        if (block >= r->grid || lane >= RG_LANES)
            throw py::index_error("no lane " + std::to_string(lane) + " of block " +
                                  std::to_string(block));
        return r;
    }

    rg_links* links_at(uint64_t links_offset) { return (rg_links*)((uint8_t*)region() + links_offset); }

    rg_state_slot* state_slot(uint64_t area_offset, uint32_t block, uint64_t state_size) {
        rg_region* r = region();
        if (block >= r->grid || !state_size)
            throw py::index_error("no state slot of block " + std::to_string(block));
        return rg_state_slot_of((uint8_t*)r + area_offset, block, state_size);
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
// drains it, as the consumer of a target that is gone.
class Route {
  public:
    Route(uintptr_t address, uint32_t src_grid, uint32_t dst_grid, uint32_t capacity,
          uint32_t slot_size)
        : r_((rg_route*)address), src_grid_(src_grid), dst_grid_(dst_grid), slot_(slot_size) {
        if (!address) throw py::value_error("a route needs memory: the address is 0");
        rg_route_init(r_, src_grid, dst_grid, capacity, slot_size);
    }

    static uint64_t size(uint32_t src_grid, uint32_t dst_grid, uint32_t capacity,
                         uint32_t slot_size) {
        return rg_route_init(nullptr, src_grid, dst_grid, capacity, slot_size);
    }

    // Messages waiting in the route, for every target block.
    uint64_t queued() {
        uint64_t n = 0;
        for (uint32_t s = 0; s < src_grid_; ++s)
            for (uint32_t d = 0; d < dst_grid_; ++d)
                for (uint32_t l = 0; l < RG_LANES; ++l) n += rg_ring_size(rg_route_ring(r_, s, d, l));
        return n;
    }

    // Takes everything waiting for every target block, highest lane first, as struct bytes.
    // Only while the target is gone: the host is then the rings' one consumer.
    py::bytes drain() {
        std::string out;
        std::string one(slot_, '\0');
        for (uint32_t l = RG_LANES; l-- > 0;)
            for (uint32_t s = 0; s < src_grid_; ++s)
                for (uint32_t d = 0; d < dst_grid_; ++d)
                    while (rg_ring_pop(rg_route_ring(r_, s, d, l), &one[0], 1)) out += one;
        return py::bytes(out);
    }

  private:
    rg_route* r_;
    uint32_t src_grid_, dst_grid_, slot_;
};

}  // namespace

PYBIND11_MODULE(_rg_host, m) {
    m.doc() = "The host side of ringgen's rings (templates/rg_host.h, bound in rg_host.cpp).";
    py::class_<Region>(m, "Region")
        .def(py::init<uintptr_t, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t,
                      uint64_t>())
        .def_static("size", &Region::size)
        .def_static("state_area", &Region::state_area)
        .def("push", &Region::push)
        .def("push_wait", &Region::push_wait)
        .def("lane_size", &Region::lane_size)
        .def("pop", &Region::pop)
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
        .def(py::init<uintptr_t, uint32_t, uint32_t, uint32_t, uint32_t>())
        .def_static("size", &Route::size)
        .def("queued", &Route::queued)
        .def("drain", &Route::drain);
}
