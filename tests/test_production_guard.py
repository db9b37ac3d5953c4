"""Protected aliases (default `prod`): run, rollback and repair ask first, unless --no-input.

`PROD_DATABASE_URL` points at a test database.  Without a terminal the question
cannot be asked, so tbmigrate refuses before it touches anything; with a real
terminal (a pseudo-terminal here) the answer decides.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

from migrator import history
from tests.conftest import PROJECT, cli, cli_env, snapshot, table_script, tables_of

pytestmark = pytest.mark.slow


def on_a_terminal(*args: str, env: dict[str, str], answer: str) -> tuple[int, str]:
    """Run tbmigrate with a real (pseudo-)terminal as stdin and type ``answer``."""
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, str(PROJECT / "manage.py"), "tbmigrate", *args],
            cwd=PROJECT,
            env=env,
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        os.write(master, f"{answer}\n".encode())
        out, _ = process.communicate(timeout=120)
    finally:
        os.close(master)
        os.close(slave)
    return process.returncode, out


def test_run_on_prod_refuses_without_a_terminal_unless_no_input(target, tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    table_script(scripts, "1.0.0", "orders")
    env = {"PROD_DATABASE_URL": target.url}
    refused = cli("run", "--database", "prod", scripts=scripts, env=env)
    assert refused.returncode == 1
    assert "confirmation needed but there is no terminal to ask on; add --no-input" in (
        refused.stderr
    )
    assert snapshot(target) == {}  # not even tbmigrate's own tables
    applied = cli("run", "--database", "prod", "--no-input", scripts=scripts, env=env)
    assert applied.returncode == 0, applied.stderr
    assert "orders" in tables_of(target)


def test_rollback_always_asks_and_prod_rollback_refuses_without_a_terminal(target, tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    table_script(scripts, "1.0.0", "orders")
    env = {"PROD_DATABASE_URL": target.url}
    assert cli("run", "--database", "prod", "--no-input", scripts=scripts, env=env).returncode == 0
    before = snapshot(target)
    for alias in ("prod", "default"):
        extra = env if alias == "prod" else {"DATABASE_URL": target.url}
        refused = cli("rollback", "--database", alias, scripts=scripts, env=extra)
        assert refused.returncode == 1, alias
        assert "confirmation needed but there is no terminal" in refused.stderr
        assert snapshot(target) == before
    done = cli("rollback", "--database", "prod", "--no-input", scripts=scripts, env=env)
    assert done.returncode == 0, done.stderr
    assert "orders" not in tables_of(target)


def test_on_a_terminal_no_means_nothing_and_yes_means_go(target, tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    table_script(scripts, "1.0.0", "orders")
    env = cli_env(None, scripts, PROD_DATABASE_URL=target.url)
    code, out = on_a_terminal("run", "--database", "prod", env=env, answer="no")
    assert code == 1, out
    assert "prod is protected: apply 1 migration(s) to" in out
    assert "1.0.0 create-orders" in out
    assert "run cancelled; nothing was changed" in out
    assert snapshot(target) == {}
    code, out = on_a_terminal("run", "--database", "prod", env=env, answer="yes")
    assert code == 0, out
    assert "Applying 1.0.0 create-orders... OK" in out
    assert [str(r.version) for r in history.load(target.alias)] == ["1.0.0"]
    code, out = on_a_terminal("rollback", "--database", "prod", env=env, answer="yes")
    assert code == 0, out
    assert "Roll back 1 migration(s) on" in out and "orders" not in tables_of(target)
