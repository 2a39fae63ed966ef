"""What the monitor reads: shared-memory counters and rings, the control segment, status
files written by the processes, the supervisor's process table, and PostgreSQL.

All readers are tolerant: a missing segment or file is "down"/"unknown", never an error.
Status files are written atomically (`write_status`) by the process they describe.
"""

from __future__ import annotations

import json
import os
import time

import psutil

from ringbuf.ringstat import snapshot
from ringbuf.shm import ShmError, pid_alive


def status_dir(data_dir: str, prefix: str) -> str:
    return os.path.join(data_dir, "run", prefix)


def status_path(data_dir: str, prefix: str, role: str) -> str:
    return os.path.join(status_dir(data_dir, prefix), f"{role}.json")


def write_status(path: str, obj: dict) -> None:
    """Atomic replace so a reader never sees half a file."""
    import orjson

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS))
    os.replace(tmp, path)


def read_status(path: str, max_age_s: float | None = None) -> dict | None:
    try:
        st = os.stat(path)
        if max_age_s is not None and time.time() - st.st_mtime > max_age_s:
            return None
        with open(path, "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def counters_by_role(prefix: str) -> dict[str, dict]:
    """role -> {'pid', 'alive', 'age_s', 'counters'} for every counters block of the prefix."""
    out = {}
    now = time.time_ns()
    for name, c in snapshot(prefix)["counters"].items():
        if "error" in c:
            continue
        out[c["role"]] = {
            "segment": name,
            "pid": c["pid"],
            "alive": pid_alive(c["pid"]),
            "age_s": (now - c["last_update_ns"]) / 1e9 if c["last_update_ns"] else None,
            "counters": c["counters"],
        }
    return out


def rings(prefix: str) -> dict[str, dict]:
    return snapshot(prefix)["rings"]


def control_status(prefix: str) -> dict | None:
    try:
        from rms.control import ControlBlock

        cb = ControlBlock.attach(prefix)
    except (ShmError, ImportError, OSError):
        return None
    try:
        return cb.status()
    finally:
        cb.close()


def control_request(prefix: str, command: str, reason: str) -> int:
    from rms.control import ControlBlock

    cb = ControlBlock.attach(prefix)
    try:
        if command == "halt":
            return cb.request_halt(reason)
        if command == "resume":
            return cb.request_resume(reason)
        raise ValueError(command)
    finally:
        cb.close()


def rss_by_pid(pids: list[int]) -> dict[int, int]:
    out = {}
    for pid in set(pids):
        try:
            out[pid] = psutil.Process(pid).memory_info().rss
        except (psutil.Error, ValueError):
            continue
    return out
