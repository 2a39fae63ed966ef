"""persist/ without servers: COPY encoding, kind split, outage journal, md files and tool, CLI errors."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest

from persist import pgcopy
from persist.db import split_by_kind
from persist.journal import OutageJournal
from persist.recorder import (
    HEADER_SIZE,
    MdFileError,
    MdFileWriter,
    MdRecorder,
    make_header,
    open_md_file,
    read_header,
)
from persist.schema import MIGRATIONS
from persist.testing import as_raw, make_fills, make_order_events, make_position
from ringbuf import records as R
from ringbuf.ring import Ring
from ringbuf.ringstat import ring_name

pytestmark = pytest.mark.unit


def test_migrations_are_strictly_versioned():
    versions = [v for v, _n, _s in MIGRATIONS]
    assert versions == sorted(set(versions)) and versions[0] == 1


def test_staging_copy_payload_round_trips():
    fills = make_fills(10, 5, venue_id=2, instr_id=7)
    rows = pgcopy.decode_copy(pgcopy.FILLS.encode(fills), pgcopy.FILLS.columns)
    assert len(rows) == 5
    names = [c.name for c in pgcopy.FILLS.columns]
    r0 = dict(zip(names, rows[0], strict=True))
    assert r0["venue"] == 2 and r0["instr_id"] == 7 and r0["trade_id"] == b"T10"
    assert r0["px"] == fills["px"][0] and r0["event_ts_ns"] == int(fills["event_ts_ns"][0])
    assert [dict(zip(names, r, strict=True))["trade_id"] for r in rows] == [f"T{i}".encode() for i in range(10, 15)]


def test_direct_copy_payload_has_exact_length_ids():
    fills = make_fills(8, 5)  # T8, T9 (2 bytes) and T10.. (3 bytes): two layout groups
    fills["cl_ord_id"][1] = b""
    stmt, payload = pgcopy.encode_direct(pgcopy.FILLS, fills)
    assert stmt.startswith("COPY fills (")
    cols = pgcopy.direct_columns(pgcopy.FILLS)
    rows = pgcopy.decode_copy(payload, cols)
    names = [c.name for c in cols]
    got = {dict(zip(names, r, strict=True))["trade_id"]: dict(zip(names, r, strict=True)) for r in rows}
    assert set(got) == {b"T8", b"T9", b"T10", b"T11", b"T12"}
    assert got[b"T9"]["cl_ord_id"] == b""
    assert got[b"T12"]["fee_asset"] == b"USDT"
    # the lengths on the wire are exact: no NUL padding reaches a text column
    assert b"T8" + b"\x00" * 8 not in payload and b"T8\x00\x00\x00\x02c2" in payload


def test_split_by_kind_counts_unknown_and_keeps_order():
    raw = np.concatenate([as_raw(make_fills(0, 3)), as_raw(make_order_events(["a", "b"], [1, 2])),
                          as_raw(make_position(1, 1, 0.5, 10))])
    bogus = raw[:1].copy()
    bogus[0, 0] = 99
    groups, unknown = split_by_kind(np.concatenate([raw, bogus]))
    assert unknown == 1
    assert groups[R.KIND_FILL]["trade_id"].tolist() == [b"T0", b"T1", b"T2"]
    assert groups[R.KIND_ORDER_EVENT]["cl_ord_id"].tolist() == [b"a", b"b"]
    assert groups[R.KIND_POSITION]["position"].tolist() == [0.5]


def test_valid_mask_refuses_keyless_records():
    f = make_fills(0, 3)
    f["trade_id"][1] = b""
    assert pgcopy.valid_mask(pgcopy.FILLS, f).tolist() == [True, False, True]


@pytest.mark.parametrize("policy", ["every", "batch", "off"])
def test_outage_journal_append_read_consume(tmp_path, policy):
    path = str(tmp_path / "j" / "x.jnl")
    j = OutageJournal(path, fsync=policy)
    a = as_raw(make_fills(0, 10))
    j.append(a[:4])
    j.append(a[4:])
    assert j.pending == 10 and j.bytes == 1280
    got = j.read(6)
    assert np.array_equal(got, a[:6])
    j.consume(6)
    assert j.pending == 4
    j.close()
    # reopen: the replay position survives a restart
    j = OutageJournal(path, fsync=policy)
    assert j.pending == 4
    assert np.array_equal(j.read(100), a[6:])
    j.consume(4)
    assert j.pending == 0 and os.path.getsize(path) == 0  # fully replayed: truncated
    j.close()


def test_outage_journal_drops_a_torn_tail(tmp_path):
    path = str(tmp_path / "x.jnl")
    a = as_raw(make_fills(0, 3))
    with open(path, "wb") as f:
        f.write(a.tobytes() + b"\x01" * 50)  # a crash mid-write left half a record
    j = OutageJournal(path)
    assert j.pending == 3 and os.path.getsize(path) == 3 * 128
    assert np.array_equal(j.read(10), a)
    j.close()


def test_outage_journal_stale_position_never_skips_new_records(tmp_path):
    path = str(tmp_path / "x.jnl")
    with open(path + ".pos", "wb") as f:
        f.write(struct.pack("<q", 1000))  # left by a crash between truncation and position update
    j = OutageJournal(path)
    j.append(as_raw(make_fills(0, 2)))
    j.close()
    j = OutageJournal(path)
    assert j.pending <= 2
    j.close()


def test_outage_journal_rejects_unknown_policy(tmp_path):
    with pytest.raises(ValueError, match="every, batch, off"):
        OutageJournal(str(tmp_path / "x.jnl"), fsync="sometimes")


def _md_records(n: int, start: int = 0) -> np.ndarray:
    q = np.zeros(n, dtype=R.QUOTE_DTYPE)
    q["kind"] = R.KIND_QUOTE
    q["venue_id"] = 1
    q["instr_id"] = 1 + np.arange(n) % 2
    q["recv_ts_ns"] = 1_700_000_000_000_000_000 + np.arange(start, start + n) * 1000
    q["exch_ts_ns"] = q["recv_ts_ns"] - 500
    q["venue_seq"] = np.arange(start, start + n)
    q["bid_px"] = 100.0 + np.arange(n) * 0.01
    q["ask_px"] = q["bid_px"] + 0.01
    q["bid_qty"] = 1.0
    q["ask_qty"] = 2.0
    return q.view(R.MD_DTYPE)


def test_md_file_writer_rolls_and_reads_back(tmp_path):
    w = MdFileWriter(str(tmp_path), "binance", max_bytes=HEADER_SIZE + 64 * 100)
    recs = _md_records(250)
    w.write(recs[:120])
    w.write(recs[120:])
    w.close()
    files = sorted((tmp_path / "binance").iterdir())
    assert len(files) == 3
    back = np.concatenate([np.asarray(open_md_file(str(f))) for f in files])
    assert back.tobytes() == recs.tobytes()
    h = read_header(str(files[0]))
    assert h["venue"] == "binance" and h["records"] == 100


def test_md_bad_files_give_clear_errors(tmp_path):
    good = tmp_path / "good.md"
    good.write_bytes(make_header("okx") + _md_records(3).tobytes())
    assert open_md_file(str(good)).shape == (3,)

    bad_magic = tmp_path / "magic.md"
    bad_magic.write_bytes(b"NOTAFILE" + make_header("okx")[8:] + _md_records(1).tobytes())
    with pytest.raises(MdFileError, match="bad magic"):
        open_md_file(str(bad_magic))

    hdr = bytearray(make_header("okx"))
    struct.pack_into("<I", hdr, 8, 99)
    bad_version = tmp_path / "version.md"
    bad_version.write_bytes(bytes(hdr))
    with pytest.raises(MdFileError, match="version 99"):
        open_md_file(str(bad_version))

    hdr = bytearray(make_header("okx"))
    struct.pack_into("<I", hdr, 16, 0xDEAD)
    bad_dtype = tmp_path / "dtype.md"
    bad_dtype.write_bytes(bytes(hdr))
    with pytest.raises(MdFileError, match="differs from this build"):
        open_md_file(str(bad_dtype))

    truncated = tmp_path / "trunc.md"
    truncated.write_bytes(make_header("okx") + _md_records(2).tobytes()[:100])
    with pytest.raises(MdFileError, match="truncated"):
        open_md_file(str(truncated))
    assert open_md_file(str(truncated), allow_partial=True).shape == (1,)

    short = tmp_path / "short.md"
    short.write_bytes(b"HFTMD")
    with pytest.raises(MdFileError, match="truncated header"):
        open_md_file(str(short))

    with pytest.raises(MdFileError, match="cannot read"):
        open_md_file(str(tmp_path / "missing.md"))


def test_recorder_round_trip_through_a_lossy_ring(tmp_path, shm_prefix):
    name = ring_name(shm_prefix, "md-binance")
    ring = Ring.create(name, 1024, R.MD_RECORD_SIZE)
    ring.claim_producer()
    rec = MdRecorder(name, "binance", str(tmp_path), batch=256)
    assert rec.poll() == 0 and rec.ring is not None  # attached
    recs = _md_records(3000)
    written = 0
    for i in range(0, 3000, 100):  # the recorder keeps up: nothing is lost
        ring.write_batch(recs[i : i + 100])
        written += 100
        while rec.records < written:
            assert rec.poll() > 0
    rec.close()
    files = sorted((tmp_path / "binance").iterdir())
    back = np.concatenate([np.asarray(open_md_file(str(f))) for f in files])
    assert rec.lost == 0
    assert back.tobytes() == recs.tobytes()
    ring.close()


def test_recorder_counts_what_a_lapping_producer_overwrote(tmp_path, shm_prefix):
    name = ring_name(shm_prefix, "md-okx")
    ring = Ring.create(name, 256, R.MD_RECORD_SIZE)
    ring.claim_producer()
    rec = MdRecorder(name, "okx", str(tmp_path), batch=4096)
    rec.poll()
    ring.write_batch(_md_records(1000))  # laps the 256-slot ring before the recorder reads
    while rec.poll():
        pass
    rec.close()
    assert rec.records + rec.lost == 1000 and rec.lost >= 1000 - 256
    back = np.concatenate([np.asarray(open_md_file(str(f))) for f in sorted((tmp_path / "okx").iterdir())])
    assert back["venue_seq"].tolist() == list(range(1000 - rec.records, 1000))
    ring.close()


def test_mdtool_list_and_summary(tmp_path, capsys):
    from persist.mdtool import main

    w = MdFileWriter(str(tmp_path / "md"), "gate")
    w.write(_md_records(50))
    w.close()
    (tmp_path / "md" / "gate" / "junk.md").write_bytes(b"garbage" * 20)
    assert main(["list", str(tmp_path / "md")]) == 1  # one bad file: reported, not fatal
    out, err = capsys.readouterr()
    assert "gate" in out and " 50 " in out and "bad magic" in err
    assert main(["summary", str(tmp_path / "md" / "gate")]) == 1
    out, _ = capsys.readouterr()
    assert "records 50" in out and "'quote': 50" in out
    assert main(["summary", str(tmp_path / "nope")]) == 2
    assert main(["frobnicate", str(tmp_path)]) == 2


def test_process_main_bad_arguments_exit_2(tmp_path, capsys):
    from persist.process import main

    assert main(["--md-venues", "kraken"]) == 2
    assert "unknown venue" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[persist]\njournal_fsync = 'sometimes'\n")
    assert main(["--config", str(bad)]) == 2
    assert "journal_fsync" in capsys.readouterr().err
    assert main(["--no-such-flag"]) == 2


def test_status_without_a_persist_process(shm_prefix):
    from persist.process import status

    s = status(shm_prefix)
    assert s["alive"] is False and s["healthy"] is False and s["db_up"] is False
