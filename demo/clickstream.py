"""Realistic user-action events in the shape of a commerce app's tracking stream, with the irregular
messages real streams carry.

    python -m demo.clickstream --count 50000 [--bootstrap 127.0.0.1:9092] [--rate 2000]

Sessions walk a funnel (view -> click -> add_to_cart -> purchase); some events arrive days late; a
share of messages are duplicates (the same bytes sent again) and a share are broken in one of the
ways the quarantine knows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
from collections.abc import Iterator

from assets.clickstream.names import TOPIC

PRODUCTS = [
    (f"SKU-{1000 + i}", name)
    for i, name in enumerate(
        [
            "Wireless Mouse",
            "Bluetooth Headphones",
            "Mechanical Keyboard",
            "USB-C Hub",
            "27in Monitor",
            "Laptop Stand",
            "Webcam HD",
            "Desk Lamp",
            "Noise Cancelling Earbuds",
            "Portable SSD 1TB",
            "Smartwatch",
            "Phone Case",
            "Wireless Charger",
            "Gaming Chair",
            "Standing Desk",
            "Ergonomic Mouse Pad",
            "HDMI Cable",
            "Power Bank",
            "Bluetooth Speaker",
            "E-Reader",
        ]
    )
]
PLATFORM_WEIGHTS = {"web": 0.45, "mobile": 0.2, "ios": 0.2, "android": 0.15}
# Kinds of broken message, as produced by real clients and the quarantine reasons they must get.
IRREGULAR_KINDS = [
    "malformed_json",
    "invalid_utf8",
    "missing_timestamp",
    "missing_user",
    "wrong_type_user_id",
    "unknown_event_name",
    "unparsable_timestamp",
    "absurd_timestamp",
    "not_an_object",
    "unknown_platform",
]


def _iso(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event(ts: dt.datetime, name: str, user: str, platform: str | None, product: tuple[str, str] | None) -> dict:
    doc: dict = {"timestamp": _iso(ts), "event_name": name, "user_identifiers": {"id": user}}
    if platform is not None:
        doc["user_identifiers"]["platform"] = platform
    if product is not None:
        doc["product_information"] = {"name": product[1], "SKU": product[0]}
    return doc


def irregular(kind: str, base: dict) -> bytes:
    doc = json.loads(json.dumps(base))
    match kind:
        case "malformed_json":
            return json.dumps(doc).encode()[:-7]
        case "invalid_utf8":
            return json.dumps(doc).encode().replace(b"user_", b"\xff\xfeuser_")
        case "missing_timestamp":
            del doc["timestamp"]
        case "missing_user":
            del doc["user_identifiers"]["id"]
        case "wrong_type_user_id":
            doc["user_identifiers"]["id"] = 12345
        case "unknown_event_name":
            doc["event_name"] = "hover"
        case "unparsable_timestamp":
            doc["timestamp"] = "23/10/2023 25:61"
        case "absurd_timestamp":
            doc["timestamp"] = "1970-01-01T00:00:00Z"
        case "not_an_object":
            return json.dumps([doc]).encode()
        case "unknown_platform":
            doc["user_identifiers"]["platform"] = "smart-fridge"
    return json.dumps(doc).encode()


def generate(
    count: int,
    *,
    seed: int = 7,
    start: dt.datetime | None = None,
    span: dt.timedelta = dt.timedelta(hours=6),
    duplicate_rate: float = 0.01,
    irregular_rate: float = 0.005,
    late_rate: float = 0.01,
) -> Iterator[tuple[bytes, bytes]]:
    """`count` messages (key, value): events spread over `span` from `start` (default: `span` ago)."""
    rng = random.Random(seed)
    start = start or dt.datetime.now(dt.UTC) - span
    users = [f"user_{rng.randrange(10_000, 99_999)}" for _ in range(max(10, count // 25))]
    platforms, weights = list(PLATFORM_WEIGHTS), list(PLATFORM_WEIGHTS.values())
    step = span / max(count, 1)
    emitted, session, session_id = 0, [], ""
    recent: list[tuple[bytes, bytes]] = []
    while emitted < count:
        if not session:
            user, platform, product = rng.choice(users), rng.choices(platforms, weights)[0], rng.choice(PRODUCTS)
            funnel = ["view"] + ["click"] * (rng.random() < 0.5)
            if len(funnel) == 2 and rng.random() < 0.4:
                funnel.append("add_to_cart")
                if rng.random() < 0.6:
                    funnel.append("purchase")
            session_id = f"{rng.getrandbits(128):032x}"
            session = [(name, user, platform if rng.random() > 0.02 else None, product) for name in funnel]
        name, user, platform, product = session.pop(0)
        ts = start + step * emitted
        if rng.random() < late_rate:
            ts -= dt.timedelta(days=rng.randint(1, 3), minutes=rng.randint(0, 600))
        doc = event(ts, name, user, platform, product if rng.random() > 0.03 else None)
        # What real clients send beyond the contract's fields (silver ignores what it does not know).
        doc["context"] = {"session_id": session_id, "page": f"/p/{product[0].lower()}"}
        roll = rng.random()
        if roll < duplicate_rate and recent:
            message = rng.choice(recent)
        elif roll < duplicate_rate + irregular_rate:
            message = (user.encode(), irregular(rng.choice(IRREGULAR_KINDS), doc))
        else:
            message = (user.encode(), json.dumps(doc, separators=(",", ":")).encode())
            recent = (recent + [message])[-100:]
        emitted += 1
        yield message


def produce(bootstrap: str, topic: str, messages: Iterator[tuple[bytes, bytes]], count: int, rate: float = 0) -> int:
    """Send messages to Kafka with a progress bar; `rate` caps messages per second (0: unthrottled)."""
    from resources import KafkaResource

    return KafkaResource(bootstrap_servers=bootstrap).send_all(topic, messages, rate=rate, progress_total=count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default=TOPIC)
    parser.add_argument("--rate", type=float, default=0, help="messages per second (0: unthrottled)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    produce(args.bootstrap, args.topic, generate(args.count, seed=args.seed), args.count, args.rate)


if __name__ == "__main__":
    main()
