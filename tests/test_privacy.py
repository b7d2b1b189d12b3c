"""No personal data in what operators see: rows full of personal data fail every check they can, in each
domain, through the real assets on a real Dagster instance; the alert sensors then write to an alert log
and post to a real HTTP webhook on loopback. None of the personal values may appear in any event record
of the instance (metadata, run logs), the alert log or a webhook body; the reasons must still be there."""

import csv
import datetime as dt
import io
import json
import random
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster_shared.serdes import serialize_value

from assets.fraud.contracts import reason_code
from assets.fraud.names import CHANGES_TOPIC, EVENTS_TOPIC, QUARANTINE_CHANGES
from assets.loans import raw as loans_raw
from assets.loans.names import LANDING_DIR
from assets.loans.parsing import HEADER
from assets.warehouse import raw, staging
from demo.clickstream import event
from demo.fraud import Buyer, buyer_snapshot, checkout_event
from demo.fraud import produce as produce_fraud
from resources import AlertsResource, LakeResource, LandingResource, PostgresResource, PseudonymizerResource
from resources.privacy import masked_failure_cases, masked_rows
from sensors.alerts import asset_check_alert_sensor, run_failure_alert_sensor
from sensors.loans import loans_landing_sensor
from tests import clickstream_pipeline as clickstream
from tests import test_fraud as fraud
from tests import test_loans as loans
from tests.test_alerts import Receiver, log_lines

UI = "http://dagster.example:3000"
NOON = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
DAY = NOON.date().isoformat()

# One person, every kind of personal value; none of these strings occurs by chance in ids or hashes.
FIRST, LAST = "Annegret", "Vollmer-Quist"
NAME = f"{FIRST} {LAST}"
EMAIL = "annegret.vollmer@example.org"
PHONE = "+49 151 23456789"
STREET = "Lindenallee 42"
ZIP = "W1A 0AX"
IBAN = "DE89370400440532013000"
OTHER_EMAIL = "kasimir.oberholzer@example.net"


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def send_alerts(instance: dg.DagsterInstance, defs: dg.Definitions, alerts: AlertsResource) -> None:
    """One tick of the check alert sensor, and the run-failure sensor for every failed run."""
    context = dg.build_sensor_context(instance=instance, definitions=defs, resources={"alerts": alerts})
    asset_check_alert_sensor(context)
    for run in instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE])):
        (failure,) = [e.dagster_event for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)]
        run_failure_alert_sensor(
            dg.build_run_status_sensor_context(
                sensor_name="run_failure_alert_sensor",
                dagster_event=failure,  # type: ignore[arg-type]
                dagster_instance=instance,
                dagster_run=run,
                resources={"alerts": alerts},
            ).for_run_failure()
        )


def event_log_text(instance: dg.DagsterInstance) -> str:
    """Every event record of every run, serialized: check and materialization metadata, run logs, errors."""
    events = [serialize_value(entry) for run in instance.get_runs() for entry in instance.all_logs(run.run_id)]
    assert events, "no event records: nothing ran"
    return "\n".join(events)


def operator_channels(instance: dg.DagsterInstance, log: Path, receiver: Receiver) -> dict[str, str]:
    """Everything an operator can read: the instance's event log, the alert log, the webhook bodies."""
    return {
        "event log": event_log_text(instance),
        "alert log": log.read_text() if log.exists() else "",
        "webhook": "\n".join(json.dumps(body) for body in receiver.bodies),
    }


def assert_nothing_personal(channels: dict[str, str], personal: list[str]) -> None:
    for channel, text in channels.items():
        leaked = [value for value in personal if value.casefold() in text.casefold()]
        assert not leaked, f"{leaked} in the {channel}"


def check_alerts(log: Path, receiver: Receiver, check: str) -> list[dict]:
    alerts = [row for row in log_lines(log) if row["type"] == "alert" and row.get("check") == check]
    assert alerts, f"no alert for {check}: {[row.get('check') for row in log_lines(log)]}"
    assert any(check in body["text"] for body in receiver.bodies)
    return alerts


