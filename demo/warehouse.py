"""A generator of realistic commerce data for the source database and the landing folder.

Shops in several cities and countries, a product catalogue whose prices change, customers who come
back and move house, orders with positions that are purchased, shipped and delivered (or cancelled,
or never delivered), and rows updated after they were first written. Every row version carries its
`updated_at`; `publish` replays the versions of a time window into PostgreSQL (latest state per key,
as an application would) and into the landing files (every version, as a daily export would).

    python -m demo.warehouse --orders 10000 --days 10   # uses POSTGRES_* and LANDING_ROOT
"""

from __future__ import annotations

import argparse
import io
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd

from assets.warehouse.contracts import ENTITIES

PG_TYPES = {"int": "bigint", "decimal": "numeric(12,2)", "text": "text", "timestamp": "timestamptz"}
SHOPS = [  # name, city, country, channel
    ("Mitte Flagship", "Berlin", "DE", "own"),
    ("Kreuzberg", "Berlin", "DE", "own"),
    ("Marienplatz", "Munich", "DE", "own"),
    ("Hafen", "Hamburg", "DE", "franchise"),
    ("Rivoli", "Paris", "FR", "own"),
    ("Presqu'ile", "Lyon", "FR", "franchise"),
    ("Graben", "Vienna", "AT", "own"),
    ("Bahnhofstrasse", "Zurich", "CH", "franchise"),
    ("Dam", "Amsterdam", "NL", "own"),
    ("Duomo", "Milan", "IT", "own"),
]
CITIES = [(c, k) for _, c, k, _ in SHOPS]
FIRST = ["Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hugo", "Ines", "Jonas", "Lea", "Marco"]
LAST = ["Schmidt", "Martin", "Rossi", "Bauer", "Dubois", "de Vries", "Huber", "Keller", "Weber", "Moreau"]
STREETS = ["Hauptstrasse", "Rue de la Paix", "Via Roma", "Kerkstraat", "Bahnhofweg", "Ringstrasse"]
CATEGORIES = ["books", "electronics", "garden", "kitchen", "toys", "fashion"]


def source_ddl() -> str:
    """The source schema: one table per entity, keyed by its business key."""
    statements = ["CREATE SCHEMA IF NOT EXISTS commerce"]
    for entity in ENTITIES.values():
        cols = ", ".join(
            f"{c} {PG_TYPES[col.type]}{' NOT NULL' if col.required else ''}" for c, col in entity.columns.items()
        )
        statements.append(f"CREATE TABLE IF NOT EXISTS commerce.{entity.name} ({cols}, PRIMARY KEY ({entity.key}))")
    return ";\n".join(statements)


