"""Screenshots of the Dagster UI for the README (`make screenshots`, not part of CI): the platform in a sandbox
(its own DAGSTER_HOME, lake, warehouse file, PostgreSQL source and free ports), a little commerce data, range
backfills of the warehouse's partitioned layers and three rebuilds of the KPI marts, then headless Chromium
pictures of a few pages into docs/screenshots/.

Needs Chromium (`apt-get install -y chromium`) and PostgreSQL 15 (`apt-get install -y postgresql`)."""

import argparse
import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pandas as pd
import psycopg2
from PIL import Image
from websockets.sync.client import connect

from bench.common import stop_dagster_dev
from demo import warehouse as generator

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
# Three deliveries of two processing dates each: every delivery is one range backfill of raw, staging and the
# facts, then one rebuild of the dimensions and marts, so the marts' plots get three points.
DELIVERIES = [("2026-01-01", "2026-01-02"), ("2026-01-03", "2026-01-04"), ("2026-01-05", "2026-01-06")]
PARTITIONED = [
    *(f"raw_{source}_{entity}" for source in ("postgres", "landing") for entity in generator.ENTITIES),
    *(f"stg_{entity}" for entity in generator.ENTITIES),
    "fact_orders",
    "fact_order_positions",
]
REBUILT = ["customers_snapshot", "dim_customers", "dim_date", "dim_products", "dim_shops"] + [
    f"kpi_{name}" for name in ("sales", "dropoff", "shipping_lag", "customers")
]
# file name -> (page of the UI, texts of the tabs or toggles to click there, in order)
PAGES = {
    "catalog_dbt_model.png": ("/assets/dim_customers", []),
    "kpi_mart_plots.png": ("/assets/kpi_sales", ["Plots"]),
    "kpi_mart_chart.png": ("/assets/kpi_sales?view=events", ["[Show Markdown]"]),
    "partition_checks_after_range_backfill.png": ("/assets/stg_orders?view=checks", ["Partitions", "Missing"]),
    "automation.png": ("/automation", []),
}
# Seconds for the single-page app to load its data before a click or a picture (the machine may be busy).
SETTLE_S = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sandbox_env(work: Path, ui_port: int, pg_port: int) -> dict[str, str]:
    """platform/env.sh's defaults with every path and port inside `work`."""
    env = {
        **os.environ,
        "DAGSTER_HOME": str(work / "dagster_home"),
        "LAKE_ROOT": str(work / "lake"),
        "DUCKDB_DATABASE": str(work / "warehouse.duckdb"),
        "LANDING_ROOT": str(work / "input"),
        "ALERT_LOG": str(work / "alerts.jsonl"),
        "DAGSTER_UI_URL": f"http://127.0.0.1:{ui_port}",
        "POSTGRES_PORT": str(pg_port),
        "POSTGRES_STATE_DIR": str(work / "postgres"),
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",  # no broker: the Kafka sensors stay idle
    }
    sourced = subprocess.run(
        ["bash", "-c", "source platform/env.sh && env -0"], cwd=ROOT, env=env, capture_output=True, check=True
    ).stdout
    return dict(line.split("=", 1) for line in sourced.decode().split("\0") if "=" in line)


def deliver(env: dict[str, str], versions: dict, start: str, end_exclusive: str) -> None:
    conn = psycopg2.connect(
        host="127.0.0.1",
        port=env["POSTGRES_PORT"],
        dbname=env["POSTGRES_DB"],
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"],
    )
    with conn, conn.cursor() as cur:
        cur.execute(generator.source_ddl())
    generator.publish(versions, conn, env["LANDING_ROOT"], start, end_exclusive)
    conn.close()


