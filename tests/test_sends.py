"""sends=: a handler's messages besides its response, to targets bound at run time by
runtime.connect("<kernel>.<target>", ...): zero, one or many per request and from several
threads at once, to one or many targets, device kernels or host actors; unbound targets and
targets that crash turn what is sent into dead letters, and the senders keep running."""

from __future__ import annotations

import asyncio
import ctypes
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, build_package, compile_cpp, compile_nvcc, have_nvcc, receive_n

from ringgen import (
    DeadLetterReason,
    KernelFaultError,
    KernelStateError,
    RingKernelRuntime,
    SchemaError,
    message,
    ring_kernel,
)
from ringgen.runtime.backends import rings
from ringgen.toolchain.compile import cccl_include, templates_dir


@pytest.fixture(scope="module")
def sends_pkg(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_package("schemas.sends", tmp_path_factory.mktemp("sends") / "gen")


async def _dead(rt: RingKernelRuntime, n: int, reason: DeadLetterReason) -> list[Any]:
    for _ in range(1000):
        dead = [d for d in rt.dead_letters if d.reason is reason]
        if len(dead) >= n:
            return dead
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(dead)} {reason.value} dead letters, not {n}")


def _jobs(pkg: Any, n: int) -> list[Any]:
    return [pkg.Job(seq=i, audits=i % 9, priority=(10, 128, 200)[i % 3]) for i in range(n)]


def test_sends_zero_one_or_many_per_request_reach_every_bound_target(sends_pkg: Any) -> None:
    """0..8 audits per job, sent by that many threads at once, fanned out to a device kernel
    and a host actor: each gets every audit once, stamped, in the job's conversation."""
    pkg = sends_pkg

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            for k in ("worker", "auditor", "host_auditor", "silent"):
                await rt.launch(k)
            await rt.connect("worker.audit", "auditor", "host_auditor")
            jobs = _jobs(pkg, 300)
            total = sum(j.audits for j in jobs)
            await rt.send_many("worker", jobs)
            done = await receive_n(rt, "worker", len(jobs))
            assert sorted(d.seq for d in done) == list(range(len(jobs)))  # responses unchanged
            by_id = {j.message_id: j for j in jobs}
            for target in ("auditor", "host_auditor"):
                got = await receive_n(rt, target, total)
                want = Counter((j.seq, k) for j in jobs for k in range(j.audits))
                assert Counter((a.seq, a.k) for a in got) == want, target
                for a in got:  # the conversation of the job that caused it, and its priority
                    job = by_id[a.correlation_id]
                    assert job.seq == a.seq and a.priority == job.priority and a.hops == 1
            # A kernel whose targets are bound to nothing and that sends nothing: no letters.
            r = await rt.request("silent", pkg.Job(seq=7), timeout=10.0)
            assert r.seq == 7
            await rt.drain()
            assert not rt.dead_letters

    asyncio.run(main())


def test_a_send_to_an_unbound_target_is_a_dead_letter_and_never_a_hang(sends_pkg: Any) -> None:
    pkg = sends_pkg

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            await rt.launch("worker")
            jobs = [pkg.Job(seq=i, audits=8) for i in range(40)]  # more than a route holds
            await rt.send_many("worker", jobs)
            assert len(await receive_n(rt, "worker", len(jobs))) == len(jobs)
            dead = await _dead(rt, 320, DeadLetterReason.UNBOUND)
            assert len(dead) == 320
            assert Counter((d.message.seq, d.message.k) for d in dead) == Counter(
                (i, k) for i in range(40) for k in range(8))
            assert all(d.kernel_id == "worker" and "runtime.connect('worker.audit'" in d.detail
                       for d in dead)
            # bound, then unbound again: back to the dead letters
            await rt.launch("auditor")
            await rt.connect("worker.audit", "auditor")
            await rt.request("worker", pkg.Job(seq=100, audits=2), timeout=10.0)
            assert len(await receive_n(rt, "auditor", 2)) == 2
            await rt.disconnect("worker.audit")
            await rt.request("worker", pkg.Job(seq=101, audits=3), timeout=10.0)
            dead = await _dead(rt, 323, DeadLetterReason.UNBOUND)
            assert sorted(d.message.k for d in dead if d.message.seq == 101) == [0, 1, 2]

    asyncio.run(main())


