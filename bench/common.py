"""Shared plumbing for the benchmarks: machine facts, a result table, JSON results, a broker."""

import contextlib
import datetime as dt
import json
import os
import platform as stdlib_platform
import resource
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def machine() -> dict:
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(pages / 2**30, 1),
        "python": stdlib_platform.python_version(),
        "cpu": stdlib_platform.processor() or stdlib_platform.machine(),
    }


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pin_to_one_core() -> None:
    """Benchmarks measure one core: the broker and the OS get the other."""
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})


def report(name: str, inputs: dict, rows: list[dict]) -> Path:
    """Print `rows` as a table and save them with the machine facts and input sizes."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print(f"\n{name}  inputs: {json.dumps(inputs)}")
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(_fmt(row.get(c)).ljust(widths[c]) for c in columns))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    path.write_text(
        json.dumps({"benchmark": name, "at": stamp, "machine": machine(), "inputs": inputs, "results": rows}, indent=2)
    )
    print(f"saved {path.relative_to(ROOT)}")
    return path


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 1000 else f"{value:,.0f}"
    return "" if value is None else str(value)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def kafka_broker() -> Iterator[str]:
    """KAFKA_BOOTSTRAP_SERVERS if set, else a fresh broker from platform/kafka.sh on a free port."""
    if os.environ.get("BENCH_KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["BENCH_KAFKA_BOOTSTRAP_SERVERS"]
        return
    with tempfile.TemporaryDirectory(prefix="bench-kafka-") as state:
        port = free_port()
        env = {
            **os.environ,
            "KAFKA_PORT": str(port),
            "KAFKA_CONTROLLER_PORT": str(free_port()),
            "KAFKA_STATE_DIR": state,
        }
        subprocess.run([ROOT / "platform" / "kafka.sh", "start"], env=env, check=True)
        try:
            yield f"127.0.0.1:{port}"
        finally:
            subprocess.run([ROOT / "platform" / "kafka.sh", "stop"], env=env, check=False)


def stop_dagster_dev(server: subprocess.Popen, dagster_home: str) -> None:
    """Stop `dagster dev` (started with start_new_session=True) and every process it started: code
    servers can leave its process group and outlive it, so they are found by their DAGSTER_HOME."""
    for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, sig)
        try:
            server.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    marker = f"DAGSTER_HOME={dagster_home}".encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                os.kill(int(pid), signal.SIGKILL)
