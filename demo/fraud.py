"""Realistic BNPL checkout risk events and buyer master-data changes, with the irregular cases real
traffic has.

    python -m demo.fraud --events 20000 --buyers 2000 [--bootstrap 127.0.0.1:9092] [--rate 0]
    python -m demo.fraud --history-days 365 --buyers 50 --landing-root data/input   # files for fraud_import_job

Buyers (companies) are onboarded before the window and then change over time: credit rating, total
cost, risk score, risk level and approval status (history kept, SCD type 2) and name, email, contact
person and address (overwritten, SCD type 1); some changes arrive late, after changes that happened
later. Checkout events carry an event id; some are sent twice or three times, retried with a new
delivery id, or carry negative or absurd amounts, unknown currencies or markets, future or missing
timestamps, unknown buyers, or are not JSON at all.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from assets.fraud.names import CHANGES_TOPIC, EVENTS_TOPIC

MARKETS = {"DE": ["EUR"], "AT": ["EUR"], "NL": ["EUR"], "FR": ["EUR"], "SE": ["SEK", "EUR"], "GB": ["GBP"]}
MARKET_WEIGHTS = [0.4, 0.1, 0.15, 0.15, 0.1, 0.1]
RATINGS = ["AAA", "AA", "A", "BBB", "BB", "B", "CCC"]
APPROVAL = ["approved", "approved", "approved", "pending", "rejected"]
PAYMENT_METHODS = ["invoice", "installments", "direct_debit"]
# Irregular kinds and the quarantine reason each must get (without the contract's words that follow it, see
# assets/fraud/contracts.py `reason_code`); duplicates and retries are not irregular
# values: they must collapse into one decision row.
IRREGULAR_REASONS = {
    "negative_amount": "invalid_value:order_amount",
    "absurd_amount": "invalid_value:order_amount",
    "unknown_currency": "unknown_value:currency=XTS",
    "unknown_market": "unknown_value:market=ZZ",
    "future_timestamp": "invalid_value:occurred_at",
    "missing_timestamp": "missing_field:occurred_at",
    "unknown_buyer": "unknown_buyer",
    "malformed_json": "malformed_json",
}
REPEAT_KINDS = ["duplicate", "retry"]


def iso(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def risk_level(score: int) -> str:
    return "low" if score < 400 else "medium" if score < 700 else "high"


@dataclass
class Buyer:
    buyer_id: str
    market: str
    state: dict = field(default_factory=dict)


def buyer_snapshot(rng: random.Random, buyer: Buyer, changed_at: dt.datetime, change: str = "onboarding") -> dict:
    """The buyer's full record after a change (a change stream of after-images, like CDC)."""
    s = buyer.state
    if change in ("onboarding", "risk"):
        s["risk_score"] = rng.randint(50, 950)
        s["risk_level"] = risk_level(s["risk_score"])
        s["credit_rating"] = rng.choice(RATINGS)
        s["total_cost"] = round(rng.uniform(0, 250_000), 2)
        s["approval_status"] = rng.choice(APPROVAL)
    if change in ("onboarding", "contact"):
        n = rng.randint(1, 99_999)
        s["name"] = f"Company {buyer.buyer_id[-5:]} GmbH"
        s["email"] = f"finance{n}@{buyer.buyer_id.lower()}.example"
        s["contact_person"] = f"Contact {n}"
        s["address"] = f"{rng.randint(1, 200)} Market Street, {buyer.market}-{rng.randint(10000, 99999)}"
    return {
        "change_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "buyer_id": buyer.buyer_id,
        "changed_at": iso(changed_at),
        "source": "crm",
        **s,
    }


def make_buyers(count: int, seed: int = 5) -> list[Buyer]:
    rng = random.Random(seed)
    return [Buyer(f"B{100000 + i}", rng.choices(list(MARKETS), MARKET_WEIGHTS)[0]) for i in range(count)]