def _sink_route(rt: RingKernelRuntime) -> tuple[Any, int]:
    """worker.audit's route into the dead letters (it is bound to nothing), and the address of
    its memory as the host maps it."""
    route = rt.routes._routes[("worker.audit", "")]
    assert route.memory is not None
    return route, route.host_address()


def test_a_route_a_kernel_wrote_over_fails_its_sender_and_not_the_drains(
        sends_pkg: Any) -> None:
    """A ring of worker.audit's route given a tail no ring can have (a scribble): the host's
    drain of it raises (rg_host.cpp: bad_ring). The sender fails with that reason, one dead
    letter says what the route held is lost, and the host keeps draining (routes.py:
    _guarded), rather than its periodic drain stopping for good."""
    from ringgen.runtime.routes import ROUTE_CAPACITY, route_geometry

    pkg = sends_pkg

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            await rt.launch("worker")
            await rt.request("worker", pkg.Job(seq=1, audits=2), timeout=10.0)
            assert len(await _dead(rt, 2, DeadLetterReason.UNBOUND)) == 2
            route, address = _sink_route(rt)
            first, _ = route_geometry(ROUTE_CAPACITY, route.codec.dtype.itemsize)
            head = ctypes.c_uint64.from_address(address + first).value
            tail = address + first + rings.RING_TAIL_AT
            ctypes.c_uint64.from_address(tail).value = head + 10**6
            for _ in range(200):
                if rt.state("worker").value == "failed":
                    break
                await asyncio.sleep(0.05)
            assert rt.state("worker").value == "failed"
            lost = [d for d in rt.dead_letters if d.reason is DeadLetterReason.KERNEL_FAILED
                    and "wrote over its route 'worker.audit'" in d.detail]
            assert len(lost) == 1 and lost[0].message == b"", rt.dead_letters
            await asyncio.sleep(0.2)  # the periodic drain goes on
            assert rt.routes._drainer is not None
            # Launched again, it sends into a fresh route, not into the one written over (whose
            # tail says it is full for good): its sends are dead letters again, never a hang.
            await rt.launch("worker")
            jobs = [pkg.Job(seq=10 + i, audits=8) for i in range(40)]  # 320: > a ring's 64
            await rt.send_many("worker", jobs)
            assert len(await receive_n(rt, "worker", len(jobs))) == len(jobs)
            dead = await _dead(rt, 2 + 320, DeadLetterReason.UNBOUND)
            assert Counter((d.message.seq, d.message.k) for d in dead[2:]) == Counter(
                (j.seq, k) for j in jobs for k in range(8))

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_route_written_over_into_a_target_is_replaced_when_either_end_relaunches(
        sends_pkg: Any) -> None:
    """worker.audit -> auditor; the auditor terminated (the host drains what is routed to it
    into dead letters), then a tail no ring can have written into the route: the worker fails.
    Both launched again, the route is a fresh one at both ends: the new auditor takes nothing
    from the one written over (it would take junk), the new worker never waits on it."""
    pkg = sends_pkg

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            for k in ("worker", "auditor"):
                await rt.launch(k)
            await rt.connect("worker.audit", "auditor")
            await rt.request("worker", pkg.Job(seq=1, audits=1), timeout=10.0)
            assert len(await receive_n(rt, "auditor", 1)) == 1
            await rt.terminate("auditor")
            route = rt.routes._routes[("worker.audit", "auditor")]
            from ringgen.runtime.routes import ROUTE_CAPACITY, route_geometry

            first, _ = route_geometry(ROUTE_CAPACITY, route.codec.dtype.itemsize)
            ring = route.host_address() + first
            head = ctypes.c_uint64.from_address(ring).value
            ctypes.c_uint64.from_address(ring + rings.RING_TAIL_AT).value = head + 10**6
            for _ in range(200):
                if rt.state("worker").value == "failed":
                    break
                await asyncio.sleep(0.05)
            assert rt.state("worker").value == "failed"
            await rt.launch("auditor")
            await rt.launch("worker")
            assert rt.routes._routes[("worker.audit", "auditor")] is not route
            jobs = [pkg.Job(seq=10 + i, audits=8) for i in range(40)]
            await rt.send_many("worker", jobs)
            assert len(await receive_n(rt, "worker", len(jobs))) == len(jobs)
            got = await receive_n(rt, "auditor", 320)
            assert Counter((a.seq, a.k) for a in got) == Counter(
                (j.seq, k) for j in jobs for k in range(8))  # no junk, none lost

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_scribbled_lost_counter_is_one_dead_letter_and_never_a_hang(sends_pkg: Any) -> None:
    """rg_route::lost, which the senders write, set to 2**60 after worker was terminated: the
    host reports one dead letter with that count, instead of looping once per message."""
    pkg = sends_pkg

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            await rt.launch("worker")
            await rt.request("worker", pkg.Job(seq=1, audits=1), timeout=10.0)
            _, address = _sink_route(rt)
            await rt.terminate("worker")
            ctypes.c_uint64.from_address(address + rings.ROUTE_LOST_AT).value = 2**60
            for _ in range(100):
                await asyncio.sleep(0.05)
                counted = [d for d in rt.dead_letters if "lost counter rose" in d.detail]
                if counted:
                    break
            assert len(counted) == 1 and f"rose by {2**60}" in counted[0].detail
            assert counted[0].kernel_id == "worker" and counted[0].message == b""

    asyncio.run(asyncio.wait_for(main(), 60))


