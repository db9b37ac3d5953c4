"""Start-up of the ``tbmigrate`` command against a bare Django project's, side by side.

    python bench/startup.py            # 21 rounds
    python bench/startup.py --rounds 41

The floor is what every Django command pays: a project made by ``django-admin
startproject`` (its default settings: admin, auth, sessions, …), timed running
``manage.py check --help``.  Against it, in the same rounds and interleaved (so a
machine that slows down mid-way slows every command alike): ``tbmigrate --help``,
``tbmigrate --version``, ``tbmigrate status`` on an empty SQLite database in an empty
folder, and this project's ``manage.py tbmigrate --help``.  It prints each one's
median wall time and its ratio to the floor; the target is ``tbmigrate --help`` at
0.7 of the floor or less.  Nothing is asserted: numbers are read, not enforced.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def command_line() -> str:
    tbmigrate = shutil.which("tbmigrate", path=str(BIN)) or shutil.which("tbmigrate")
    if tbmigrate is None:
        sys.exit("no tbmigrate command: install the project first (pip install -e .)")
    return tbmigrate


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    rounds = parser.parse_args().rounds
    tbmigrate = command_line()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TBMIGRATE_"))}
    env.pop("DATABASE_URL", None)
    with tempfile.TemporaryDirectory(prefix="tbmigrate-startup-") as tmp:
        work = Path(tmp)
        floor_dir, empty = work / "bare", work / "empty"
        floor_dir.mkdir()
        (empty / "migration_scripts").mkdir(parents=True)
        subprocess.run(
            [sys.executable, "-m", "django", "startproject", "bare", str(floor_dir)],
            check=True,
            env=env,
        )
        empty_env = {**env, "SQLITE_DB_PATH": str(empty / "db.sqlite3")}
        cases = {
            "startproject: manage.py check --help (floor)": (
                [sys.executable, "manage.py", "check", "--help"],
                floor_dir,
                env,
            ),
            "tbmigrate --help": ([tbmigrate, "--help"], empty, empty_env),
            "tbmigrate --version": ([tbmigrate, "--version"], empty, empty_env),
            "tbmigrate status (empty folder, SQLite)": ([tbmigrate, "status"], empty, empty_env),
            "this project: manage.py tbmigrate --help": (
                [sys.executable, "manage.py", "tbmigrate", "--help"],
                ROOT,
                env,
            ),
        }
        for argv, cwd, case_env in cases.values():  # warm the OS caches once
            timed(argv, cwd, case_env)
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(rounds):
            for name, (argv, cwd, case_env) in cases.items():
                times[name].append(timed(argv, cwd, case_env))
    medians = {name: statistics.median(values) for name, values in times.items()}
    floor = medians[next(iter(cases))]
    print(f"Start-up, median of {rounds} rounds (Python {sys.version.split()[0]}):")
    print(f"  {'command':<46} {'median':>8} {'x floor':>8}")
    for name, median in medians.items():
        print(f"  {name:<46} {median * 1000:>6.0f} ms {median / floor:>8.2f}")
    ratio = medians["tbmigrate --help"] / floor
    verdict = "meets" if ratio <= 0.7 else "misses"
    print(f"tbmigrate --help / floor = {ratio:.2f} ({verdict} the target of 0.7 or less)")


if __name__ == "__main__":
    main()
