"""The clickstream sensors: the run requests they make and the cursors they keep."""

import datetime as dt
import json

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus, make_new_run_id

from assets.clickstream.names import CONSUMER_GROUP, TOPIC
from sensors.clickstream import clickstream_ingest_job, clickstream_kafka_sensor
from tests.clickstream_pipeline import produce, run_ingest, tick, valid_event

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