def test_connect_checks_send_targets(sends_pkg: Any) -> None:
    pkg = sends_pkg

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            for k in ("worker", "auditor", "silent"):
                await rt.launch(k)
            with pytest.raises(KernelStateError, match=r"'worker\.audit' sends Audit and 'silent' "
                                                       r"takes Job"):
                await rt.connect("worker.audit", "silent")
            with pytest.raises(KernelStateError, match=r"no send target 'audits'.*worker\.audit"):
                await rt.connect("worker.audits", "auditor")
            await rt.connect("worker.audit", "auditor")
            with pytest.raises(KernelStateError, match="not connected"):
                await rt.disconnect("silent.alarm")

    asyncio.run(main())


def test_a_target_that_crashes_mid_stream(sends_pkg: Any) -> None:
    """What the crashed target held, what was queued for it and what is sent after are dead
    letters (KERNEL_FAILED); the sender keeps answering; a reply_from waiting on the crashed
    target's answer raises KernelFaultError instead of timing out."""
    pkg = sends_pkg

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            for k in ("worker", "crashy_auditor", "auditor"):
                await rt.launch(k)
            await rt.connect("worker.audit", "crashy_auditor")
            await rt.connect("crashy_auditor", "auditor")
            ok = await rt.request("worker", pkg.Job(seq=0, audits=1), timeout=10.0,
                                  reply_from="auditor")
            assert ok.seq == 0 and ok.hops == 2  # a conversation through a send target
            # The middle of the line dies holding the audit: the end will never answer.
            with pytest.raises(KernelFaultError, match=r"kernel_failed.*'crashy_auditor', which "
                                                       r"failed"):
                await rt.request("worker", pkg.Job(seq=1, audits=1, crash_at=0), timeout=30.0,
                                 reply_from="auditor")
            assert rt.state("crashy_auditor").value == "failed"
            jobs = [pkg.Job(seq=2 + i, audits=4) for i in range(50)]
            await rt.send_many("worker", jobs)
            assert len(await receive_n(rt, "worker", len(jobs))) == len(jobs)  # no hang
            dead = await _dead(rt, 201, DeadLetterReason.KERNEL_FAILED)
            assert Counter((d.message.seq, d.message.k) for d in dead) == Counter(
                [(1, 0)] + [(j.seq, k) for j in jobs for k in range(4)])  # held one included
            assert all(d.kernel_id == "crashy_auditor" and "routed from 'worker.audit'" in d.detail
                       for d in dead)
            assert rt.state("worker").value == "active"

    asyncio.run(main())


