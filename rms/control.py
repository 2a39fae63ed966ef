"""The control segment `<prefix>-ctl`: how the monitor (or an operator) halts, resumes or
reduces the strategy process without a socket, and how it reads the trading state.

Layout (256 bytes, shared memory, names as in ringbuf.ringstat): a header line (magic
HFTCTL01, version, created ns); the request line (request_seq, command, requested_ns,
48-byte reason) written by any requester; the status line (trading state, state
change ns, host pid, acked request_seq, kills, 48-byte reason) written by the host only.
A requester writes the command and reason first and `request_seq` last (one aligned
8-byte store); the host polls `request_seq` on its timer and applies each new request once.
"""

from __future__ import annotations

import os
import struct
import time

from ringbuf import shm as _shm
from ringbuf.shm import ShmError

MAGIC = b"HFTCTL01"
VERSION = 1
SIZE = 256
CMD_NONE = 0
CMD_HALT = 1
CMD_RESUME = 2
CMD_REDUCE = 3
COMMANDS = {"halt": CMD_HALT, "resume": CMD_RESUME, "reduce": CMD_REDUCE}
_HDR = struct.Struct("<8sIIq")  # magic, version, size, created_ns
# request line at byte 64: request_seq q, command q, requested_ns q, reason 48s
_REQ_OFF = 64
_REASON_REQ = _REQ_OFF + 24
# status line at byte 128: state q, changed_ns q, pid q, acked_seq q, kills q, reason 48s (~ 88 bytes)
_ST_OFF = 128
_REASON_ST = _ST_OFF + 40


def control_name(prefix: str) -> str:
    return f"{prefix}-ctl"


class ControlBlock:
    """Both sides of the control segment. The host uses `create`, `poll`, `publish`;
    the monitor uses `attach`, `request_halt` / `request_resume` / `request_reduce`, `status`."""

    def __init__(self, name: str, shm) -> None:
        self.name = name
        self._shm = shm
        buf = shm.buf
        magic, version, size, created = _HDR.unpack_from(buf, 0)
        if magic != MAGIC or version != VERSION:
            shm.close()
            raise ShmError(f"segment {name!r} is not a control block of this build")
        self.created_ns = created
        self._q = buf[:SIZE].cast("q")
        self._seen = self._q[_REQ_OFF // 8]  # requests written before the host started are not replayed

    @classmethod
    def create(cls, prefix: str, replace: bool = True) -> ControlBlock:
        name = control_name(prefix)
        shm = _shm.create(name, SIZE, replace=replace)
        shm.buf[:SIZE] = bytes(SIZE)
        _HDR.pack_into(shm.buf, 0, MAGIC, VERSION, SIZE, time.time_ns())
        return cls(name, shm)

    @classmethod
    def attach(cls, prefix: str) -> ControlBlock:
        name = control_name(prefix)
        try:
            shm = _shm.attach(name)
        except ValueError:  # created by the host and not sized yet
            raise ShmError(f"control segment {name!r} is not ready yet") from None
        if len(shm.buf) < SIZE:
            shm.close()
            raise ShmError(f"segment {name!r} is too small to be a control block")
        return cls(name, shm)

    def close(self) -> None:
        self._q.release()
        self._shm.close()

    def unlink(self) -> None:
        _shm.unlink(self.name)

    # ---- requester (monitor, operator tools) ---------------------------------
    def request(self, command: int, reason: str = "") -> int:
        """Write a request; returns its sequence number (see `acked_seq`)."""
        buf = self._shm.buf
        raw = reason.encode("utf-8", "replace")[:48].ljust(48, b"\0")
        buf[_REASON_REQ:_REASON_REQ + 48] = raw
        q = self._q
        q[_REQ_OFF // 8 + 1] = command
        q[_REQ_OFF // 8 + 2] = time.time_ns()
        seq = q[_REQ_OFF // 8] + 1
        q[_REQ_OFF // 8] = seq  # published last
        return seq

    def request_halt(self, reason: str = "monitor halt") -> int:
        return self.request(CMD_HALT, reason)

    def request_resume(self, reason: str = "monitor resume") -> int:
        return self.request(CMD_RESUME, reason)

    def request_reduce(self, reason: str = "monitor reduce") -> int:
        return self.request(CMD_REDUCE, reason)

    def status(self) -> dict:
        """Trading state as the host last published it."""
        q = self._q
        b = _ST_OFF // 8
        reason = bytes(self._shm.buf[_REASON_ST:_REASON_ST + 48]).rstrip(b"\0").decode("utf-8", "replace")
        names = {0: "UNKNOWN", 1: "ACTIVE", 2: "REDUCING", 3: "HALTED"}
        pid = q[b + 2]
        return {"state": names.get(q[b], "UNKNOWN"), "state_code": q[b], "changed_ns": q[b + 1], "pid": pid,
                "host_alive": _shm.pid_alive(pid), "acked_seq": q[b + 3], "request_seq": q[_REQ_OFF // 8],
                "kills": q[b + 4], "reason": reason}

    # ---- host ----------------------------------------------------------------
    def poll(self) -> tuple[int, str] | None:
        """A new request (command, reason) since the last poll, else None. Cheap when idle."""
        q = self._q
        seq = q[_REQ_OFF // 8]
        if seq == self._seen:
            return None
        self._seen = seq
        cmd = q[_REQ_OFF // 8 + 1]
        reason = bytes(self._shm.buf[_REASON_REQ:_REASON_REQ + 48]).rstrip(b"\0").decode("utf-8", "replace")
        q[_ST_OFF // 8 + 3] = seq
        return cmd, reason

    def publish(self, state: int, reason: str = "", kills: int = 0) -> None:
        buf = self._shm.buf
        buf[_REASON_ST:_REASON_ST + 48] = reason.encode("utf-8", "replace")[:48].ljust(48, b"\0")
        q = self._q
        b = _ST_OFF // 8
        q[b + 1] = time.time_ns()
        q[b + 2] = os.getpid()
        q[b + 4] = kills
        q[b] = state


def main(argv: list[str] | None = None) -> int:
    """`python -m rms.control [--prefix hft] halt|resume|reduce|status [reason]`"""
    import argparse
    import json
    import sys

    ap = argparse.ArgumentParser(prog="python -m rms.control", description="halt / resume the strategy process")
    ap.add_argument("--prefix", default="hft")
    ap.add_argument("command", choices=["halt", "resume", "reduce", "status"])
    ap.add_argument("reason", nargs="?", default="")
    args = ap.parse_args(argv)
    try:
        ctl = ControlBlock.attach(args.prefix)
    except ShmError as e:
        print(f"control: {e}", file=sys.stderr)
        return 2
    try:
        if args.command != "status":
            seq = ctl.request(COMMANDS[args.command], args.reason or f"operator {args.command}")
            print(f"request {seq} written")
        print(json.dumps(ctl.status()))
    finally:
        ctl.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