def test_clickstream_quarantine_and_alerts_show_no_personal_data(kafka, resources, instance, receiver, tmp_path):
    person = event(NOON, "click", EMAIL, "web", ("SKU-1", f"Gift for {NAME}, {STREET}"))
    bad = [
        json.dumps({**person, "event_name": "stalk"}).encode(),  # unknown_value:event_name
        json.dumps({**person, "user_identifiers": {"id": PHONE, "platform": "fax"}}).encode(),  # unknown platform
        json.dumps(person).encode()[:-5],  # malformed_json
        json.dumps(f"{NAME}, {STREET}, {ZIP}").encode(),  # not_a_json_object
        json.dumps(person).encode().replace(b"Gift", b"\xff\xfeGift"),  # invalid_utf8
        json.dumps({**person, "timestamp": "when Annegret called"}).encode(),  # unparsable_timestamp
    ]
    good = [clickstream.valid_event(NOON + dt.timedelta(seconds=i), user=f"user_{i}") for i in range(10)]
    good.append(json.dumps(event(NOON, "view", OTHER_EMAIL, "web", ("SKU-2", "Mug"))).encode())
    clickstream.produce(kafka, [*bad, *good])
    dates = clickstream.run_pipeline(instance, resources)
    assert DAY in dates  # and the broker's date, for the messages without a usable timestamp
    for date in dates:  # the whole-date checks of a rebuild, samples included
        clickstream.run_date(instance, resources, date)

    log = tmp_path / "alerts.jsonl"
    alerts = AlertsResource(log_path=str(log), webhook_url=receiver.url, ui_url=UI)
    defs = dg.Definitions(
        assets=clickstream.ASSETS,
        asset_checks=clickstream.CHECKS,
        sensors=[asset_check_alert_sensor],
        resources={**resources, "alerts": alerts},
    )
    send_alerts(instance, defs, alerts)
    channels = operator_channels(instance, log, receiver)
    assert_nothing_personal(channels, [EMAIL, PHONE, FIRST, LAST, STREET, ZIP, OTHER_EMAIL])

    # The reasons, the coordinates and a fingerprint of each payload are still there.
    rate_alerts = check_alerts(log, receiver, "quarantine_rate_check")
    assert all("quarantine_rate=" in a["reason"] and "reasons=" in a["reason"] for a in rate_alerts)
    assert any("sample=[" in a["reason"] for a in rate_alerts)  # the rebuild's, with its sample counted
    key = dg.AssetCheckKey(dg.AssetKey("quarantine_clickstream_events"), "quarantine_rate_check")
    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=50)
    samples = [
        r.evaluation.metadata["sample"].value for r in history if r.evaluation and "sample" in r.evaluation.metadata
    ]
    rows = [row for sample in samples for row in sample]  # type: ignore[union-attr]
    reasons = {row["reason"] for row in rows}
    for reason in (
        "unknown_value:event_name=stalk",
        "unknown_value:platform=fax",
        "malformed_json",
        "not_a_json_object",
    ):
        assert reason in reasons, reasons
    assert all(row["topic"] and row["offset"] and " bytes, hmac:" in row["payload"] for row in rows)