def test_a_send_abandoned_at_terminate_is_a_dead_letter(sends_pkg: Any) -> None:
    """The worker's threads wait in ctx.send on a route to a paused auditor when the worker is
    terminated: what they were sending becomes TERMINATED dead letters of the worker, so each
    audit of a job the worker took is either delivered (once the auditor resumes) or a dead
    letter, never both and never neither."""
    pkg = sends_pkg

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            for k in ("worker", "auditor"):
                await rt.launch(k)
            await rt.connect("worker.audit", "auditor")
            await rt.deactivate("auditor")  # takes nothing from its routes: they fill
            jobs = [pkg.Job(seq=i, audits=8, priority=200) for i in range(100)]  # 800 > 2 x 128
            await rt.send_many("worker", jobs)
            seen = -1
            while (left := rt.telemetry("worker").in_flight) != seen:  # until its blocks are
                seen = left                                            # stuck in full routes
                await asyncio.sleep(0.2)
            assert left > 0
            await rt.terminate("worker")
            try:
                answered = await rt.receive_many("worker", len(jobs), timeout=0.1)
            except KernelStateError:  # none: each block's only batch stopped at terminate
                answered = []
            await rt.activate("auditor")
            got: list[Any] = []
            while batch := await rt.receive_many("auditor", 1000, timeout=0.5):
                got += batch
            dead_jobs = {d.message.seq for d in rt.dead_letters
                         if isinstance(d.message, pkg.Job)}
            done = {d.seq for d in answered}
            assert not dead_jobs & done and dead_jobs | done == set(range(len(jobs)))
            abandoned = await _dead(rt, 1, DeadLetterReason.TERMINATED)
            abandoned = [d for d in abandoned if isinstance(d.message, pkg.Audit)]
            assert abandoned and all(
                d.kernel_id == "worker" and "abandoned" in d.detail
                and "'worker' was terminated while it waited for room in its route to "
                    "'auditor'" in d.detail for d in abandoned)
            audits = Counter((a.seq, a.k) for a in got) + Counter(
                (d.message.seq, d.message.k) for d in abandoned)
            assert max(audits.values()) == 1  # none both delivered and a dead letter
            assert all((s, k) in audits for s in done for k in range(8))  # none lost
            assert {s for s, _ in audits} <= done | dead_jobs
            assert not [d for d in rt.dead_letters if d.message == b""]  # none only counted
            # Each block's batch stopped at its first abandoned send (rg_outs::stopped): the
            # other sends of its jobs were not made, and the jobs are dead letters instead, so
            # a terminate cannot fill the abandoned rings (64 messages a block and lane).
            assert len(abandoned) <= 2, len(abandoned)  # worker: grid=2, one target

    asyncio.run(main())


class _CopiedMemory:
    """A test double of a route in GPU memory (backends/cuda.py: RouteMemory) over the CPU
    backend's route file: read_back copies it into a staging buffer, as the GPU path does,
    and write_back copies the staging back from an offset, failing the first `fail` times."""

    def __init__(self, address: int, size: int, fail: int) -> None:
        self.address, self.size, self.fail = address, size, fail
        self.staging = ctypes.create_string_buffer(size)
        self.writes: list[str] = []
        self.device_ptr, self.scope, self.host, self.forwarded = 0, 0, 0, False

    def read_back(self) -> int:
        ctypes.memmove(self.staging, self.address, self.size)
        return ctypes.addressof(self.staging)

    def write_back(self, offset: int) -> None:
        if self.fail:
            self.fail -= 1
            self.writes.append("failed")
            raise RuntimeError("write back failed (injected)")
        ctypes.memmove(self.address + offset, ctypes.addressof(self.staging) + offset,
                       self.size - offset)
        self.writes.append("written")

    def free(self) -> None:
        pass