def generate(n_orders: int, start: str = "2026-01-01", days: int = 10, seed: int = 7) -> dict[str, pd.DataFrame]:
    """Every version of every row, for `n_orders` orders purchased over `days` days from `start`."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start, tz="UTC")
    hours = lambda values: pd.to_timedelta(np.asarray(values, dtype=float), unit="h")  # noqa: E731

    shops = pd.DataFrame(SHOPS, columns=["shop_name", "city", "country", "channel"])
    shops.insert(0, "shop_id", np.arange(1, len(shops) + 1))
    shops["updated_at"] = t0 + pd.Timedelta(minutes=5)

    # A fifth of the catalogue is never ordered (it must load all the same).
    n_products = max(25, min(2500, n_orders // 40))
    n_ordered = n_products * 4 // 5
    products = pd.DataFrame(
        {
            "product_id": np.arange(1, n_products + 1),
            "product_name": [f"Product {i}" for i in range(1, n_products + 1)],
            "category": rng.choice(CATEGORIES, n_products),
            "price": rng.uniform(2, 200, n_products).round(2),
            "updated_at": t0 + pd.Timedelta(minutes=10),
        }
    )
    repriced = products.sample(frac=0.1, random_state=seed).assign(
        price=lambda f: (f["price"] * rng.uniform(0.8, 1.2, len(f))).round(2),
        updated_at=lambda f: t0 + hours(rng.uniform(1, days * 24, len(f))),
    )

    # Orders: customers drawn with a skew, so many come back; shops and outcomes at random.
    n_customers = max(10, n_orders // 4)
    orders = pd.DataFrame(
        {
            "order_id": np.arange(1, n_orders + 1),
            "customer_id": (n_customers * rng.random(n_orders) ** 2).astype(np.int64) + 1,
            "shop_id": rng.integers(1, len(shops) + 1, n_orders),
            "purchased_at": (t0 + hours(rng.uniform(0.5, days * 24, n_orders))).floor("s"),
        }
    )
    outcome = rng.random(n_orders)  # < 0.05 cancelled, < 0.15 shipped but never delivered, else delivered
    shipped = orders["purchased_at"] + hours(rng.lognormal(3.0, 0.6, n_orders)).floor("s")
    delivered = shipped + hours(rng.uniform(12, 120, n_orders)).floor("s")
    cancelled = orders["purchased_at"] + hours(rng.uniform(0.2, 12, n_orders)).floor("s")
    approved = orders["purchased_at"] + hours(rng.uniform(0.05, 0.15, n_orders)).floor("s")
    # Promised 3 to 6 days after the purchase, at midnight UTC: a late delivery comes after it.
    estimated = (orders["purchased_at"] + pd.to_timedelta(rng.integers(3, 7, n_orders), unit="D")).dt.floor("D")
    v1 = orders.assign(
        status="approved",
        approved_at=approved,
        shipped_at=pd.NaT,
        delivered_at=pd.NaT,
        estimated_delivery_at=estimated,
        cancelled_at=pd.NaT,
        updated_at=approved,
    )
    is_shipped, is_delivered, is_cancelled = outcome >= 0.05, outcome >= 0.15, outcome < 0.05
    v2 = v1[is_shipped].assign(status="shipped", shipped_at=shipped[is_shipped], updated_at=shipped[is_shipped])
    v3 = v2[is_delivered[is_shipped]].assign(
        status="delivered", delivered_at=delivered[is_delivered], updated_at=delivered[is_delivered]
    )
    vc = v1[is_cancelled].assign(
        status="cancelled", cancelled_at=cancelled[is_cancelled], updated_at=cancelled[is_cancelled]
    )
    order_versions = pd.concat([v1, v2, v3, vc], ignore_index=True)

    # Customers: created just before their first order; some move (a new street and city) later on.
    first_order = orders.groupby("customer_id")["purchased_at"].min()
    ids = first_order.index.to_numpy()
    home = rng.integers(0, len(CITIES), len(ids))
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "first_name": rng.choice(FIRST, len(ids)),
            "last_name": rng.choice(LAST, len(ids)),
            "phone": [f"+49 30 {n:07d}" for n in rng.integers(0, 10**7, len(ids))],
            "street": [
                f"{s} {n}" for s, n in zip(rng.choice(STREETS, len(ids)), rng.integers(1, 200, len(ids)), strict=True)
            ],
            "postcode": [f"{n:05d}" for n in rng.integers(1000, 99999, len(ids))],
            "city": [CITIES[i][0] for i in home],
            "country": [CITIES[i][1] for i in home],
            "created_at": (pd.DatetimeIndex(first_order.to_numpy()) - hours(rng.uniform(0.01, 2, len(ids)))).floor("s"),
        }
    )
    customers.insert(
        3, "email", [f"{f.lower()}.{i}@example.org" for f, i in zip(customers["first_name"], ids, strict=True)]
    )
    customers["updated_at"] = customers["created_at"]
    movers = customers.sample(frac=0.15, random_state=seed + 1)
    moved_to = rng.integers(0, len(CITIES), len(movers))
    movers = movers.assign(
        street=[
            f"{s} {n}" for s, n in zip(rng.choice(STREETS, len(movers)), rng.integers(1, 200, len(movers)), strict=True)
        ],
        city=[CITIES[i][0] for i in moved_to],
        country=[CITIES[i][1] for i in moved_to],
        updated_at=movers["created_at"] + hours(rng.uniform(1, days * 24, len(movers))).floor("s"),
    )
    # A third of them move again later on.
    again = movers.sample(frac=1 / 3, random_state=seed + 3)
    moved_again = rng.integers(0, len(CITIES), len(again))
    again = again.assign(
        city=[CITIES[i][0] for i in moved_again],
        country=[CITIES[i][1] for i in moved_again],
        updated_at=again["updated_at"] + hours(rng.uniform(24, max(48, days * 12), len(again))).floor("s"),
    )

    # Positions: one to five per order at the catalogue price, with freight; some quantities corrected
    # afterwards. Most come from the order's shop; in one order of ten each position comes from any shop
    # (a marketplace order spanning several sellers).
    per_order = np.minimum(1 + rng.poisson(1.2, n_orders), 5)
    order_of = np.repeat(orders["order_id"].to_numpy(), per_order)
    product_of = rng.integers(1, n_ordered + 1, len(order_of))
    multi_order = rng.random(n_orders) < 0.1
    multi_shop = np.repeat(multi_order, per_order)
    shop_of = np.where(
        multi_shop, rng.integers(1, len(shops) + 1, len(order_of)), np.repeat(orders["shop_id"].to_numpy(), per_order)
    )
    positions = pd.DataFrame(
        {
            "position_id": np.arange(1, len(order_of) + 1),
            "order_id": order_of,
            "product_id": product_of,
            "shop_id": shop_of,
            "quantity": rng.integers(1, 4, len(order_of)),
            "price": products["price"].to_numpy()[product_of - 1],
            "freight": rng.uniform(0, 15, len(order_of)).round(2),
            "updated_at": pd.DatetimeIndex(np.repeat(approved.to_numpy(), per_order)),
        }
    )
    corrected = positions.sample(frac=0.05, random_state=seed + 2).assign(
        quantity=lambda f: f["quantity"] + 1, updated_at=lambda f: f["updated_at"] + pd.Timedelta(minutes=45)
    )
    # A marketplace order spanning several shops names no shop of its own: its positions do.
    order_versions["shop_id"] = order_versions["shop_id"].astype("Int64")
    order_versions.loc[order_versions["order_id"].isin(orders["order_id"][multi_order]), "shop_id"] = pd.NA
    frames = {
        "shops": shops,
        "products": pd.concat([products, repriced], ignore_index=True),
        "customers": pd.concat([customers, movers, again], ignore_index=True),
        "orders": order_versions,
        "order_positions": pd.concat([positions, corrected], ignore_index=True),
    }
    return {name: cast(pd.DataFrame, frame[list(ENTITIES[name].columns)]) for name, frame in frames.items()}


def landing_mask(versions: dict[str, pd.DataFrame]) -> dict[str, pd.Series]:
    """Which versions arrive as landing files: orders (and their positions and customers) of the
    franchise shops, and the full shop list and catalogue (which PostgreSQL holds as well)."""
    franchise = set(versions["shops"].loc[versions["shops"]["channel"] == "franchise", "shop_id"])
    franchise_orders = versions["orders"].loc[versions["orders"]["shop_id"].isin(franchise)]
    masks = {
        "shops": pd.Series(True, index=versions["shops"].index),
        "products": pd.Series(True, index=versions["products"].index),
        "customers": versions["customers"]["customer_id"].isin(set(franchise_orders["customer_id"])),
        "orders": versions["orders"]["order_id"].isin(set(franchise_orders["order_id"])),
        "order_positions": versions["order_positions"]["order_id"].isin(set(franchise_orders["order_id"])),
    }
    return cast(dict[str, pd.Series], masks)


def publish(versions: dict[str, pd.DataFrame], conn, landing_root: str | Path, start: str, end: str) -> dict:
    """Replay the versions with `start <= updated_at < end`: the latest per key into PostgreSQL
    (orders of franchise shops stay out of it), every version into input/<entity>/<date>/."""
    lo, hi = pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC")
    masks = landing_mask(versions)
    counts = {}
    for name, frame in versions.items():
        in_window = frame[(frame["updated_at"] >= lo) & (frame["updated_at"] < hi)]
        landing = in_window[masks[name].loc[in_window.index]]
        to_pg = in_window if name in ("shops", "products", "customers") else in_window.drop(landing.index)
        upsert(conn, name, to_pg)
        for day, rows in landing.groupby(landing["updated_at"].dt.strftime("%Y-%m-%d")):
            write_landing(landing_root, name, day, rows)
        counts[name] = {"postgres": len(to_pg), "landing": len(landing)}
    return counts


def upsert(conn, entity_name: str, frame: pd.DataFrame) -> None:
    """Write the latest version of each key of `frame` into commerce.<entity> (insert or update)."""
    entity = ENTITIES[entity_name]
    latest = frame.sort_values("updated_at").drop_duplicates(entity.key, keep="last")
    if latest.empty:
        return
    cols = list(entity.columns)
    buffer = io.StringIO()
    latest[cols].to_csv(buffer, index=False, header=False, date_format="%Y-%m-%d %H:%M:%S%z")
    buffer.seek(0)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c != entity.key)
    with conn.cursor() as cur:
        cur.execute(f"CREATE TEMP TABLE incoming (LIKE commerce.{entity_name}) ON COMMIT DROP")
        cur.copy_expert(f"COPY incoming ({', '.join(cols)}) FROM STDIN WITH (FORMAT csv)", buffer)
        cur.execute(
            f"INSERT INTO commerce.{entity_name} SELECT * FROM incoming "
            f"ON CONFLICT ({entity.key}) DO UPDATE SET {updates}"
        )
    conn.commit()


def write_landing(root: str | Path, entity_name: str, day: str, frame: pd.DataFrame) -> Path:
    """The export file of one entity and delivery date (one file per date: rewriting replaces it)."""
    target = Path(root) / entity_name / day / "export.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(target, index=False, date_format="%Y-%m-%dT%H:%M:%S%z")
    return target


def main() -> None:
    import psycopg2

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--start", default="2026-01-01")
    parser.add_argument("--days", type=int, default=10)
    args = parser.parse_args()
    versions = generate(args.orders, args.start, args.days)
    end = (datetime.fromisoformat(args.start).replace(tzinfo=UTC) + timedelta(days=args.days)).isoformat()
    conn = psycopg2.connect(
        host=os.environ.get("POSTGRES_HOST", "127.0.0.1"),
        port=os.environ["POSTGRES_PORT"],
        dbname=os.environ["POSTGRES_DB"],
        user=os.environ["POSTGRES_USER"],
        password=os.environ["POSTGRES_PASSWORD"],
    )
    with conn, conn.cursor() as cur:
        cur.execute(source_ddl())
    print(publish(versions, conn, os.environ["LANDING_ROOT"], args.start, end))
    conn.close()


if __name__ == "__main__":
    main()
