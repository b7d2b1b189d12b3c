"""The streaming package's storage protocol on real Delta tables: idempotent appends keyed by
(Kafka partition, date), and a backfill's replace racing a streaming append."""

import datetime as dt

import pyarrow as pa
import pytest

from assets.streaming import Batch, append_once, date_token
from resources import LakeResource
from resources.lake import CommitFailedError

D1, D2 = dt.date(2026, 12, 1), dt.date(2026, 12, 2)


def _batch() -> Batch:
    rows = pa.table(
        {"partition": pa.array([0, 0, 1], pa.int32()), "event_date": pa.array([D1, D2, D1]), "value": [1, 2, 3]}
    )
    return Batch("events", {0: (10, 11), 1: (20, 20)}, rows)


def test_a_batch_is_appended_once_and_a_backfilled_date_is_not_appended_again(lake: LakeResource):
    batch = _batch()
    # A backfill of D1 already read partition 0 up to offset 11 from bronze: its rows for D1 are there.
    lake.append("t", batch.rows.slice(0, 1), tokens={date_token("events", 0, D1.isoformat()): 11})
    assert append_once(lake, "t", batch.rows, batch) == 2  # only what the table lacks
    assert sorted(lake.scan("t")["value"].to_pylist()) == [1, 2, 3]
    assert append_once(lake, "t", batch.rows, batch) == 0  # a retry appends nothing
    assert lake.count_by_date("t") == {"2026-12-01": 2, "2026-12-02": 1}


def test_a_replace_computed_before_a_streaming_append_to_its_date_fails_and_other_dates_pass(lake: LakeResource):
    batch = _batch()
    append_once(lake, "t", batch.rows, batch)
    table = lake.table("t")
    assert table is not None
    version = table.version()  # what a backfill of D1 read
    later = pa.table({"partition": pa.array([0], pa.int32()), "event_date": pa.array([D1]), "value": [4]})
    lake.append("t", later)  # the stream lands in D1 meanwhile
    with pytest.raises(CommitFailedError):
        lake.replace_dates("t", batch.rows.slice(0, 1), [D1.isoformat()], version=version)
    # A replace of another date commits, and replaces exactly that date.
    replaced = pa.table({"partition": pa.array([0], pa.int32()), "event_date": pa.array([D2]), "value": [9]})
    lake.replace_dates("t", replaced, [D2.isoformat()], version=version)
    assert sorted(lake.scan("t")["value"].to_pylist()) == [1, 3, 4, 9]


def test_a_batch_whose_messages_are_all_quarantined_passes_the_duplicate_check(lake: LakeResource):
    from assets.clickstream.silver import SILVER_ARROW_SCHEMA, SeenEvents

    seen = SeenEvents(lake)
    seen.start(0)
    empty = SILVER_ARROW_SCHEMA.empty_table()
    assert seen.is_seen(empty).tolist() == []
    seen.add(empty)
    assert seen.size == 0
