"""ringgen.cluster across two Ray nodes, beside a plain Ray actor on the same remote node that
runs the same handler in Python: what a Ray user writes without ringgen (a message as a dict,
the handler a method, one call per message or one call per list of messages).

    python benchmarks/bench_cluster.py

A local cluster of two Ray nodes on this machine (ray.cluster_utils); the driver is on the
first, the echo kernel (benchmarks/bench_kernels.py, CPU backend) and the plain actor on the
second, so every call crosses nodes. (a) request p50/p99, all sides in alternating rounds,
with the same handler on an async actor (the asyncio hop Ray adds to each call of one, which
NodeHost, a threaded actor, avoids); (b) message objects: ringgen's send_many/receive_many
against the plain actor called once per message (up to 1000 calls in flight) and once per list
of 1000 (four lists in flight); (c) numpy struct arrays: send_array/receive_array (Ray's object store carries
the batches, four in flight) against the same two, through the echo kernel and through
echo_thread (benchmarks/bench_cluster_kernels.py: the same handler at the granularity that
fits it, per="thread", 32 messages per round of a 32-thread block, where the echo kernel runs
per="block", one message per round). (b) and (c) run in THROUGHPUT_ROUNDS alternating rounds
(the plain actor's lists, then ours) and print each side's median. Each part also prints the
same kernel's figure in one process without Ray (measured first): what a node's runtime can do
at most, the bound of ours.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ringgen import RingKernelRuntime  # noqa: E402
from ringgen.cluster import ClusterRuntime  # noqa: E402
from ringgen.codegen.build import plan  # noqa: E402
from ringgen.codegen.writer import write_package  # noqa: E402

LATENCY_N = 1000
LATENCY_ROUNDS = 10
OBJECTS_N = 50_000
ARRAYS_N = 1_000_000
BATCH = 1000
IN_FLIGHT = 4
THROUGHPUT_ROUNDS = 3
ARRAY_KERNELS = ("echo", "echo_thread")  # per="block", per="thread"


def build(work: Path) -> Any:
    """bench_kernels' echo and bench_cluster_kernels' echo_thread, in one package."""
    p = plan([str(HERE / "bench_kernels.py"), str(HERE / "bench_cluster_kernels.py")],
             work / "gen")
    write_package(p.package_dir, p.files())
    spec = importlib.util.spec_from_file_location("bench_cluster_gen", p.package_dir / "__init__.py",
                                                  submodule_search_locations=[str(p.package_dir)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_cluster_gen"] = module
    spec.loader.exec_module(module)
    return module


class PlainEcho:
    """The plain Ray actor: the echo handler in Python."""

    def handle(self, msg: dict[str, Any]) -> dict[str, Any]:
        return {"seq": msg["seq"], "correlation_id": msg["message_id"], "priority": msg["priority"]}

    def handle_many(self, msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [self.handle(m) for m in msgs]


class AsyncEcho:
    """The same handler on an async actor: what Ray's asyncio hop adds (NodeHost is threaded)."""

    async def handle(self, msg: dict[str, Any]) -> dict[str, Any]:
        return {"seq": msg["seq"], "correlation_id": msg["message_id"], "priority": msg["priority"]}


def job(i: int) -> dict[str, Any]:
    return {"seq": i, "message_id": i.to_bytes(16, "little"), "priority": 128}


def pct(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples) * 1e6, q))


