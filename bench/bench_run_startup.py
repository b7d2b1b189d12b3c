"""Run start-up cost: CPU-seconds a run worker spends before its first step starts.

    python -m bench.bench_run_startup [--repeats 3] [--job clickstream_ingest_job]

What is measured. Under `dagster dev` (and `dagster api grpc`), the code server starts each run in a
fresh interpreter (multiprocessing "spawn", `dagster._grpc.impl.start_run_in_subprocess`), which imports
Dagster, imports the code location (platform/definitions.py), loads the job and then executes the plan.
The benchmark starts such a worker itself: a fresh `python -c` process that runs the same code path,
`dagster._grpc.impl.core_execute_run`, for a run created beforehand in a scratch instance (the project's
dagster.yaml). When the first STEP_START event comes out of the run, the worker reads `os.times()`:
user + system CPU of itself since exec, plus that of the child processes it has waited for (a `dbt
parse` is such a child), and exits without executing the step. So the figure is everything a run pays
before its first step: interpreter start, imports, loading the definitions, run start, execution plan.
It is read inside the worker at the exact event, so no polling delay or step work is counted.

Each worker runs twice as a run would: with DAGSTER_IS_DEV_CLI=1 (what `dagster dev` sets for every
process it starts, which is what dagster-dbt's `prepare_if_dev` looks at) and without it (production,
`dagster api grpc`). The job should be a small one; the step itself never runs, so its resources are not
needed. Checkpoints (after `import dagster`, after opening the instance, after loading the definitions)
show where the time goes. The results of the code before issue 15 are in run_startup_before.json (there,
load_definitions_s includes opening the instance).
The manifest must exist beforehand (`make dbt-manifest`, done by `make install`).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import ROOT, report

DEFINITIONS = ROOT / "platform" / "definitions.py"

# The worker: a fresh interpreter, like the spawn process of the code server. It prints one JSON line.
_WORKER = r"""
import json, os, sys, time
def cpu():
    t = os.times()
    return {"self": t.user + t.system, "children": t.children_user + t.children_system}
marks = {"interpreter": cpu()}
import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._grpc.impl import core_execute_run
marks["import_dagster"] = cpu()
definitions, job_name, run_id = sys.argv[1:4]
recon_job = ReconstructableRepository.for_file(
    definitions, "defs", working_directory=os.getcwd()
).get_reconstructable_job(job_name)
with dg.DagsterInstance.get() as instance:
    run = instance.get_run_by_id(run_id)
    marks["open_instance"] = cpu()
    recon_job.get_definition()
    marks["load_definitions"] = cpu()
    for event in core_execute_run(recon_job, run, instance, inject_env_vars=False):
        if event.event_type == dg.DagsterEventType.STEP_START:
            marks["first_step_start"] = cpu()
            break
print("RESULT " + json.dumps(marks), flush=True)
os._exit(0)
"""

# Creates the run to execute (its cost is not measured).
_CREATE = r"""
import os, sys
import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository
definitions, job_name = sys.argv[1:3]
job = ReconstructableRepository.for_file(definitions, "defs", working_directory=os.getcwd()).get_reconstructable_job(
    job_name
).get_definition()
with dg.DagsterInstance.get() as instance:
    print(instance.create_run_for_job(job_def=job).run_id)
"""


def _env(dagster_home: str, dev: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_IS_DEV_CLI"}
    env["DAGSTER_HOME"] = dagster_home
    if dev:
        env["DAGSTER_IS_DEV_CLI"] = "1"
    return env


def measure(job: str, dev: bool, dagster_home: str) -> dict:
    env = _env(dagster_home, dev)
    run_id = subprocess.run(
        [sys.executable, "-c", _CREATE, str(DEFINITIONS), job],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[-1]
    worker = subprocess.run(
        [sys.executable, "-c", _WORKER, str(DEFINITIONS), job, run_id],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    line = next((x for x in worker.stdout.splitlines() if x.startswith("RESULT ")), None)
    if worker.returncode != 0 or line is None or "first_step_start" not in line:
        raise SystemExit(f"the worker did not reach its first step:\n{worker.stdout}\n{worker.stderr}")
    marks = json.loads(line.removeprefix("RESULT "))
    total = {name: m["self"] + m["children"] for name, m in marks.items()}
    return {
        "interpreter_s": total["interpreter"],
        "import_dagster_s": total["import_dagster"] - total["interpreter"],
        "open_instance_s": total["open_instance"] - total["import_dagster"],
        "load_definitions_s": total["load_definitions"] - total["open_instance"],
        "run_start_to_step_s": total["first_step_start"] - total["load_definitions"],
        "subprocesses_s": marks["first_step_start"]["children"],
        "cpu_before_first_step_s": total["first_step_start"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--job", default="clickstream_ingest_job")
    args = parser.parse_args()
    dagster_home = tempfile.mkdtemp(prefix="bench-startup-")
    try:
        shutil.copy(ROOT / "platform" / "dagster.yaml", Path(dagster_home) / "dagster.yaml")
        rows = []
        for dev in (True, False):
            samples = [measure(args.job, dev, dagster_home) for _ in range(args.repeats)]
            median = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
            rows.append(
                {
                    "mode": "dagster dev" if dev else "production",
                    **{k: round(v, 2) for k, v in median.items()},
                    "min_s": round(min(s["cpu_before_first_step_s"] for s in samples), 2),
                    "max_s": round(max(s["cpu_before_first_step_s"] for s in samples), 2),
                }
            )
        report(
            "run_startup",
            {"job": args.job, "repeats": args.repeats, "statistic": "median", "load_average": os.getloadavg()},
            rows,
        )
    finally:
        shutil.rmtree(dagster_home, ignore_errors=True)


if __name__ == "__main__":
    main()