def generate_changes(
    buyers: list[Buyer],
    *,
    start: dt.datetime,
    span: dt.timedelta,
    changes_per_buyer: float = 2.0,
    late_rate: float = 0.1,
    seed: int = 5,
) -> list[tuple[bytes, bytes]]:
    """Onboarding a day before `start`, then changes within the window, in arrival order: a share of
    them arrive only after a later change of the same buyer (late, out of event-time order)."""
    rng = random.Random(seed)
    stream: list[tuple[float, dict]] = []
    for buyer in buyers:
        onboarded = start - dt.timedelta(days=1, seconds=rng.randint(0, 86_000))
        stream.append((onboarded.timestamp(), buyer_snapshot(rng, buyer, onboarded)))
        times = sorted(start + span * rng.random() for _ in range(rng.randint(0, int(2 * changes_per_buyer))))
        for at in times:
            doc = buyer_snapshot(rng, buyer, at, rng.choice(["risk", "risk", "contact"]))
            arrival = at.timestamp()
            if rng.random() < late_rate:
                arrival += rng.uniform(0.2, 1.0) * span.total_seconds()  # arrives after later changes
            stream.append((arrival, doc))
    stream.sort(key=lambda item: item[0])
    return [(d["buyer_id"].encode(), json.dumps(d, separators=(",", ":")).encode()) for _, d in stream]


def checkout_event(rng: random.Random, buyer: Buyer, at: dt.datetime) -> dict:
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "delivery_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "occurred_at": iso(at),
        "sent_at": iso(at + dt.timedelta(milliseconds=rng.randint(5, 900))),
        "market": buyer.market,
        "buyer_id": buyer.buyer_id,
        "merchant_id": f"M{rng.randint(1000, 1400)}",
        "order_id": f"O{rng.getrandbits(40):012x}",
        "order_amount": round(rng.lognormvariate(5.5, 1.1), 2),
        "currency": rng.choice(MARKETS.get(buyer.market, ["EUR"])),
        "payment_method": rng.choice(PAYMENT_METHODS),
        "payment_terms_days": rng.choice([14, 30, 60]),
        "line_items": rng.randint(1, 25),
        "channel": rng.choice(["online", "online", "b2b_portal", "api"]),
    }


def irregular_event(rng: random.Random, kind: str, doc: dict, now: dt.datetime) -> bytes:
    doc = dict(doc)
    match kind:
        case "negative_amount":
            doc["order_amount"] = -abs(doc["order_amount"])
        case "absurd_amount":
            doc["order_amount"] = 9.9e12
        case "unknown_currency":
            doc["currency"] = "XTS"
        case "unknown_market":
            doc["market"] = "ZZ"
        case "future_timestamp":
            doc["occurred_at"] = iso(now + dt.timedelta(days=rng.randint(1, 400)))
        case "missing_timestamp":
            del doc["occurred_at"]
        case "unknown_buyer":
            doc["buyer_id"] = f"B9{rng.randint(0, 99999):05d}"
        case "malformed_json":
            return json.dumps(doc).encode()[:-9]
    return json.dumps(doc, separators=(",", ":")).encode()


def generate_events(
    count: int,
    buyers: list[Buyer],
    *,
    start: dt.datetime,
    span: dt.timedelta,
    seed: int = 7,
    repeat_rate: float = 0.03,
    irregular_rate: float = 0.02,
    now: dt.datetime | None = None,
) -> Iterator[tuple[bytes, bytes, str]]:
    """`count` messages (key, value, kind) spread over `span`; kind is "valid", "duplicate" (the same
    bytes again, possibly a third time), "retry" (same event id, new delivery id) or an irregular kind."""
    rng = random.Random(seed)
    now = now or dt.datetime.now(dt.UTC)
    step = span / max(count, 1)
    recent: list[dict] = []
    for i in range(count):
        buyer = rng.choice(buyers)
        doc = checkout_event(rng, buyer, start + step * i)
        roll = rng.random()
        if roll < repeat_rate and recent:
            previous = rng.choice(recent)
            if rng.random() < 0.5:
                yield (
                    previous["buyer_id"].encode(),
                    json.dumps(previous, separators=(",", ":")).encode(),
                    "duplicate",
                )
            else:
                retry = dict(previous, delivery_id=str(uuid.UUID(int=rng.getrandbits(128))))
                yield retry["buyer_id"].encode(), json.dumps(retry, separators=(",", ":")).encode(), "retry"
        elif roll < repeat_rate + irregular_rate:
            kind = rng.choice(list(IRREGULAR_REASONS))
            yield buyer.buyer_id.encode(), irregular_event(rng, kind, doc, now), kind
        else:
            recent = (recent + [doc])[-50:]
            yield buyer.buyer_id.encode(), json.dumps(doc, separators=(",", ":")).encode(), "valid"


