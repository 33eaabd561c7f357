"""Real file systems that say no, for the tests of full disks and read-only folders.

A tiny tmpfs and a read-only bind mount need root (the machine that runs ``make test`` here is root, which is also
why ``chmod 0555`` is no test: root writes through it). Without root, :func:`small_disk` skips the test and
:func:`read_only` falls back to ``chmod 0555``, which does stop a user who is not root.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@contextlib.contextmanager
def small_disk(path: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` while the block runs (the test is skipped where mounting is refused)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs on {path} ({mounted.stderr.strip()}): needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


def fill(folder: Path) -> Path:
    """Fill the file system holding ``folder`` to the last byte; returns the filler file (unlink it to free it)."""
    filler = folder / ".filler"
    with filler.open("wb", buffering=0) as fh:
        for block in (1 << 20, 4096, 1):
            while True:
                try:
                    fh.write(b"\0" * block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    return filler


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[str]:
    """``path`` cannot be written while the block runs; yields the error a write gets, as ``strerror`` says it.

    As root: a read-only bind mount of the folder on itself (EROFS). Otherwise: ``chmod 0555`` (EACCES)."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555)
        try:
            yield os.strerror(errno.EACCES)
        finally:
            path.chmod(mode)
        return
    for args in (("--bind", str(path), str(path)), ("-o", "remount,bind,ro", str(path))):
        mounted = _mount(*args)
        if mounted.returncode != 0:
            subprocess.run(["umount", str(path)], check=False, capture_output=True)
            pytest.skip(f"cannot make a read-only bind mount on {path}: {mounted.stderr.strip()}")
    try:
        yield os.strerror(errno.EROFS)
    finally:
        subprocess.run(["umount", str(path)], check=True)
