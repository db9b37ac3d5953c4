"""A real tbmigrate run held in the middle of a step, in its own process, until released.

``held_run`` writes a script whose ``up`` does its real work, then writes a marker
file and waits until the test creates a gate file; the run is a real
``manage.py tbmigrate run`` subprocess, so the lock, the history rows and the
journal are exactly what a user's run leaves while it works.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import PROJECT, TestDatabase, cli_env, write_script


@dataclass
class HeldRun:
    process: subprocess.Popen[str]
    gate: Path

    def release(self, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        self.gate.write_text("go")
        out, err = self.process.communicate(timeout=timeout)
        return subprocess.CompletedProcess(self.process.args, self.process.returncode, out, err)


def hold_body(work: str, marker: Path, gate: Path) -> str:
    """An ``up`` body: ``work``, then say so in ``marker`` and wait for ``gate``."""
    return (
        f"{work}\n"
        "import pathlib, time\n"
        f"pathlib.Path({str(marker)!r}).write_text('holding')\n"
        f"while not pathlib.Path({str(gate)!r}).exists():\n"
        "    time.sleep(0.05)\n"
    )


@contextlib.contextmanager
def held_run(
    database: TestDatabase,
    scripts: Path,
    tmp: Path,
    *,
    version: str = "1.0.1",
    name: str = "held-step",
    work: str = "pass",
    atomic: bool | None = None,
    header: str = "",
    args: tuple[str, ...] = (),
    wait_for_marker: bool = True,
    env: dict[str, str] | None = None,
) -> Iterator[HeldRun]:
    """Start ``tbmigrate run`` with a step that holds until released; yield once it holds
    (``env``: more environment for the run)."""
    marker, gate = tmp / f"{version}.holding", tmp / f"{version}.gate"
    write_script(
        scripts,
        version,
        name,
        up=hold_body(work, marker, gate),
        atomic=atomic,
        header=header,
        stamp="2026-02-01T00-00-00",
    )
    process = subprocess.Popen(
        [sys.executable, str(PROJECT / "manage.py"), "tbmigrate", "run", "--no-input", *args],
        cwd=PROJECT,
        env={**cli_env(database, scripts), "PYTHONUNBUFFERED": "1", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    held = HeldRun(process, gate)
    try:
        if wait_for_marker:
            deadline = time.monotonic() + 90
            while not marker.exists():
                if process.poll() is not None:
                    out, err = process.communicate()
                    raise AssertionError(f"the run ended before holding:\n{out}\n{err}")
                if time.monotonic() > deadline:
                    raise AssertionError("the run did not reach its held step in 90 s")
                time.sleep(0.05)
        yield held
    finally:
        if process.poll() is None:
            gate.write_text("go")
            try:
                process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