def materialize(env: dict[str, str], assets: list[str], *extra: str) -> None:
    command = ["dagster", "asset", "materialize", "-f", "platform/definitions.py", "--select", ",".join(assets)]
    print("$", " ".join(command[:4]), "...", *extra, flush=True)
    subprocess.run([*command, *extra], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


class Browser:
    """Headless Chromium driven over its DevTools protocol: the UI is a single-page app whose tabs and
    toggles live in its state, so some pictures need a click first."""

    def __init__(self, work: Path):
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        if browser is None:
            raise SystemExit("chromium not found: apt-get install -y chromium")
        port = free_port()
        self.process = subprocess.Popen(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--window-size=1600,1000",
                f"--remote-debugging-port={port}",
                f"--user-data-dir={work / 'chromium'}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as response:
                    pages = [t for t in json.load(response) if t["type"] == "page"]
                if pages:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium's DevTools endpoint did not come up")
            time.sleep(0.5)
        self.socket = connect(pages[0]["webSocketDebuggerUrl"], max_size=None)
        self.calls = 0

    def call(self, method: str, **params) -> dict:
        self.calls += 1
        self.socket.send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.calls:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def click(self, text: str) -> None:
        """Click the last button, tab, link or label whose text is `text` (or `text (<count>)`), and scroll it to
        the top."""
        script = f"""(() => {{
            const text = {json.dumps(text)};
            const hits = [...document.querySelectorAll('button, a, label, [role=tab], [role=button]')]
                .filter(e => [text, text + ' ('].some(t => e.textContent.trim().startsWith(t)))
                .filter(e => e.textContent.trim() === text || e.textContent.trim().endsWith(')'));
            if (!hits.length) return false;
            hits[hits.length - 1].click();
            hits[hits.length - 1].scrollIntoView({{block: 'start'}});
            return true;
        }})()"""
        if not self.call("Runtime.evaluate", expression=script, returnByValue=True)["result"]["value"]:
            raise RuntimeError(f"nothing to click named {text!r}")

    def shoot(self, url: str, clicks: list[str], target: Path) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=1600, height=1000, deviceScaleFactor=1, mobile=False)
        self.call("Page.navigate", url=url)
        time.sleep(SETTLE_S)
        try:
            for text in clicks:
                self.click(text)
                time.sleep(SETTLE_S / 2)
        finally:  # a failed click still leaves a picture of what the page showed instead
            png = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
            # 256 colours are plenty for the UI and make the committed file about three times smaller.
            Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256).save(target, optimize=True)
            print("wrote", target.relative_to(ROOT), flush=True)

    def close(self) -> None:
        self.socket.close()
        self.process.terminate()
        self.process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--keep", type=Path, help="keep the sandbox in this folder; if it has data, reuse it")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    work = args.keep or Path(tempfile.mkdtemp(prefix="screenshots-"))
    reuse = (work / "dagster_home").exists()
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)  # as root, PostgreSQL runs as the postgres user, which must reach its data directory
    ui_port, pg_port = free_port(), free_port()
    env = sandbox_env(work, ui_port, pg_port)
    # The community pop-up would cover every picture.
    with open(Path(env["DAGSTER_HOME"]) / "dagster.yaml", "a") as instance_yaml:
        instance_yaml.write("\nnux:\n  enabled: false\n")
    server = None
    if not reuse:
        subprocess.run(["platform/postgres.sh", "start"], cwd=ROOT, env=env, check=True)
    try:
        versions = generator.generate(600, DELIVERIES[0][0], days=len(DELIVERIES) * 2)
        for first, last in [] if reuse else DELIVERIES:
            after = (pd.Timestamp(last) + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
            deliver(env, versions, first, after)
            materialize(env, PARTITIONED, "--partition-range", f"{first}...{last}")
            materialize(env, REBUILT)
        log = open(work / "webserver.log", "w")  # noqa: SIM115 (closed with the process)
        server = subprocess.Popen(
            [sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(ui_port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 180
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/server_info", timeout=2).status == 200:
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        browser = Browser(work)
        try:
            for name, (page, clicks) in PAGES.items():
                browser.shoot(f"http://127.0.0.1:{ui_port}{page}", clicks, OUT / name)
        finally:
            browser.close()
    finally:
        if server is not None:
            stop_dagster_dev(server, env["DAGSTER_HOME"])
        if not reuse:
            subprocess.run(["platform/postgres.sh", "stop"], cwd=ROOT, env=env, check=False)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
