"""The compile cache: compiled artifacts keyed by a hash of everything that goes into them
(sources, include folders, flags, compiler version), in a per-user folder ($RINGGEN_CACHE_DIR,
else $XDG_CACHE_HOME/ringgen, else ~/.cache/ringgen).

What the cache holds is executed (a CPU runner) or loaded into the process (the host module),
so it hands out only what this user made: the folder is created 0700; a folder or artifact that
another user owns, or that group or others can write, is refused with UntrustedCacheError; and
each artifact's SHA-256 is recorded beside it (`<artifact>.sha256`) when it is written and
checked before it is handed out. An artifact that does not match its record (or has none) is
rebuilt, never run. Each build writes its own scratch file (per process and thread), and artifact
and record are each written atomically, the record last, so concurrent builds of one key (test
workers, `--jobs`) are safe: a reader that meets one build's artifact beside another's
record rebuilds."""

from __future__ import annotations

import functools
import hashlib
import os
import pwd
import stat
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from ringgen.errors import UntrustedCacheError
from ringgen.toolchain.files import atomic_write

DIGEST_SUFFIX = ".sha256"


def cache_dir() -> Path:
    env = os.environ.get("RINGGEN_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ringgen"


@functools.cache
def compiler_version(compiler: str) -> str:
    """The compiler's own version text: a new compiler is a new cache key."""
    try:
        out = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable: {e}"
    return out.stdout.strip()


@functools.cache
def folder_identity(folder: Path) -> str:
    """An identity of an include folder's contents, from every file's path, size, inode and
    modification and change times: editing, replacing or adding a header changes it (a change
    time cannot be set back without root). A stat per file, not a read, as the libcu++ tree
    holds thousands of headers. Computed once per process."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            st = os.stat(path)
            h.update(f"{os.path.relpath(path, folder)}\0{st.st_size} {st.st_ino} {st.st_mtime_ns} "
                     f"{st.st_ctime_ns}\n".encode())
    return h.hexdigest()


def cache_key(sources: Sequence[bytes], flags: Sequence[str], compiler: str,
              include_dirs: Sequence[Path] = ()) -> str:
    """`include_dirs`: folders the compiler searches beyond the sources, each keyed by its path
    and folder_identity(): a different or changed header folder is a different artifact."""
    h = hashlib.sha256()
    includes = [f"{d}\0{folder_identity(d)}".encode() for d in include_dirs]
    for part in (*sources, *includes, "\0".join(flags).encode(),
                 compiler_version(compiler).encode()):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()[:32]


def cached(key: str, suffix: str, produce: Callable[[Path], None]) -> tuple[Path, bool]:
    """The cached artifact for `key`, made by `produce(path)` on a miss or when the cached one
    fails its check; (path, was_hit)."""
    folder = _private_folder(_private_folder(cache_dir()) / key[:2])
    target = folder / f"{key}{suffix}"
    if _matches_record(target):
        return target, True
    # One scratch file per process and thread: two builds of one key never share one.
    scratch = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.build")
    try:
        produce(scratch)
        data = scratch.read_bytes()
    finally:
        scratch.unlink(missing_ok=True)
    atomic_write(target, data, mode=0o700)
    atomic_write(_record_of(target), f"{hashlib.sha256(data).hexdigest()}\n".encode(), mode=0o600)
    return target, False


def _private_folder(folder: Path) -> Path:
    """`folder`, created 0700 if missing, after checking that it is this user's own; returned
    with symbolic links resolved, so that what was checked is what is used."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    real = Path(os.path.realpath(folder))
    _check_trusted(os.stat(real), real, "folder")
    return real


def _check_trusted(st: os.stat_result, path: Path, what: str) -> None:
    if st.st_uid != os.geteuid():
        raise UntrustedCacheError(
            f"the compile cache {what} {path} belongs to {_user(st.st_uid)}, not to you "
            f"({_user(os.geteuid())}): whoever owns it could replace what ringgen runs from it. "
            f"Remove it, or set RINGGEN_CACHE_DIR to a folder of your own")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UntrustedCacheError(
            f"the compile cache {what} {path} is writable by group or others (mode "
            f"{stat.S_IMODE(st.st_mode):04o}): they could replace what ringgen runs from it. "
            f"Run `chmod go-w {path}` or remove it")


def _user(uid: int) -> str:
    try:
        return f"user {pwd.getpwuid(uid).pw_name!r} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _record_of(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + DIGEST_SUFFIX)


def _matches_record(artifact: Path) -> bool:
    """The artifact exists, is this user's own, and its SHA-256 is the one recorded when it
    was written. Both files are checked through the descriptors they are read from."""
    data = _read_trusted(artifact, "artifact")
    record = _read_trusted(_record_of(artifact), "artifact record")
    if data is None or record is None:
        return False
    return record.decode("ascii", "replace").strip() == hashlib.sha256(data).hexdigest()


def _read_trusted(path: Path, what: str) -> bytes | None:
    """The bytes of `path`, or None where it is missing; UntrustedCacheError where it is not
    this user's own file (a symbolic link counts as not)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise UntrustedCacheError(f"the compile cache {what} {path} cannot be opened as a "
                                  f"plain file ({e.strerror}); remove it") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UntrustedCacheError(f"the compile cache {what} {path} is not a plain file; "
                                      f"remove it")
        _check_trusted(st, path, what)
        return f.read()
