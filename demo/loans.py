"""Realistic LendingClub rejected-loan applications for 2007-2012, in the export's exact format and with
its irregularities: amounts as `1000.00` or `"1,000"`, dates ISO or re-saved as `5/26/2007`, ratios as
`10%`, `-1%` or absurd, empty or `0` risk scores, `< 1 year` / `10+ years` / `n/a`, quoted titles.

    python -m demo.loans --years 2007 --out data/input/loan_applications   # $LANDING_ROOT/loan_applications
    python -m demo.loans --years 2008-2012 --bootstrap 127.0.0.1:9092 [--rate 500]

Applications come in date order (as in the export); a file is one year, the stream one JSON object per
application with the same nine text fields.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import random
from collections.abc import Iterator
from pathlib import Path

import orjson

from assets.loans.names import TOPIC
from assets.loans.parsing import HEADER

TITLES = [
    "debt_consolidation",
    "credit_card",
    "Wedding Covered but No Honeymoon",
    "home_improvement",
    "car",
    "small_business",
    "medical",
    "Pay Off credit Cards/Better credit score",
    "moving",
    "vacation",
    "major_purchase",
    "renewable_energy",
    "other",
    "I.T. Consulting, Operating Capital",
    'My "fresh start" loan',
]
STATES = [
    "CA",
    "NY",
    "TX",
    "FL",
    "IL",
    "NJ",
    "PA",
    "OH",
    "GA",
    "MD",
    "NM",
    "IN",
    "MA",
    "RI",
    "WA",
    "AR",
    "MN",
    "NC",
]
EMPLOYMENT = ["< 1 year", "1 year", *[f"{n} years" for n in range(2, 10)], "10+ years", "n/a"]
# Applications per year grow as LendingClub did; the argument scales them.
YEAR_WEIGHT = {2007: 1, 2008: 2, 2009: 3, 2010: 4, 2011: 5, 2012: 6}


def applications(years: list[int], per_year: int, seed: int = 1) -> Iterator[list[str]]:
    """Rows of nine text fields, in application-date order."""
    rng = random.Random(seed)
    for year in years:
        count = per_year * YEAR_WEIGHT.get(year, 6) // YEAR_WEIGHT[2008] if year != 2007 else per_year
        days = sorted(rng.randrange(365) for _ in range(count))
        for day in days:
            date = dt.date(year, 1, 1) + dt.timedelta(days=day)
            yield row(rng, date)


def row(rng: random.Random, date: dt.date) -> list[str]:
    amount = rng.choice([500, 1000, 1500, 2500, 3900, 5000, 9000, 10000, 12000, 15000, 25000, 35000])
    amount_text = f"{amount:,}" if rng.random() < 0.2 else f"{amount:.2f}"
    date_text = f"{date.month}/{date.day}/{date.year}" if rng.random() < 0.1 else date.isoformat()
    roll = rng.random()
    score = "" if roll < 0.04 else "0" if roll < 0.1 else str(int(rng.triangular(350, 850, 680)))
    roll = rng.random()
    dti = "-1%" if roll < 0.05 else f"{rng.uniform(1e3, 1e6):.2f}%" if roll < 0.07 else f"{rng.uniform(0, 45):.2f}%"
    dti = "10%" if rng.random() < 0.05 else dti
    title = rng.choice(TITLES) if rng.random() > 0.1 else ""
    return [
        amount_text,
        date_text,
        title,
        score,
        dti,
        f"{rng.randrange(10, 999):03d}xx",
        rng.choice(STATES),
        rng.choice(EMPLOYMENT),
        "0",
    ]


def write_csv(rows: Iterator[list[str]], path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    count = 0
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_MINIMAL)
        writer.writerow(HEADER)
        for r in rows:
            writer.writerow(r)
            count += 1
    tmp.rename(path)  # a landing file appears complete or not at all
    return count


def to_message(fields: list[str]) -> bytes:
    return orjson.dumps(dict(zip(HEADER, fields, strict=True)))


def produce(bootstrap: str, rows: Iterator[list[str]], topic: str = TOPIC, rate: float = 0, namespace: str = "") -> int:
    """Replay applications into Kafka, in order; `rate` caps messages per second (0: unthrottled)."""
    from resources import KafkaResource

    kafka = KafkaResource(bootstrap_servers=bootstrap, namespace=namespace)
    # One partition: the moving windows need one total arrival order.
    messages = ((None, to_message(fields)) for fields in rows)
    return kafka.send_all(topic, messages, partitions=1, rate=rate, max_in_flight_requests_per_connection=1)


def csv_text(rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    writer.writerows(rows)
    return out.getvalue()


def _years(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--years", default="2007", help="a year or a range, e.g. 2008-2012")
    parser.add_argument("--per-year", type=int, default=5000, help="applications in 2007; later years grow")
    parser.add_argument("--out", type=Path, help="write one CSV per year into this folder")
    parser.add_argument("--bootstrap", help="produce to Kafka at this address instead")
    parser.add_argument("--rate", type=float, default=0, help="messages per second (0: unthrottled)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    years = _years(args.years)
    if args.bootstrap:
        sent = produce(args.bootstrap, applications(years, args.per_year, args.seed), rate=args.rate)
        print(f"produced {sent} applications of {args.years} to {TOPIC}")
    if args.out:
        for year in years:
            path = args.out / f"loan_applications_{year}.csv"
            print(f"wrote {write_csv(applications([year], args.per_year, args.seed + year), path)} rows: {path}")


if __name__ == "__main__":
    main()
