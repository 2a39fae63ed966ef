"""The control segment: requests from the monitor / operator, status published by the host,
and the `python -m rms.control` command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rms.control import CMD_HALT, CMD_REDUCE, CMD_RESUME, ControlBlock, control_name

pytestmark = pytest.mark.unit
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_requests_are_seen_once_in_order(shm_prefix):
    host = ControlBlock.create(shm_prefix)
    mon = ControlBlock.attach(shm_prefix)
    assert host.name == control_name(shm_prefix) == f"{shm_prefix}-ctl"
    assert host.poll() is None
    seq = mon.request_halt("too much loss")
    assert seq == 1
    assert host.poll() == (CMD_HALT, "too much loss")
    assert host.poll() is None  # applied once
    mon.request_reduce()
    mon.request_resume("all clear")  # only the latest request is kept between two polls
    assert host.poll() == (CMD_RESUME, "all clear")
    assert mon.status()["acked_seq"] == 3
    mon.request(CMD_REDUCE, "x" * 100)  # long reasons are cut to 48 bytes
    cmd, reason = host.poll()
    assert cmd == CMD_REDUCE and reason == "x" * 48
    mon.close()
    host.close()


def test_status_published_by_the_host(shm_prefix):
    host = ControlBlock.create(shm_prefix)
    mon = ControlBlock.attach(shm_prefix)
    assert mon.status()["state"] == "UNKNOWN"
    host.publish(3, "kill switch: drawdown", kills=2)
    st = mon.status()
    assert st["state"] == "HALTED" and st["reason"] == "kill switch: drawdown" and st["kills"] == 2
    assert st["pid"] == os.getpid() and st["host_alive"] and st["changed_ns"] > 0
    host.publish(1, "resumed", kills=2)
    assert mon.status()["state"] == "ACTIVE"
    mon.close()
    host.close()


def test_a_host_restart_does_not_replay_old_requests(shm_prefix):
    first = ControlBlock.create(shm_prefix)
    mon = ControlBlock.attach(shm_prefix)
    mon.request_halt("old")
    again = ControlBlock.attach(shm_prefix)  # a host attaching later starts from the current seq
    assert again.poll() is None
    for b in (first, mon, again):
        b.close()


def test_cli(shm_prefix):
    host = ControlBlock.create(shm_prefix)
    run = [sys.executable, "-m", "rms.control", "--prefix", shm_prefix]
    out = subprocess.run(run + ["halt", "from the shell"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert host.poll() == (CMD_HALT, "from the shell")
    out = subprocess.run(run + ["status"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert json.loads(out.stdout.splitlines()[-1])["request_seq"] == 1
    out = subprocess.run([sys.executable, "-m", "rms.control", "--prefix", shm_prefix + "nope", "status"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    host.close()


def test_foreign_segment_is_refused(shm_prefix):
    from ringbuf import shm
    from ringbuf.shm import ShmError

    seg = shm.create(control_name(shm_prefix), 256)
    seg.buf[:8] = b"NOTACTL!"
    with pytest.raises(ShmError):
        ControlBlock.attach(shm_prefix)
    seg.close()