def test_warehouse_staging_checks_and_alerts_show_no_personal_data(instance, receiver, tmp_path):
    lake_resources = {
        "lake": LakeResource(root=str(tmp_path / "lake")),
        "landing": LandingResource(root=str(tmp_path / "input")),
        "postgres": PostgresResource(port=1),  # the landing assets never connect
        "pseudonymizer": PseudonymizerResource(key="test-key"),
    }
    base = {
        "customer_id": "1",
        "first_name": FIRST,
        "last_name": LAST,
        "email": EMAIL,
        "phone": PHONE,
        "street": STREET,
        "postcode": ZIP,
        "city": "London",
        "country": "GB",
        "created_at": f"{DAY} 09:00:00+00",
        "updated_at": f"{DAY} 09:00:00+00",
        "iban": IBAN,  # a column the contract does not know: schema drift
    }
    rows = [
        {**base, "country": "GBR"},  # quarantined: breaks the contract (a two-letter ISO code)
        {**base, "customer_id": "2", "city": ""},  # quarantined: missing city
        {**base, "customer_id": "3", "updated_at": f"{NAME} changed it"},  # quarantined: invalid updated_at
        {**base, "customer_id": "4", "email": OTHER_EMAIL, "city": ""},
    ]
    folder = tmp_path / "input" / "customers" / DAY
    folder.mkdir(parents=True)
    with open(folder / "customers.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(base))
        writer.writeheader()
        writer.writerows(rows)
    assets = [a for a in [*raw.raw_assets, *staging.staging_assets] if a.key.path[0].endswith("customers")]
    result = dg.materialize(
        assets,
        selection=["raw_landing_customers", "stg_customers"],
        partition_key=DAY,
        resources=lake_resources,
        instance=instance,
        raise_on_error=False,
    )
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    # Every row breaks the contract: quarantined with the contract's words, nothing staged to fail the schema.
    assert checks["stg_customers_schema_check"].passed and not checks["stg_customers_quarantine_check"].passed
    assert checks["stg_customers_quarantine_check"].metadata["quarantined"].value == 4
    assert not checks["schema_drift_check"].passed

    log = tmp_path / "alerts.jsonl"
    alerts = AlertsResource(log_path=str(log), webhook_url=receiver.url, ui_url=UI)
    defs = dg.Definitions(assets=assets, resources={**lake_resources, "alerts": alerts})
    send_alerts(instance, defs, alerts)
    channels = operator_channels(instance, log, receiver)
    assert_nothing_personal(channels, [FIRST, LAST, EMAIL, PHONE, STREET, ZIP, IBAN, OTHER_EMAIL])

    check_alerts(log, receiver, "stg_customers_quarantine_check")
    sample = checks["stg_customers_quarantine_check"].metadata["sample"].value
    assert sorted(row["reason"] for row in sample) == [  # type: ignore[union-attr]
        "breaks the contract: city (required, text): missing",
        "breaks the contract: city (required, text): missing",
        "breaks the contract: country (required, text, a two-letter ISO code): got 'GBR'",
        "breaks the contract: updated_at (required, a timestamp): got a value that is not a timestamp",
    ]
    assert all(row["source"] == "landing" and row["processing_date"] == DAY for row in sample)  # type: ignore[union-attr]
    assert "iban" in channels["event log"]  # the drifted column is named; its values are not shown


def test_fraud_quarantine_and_alerts_show_no_personal_data(kafka_broker, instance, receiver, tmp_path):
    resources = fraud.make_resources(kafka_broker, tmp_path)
    rng = random.Random(1)
    buyer = Buyer("B100001", "DE")
    onboarding = buyer_snapshot(rng, buyer, NOON - dt.timedelta(hours=2))
    contact = {"name": f"{LAST} Feinkost GmbH", "email": EMAIL, "contact_person": NAME, "address": f"{STREET}, {ZIP}"}
    changes = [
        {**onboarding, **contact},
        {**onboarding, **contact, "change_id": "c-2", "risk_level": "extreme"},  # unknown_value:risk_level=extreme
        {**onboarding, **contact, "change_id": "c-3", "buyer_id": None},  # missing_field:buyer_id
    ]
    messages = [(buyer.buyer_id.encode(), json.dumps(c).encode()) for c in changes]
    messages.append((b"x", json.dumps({**contact, "phone": PHONE}).encode()[:-3]))  # malformed_json
    produce_fraud(resources["kafka"], CHANGES_TOPIC, messages)
    events = [checkout_event(rng, buyer, NOON + dt.timedelta(minutes=i)) for i in range(8)]
    bad = [
        json.dumps({**events[0], "buyer_id": "B999999", "note": f"call {NAME} at {PHONE}"}).encode(),  # unknown buyer
        json.dumps({**events[1], "buyer_email": EMAIL}).encode()[:-4],  # malformed_json
        json.dumps(f"{NAME}, {STREET}").encode(),  # not_a_json_object
    ]
    produce_fraud(
        resources["kafka"],
        EVENTS_TOPIC,
        [(buyer.buyer_id.encode(), v) for v in [*bad, *(json.dumps(e).encode() for e in events[2:])]],
    )
    fraud.run_pipeline(instance, resources)
    fraud.run_date(instance, resources, DAY)

    log = tmp_path / "alerts.jsonl"
    alerts = AlertsResource(log_path=str(log), webhook_url=receiver.url, ui_url=UI)
    defs = dg.Definitions(
        assets=[*fraud.BASE_ASSETS, fraud.fraud_decision_partition], resources={**resources, "alerts": alerts}
    )
    send_alerts(instance, defs, alerts)
    channels = operator_channels(instance, log, receiver)
    assert_nothing_personal(channels, [FIRST, LAST, EMAIL, PHONE, STREET, ZIP])

    (rate_alert, *_) = check_alerts(log, receiver, "quarantine_rate_check")
    assert "quarantine_rate=" in rate_alert["reason"] and "unknown_buyer" in rate_alert["reason"]
    for reason in ("unknown_buyer", "malformed_json", "not_a_json_object"):
        assert reason in channels["event log"], reason
    # The quarantined changes keep their originals (replayable) in the lake, not in the event log.
    kept = fraud.query(resources["lake"], QUARANTINE_CHANGES, "SELECT reason, decode(payload) FROM t ORDER BY 1")
    assert [reason_code(r) for r, _ in kept] == [
        "malformed_json",
        "missing_field:buyer_id",
        "unknown_value:risk_level=extreme",
    ]
    assert all(EMAIL in payload for _, payload in kept)
    assert fraud.query(resources["lake"], fraud.SCD1, "SELECT count(*) FROM t") == [(1,)]


def test_loans_quarantine_logs_and_failures_show_no_personal_data(lake, warehouse, instance, receiver, tmp_path):
    title = f"Car for {NAME}, call {PHONE}"
    rows = [
        ["1000.00", "2007-05-26", title, "693", "10%", ZIP, "NM", "4 years", "0"],
        ["2500.00", f"when {FIRST} is back", title, "600", "5%", ZIP, "CA", "1 year", "0"],  # unparsable_date
        ["lots", "2007-06-01", f"{EMAIL}", "600", "5%", ZIP, "CA", "1 year", "0"],  # invalid_amount
        [f"{STREET}", EMAIL, PHONE],  # not nine fields
    ]

    def land(name: str, lines: list[list[str]]) -> None:
        text = io.StringIO()
        csv.writer(text).writerows(lines)
        landing.put(text.getvalue().encode(), f"{LANDING_DIR}/{name}")

    landing = LandingResource(root=str(tmp_path / "input"))
    land("applications_2007.csv", [HEADER, *rows])
    resources = {"lake": lake, "warehouse": warehouse, "landing": landing}
    assert getattr(loans.tick(loans_landing_sensor, instance, resources), "run_requests", None)
    loans.run(instance, resources, 1, loans.BATCH_ASSETS)
    text = event_log_text(instance)
    for reason in ("unparsable_date", "invalid_amount", "wrong_field_count"):
        assert reason in text, reason

    # A file without its header line: the run fails, and its error does not quote the applicant's row.
    land("applications_2007_more.csv", rows[:1])
    assets = [a for a in loans.loan_assets(1) if a is not loans_raw.bronze_loan_applications]
    failed = dg.materialize(
        assets, selection=loans.BATCH_ASSETS, resources=resources, instance=instance, raise_on_error=False
    )
    assert not failed.success
    log = tmp_path / "alerts.jsonl"
    alerts = AlertsResource(log_path=str(log), webhook_url=receiver.url, ui_url=UI)
    send_alerts(instance, dg.Definitions(assets=assets, resources={**resources, "alerts": alerts}), alerts)
    alerts = [row for row in log_lines(log) if row["type"] == "alert"]
    (failure,) = [row for row in alerts if not row.get("check")]
    assert "unexpected header of 9 fields" in failure["reason"]
    # and the first run's quarantine rate (3 of 4 rows) warned: two alerts, each posted once
    assert [row["check"] for row in alerts if row.get("check")] == ["quarantine_rate_check"]
    assert len(receiver.bodies) == 2
    assert_nothing_personal(operator_channels(instance, log, receiver), [FIRST, LAST, EMAIL, PHONE, STREET, ZIP])


def test_masking_keeps_reasons_and_coordinates_and_hides_personal_values():
    frame = pd.DataFrame(
        {
            "topic": ["t"],
            "offset": [7],
            "reason": ["missing_field:city"],
            "email": [EMAIL],
            "postcode": [None],
            "payload": [json.dumps({"email": EMAIL}).encode()],
        }
    )
    (row,) = masked_rows(frame, personal=("email", "postcode"))
    assert row["topic"] == "t" and row["offset"] == "7" and row["reason"] == "missing_field:city"
    assert row["email"].startswith("masked:") and row["postcode"] is None
    size = len(frame["payload"][0])
    assert row["payload"].startswith(f"{size} bytes, hmac:") and EMAIL not in json.dumps(row)
    assert masked_rows(frame, ("email",))[0]["email"] == row["email"]  # the same value, the same mask
    cases = pd.DataFrame(
        {"column": ["postcode", "country"], "check": ["str_length", "isin"], "failure_case": [ZIP, "GBR"]}
    )
    masked = masked_failure_cases(cases, personal=("postcode",))
    assert masked[0]["failure_case"].startswith("masked:") and masked[1]["failure_case"] == "GBR"
