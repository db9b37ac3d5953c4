"""bench/live.py works: every scenario, tiny and short, against the real PostgreSQL server.

A smoke test of the benchmark's pieces (seeding from a template, the workload
processes, the blocker, `tbmigrate run` as a process, the audit log's step windows,
the report and its markdown), not of tbmigrate's speed: nothing here asserts a time.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import POSTGRES_URL, PROJECT, pg_admin

pytestmark = pytest.mark.slow

LIVE = PROJECT / "bench" / "live.py"
SCENARIOS = ["baseline", "naive", "naive-accepted", "safe", "blocker", "helpers", "blocker-helpers"]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("live") / "live.json"
    tiny = [
        "--pg-url", POSTGRES_URL,
        "--users", "300", "--orders", "6000", "--trades", "2000",
        "--clients", "2", "--rate", "100",
        "--warmup", "1", "--tail", "1", "--baseline-seconds", "2",
        "--blocker-hold", "2", "--blocker-gap", "0.5",
        "--tb-args", "--pg-lock-retry-pause 0.5",
        "--max-migration-seconds", "120",
        "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(LIVE), *tiny], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    result["_stdout"] = done.stdout
    result["_file"] = str(out)
    return result


def test_every_scenario_is_reported_with_traffic_measured(report):
    assert list(report["scenarios"]) == SCENARIOS
    for name, result in report["scenarios"].items():
        if "unavailable" in result:
            assert name in ("helpers", "blocker-helpers")
            continue
        series = result["series"]
        assert series["transactions"] > 0 and series["tps"] > 0, name
        for key in ("p50_ms", "p99_ms", "p999_ms", "max_ms", "stall_s", "failed"):
            assert series[key] >= 0, (name, key)
        assert series["p99_x"] is not None and series["stall_x"] is not None
        kinds = result["workload"]["by_kind"]
        assert set(kinds) == {
            "insert_order",
            "update_order",
            "update_trade",
            "read_trades",
            "read_open_orders",
        }
    assert report["scenarios"]["baseline"]["series"]["p99_x"] == 1.0
    assert "migration" not in report["scenarios"]["baseline"]


def test_each_migration_ran_as_a_process_with_its_steps_windows_from_the_audit_log(report):
    for name in ("naive", "naive-accepted", "safe", "blocker"):
        migration = report["scenarios"][name]["migration"]
        assert migration["exit_code"] is not None and migration["outcome"], name
        assert migration["seconds"] > 0
        assert migration["argv"][:2] == ["run", "--no-input"]
        assert migration["argv"][2:] == ["--pg-lock-retry-pause", "0.5"]
        assert isinstance(migration["invalid"], list)
    safe = report["scenarios"]["safe"]
    assert safe["migration"]["outcome"] == "success", safe["migration"]
    assert safe["migration"]["end_state_missing"] == []
    assert [s["version"] for s in safe["steps"]] == [f"1.0.{i}" for i in range(1, 9)]
    assert all(s["outcome"] == "success" and s["window_s"] >= 0 for s in safe["steps"])


def test_the_naive_series_stall_is_recorded_or_it_was_refused(report):
    naive = report["scenarios"]["naive"]
    if naive["migration"]["outcome"].startswith("refused"):
        assert naive["steps"] == []
        assert naive["series"]["stall_s"] >= 0
    else:
        first = naive["steps"][0]
        assert first["version"] == "1.0.1" and first["name"] == "add-order-fee"
        assert first["stall_s"] > 0 and first["stall_at"] >= 0
    accepted = (PROJECT / "bench" / "live_scripts.py").read_text()
    assert "hazards_accepted" in accepted


def test_the_blocker_held_orders_while_the_migration_ran(report):
    blocker = report["scenarios"]["blocker"]["blocker"]
    assert blocker["error"] == ""
    assert blocker["holds"] and all(end > start for start, end in blocker["holds"])


def test_targets_are_judged_and_the_readme_tables_print(report):
    names = [row["target"] for row in report["targets"]]
    assert any("refused by the gate" in n for n in names)
    assert any("INVALID" in n for n in names)
    assert all(row["status"] in ("met", "missed", "not measured") for row in report["targets"])
    assert "targets:" in report["_stdout"]
    tables = subprocess.run(
        [sys.executable, str(LIVE), "--markdown", report["_file"]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in SCENARIOS:
        assert f"**{name}**" in tables or f"| {name} |" in tables
    assert "| target | status | value |" in tables


def test_no_database_of_the_run_is_left_on_the_server(report):
    prefix = report["databases_prefix"]
    with pg_admin() as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", [prefix + "%"]
        ).fetchall()
    assert left == []
