"""A build that runs only what it made: the compile cache hands out only this user's own,
unaltered artifacts; libcu++ comes only from where it is installed; names from outside ringgen
cannot inject code into generated files; a user module cannot shadow another module.

The cases with a second local user create `ringgen-attacker` when the tests run as root, and
skip, saying why, where they cannot."""

from __future__ import annotations

import ast
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, import_package
from hypothesis import given
from hypothesis import strategies as st

from ringgen.codegen import escape
from ringgen.errors import UntrustedCacheError, ValidationError
from ringgen.toolchain.cache import DIGEST_SUFFIX
from ringgen.toolchain.compile import Artifact, cccl_include, compile_runner

ATTACKER = "ringgen-attacker"


def attacker() -> pwd.struct_passwd:
    """The second local user, created if missing (needs root and useradd)."""
    if os.geteuid() != 0:
        pytest.skip("acting as a second local user needs root (to create it and to switch to it)")
    try:
        return pwd.getpwnam(ATTACKER)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        pytest.skip("no useradd to create a second local user with")
    made = subprocess.run([useradd, "-M", "-r", "-s", "/usr/sbin/nologin", ATTACKER],
                          capture_output=True, text=True)
    try:
        return pwd.getpwnam(ATTACKER)  # another test process may have made it meanwhile
    except KeyError:
        pytest.skip(f"useradd could not create {ATTACKER}: {made.stderr.strip()}")


