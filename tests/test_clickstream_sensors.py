"""The clickstream sensors: the run requests they make and the cursors they keep."""

import datetime as dt
import json

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus, make_new_run_id

from assets.clickstream.names import CONSUMER_GROUP, TOPIC
from sensors.clickstream import clickstream_ingest_job, clickstream_kafka_sensor, clickstream_partitions_sensor
from tests.clickstream_pipeline import produce, run_gold, run_ingest, tick, valid_event

NOON = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0) - dt.timedelta(days=1)


def _pending_request(instance, resources):
    result, _ = tick(clickstream_kafka_sensor, instance, resources)
    return result


def test_kafka_sensor_requests_the_pending_range_and_records_it_in_the_cursor(kafka, resources, instance):
    produce(kafka, [valid_event(NOON, user=f"u{i}") for i in range(12)])
    result = _pending_request(instance, resources)
    assert isinstance(result, dg.SensorResult)
    (request,) = result.run_requests
    until = request.run_config["ops"]["bronze_clickstream_events"]["config"]["until_offsets"]
    ends = kafka.pending_offsets(kafka.topic(TOPIC), kafka.group(CONSUMER_GROUP))
    assert until == {str(p): end for p, (_, end) in ends.items() if end > 0}
    assert sum(until.values()) == 12
    assert json.loads(result.cursor) == {"requested": {p: [0, end] for p, end in until.items()}}
    assert request.tags["platform/pending_records"] == "12"


def test_kafka_sensor_skips_when_nothing_is_pending_or_a_run_is_in_flight(kafka, resources, instance):
    kafka.ensure_topic(kafka.topic(TOPIC), 3)
    assert isinstance(_pending_request(instance, resources), dg.SkipReason)

    produce(kafka, [valid_event(NOON)])
    in_flight = DagsterRun(
        job_name=clickstream_ingest_job.name, run_id=make_new_run_id(), status=DagsterRunStatus.STARTED
    )
    instance.add_run(in_flight)
    skipped = _pending_request(instance, resources)
    assert isinstance(skipped, dg.SkipReason) and in_flight.run_id in skipped.skip_message


def test_a_range_whose_run_failed_is_requested_again(kafka, resources, instance, monkeypatch):
    produce(kafka, [valid_event(NOON, user=f"u{i}") for i in range(5)])
    first = _pending_request(instance, resources).run_requests[0]

    def fail(*_args, **_kwargs):
        raise RuntimeError("injected: lake unavailable")

    with monkeypatch.context() as patched, pytest.raises(Exception, match="injected"):
        patched.setattr(type(resources["lake"]), "append", fail)
        run_ingest(instance, resources, first)
    again = _pending_request(instance, resources).run_requests[0]
    assert again.run_config == first.run_config  # no gap: the same range, since nothing was committed
    assert run_ingest(instance, resources, again).success
    assert isinstance(_pending_request(instance, resources), dg.SkipReason)  # and no duplicate request


def test_partitions_sensor_requests_one_run_over_the_touched_dates(kafka, resources, instance):
    late = NOON - dt.timedelta(days=2)
    produce(kafka, [valid_event(NOON), valid_event(late, user="late")])
    assert run_ingest(instance, resources, _pending_request(instance, resources).run_requests[0]).success

    result, _ = tick(clickstream_partitions_sensor, instance, resources)
    # One run over the touched dates (a run process costs seconds to start), as a single-run range.
    (request,) = result.run_requests
    assert request.tags["dagster/asset_partition_range_start"] == late.date().isoformat()
    assert request.tags["dagster/asset_partition_range_end"] == NOON.date().isoformat()
    assert run_gold(instance, resources, request).success
    # The cursor is the last bronze materialization seen: the next tick has nothing new.
    again, _ = tick(clickstream_partitions_sensor, instance, resources, cursor=result.cursor)
    assert isinstance(again, dg.SkipReason)
