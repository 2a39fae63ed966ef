"""Market data from the simulator, through a real feed process, recorded by the persist process:
the files it writes are readable by open_md_file and the reader tool."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from persist.recorder import list_md_files, open_md_file
from persist.testing import wait_until
from ringbuf import records as R
from tests.test_persist_db import ROOT, _config, _log, start_persist, stop

pytestmark = pytest.mark.integration


@pytest.mark.slow
def test_sim_feed_recorded_by_the_persist_process(database_url, shm_prefix, journal_dir, tmp_path):
    from persist.process import status
    from ringbuf.ring import Ring
    from ringbuf.ringstat import ring_name
    from sim.testing import run_sim

    events = Ring.create(ring_name(shm_prefix, "events"), 1 << 10, R.EVENT_RECORD_SIZE, lossless=True)
    feed = persist = None
    with run_sim(symbols=["BTC-USDT", "ETH-USDT"], seed=3, rate=2000) as s:
        try:
            feed_log = open(tmp_path / "feed.log", "ab")
            feed = subprocess.Popen(
                [sys.executable, "-m", "feeds.handler", "--venue", "binance", "--prefix", shm_prefix,
                 "--symbols", "BTC-USDT,ETH-USDT", "--urls", json.dumps(s.urls)],
                cwd=ROOT, stdout=feed_log, stderr=subprocess.STDOUT)
            persist = start_persist(tmp_path, shm_prefix, database_url, _config(tmp_path), md_venues="binance")
            wait_until(lambda: persist.poll() is not None or feed.poll() is not None
                       or status(shm_prefix)["counters"].get("md_records_binance", 0) >= 2000,
                       180, 0.2, "2000 recorded md records")
            assert persist.poll() is None, _log(tmp_path)
            assert feed.poll() is None, _log(tmp_path, "feed")
        finally:
            if persist is not None:
                assert stop(persist) == 0, _log(tmp_path)
            if feed is not None:
                stop(feed)
            events.close()
    files = list_md_files(str(tmp_path / "data" / "md"))
    assert files
    recs = np.concatenate([np.asarray(open_md_file(f)) for f in files])
    assert recs.shape[0] >= 2000
    assert set(np.unique(recs["venue_id"]).tolist()) == {1}
    kinds = set(np.unique(recs["kind"]).tolist())
    assert kinds & {R.KIND_QUOTE, R.KIND_BOOK_LEVEL, R.KIND_TRADE}
    assert (np.diff(recs["recv_ts_ns"]) >= 0).mean() > 0.99  # recorded in arrival order
    out = subprocess.run([sys.executable, "-m", "persist.mdtool", "summary", str(tmp_path / "data" / "md")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"{recs.shape[0]} records" in out.stdout
