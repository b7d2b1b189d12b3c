"""platform/procs.sh (used by `make demo` and `make stop`) stops every process of a session it started, those
that moved to a process group of their own included, and nothing else."""

import os
import subprocess
import time
from pathlib import Path

from tests.conftest import ROOT

TREE = "sleep 300 & python3 -c 'import os, time; os.setpgid(0, 0); time.sleep(300)' & sleep 300; true"


def _session(sid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def test_stop_ends_every_process_of_the_recorded_session(tmp_path: Path):
    env = {**os.environ, "PROCS_STATE_DIR": str(tmp_path), "PROCS_STOP_TIMEOUT": "5"}
    procs = [str(ROOT / "platform" / "procs.sh")]
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        subprocess.run(
            [*procs, "start", "tree", str(tmp_path / "tree.log"), "--", "bash", "-c", TREE], env=env, check=True
        )
        sid = int((tmp_path / "tree.sid").read_text())
        deadline = time.monotonic() + 10
        while len(_session(sid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_session(sid)) >= 3  # bash, the sleeps, and python in a process group of its own
        subprocess.run([*procs, "stop"], env=env, check=True)
        assert _session(sid) == []
        assert not (tmp_path / "tree.sid").exists()
        assert bystander.poll() is None  # not in the session: untouched
    finally:
        bystander.kill()
        bystander.wait()
