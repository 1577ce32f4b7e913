"""`ringgen top` against a live runtime, the owner-only monitor socket, and Prometheus text."""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import generated_package
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ringgen import MetricsCollector, RinggenError, RingKernelRuntime, SyncRuntime
from ringgen.runtime.monitor import socket_path

ATTACKER = "ringgen-attacker"


def top(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ringgen", "top", *args], capture_output=True,
                          text=True, timeout=30)


@pytest.fixture
def busy_runtime() -> Any:
    """A runtime serving its monitor, with a kernel that answered 50 messages and dropped 5."""
    worker: Any = generated_package("worker")
    with SyncRuntime(worker, backend="cpu", monitor=True) as rt:
        rt.launch("worker", queue_size=8, backpressure="drop_newest")
        rt.deactivate("worker")  # nothing flows: the lanes and backlog fill, then drops
        sent = [rt.send("worker", worker.WorkRequest(data=[float(i)])) for i in range(73)]
        rt.activate("worker")
        rt.drain("worker", timeout=10.0)
        rt.receive_many("worker", 100, timeout=1.0)
        assert not all(sent)
        yield rt


def test_top_once_json_matches_telemetry(busy_runtime: SyncRuntime) -> None:
    result = top("--once", "--json", "--pid", str(os.getpid()))
    assert result.returncode == 0, result.stderr
    snap = json.loads(result.stdout)
    assert snap["pid"] == os.getpid() and snap["backend"] == "cpu"
    (row,) = snap["kernels"]
    want = dataclasses.asdict(busy_runtime.telemetry("worker"))
    assert {k: row[k] for k in want} == want
    assert row["dropped"] > 0
    assert row["dead_letters"] == len(busy_runtime.dead_letters) == row["dropped"]
    assert row["lane_depths"] == [0, 0, 0, 0, 0]

    plain = top("--once", "--pid", str(os.getpid()))
    assert plain.returncode == 0 and "worker" in plain.stdout and "active" in plain.stdout


def test_socket_is_owner_only_and_goes_away(busy_runtime: SyncRuntime) -> None:
    path = socket_path(os.getpid())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    busy_runtime.close()
    assert not path.exists()
    result = top("--once", "--pid", str(os.getpid()))
    assert result.returncode == 1 and "monitor=True" in result.stderr


def test_a_folder_others_can_write_is_refused(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "ringgen"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    with pytest.raises(RinggenError, match="not a private folder"):
        RingKernelRuntime(generated_package("worker"), monitor=True)  # type: ignore[arg-type]


def _attacker_uid() -> int | None:
    if os.getuid() != 0 or shutil.which("useradd") is None:
        return None
    try:
        return pwd.getpwnam(ATTACKER).pw_uid
    except KeyError:
        subprocess.run(["useradd", "-M", "-r", "-s", "/usr/sbin/nologin", ATTACKER], check=False,
                       capture_output=True)
    try:
        return pwd.getpwnam(ATTACKER).pw_uid
    except KeyError:
        return None


def test_another_user_cannot_connect(busy_runtime: SyncRuntime) -> None:
    uid = _attacker_uid()
    python = shutil.which("python3", path="/usr/bin:/usr/local/bin:/bin")
    if uid is None or python is None:
        pytest.skip("needs root, useradd and a system python3 to act as a second local user")
    path = socket_path(os.getpid())

    def as_attacker() -> None:
        os.setgid(uid)
        os.setuid(uid)

    probe = ("import socket, sys\ns = socket.socket(socket.AF_UNIX)\n"
             "try:\n    s.connect(sys.argv[1]); print('connected', s.recv(100))\n"
             "except OSError as e:\n    print('refused', e.errno)\n")
    result = subprocess.run([python, "-I", "-c", probe, str(path)], capture_output=True,
                            text=True, timeout=30, preexec_fn=as_attacker, cwd="/")
    assert result.stdout.startswith("refused"), result.stdout + result.stderr


def test_prometheus_text_parses_with_the_same_figures(busy_runtime: SyncRuntime) -> None:
    registry = CollectorRegistry()
    registry.register(MetricsCollector(busy_runtime))
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    t = busy_runtime.telemetry("worker")

    def value(name: str) -> float:
        (sample,) = [s for s in families[name].samples if not s.name.endswith("_created")]
        assert sample.labels == {"kernel": "worker", "backend": "cpu"}
        return float(sample.value)

    assert value("ringgen_messages_sent") == t.sent
    assert value("ringgen_messages_processed") == t.processed
    assert value("ringgen_messages_dropped") == t.dropped
    assert value("ringgen_dead_letters") == len(busy_runtime.dead_letters)
    assert value("ringgen_queue_depth") == t.queue_depth == 0
    assert families["ringgen_kernel_state"].samples[0].labels["state"] == "active"
