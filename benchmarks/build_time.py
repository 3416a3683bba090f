"""Time of the build, per step, in CPU (user + system) and wall seconds.

    .venv/bin/python benchmarks/build_time.py [--runs 3] [--no-command]

Each run builds the real graph in this process into a temporary folder; its report gives each step's CPU
time and wall time. CPU is the number to compare on a shared machine: wall time grows with
whatever else runs. Then, unless --no-command, `cmc-kg build` runs once as its own process, which adds the
interpreter's start and the imports. Prints the fastest and the median run of each step.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def timed_build(build_dir: Path) -> dict[str, tuple[float, float]]:
    """One build; each step's (CPU, wall) seconds, as its report gives them."""
    from cmc_kg.build import build
    from cmc_kg.settings import Paths

    report = build(Paths(build_dir=build_dir))
    return {step: (report.cpu_seconds_per_step[step], wall) for step, wall in report.seconds_per_step.items()}


def timed_command(build_dir: Path) -> tuple[float, float]:
    """`cmc-kg build` as its own process: (CPU, wall) seconds, imports included."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("cmc-kg")), "build", "--build-dir", str(build_dir)],
                   cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-command", action="store_true", help="skip the run of `cmc-kg build` as a process")
    args = parser.parse_args(argv)
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="cmc-kg-build-time-") as folder:
        runs = [timed_build(Path(folder) / f"run-{i}") for i in range(args.runs)]
        steps = list(runs[0])
        print(f"{'step':<8} {'CPU min':>8} {'CPU med':>8} {'wall min':>9} {'wall med':>9}   ({args.runs} runs)")
        for step in [*steps, "total"]:
            cpu = [sum(r[s][0] for s in steps) if step == "total" else r[step][0] for r in runs]
            wall = [sum(r[s][1] for s in steps) if step == "total" else r[step][1] for r in runs]
            print(f"{step:<8} {min(cpu):8.2f} {statistics.median(cpu):8.2f} "
                  f"{min(wall):9.2f} {statistics.median(wall):9.2f}")
        if not args.no_command:
            cpu, wall = timed_command(Path(folder) / "command")
            print(f"`cmc-kg build` as a process: CPU {cpu:.2f} s, wall {wall:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