def test_abandoned_sends_a_failed_write_back_reported_are_not_reported_again(
        sends_pkg: Any) -> None:
    """The GPU path of abandoned sends (routes.py: _collect_abandoned) over a copy of the route
    (_CopiedMemory): the host reports what the terminated worker abandoned from a copy, and
    writing the drained copy back fails. The runtime's final read back copies the route again,
    still holding them: it restores what the host took (route.unwritten), so each abandoned
    audit is one dead letter (and what waited for the auditor one of the auditor's)."""
    pkg = sends_pkg

    async def main() -> tuple[list[str], list[Any]]:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            for k in ("worker", "auditor"):
                await rt.launch(k)
            await rt.connect("worker.audit", "auditor")
            route = rt.routes._routes[("worker.audit", "auditor")]
            assert route.memory is not None
            memory = _CopiedMemory(route.host_address(), len(route.memory), fail=1)
            route.device, route.rings = memory, None  # type: ignore[assignment]
            # (as on a GPU: the host does not drain its abandoned rings while the sender runs)
            ctypes.c_uint32.from_address(route.host_address() + rings.ROUTE_HOST_DRAINS_AT).value = 0
            await rt.deactivate("auditor")
            jobs = [pkg.Job(seq=i, audits=8, priority=200) for i in range(100)]
            await rt.send_many("worker", jobs)
            seen = -1
            while (left := rt.telemetry("worker").in_flight) != seen:
                seen = left
                await asyncio.sleep(0.2)
            assert left > 0
            await rt.terminate("worker")
            for _ in range(200):
                if memory.writes:
                    break
                await asyncio.sleep(0.05)
            assert memory.writes == ["failed"]
        return memory.writes, [d for d in rt.dead_letters if isinstance(d.message, pkg.Audit)]

    writes, dead = asyncio.run(main())  # closed: the route was read back once more
    assert writes == ["failed"]
    abandoned = [d for d in dead if "abandoned" in d.detail]
    assert abandoned and all(d.kernel_id == "worker" for d in abandoned)
    audits = Counter((d.message.seq, d.message.k) for d in dead)
    assert max(audits.values()) == 1, [a for a, n in audits.items() if n > 1][:5]


def test_a_block_waits_once_for_room_to_abandon_its_sends(
        sends_pkg: Any, caplog: pytest.LogCaptureFixture) -> None:
    """worker's route to a paused auditor is full, and so are its abandoned rings, which the
    host does not drain while worker runs (GPU memory: _CopiedMemory). At terminate, each of a
    block's threads abandons its audit: the block waits for room RG_ABANDON_WAIT_NS (0.5 s) in
    all, not that long for each message (8 threads: 4 s, past the host's 1 s for a terminate,
    which then kills the runner). What found no room is counted, and reported."""
    from ringgen.runtime.routes import ROUTE_CAPACITY, abandoned_offset, route_geometry

    pkg = sends_pkg

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            for k in ("worker", "auditor"):
                await rt.launch(k)
            await rt.connect("worker.audit", "auditor")
            route = rt.routes._routes[("worker.audit", "auditor")]
            assert route.memory is not None
            address = route.host_address()
            route.device = _CopiedMemory(address, len(route.memory), fail=0)  # type: ignore[assignment]
            route.rings = None
            slot = route.codec.dtype.itemsize
            header, stride = route_geometry(ROUTE_CAPACITY, slot)
            abandoned = address + abandoned_offset(route.grids, ROUTE_CAPACITY, slot) + header
            for i in range(route.grids[0] * rings.LANES):  # every abandoned ring full
                ring = abandoned + i * stride
                ctypes.c_uint64.from_address(ring + rings.RING_TAIL_AT).value = ROUTE_CAPACITY
            await rt.deactivate("auditor")
            await rt.send_many("worker", [pkg.Job(seq=i, audits=8, priority=200)
                                          for i in range(100)])
            seen = -1
            while (left := rt.telemetry("worker").in_flight) != seen:
                seen = left
                await asyncio.sleep(0.2)
            assert left > 0
            await rt.terminate("worker")
            for _ in range(100):
                counted = [d for d in rt.dead_letters if "only counted" in d.detail]
                if counted:
                    break
                await asyncio.sleep(0.05)
            assert counted and all(d.kernel_id == "worker" for d in counted)

    asyncio.run(main())
    assert not [r for r in caplog.records if "killed" in r.getMessage()], caplog.text[-2000:]