def history(
    buyers: list[Buyer], *, end: dt.date, days: int = 365, seed: int = 8, changes_per_buyer: int = 6
) -> tuple[list[dict], list[tuple[dict, str]]]:
    """A history of `days` dates ending with `end`, as a team would export it: every buyer onboarded the day
    before, then changing three to `changes_per_buyer` times (risk and contact changes, buyer by buyer); and
    one to four checkouts a day, with empty days among them (every seventh day and a fortnight in spring),
    some sent twice and some irregular. Returns the changes and the checkouts with their kind (as
    `generate_events` names them)."""
    rng = random.Random(seed)
    first = dt.datetime.combine(end - dt.timedelta(days=days - 1), dt.time(), dt.UTC)
    span = dt.timedelta(days=days)
    changes = []
    for buyer in buyers:
        changes.append(buyer_snapshot(rng, buyer, first - dt.timedelta(days=1, seconds=rng.randint(0, 86_000))))
        for at in sorted(first + span * rng.random() for _ in range(rng.randint(3, changes_per_buyer))):
            changes.append(buyer_snapshot(rng, buyer, at, rng.choice(["risk", "risk", "contact"])))
    events: list[tuple[dict, str]] = []
    for day in range(days):
        if day % 7 == 3 or 90 <= day < 104:
            continue
        for _ in range(rng.randint(1, 4)):
            at = first + dt.timedelta(days=day, seconds=rng.randrange(0, 86_400))
            doc = checkout_event(rng, rng.choice(buyers), at)
            roll = rng.random()
            if roll < 0.03:
                kind = rng.choice(["negative_amount", "unknown_currency", "unknown_market", "missing_timestamp"])
                events.append((json.loads(irregular_event(rng, kind, doc, at)), kind))
                continue
            events.append((doc, "valid"))
            if roll > 0.97:
                events.append((dict(doc), "duplicate"))
    return changes, events


def write_history(landing, folder: str, changes: list[dict], events: list[dict]) -> list[str]:
    """Land a history for `fraud_import_job` through `landing` (a LandingResource): the changes as a CSV
    export, the checkouts half as NDJSON, half as CSV. Returns the keys written."""
    import csv
    import io

    def as_csv(docs: list[dict]) -> bytes:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=sorted({k for d in docs for k in d}))
        writer.writeheader()
        writer.writerows(docs)
        return text.getvalue().encode()

    half = len(events) // 2
    files = {
        f"{folder}/buyer_changes/crm_export.csv": as_csv(changes),
        f"{folder}/checkout_events/part-1.ndjson": b"".join(json.dumps(e).encode() + b"\n" for e in events[:half]),
        f"{folder}/checkout_events/part-2.csv": as_csv(events[half:]),
    }
    for key, data in files.items():
        landing.put(data, key)
    return list(files)


def produce(kafka, topic: str, messages, rate: float = 0, partitions: int = 3) -> int:
    """Send (key, value, ...) messages to the logical `topic` of `kafka` (a KafkaResource); `rate` caps
    messages per second (0: as fast as possible)."""
    return kafka.send_all(topic, ((key, value) for key, value, *_ in messages), partitions=partitions, rate=rate)


def main() -> None:
    from resources import KafkaResource

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--buyers", type=int, default=2_000)
    parser.add_argument("--hours", type=float, default=6, help="event-time window ending now")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--rate", type=float, default=0, help="events per second (0: unthrottled)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--history-days", type=int, default=0, help="write a history of this many days instead")
    parser.add_argument("--landing-root", default="data/input", help="where --history-days writes (LANDING_ROOT)")
    args = parser.parse_args()
    if args.history_days:
        from resources import LandingResource

        end = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
        changes, events = history(make_buyers(args.buyers, seed=args.seed), end=end, days=args.history_days)
        keys = write_history(LandingResource(root=args.landing_root), "fraud", changes, [e for e, _ in events])
        print(f"{len(changes)} buyer changes and {len(events)} checkouts in {args.landing_root}: {', '.join(keys)}")
        return
    kafka = KafkaResource(bootstrap_servers=args.bootstrap)
    span = dt.timedelta(hours=args.hours)
    start = dt.datetime.now(dt.UTC) - span
    buyers = make_buyers(args.buyers, seed=args.seed)
    changes = generate_changes(buyers, start=start, span=span, seed=args.seed)
    print(f"{produce(kafka, CHANGES_TOPIC, changes)} buyer changes -> {CHANGES_TOPIC}")
    events = generate_events(args.events, buyers, start=start, span=span, seed=args.seed)
    print(f"{produce(kafka, EVENTS_TOPIC, events, rate=args.rate)} checkout risk events -> {EVENTS_TOPIC}")


if __name__ == "__main__":
    main()