async def latency(requests: list[Any], makers: list[Any]) -> list[list[float]]:
    """Round trips of each request function in alternating rounds (a shared machine drifts)."""
    for request, make in zip(requests, makers, strict=True):
        for i in range(100):
            await request(make(i))  # warm up
    samples: list[list[float]] = [[] for _ in requests]
    for _ in range(LATENCY_ROUNDS):
        for request, make, taken in zip(requests, makers, samples, strict=True):
            for i in range(LATENCY_N // LATENCY_ROUNDS):
                msg = make(i)
                start = time.perf_counter()
                await request(msg)
                taken.append(time.perf_counter() - start)
    return samples


async def plain_per_call(actor: Any, n: int) -> float:
    start = time.perf_counter()
    for i in range(0, n, BATCH):
        replies = await asyncio.gather(*(actor.handle.remote(job(k)) for k in range(i, i + BATCH)))
        assert replies[-1]["seq"] == i + BATCH - 1
    return n / (time.perf_counter() - start)


async def plain_batched(actor: Any, n: int) -> float:
    """Lists of BATCH, as many calls in flight as ours has batches (a Ray user pipelines too)."""
    start = time.perf_counter()
    in_flight: list[Any] = []
    for i in range(0, n, BATCH):
        if len(in_flight) >= IN_FLIGHT:
            assert len(await in_flight.pop(0)) == BATCH
        in_flight.append(actor.handle_many.remote([job(k) for k in range(i, i + BATCH)]))
    for call in in_flight:
        assert len(await call) == BATCH
    return n / (time.perf_counter() - start)


async def ours_objects(rt: ClusterRuntime, pkg: Any, n: int) -> float:
    msgs = [pkg.Job(seq=i) for i in range(n)]
    start = time.perf_counter()

    async def consume() -> None:
        got = 0
        while got < n:
            got += len(await rt.receive_many("echo", n - got, timeout=30.0))

    consumer = asyncio.ensure_future(consume())
    for i in range(0, n, BATCH):
        await rt.send_many("echo", msgs[i:i + BATCH])
    await consumer
    return n / (time.perf_counter() - start)


async def ours_arrays(rt: ClusterRuntime | RingKernelRuntime, pkg: Any, n: int,
                      kernel: str = "echo") -> float:
    """send_array/receive_array through `rt` to `kernel`: across nodes, or (the bound) in
    this process."""
    arr = pkg.package.new_array("Job", n)
    arr["seq"] = np.arange(n)
    step = 1 << 16
    start = time.perf_counter()

    async def consume() -> None:
        got = 0
        while got < n:
            got += len(await rt.receive_array(kernel, step, timeout=30.0))

    consumer = asyncio.ensure_future(consume())
    in_flight: set[asyncio.Future[int]] = set()
    for i in range(0, n, step):  # several batches in flight: Ray's per-call time overlaps
        if len(in_flight) >= IN_FLIGHT:
            _, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
        in_flight.add(asyncio.ensure_future(rt.send_array(kernel, arr[i:i + step])))
    await asyncio.gather(*in_flight)
    await consumer
    return n / (time.perf_counter() - start)


async def in_one_process(pkg: Any) -> tuple[list[float], dict[str, float]]:
    """The same kernels without Ray: request round trips and array throughput in this process,
    what a node's RingKernelRuntime can do at most (the bound of the figures across nodes)."""
    async with RingKernelRuntime(pkg, backend="cpu", lane_capacity=1024) as rt:
        for kernel in ARRAY_KERNELS:
            await rt.launch(kernel, queue_size=1 << 21)
        (lat,) = await latency([lambda m: rt.request("echo", m, timeout=30.0)],
                               [lambda i: pkg.Job(seq=i)])
        return lat, {k: await ours_arrays(rt, pkg, ARRAYS_N, k) for k in ARRAY_KERNELS}


async def run(pkg: Any, address: str, local: tuple[list[float], dict[str, float]]) -> None:
    import ray

    async with ClusterRuntime(pkg, address=address, backend="cpu", lane_capacity=1024) as rt:
        far = (await rt.nodes())[1]
        for kernel in ARRAY_KERNELS:
            await rt.launch(kernel, node=far, queue_size=1 << 21)
        from ringgen.cluster.ray_api import node_affinity

        plain = ray.remote(PlainEcho).options(num_cpus=0,
                                              scheduling_strategy=node_affinity(far)).remote()
        hop = ray.remote(AsyncEcho).options(num_cpus=0, max_concurrency=1000,
                                            scheduling_strategy=node_affinity(far)).remote()
        base_lat, hop_lat, ours_lat = await latency(
            [plain.handle.remote, hop.handle.remote,
             lambda m: rt.request("echo", m, timeout=30.0)],
            [job, job, lambda i: pkg.Job(seq=i)])
        per_call = await plain_per_call(plain, OBJECTS_N // 5)
        # Throughput in alternating rounds too, each side's median: a shared machine drifts
        # by more than the ratios within one run.
        rounds: dict[str, list[float]] = {}
        for _ in range(THROUGHPUT_ROUNDS):
            for name, rate in (("batched", plain_batched(plain, OBJECTS_N)),
                               ("objects", ours_objects(rt, pkg, OBJECTS_N)),
                               *((k, ours_arrays(rt, pkg, ARRAYS_N, k)) for k in ARRAY_KERNELS)):
                rounds.setdefault(name, []).append(await rate)
        batched, objects, *rates = (float(np.median(r)) for r in rounds.values())
        arrays = dict(zip(ARRAY_KERNELS, rates, strict=True))
        assert not rt.dead_letters

    print("(a) request across nodes, p50 / p99")
    print(f"    plain Ray actor (one call):  {pct(base_lat, 50):9.1f} / {pct(base_lat, 99):9.1f} us")
    print(f"    the same on an async actor:  {pct(hop_lat, 50):9.1f} / {pct(hop_lat, 99):9.1f} us")
    print(f"    ringgen.cluster request():   {pct(ours_lat, 50):9.1f} / {pct(ours_lat, 99):9.1f} us")
    print(f"    p50 ratio (plain / ringgen): {pct(base_lat, 50) / pct(ours_lat, 50):9.2f}x")
    print(f"    (bound: the kernel in one process, no Ray: {pct(local[0], 50):9.1f} us p50)")
    print("(b) message objects across nodes")
    print(f"    plain actor, a call per message: {per_call:12,.0f} msg/s")
    print(f"    plain actor, a list per call:    {batched:12,.0f} msg/s")
    print(f"    ringgen send_many/receive_many:  {objects:12,.0f} msg/s   "
          f"{objects / per_call:6.1f}x per call, {objects / batched:5.2f}x batched")
    print("(c) numpy struct arrays across nodes, send_array/receive_array")
    for k in ARRAY_KERNELS:
        print(f"    ringgen, {k + ':':12s} {arrays[k]:12,.0f} msg/s   "
              f"{arrays[k] / per_call:6.1f}x per call, {arrays[k] / batched:5.2f}x batched")
        print(f"    (bound: {k} in one process, no Ray: {local[1][k]:12,.0f} msg/s)")


def main() -> None:
    from ray.cluster_utils import Cluster

    with tempfile.TemporaryDirectory() as tmp:  # measured first, while Ray is not running
        local = asyncio.run(in_one_process(build(Path(tmp))))
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    try:
        cluster.wait_for_nodes()
        with tempfile.TemporaryDirectory() as tmp:
            pkg = build(Path(tmp))
            asyncio.run(run(pkg, cluster.address, local))
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
