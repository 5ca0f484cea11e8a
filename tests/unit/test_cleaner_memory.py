"""The log cleaner's memory is bounded by its configuration, not by the number of records: a
pass over one zstd batch of 5 million tiny keyed records (1 million distinct keys, more than
the default 128 MiB offset map holds) stays far below what listing the records costs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RECORDS = 5_000_000
KEYS = 1_000_000
# Measured: 1,069 MiB peak RSS and 37 s CPU before the records were streamed; 404 MiB and
# 16 s after, of which about 265 MiB is iter_records decompressing the whole batch (and its
# scratch buffer) and 128 MiB the offset map.
PEAK_RSS_BOUND_MIB = 700
REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "tests.unit.big_batch", *args],
                          capture_output=True, text=True, timeout=600, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_cleaning_a_batch_of_millions_of_records_stays_within_bounded_memory(
        tmp_path: Path) -> None:
    _run("write", str(tmp_path), str(RECORDS), str(KEYS))
    result = json.loads(_run("clean", str(tmp_path)).splitlines()[-1])
    assert result["peak_rss_mib"] < PEAK_RSS_BOUND_MIB, result
    assert result["cleaned"] == 1
    assert 0 < result["first_dirty"] < KEYS  # the map filled up inside the batch