def test_host_actors_at_either_end(sends_pkg: Any) -> None:
    """device -> host actor (a conversation answered by the host stage), host actor ->
    device kernel, and a host actor's unbound target."""
    pkg = sends_pkg

    async def main() -> None:
        async with RingKernelRuntime(pkg, backend="cpu") as rt:
            for k in ("worker", "host_auditor", "host_worker", "auditor"):
                await rt.launch(k)
            await rt.connect("worker.audit", "host_auditor")
            job = pkg.Job(seq=5, audits=1)
            reply = await rt.request("worker", job, timeout=10.0, reply_from="host_auditor")
            assert reply.seq == 5 and reply.hops == 1 and reply.correlation_id == job.message_id

            hjob = pkg.Job(seq=6, audits=2)
            done = await rt.request("host_worker", hjob, timeout=10.0)  # unbound: dead letters
            assert done.audits == 2
            dead = await _dead(rt, 2, DeadLetterReason.UNBOUND)
            assert {d.kernel_id for d in dead} == {"host_worker"}
            await rt.connect("host_worker.audit", "auditor")
            hjob = pkg.Job(seq=7, audits=3, priority=200)
            await rt.request("host_worker", hjob, timeout=10.0)
            got = await receive_n(rt, "auditor", 3)
            assert sorted(a.k for a in got) == [0, 1, 2]
            assert all(a.seq == 7 and a.priority == 200 for a in got)

            # device -> host actor -> device: a pipeline that mixes host and device stages
            await rt.connect("host_auditor", "auditor")
            await rt.send("worker", pkg.Job(seq=9, audits=2))
            got = await receive_n(rt, "auditor", 2)
            assert sorted((a.seq, a.k, a.hops) for a in got) == [(9, 0, 2), (9, 1, 2)]
            # the conversation crosses the host -> device hop too: reply_from the device end
            job = pkg.Job(seq=10, audits=1)
            reply = await rt.request("worker", job, timeout=10.0, reply_from="auditor")
            assert reply.seq == 10 and reply.hops == 2 and reply.correlation_id == job.message_id

            await rt.terminate("auditor")  # sent to a target that is gone: dead letters
            await rt.request("host_worker", pkg.Job(seq=8, audits=2), timeout=10.0)
            dead = await _dead(rt, 2, DeadLetterReason.TERMINATED)
            assert sorted(d.message.k for d in dead if d.message.seq == 8) == [0, 1]

    asyncio.run(main())


def test_bad_sends_declarations_are_refused() -> None:
    @message
    class Thing:
        n: int = 0

    def decl(sends: Any) -> None:
        ring_kernel(kernel_id="k", input=Thing, output=Thing, cuda="x", sends=sends)(lambda r: r)

    with pytest.raises(SchemaError, match="'not-ok' is not a C identifier"):
        decl({"not-ok": Thing})
    with pytest.raises(SchemaError, match=r"sends\['audit'\] must be a @message class"):
        decl({"audit": int})
    with pytest.raises(SchemaError, match="sends must be a dict"):
        decl([Thing])
    translated = ring_kernel(kernel_id="k", input=Thing, output=Thing, sends={"a": Thing})(lambda r: r)
    assert translated.__rg_kernel__.translated  # a Python handler sends too (test_translate.py)


def test_a_send_target_without_device_layout_is_a_build_error(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=r"kernel 'noter': sends\['note'\] = Note has no device "
                                          "layout"):
        build_package("schemas.sends_unlaid", tmp_path / "gen")


@pytest.mark.nvcc
@pytest.mark.skipif(not have_nvcc(), reason="nvcc is not on PATH")
def test_kernels_with_sends_compile_with_nvcc_sm90(sends_pkg: Any, tmp_path: Path) -> None:
    source = sends_pkg.package.path / "worker.cu"  # sends from any thread of the block
    compile_nvcc(source, tmp_path / "worker.cubin", [source.parent])


def test_sends_under_thread_sanitizer(sends_pkg: Any, tmp_path: Path) -> None:
    """Up to 8 threads of a block sending at once into a route of 4-slot rings: every audit
    once, in its job's conversation, with its job's priority; TSan clean."""
    binary = tmp_path / "sends_stress"
    package = sends_pkg.package.path
    compile_cpp([ROOT / "tests" / "native" / "sends_stress.cpp", templates_dir() / "rg_cpu_runtime.cpp"],
                binary, [package, templates_dir(), cccl_include()],
                ["-fsanitize=thread", "-pthread", f"-DRG_WORKER_CU=\"{package / 'worker.cu'}\"",
                 f"-DRG_AUDITOR_CU=\"{package / 'auditor.cu'}\"", "-Wno-error"])
    result = subprocess.run([str(binary), "20000"], capture_output=True, text=True, timeout=300,
                            env={"TSAN_OPTIONS": "halt_on_error=1 exitcode=66"})
    assert "ThreadSanitizer" not in result.stderr, result.stderr[-4000:]
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip() == f"OK 20000 {sum(s % 9 for s in range(20000))}"
