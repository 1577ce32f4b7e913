"""Cluster pipeline: the pipeline example's device stages on two Ray nodes, connected across them.

    Clipped -> square (node A: squares) ==bridge==> total (node B: sum of squares) -> the caller

The same actor module as `pipeline`, unchanged: only the runtime differs. ClusterRuntime
places each kernel on a node (a Ray actor there hosts a RingKernelRuntime), and connect()
joins kernels on different nodes through their hosts, in batches. The demo starts a local
cluster of two Ray nodes on this machine (the `cluster` extra installs Ray); on a real cluster,
pass address="auto" instead and the nodes are the cluster's machines.

This module declares no kernels of its own (`ringgen build` makes a package of headers only).
"""

from __future__ import annotations

import importlib

from ringgen import RingKernelRuntime
from ringgen.cluster import ClusterRuntime

MESSAGES = 1000


async def demo(runtime: RingKernelRuntime) -> None:
    """What `make run` calls; the kernels run in the cluster, not in `runtime`."""
    await main()


async def main() -> None:
    from ray.cluster_utils import Cluster

    pipeline = importlib.import_module("generated.pipeline")  # ringgen build examples/pipeline.py
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)  # a second raylet: a second node, on this machine
    try:
        cluster.wait_for_nodes()
        async with ClusterRuntime(pipeline, address=cluster.address) as rt:
            node_a, node_b = (await rt.nodes())[:2]
            await rt.launch("total", node=node_b)
            await rt.launch("square", node=node_a)
            await rt.connect("square", "total")  # bridged by the two nodes' hosts
            print(f"  square on node {node_a[:8]}, total on node {node_b[:8]}")

            msgs = [pipeline.Clipped(values=[float(i % 7), 1.0], priority=200 if i % 10 == 0 else 128)
                    for i in range(MESSAGES)]
            await rt.send_many("square", msgs)
            totals = []
            while len(totals) < len(msgs):
                totals += await rt.receive_many("total", len(msgs), timeout=30.0)
            energy = sum(t.energy for t in totals)
            answered = {t.correlation_id for t in totals} == {m.message_id for m in msgs}
            print(f"  {len(totals)} messages crossed the nodes, each answered once: {answered}; "
                  f"total energy {energy:g}")

            msg = pipeline.Clipped(values=[3.0, 4.0])
            result = await rt.request("square", msg, timeout=30.0, reply_from="total")
            print(f"  request through both nodes: 3^2 + 4^2 = {result.energy:g} "
                  f"(answers {'the request' if result.correlation_id == msg.message_id else '?'})")
            print(f"  dead letters: {len(rt.dead_letters)}")
    finally:
        cluster.shutdown()
