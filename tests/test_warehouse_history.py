"""A year of commerce history imported in one run (`python -m sensors.commerce_import`): CSV files per
entity, split into the landing path by processing date, then raw -> staging -> dbt over 365 dates at
once, with empty days among them and customers who move several times."""

import json
import os
import subprocess
import sys

import duckdb
import pandas as pd
import pytest

from assets.warehouse.names import staging_table
from demo import warehouse as generator
from resources import LakeResource
from tests.conftest import ROOT

START, END = "2025-01-01", "2026-01-01"
IMPORT = (
    "import json, dagster as dg; from sensors.commerce_import import import_history; "
    'print(json.dumps(import_history("history_2025", dg.DagsterInstance.ephemeral())))'
)
BLANK = pd.date_range("2025-03-01", "2025-03-10", tz="UTC")  # days on which the source had no change at all


def history() -> dict[str, pd.DataFrame]:
    """A year of generated versions, few per day: none on the blank days, nothing after the year."""
    versions = generator.generate(400, START, 365, seed=11)
    purchased = versions["orders"].groupby("order_id")["purchased_at"].min()
    dropped = set(purchased[purchased.dt.floor("D").isin(BLANK)].index)
    kept = {}
    for name, frame in versions.items():
        day = frame["updated_at"].dt.floor("D")
        keep = ~day.isin(BLANK) & (frame["updated_at"] < pd.Timestamp(END, tz="UTC"))
        if "order_id" in frame.columns:
            keep &= ~frame["order_id"].isin(dropped)
        kept[name] = frame[keep]
    return kept


def test_a_year_of_history_is_imported_in_one_run(tmp_path) -> None:
    versions = history()
    landing = tmp_path / "input"
    for name, frame in versions.items():
        target = landing / "history_2025" / f"{name}.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(target, index=False, date_format="%Y-%m-%dT%H:%M:%S%z")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("COMMERCE_", "DAGSTER_"))},
        "LAKE_ROOT": str(tmp_path / "lake"),
        "LANDING_ROOT": str(landing),
        "DUCKDB_DATABASE": str(tmp_path / "warehouse.duckdb"),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "COMMERCE_PARTITIONS_START": START,
    }
    done = subprocess.run(
        # The command's own code, on an in-memory instance (the event log of 365 dates x 12 assets on SQLite
        # would cost the test minutes of fsyncs).
        ["bash", "-c", f"source platform/env.sh && exec {sys.executable} -c '{IMPORT}'"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (summary["first_date"], summary["last_date"]) == (START, "2025-12-31")
    assert summary["failed_checks"] == []  # nothing lost, schema, quarantine, dbt tests: every date passed
    assert summary["check_evaluations"] >= 365 * 5 * 4  # per date: the staging checks of every entity

    # Every order version staged under its own processing date (the UTC date of its update), none on blank days.
    lake = LakeResource(root=str(tmp_path / "lake"))
    staged = lake.scan(staging_table("orders")).to_pandas()
    assert (staged["processing_date"] == staged["updated_at"].dt.strftime("%Y-%m-%d")).all()
    latest = (
        versions["orders"].sort_values("updated_at").groupby(["order_id", versions["orders"]["updated_at"].dt.date])
    )
    assert len(staged) == latest.ngroups
    assert not set(staged["processing_date"]) & {d.strftime("%Y-%m-%d") for d in BLANK}

    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:
        facts = conn.execute(
            "SELECT order_id, order_date::VARCHAR AS order_date, status FROM core.fact_orders ORDER BY 1"
        ).df()
        expected = versions["orders"].sort_values("updated_at").groupby("order_id").last()
        assert facts["order_id"].tolist() == expected.index.tolist()
        assert facts["order_date"].tolist() == expected["purchased_at"].dt.strftime("%Y-%m-%d").tolist()
        assert facts["status"].tolist() == expected["status"].tolist()

        # Every customer version the year holds (the day's latest per customer), valid one after another.
        customers = versions["customers"]
        per_day = customers.sort_values("updated_at").groupby(["customer_id", customers["updated_at"].dt.date]).last()
        dim = conn.execute(
            "SELECT customer_id, valid_from, valid_to, city, is_current, "
            "lead(valid_from) OVER (PARTITION BY customer_id ORDER BY valid_from) AS next_from "
            "FROM core.dim_customers ORDER BY customer_id, valid_from"
        ).df()
        assert len(dim) == len(per_day)
        assert dim.groupby("customer_id").size().max() >= 3  # some moved twice within the year
        assert (dim["valid_from"] < dim["valid_to"]).all()
        following = dim.dropna(subset=["next_from"])
        assert following["valid_to"].tolist() == following["next_from"].tolist()  # no overlap, no gap
        assert set(dim.groupby("customer_id")["is_current"].sum().tolist()) == {1}
        assert dim["city"].tolist() == per_day["city"].tolist()

        # KPIs on every calendar day, 0 on the blank ones, never NULL.
        days = conn.execute(
            "SELECT period_start, sum(orders), sum(order_intake), count(*) FILTER (WHERE revenue IS NULL) "
            "FROM marts.kpi_sales WHERE grain = 'day' GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert len(days) >= 365
        assert all(row[3] == 0 for row in days)
        blank = {d.date() for d in BLANK}
        assert all(row[1] == 0 and row[2] == 0 for row in days if row[0] in blank)
        nulls = conn.execute(
            "SELECT count(*) FROM marts.kpi_shipping_lag WHERE median_lag_hours IS NULL OR late_delivery_rate IS NULL"
        ).fetchone()
        assert nulls == (0,)


@pytest.mark.parametrize("start", ["2026-13-01"])
def test_a_wrong_partition_start_fails_the_load_with_the_setting_named(start: str) -> None:
    env = {**os.environ, "COMMERCE_PARTITIONS_START": start}
    done = subprocess.run(
        [sys.executable, "-c", "import assets.warehouse.names"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode != 0 and "COMMERCE_PARTITIONS_START='2026-13-01' is not a date" in done.stderr
