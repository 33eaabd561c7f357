"""Benchmark of the CLI's start-up: ``newsletter --help`` and ``newsletter ingest`` with nothing to do.

A plain script, not collected by pytest:

    .venv/bin/python tests/benchmarks/bench_startup.py [--repeat 7] [--python OTHER/.venv/bin/python ...]

Each interpreter given (this one by default) runs each command ``--repeat`` times, alternately, in a fresh process;
the best wall time and the best CPU time (user + system, of the child) are printed. The ingest runs on a SQLite
database made up to date by a first, untimed run (an empty seed folder, no feed due), as a cron job finds it.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(command: list[str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``command`` in ``cwd`` (its output discarded). Not in a checkout: ``-m``
    imports the package from the working folder first."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False, cwd=cwd)
    if done.returncode:
        raise SystemExit(f"{command} failed: {done.stderr}")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--python", nargs="+", default=[sys.executable], help="interpreters, each with the project")
    args = ap.parse_args()
    pythons = [os.path.abspath(python) for python in args.python]
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        folder = Path(tmp)
        (folder / "seeds").mkdir()
        configs = []
        for n, python in enumerate(pythons):  # a database each: interpreters may run code of different schemas
            config = folder / f"newsletter-{n}.toml"
            config.write_text(f'[storage]\nurl = "sqlite:///{folder}/{n}.db"\n\n[seeds]\ndirs = ["{folder}/seeds"]\n')
            subprocess.run([python, "-m", "newsletter", "--config", str(config), "ingest"], check=True, cwd=folder)
            configs.append(config)
        best: dict[tuple[str, str], tuple[float, float]] = {}
        for _ in range(args.repeat):
            for python, config in zip(pythons, configs, strict=True):
                commands = {"--help": ["--help"], "ingest (nothing to do)": ["--config", str(config), "ingest"]}
                for name, command in commands.items():
                    wall, cpu = run([python, "-m", "newsletter", *command], folder)
                    old = best.get((python, name), (wall, cpu))
                    best[(python, name)] = (min(old[0], wall), min(old[1], cpu))
    print(f"best of {args.repeat}; load average {os.getloadavg()[0]:.2f} at the end")
    print(f"{'interpreter':40} {'command':24} {'wall s':>7} {'CPU s':>6}")
    for (python, name), (wall, cpu) in best.items():
        print(f"{python:40} {name:24} {wall:7.3f} {cpu:6.3f}")


if __name__ == "__main__":
    main()
