"""Loan risk features: MA50, MA100 and EMA50 over 5,000,000 applications on one core, and the cost of a
streaming increment of 10,000 rows after histories of growing length.

    python -m bench.bench_loan_features [--rows 5000000] [--increment 10000]

Batch: `compute_features` (all three logics; the state needs them all) over scores with 10% missing.
Stream: `update_features` against a real lake: read the version's token and the windows' state from the
tables' tail, the new cleaned rows, compute, append one Delta commit with the new token. Results print
and go to bench/results/.
"""

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from assets.loans.logic import FEATURE_VERSIONS, compute_features
from assets.loans.names import CLEANED_DATASET
from assets.loans.store import update_features
from resources import LakeResource
from resources.lake import write_table

RESULTS = Path(__file__).resolve().parent / "results"


def scores(n: int, seed: int = 1) -> pd.Series:
    rng = np.random.default_rng(seed)
    values = pd.array(rng.integers(350, 851, n), dtype="Int64")
    values[rng.random(n) < 0.1] = pd.NA
    return pd.Series(values)


def cleaned_rows(first: int, n: int) -> pa.Table:
    s = scores(n, seed=first)
    return pa.table(
        {
            "seq": pa.array(np.arange(first, first + n), pa.int64()),
            "application_date": pa.array(np.full(n, np.datetime64("2010-01-01")), pa.date32()),
            "risk_score": pa.array(s, pa.int64(), from_pandas=True),
            "risk_score_missing": pa.array(s.isna().to_numpy()),
        }
    )


def batch(rows: int) -> list[dict]:
    data = scores(rows)
    out = []
    for version in FEATURE_VERSIONS.values():
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            compute_features(data, version)
            timings.append(time.perf_counter() - started)
        best = min(timings)
        out.append(
            {
                "case": f"batch v{version.version} ({', '.join(version.features.values())})",
                "rows": rows,
                "seconds": round(best, 3),
                "rows_per_s": round(rows / best),
            }
        )
    return out


def stream(histories: list[int], increment: int, repeats: int = 5) -> list[dict]:
    out = []
    version = FEATURE_VERSIONS[3]
    for history in histories:
        with tempfile.TemporaryDirectory() as root:
            lake = LakeResource(root=root)
            write_table(lake, CLEANED_DATASET, cleaned_rows(0, history))
            started = time.perf_counter()
            update_features(lake, version)  # the backfill over the history, through the lake
            backfill = time.perf_counter() - started
            timings, next_seq = [], history
            for _ in range(repeats):
                write_table(lake, CLEANED_DATASET, cleaned_rows(next_seq, increment))
                started = time.perf_counter()
                update = update_features(lake, version)
                timings.append(time.perf_counter() - started)
                assert update.rows == increment and update.first_seq == next_seq
                next_seq += increment
        median = statistics.median(timings)
        out.append(
            {
                "case": f"stream increment after {history:,} rows",
                "rows": increment,
                "seconds": round(median, 4),
                "rows_per_s": round(increment / median),
                "backfill_s": round(backfill, 2),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--increment", type=int, default=10_000)
    args = parser.parse_args()
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})  # one core
    histories = [10_000, 1_000_000, args.rows]
    rows = batch(args.rows) + stream(histories, args.increment)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    print("  ".join(f"{c:>12}" if c != "case" else f"{c:<44}" for c in columns))
    for r in rows:
        print("  ".join(f"{r.get(c, ''):>12}" if c != "case" else f"{r[c]:<44}" for c in columns))
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    result = {
        "benchmark": "loan_features",
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "cores_used": 1,
            "memory_gib": round(pages / 2**30, 1),
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
        },
        "inputs": {"rows": args.rows, "increment": args.increment, "histories": histories, "missing_scores": 0.1},
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "results": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "loan_features.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
