"""Named shared-memory segments owned explicitly by the launcher, not by Python's resource tracker.

`multiprocessing.shared_memory` registers every segment with a tracker process that
unlinks it when *any* attaching process exits; for rings that outlive a crashed
producer that is wrong, so segments here are untracked and unlinked on purpose.
"""

from __future__ import annotations

import os
from multiprocessing import resource_tracker, shared_memory

SHM_DIR = "/dev/shm"


class ShmError(Exception):
    """A shared-memory segment is missing, foreign or stale."""


def _untrack(shm: shared_memory.SharedMemory) -> None:
    try:
        resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
    except Exception:
        pass


class Segment:
    """A mapped segment: `.name`, `.buf` (memoryview), `.close()`. Unlike SharedMemory it never
    raises from a destructor when numpy views of it are still alive: the mapping simply
    lives until the last view goes."""

    __slots__ = ("name", "buf", "_mmap", "size")

    def __init__(self, shm: shared_memory.SharedMemory) -> None:
        self.name = shm.name
        self.buf = shm._buf  # type: ignore[attr-defined]
        self._mmap = shm._mmap  # type: ignore[attr-defined]
        self.size = shm.size
        try:
            os.close(shm._fd)  # type: ignore[attr-defined]
        except OSError:
            pass
        shm._fd = -1  # type: ignore[attr-defined]
        shm._buf = None  # type: ignore[attr-defined]
        shm._mmap = None  # type: ignore[attr-defined]

    def close(self) -> None:
        if self.buf is None:
            return
        try:
            self.buf.release()
            self._mmap.close()
        except BufferError:
            pass  # views still exported: the mapping goes when they do
        self.buf = None
        self._mmap = None


def create(name: str, size: int, replace: bool = False) -> Segment:
    if replace:
        unlink(name)
    try:
        shm = shared_memory.SharedMemory(name=name, create=True, size=size)
    except FileExistsError:
        raise ShmError(
            f"shared-memory segment {name!r} already exists; another run is active or crashed "
            f"(remove it with `python -m ringbuf.ringstat --clean`)"
        ) from None
    _untrack(shm)
    return Segment(shm)


def attach(name: str) -> Segment:
    try:
        shm = shared_memory.SharedMemory(name=name, create=False)
    except FileNotFoundError:
        raise ShmError(f"shared-memory segment {name!r} does not exist; is the producer running?") from None
    _untrack(shm)
    return Segment(shm)


def unlink(name: str) -> bool:
    from _posixshmem import shm_unlink  # type: ignore[import-not-found]

    try:
        shm_unlink("/" + name.lstrip("/"))
    except FileNotFoundError:
        return False
    return True


def list_segments(prefix: str) -> list[str]:
    try:
        names = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
