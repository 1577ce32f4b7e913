"""Deterministic, atomic writing of a generated package, and the check that it is current."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ringgen.toolchain.files import atomic_write

MANIFEST = "manifest.json"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def manifest_text(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def read_manifest(package_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((package_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_current(package_dir: Path, input_hash: str) -> bool:
    """The manifest says the package was built from these inputs, and no file was touched."""
    manifest = read_manifest(package_dir)
    if manifest is None or manifest.get("input_hash") != input_hash:
        return False
    for name, digest in manifest.get("files", {}).items():
        try:
            if sha256_text((package_dir / name).read_text(encoding="utf-8")) != digest:
                return False
        except OSError:
            return False
    return True


def write_package(package_dir: Path, files: dict[str, str]) -> list[str]:
    """Write what differs from the disk; remove what an earlier build wrote and this one does
    not. Returns the names written or removed."""
    changed = []
    old = read_manifest(package_dir) or {}
    for name in sorted(set(old.get("files", {})) - set(files)):
        target = package_dir / name
        if target.exists():
            target.unlink()
            changed.append(name)
    for name, text in sorted(files.items()):
        target = package_dir / name
        try:
            if target.read_text(encoding="utf-8") == text:
                continue
        except OSError:
            pass
        atomic_write(target, text.encode("utf-8"))
        changed.append(name)
    return changed


def stale_files(package_dir: Path, files: dict[str, str]) -> list[str]:
    """Names whose content on disk differs from `files` (or that are missing or left over)."""
    stale = []
    for name, text in sorted(files.items()):
        try:
            if (package_dir / name).read_text(encoding="utf-8") != text:
                stale.append(name)
        except OSError:
            stale.append(name)
    old = read_manifest(package_dir) or {}
    stale += sorted(n for n in set(old.get("files", {})) - set(files) if (package_dir / n).exists())
    return stale