def as_user(user: pwd.struct_passwd, script: str) -> None:
    """Run a shell script as `user`."""
    def become() -> None:
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    done = subprocess.run(["sh", "-c", script], preexec_fn=become, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder every user may create in, as /tmp (pytest's own tmp_path is private to us)."""
    path = Path(tempfile.mkdtemp(prefix="ringgen-shared-", dir="/tmp"))
    path.chmod(0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def runner(pkg: Any) -> Artifact:
    return compile_runner(pkg.package.path, "echo")


@pytest.fixture(scope="module")
def warm_cache(kernels_pkg: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder that holds the echo kernel's runner, made by one compile."""
    cache = tmp_path_factory.mktemp("warm") / "cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RINGGEN_CACHE_DIR", str(cache))
        assert not runner(kernels_pkg).cached
    return cache


@pytest.fixture
def own_cache(warm_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of warm_cache for one test to tamper with, in use."""
    cache = tmp_path / "cache"
    shutil.copytree(warm_cache, cache)
    monkeypatch.setenv("RINGGEN_CACHE_DIR", str(cache))
    return cache


def test_the_cache_is_created_private_with_a_record_beside_each_artifact(
        warm_cache: Path) -> None:
    [artifact] = warm_cache.glob("*/*.runner")
    for folder in (warm_cache, artifact.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert not artifact.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    assert artifact.with_name(artifact.name + DIGEST_SUFFIX).is_file()


def test_the_cache_refuses_a_folder_another_user_made(
        kernels_pkg: Any, shared_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another user who made the cache folder could replace a runner in it: refused, and
    nothing is written into it."""
    user = attacker()
    cache = shared_tmp / "cache"
    as_user(user, f"mkdir -m 0755 '{cache}'")
    monkeypatch.setenv("RINGGEN_CACHE_DIR", str(cache))
    with pytest.raises(UntrustedCacheError, match=f"belongs to user '{ATTACKER}'.*RINGGEN_CACHE_DIR"):
        runner(kernels_pkg)
    assert list(cache.iterdir()) == []


def test_the_cache_refuses_a_folder_others_can_write(
        kernels_pkg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o777)
    monkeypatch.setenv("RINGGEN_CACHE_DIR", str(cache))
    with pytest.raises(UntrustedCacheError, match=r"writable by group or others.*chmod go-w"):
        runner(kernels_pkg)


def _plant(artifact: Path, script: str) -> None:
    """Replace the artifact by a script, with a matching record."""
    import hashlib

    artifact.write_bytes(script.encode())
    artifact.with_name(artifact.name + DIGEST_SUFFIX).write_text(
        hashlib.sha256(script.encode()).hexdigest() + "\n")


def test_the_cache_refuses_an_artifact_another_user_owns(
        kernels_pkg: Any, own_cache: Path, tmp_path: Path) -> None:
    """Say another user planted a runner while the folder was open to them: even with a record
    that matches, what they own is not run."""
    user = attacker()
    [artifact] = own_cache.glob("*/*.runner")
    marker = tmp_path / "ran"
    _plant(artifact, f"#!/bin/sh\ntouch '{marker}'\n")
    os.chown(artifact, user.pw_uid, user.pw_gid)
    with pytest.raises(UntrustedCacheError, match=f"artifact .* belongs to user '{ATTACKER}'"):
        runner(kernels_pkg)
    assert not marker.exists()


def test_the_cache_rebuilds_an_artifact_that_does_not_match_its_record(
        kernels_pkg: Any, own_cache: Path, tmp_path: Path) -> None:
    [artifact] = own_cache.glob("*/*.runner")
    artifact.write_bytes(f"#!/bin/sh\ntouch '{tmp_path / 'ran'}'\n".encode())
    rebuilt = runner(kernels_pkg)
    assert not rebuilt.cached and rebuilt.path == artifact
    assert artifact.read_bytes().startswith(b"\x7fELF")
    assert runner(kernels_pkg).cached  # and the rebuilt one is recorded


def test_libcu_headers_are_not_taken_from_the_current_folder(tmp_path: Path) -> None:
    """sys.path[0] is the current folder under `python -c`: a header planted there must not be
    found. The CUDA toolkit's copy, searched first, is hidden where it exists (a mount
    namespace), as on a machine without it."""
    planted = tmp_path / "nvidia" / "cuda_cccl" / "include" / "cuda"
    planted.mkdir(parents=True)
    (planted / "atomic").write_text('#error "a planted header was compiled"\n')
    env = {k: v for k, v in os.environ.items()
           if k not in ("CUDA_HOME", "CUDA_PATH", "RINGGEN_CCCL_INCLUDE")}
    cmd = [sys.executable, "-c", "from ringgen.toolchain.compile import cccl_include; "
           "print(cccl_include())"]
    if any(Path("/usr/local/cuda", *sub, "cuda", "atomic").is_file()
           for sub in (("include",), ("include", "cccl"))):
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            pytest.skip("hiding /usr/local/cuda's libcu++ needs root and unshare")
        empty = tmp_path / "empty"
        empty.mkdir()
        cmd = ["unshare", "--mount", "sh", "-c", 'mount --bind "$0" /usr/local/cuda && exec "$@"',
               str(empty), *cmd]
    found = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    path = Path(found.stdout.strip())
    assert path.is_absolute(), path
    assert tmp_path not in path.resolve().parents, path


def test_a_changed_libcu_header_is_a_new_cache_entry(
        kernels_pkg: Any, own_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The include folder is part of the key: after a header changes, the next process does not
    take the runner compiled against the old one."""
    headers = tmp_path / "cccl"
    shutil.copytree(cccl_include(), headers, symlinks=True)
    monkeypatch.setenv("RINGGEN_CCCL_INCLUDE", str(headers))
    assert not runner(kernels_pkg).cached
    with (headers / "cuda" / "atomic").open("a") as f:
        f.write('\n#error "the changed header was compiled"\n')
    again = subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "from ringgen.toolchain.compile import compile_runner; "
         "print(compile_runner(Path(sys.argv[1]), 'echo'))", str(kernels_pkg.package.path)],
        capture_output=True, text=True)
    assert again.returncode != 0 and "the changed header was compiled" in again.stderr, again


# A path that breaks out of a docstring into code, out of a C comment onto a line of its own,
# and out of a #line string (with `*/` in it, as a C comment could end there). A file name
# cannot hold "/", so the code it runs makes a folder in the current one.
CRAFTED_DIR = "c*"
CRAFTED = 'x"""+str(__import__("os").mkdir("PWNED"))+"""\n\\ \'q\' ??=\n.py'

CRAFTED_MODULE = r'''
from dataclasses import dataclass

from ringgen import message, ring_kernel


@message
@dataclass
class Ask:
    x: int = 0


@message
@dataclass
class Answer:
    y: int = 0


CU = """
__device__ bool crafted_handle(const Ask& req, Answer& resp, rg_ctx& ctx) {
    (void)ctx;
    if (threadIdx.x == 0) resp.y = req.x + 1;
    return true;
}
"""


@ring_kernel(kernel_id="crafted", input=Ask, output=Answer, block=32, cuda=CU)
def crafted(req: Ask) -> Answer:
    return Answer(y=req.x + 1)
'''


def test_a_crafted_file_name_neither_runs_at_import_nor_breaks_compilation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ringgen.codegen.build import build

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RINGGEN_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / CRAFTED_DIR).mkdir()
    source = tmp_path / CRAFTED_DIR / CRAFTED
    source.write_text(CRAFTED_MODULE)
    with pytest.raises(ValidationError, match=r"not a Python identifier.*--name"):
        build([str(source)], tmp_path / "gen")  # the stem would name the package and its headers
    result = build([str(source)], tmp_path / "gen", name="crafted")
    pkg: Any = import_package(result.plan.package_dir, "rg_crafted_name")
    assert not (tmp_path / "PWNED").exists(), "importing the package ran code from a file name"
    assert f"{CRAFTED_DIR}/{CRAFTED}" in (pkg.__doc__ or "")
    assert not compile_runner(result.plan.package_dir, "crafted").cached


@given(st.text())
def test_escaped_text_stays_in_its_docstring_or_comment(text: str) -> None:
    assert ast.literal_eval(f'"""{escape.py_docstring(text)}"""') == text
    line = escape.comment(text)
    assert len(f"{line}x".splitlines()) == 1 and not line.endswith("\\")
    assert "??" not in line


def test_a_user_module_named_like_a_standard_module_does_not_shadow_it(tmp_path: Path) -> None:
    """After `ringgen build statistics.py`, `import statistics` is still the standard library's;
    message qualified names still use the file's stem."""
    (tmp_path / "statistics.py").write_text(CRAFTED_MODULE)
    probe = ("import sys; from ringgen.codegen.build import plan; "
             "p = plan([sys.argv[1]], sys.argv[2]); import statistics; "
             "print(statistics.__file__); print(p.schema.package.messages[0].qualified_name)")
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "statistics.py"),
                           str(tmp_path / "gen")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    stdlib_file, qualified = done.stdout.split()
    assert Path(stdlib_file).parent != tmp_path
    assert qualified == "statistics.Ask"
