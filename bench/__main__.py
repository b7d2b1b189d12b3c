"""Run every benchmark (`python -m bench`, or `make bench`): each `bench/bench_*.py` in its own process,
so that peak memory is its own. Results are printed and saved under bench/results/."""

import subprocess
import sys
from pathlib import Path

if __name__ == "__main__":
    failed = []
    for module in sorted(Path(__file__).parent.glob("bench_*.py")):
        print(f"\n=== {module.stem} ===", flush=True)
        if subprocess.run([sys.executable, "-m", f"bench.{module.stem}", *sys.argv[1:]]).returncode != 0:
            failed.append(module.stem)
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")
