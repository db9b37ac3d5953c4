"""`tbmigrate status`: states, --json, --check, on both databases."""

import json

from tests.conftest import table_script, tables_of, tbmigrate, write_script


def states(target):
    result = tbmigrate("status", "--json", database=target)
    assert result.code == 0, result.err
    return {m["version"]: m["state"] for m in json.loads(result.out)["migrations"]}


def test_status_on_a_new_database_shows_all_pending_and_writes_nothing(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a1")
    result = tbmigrate("status", database=target)
    assert result.code == 0
    assert "1.0.0    create-a1  pending" in result.out
    assert "1 migrations: 1 pending." in result.out
    assert tables_of(target) == set()


def test_status_shows_applied_pending_changed_missing_and_failed(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a1")
    edited = table_script(scripts_dir, "1.0.1", "a2")
    gone = table_script(scripts_dir, "1.0.2", "a3")
    write_script(
        scripts_dir,
        "1.0.3",
        "half-way",
        atomic=False,
        up='db.execute("CREATE TABLE a4 (id INTEGER)")\nraise RuntimeError("stopped half-way")',
    )
    table_script(scripts_dir, "1.0.4", "a5")
    assert tbmigrate("run", database=target).code == 1  # 1.0.3 fails outside a transaction
    edited.write_text(edited.read_text() + "\n# edited after it ran\n")
    gone.unlink()
    assert states(target) == {
        "1.0.0": "applied",
        "1.0.1": "changed",
        "1.0.2": "missing",
        "1.0.3": "failed",
        "1.0.4": "pending",
    }
    text = tbmigrate("status", database=target).out
    assert "5 migrations: 1 applied, 1 pending, 1 changed, 1 missing, 1 failed." in text


def test_status_json_has_the_documented_fields(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a1")
    write_script(scripts_dir, "1.0.1", "one-way", down=None)
    tbmigrate("run", "--to", "1.0.0", database=target)
    data = json.loads(tbmigrate("status", "--json", database=target).out)
    assert data["vendor"] == target.vendor
    assert data["database"].startswith(("sqlite:///", "postgresql://"))
    first, second = data["migrations"]
    assert first["state"] == "applied" and first["applied_at"] and len(first["checksum"]) == 64
    assert first["checksum"] == first["applied_checksum"]
    assert second == {**second, "state": "pending", "applied_at": None, "reversible": False}
    assert data["counts"] == {
        "applied": 1,
        "pending": 1,
        "changed": 0,
        "missing": 0,
        "failed": 0,
        "interrupted": 0,
        "running": 0,
    }


def test_check_exits_1_while_anything_is_pending_and_0_when_up_to_date(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a1")
    pending = tbmigrate("status", "--check", database=target)
    assert pending.code == 1 and "not up to date (1 migrations: 1 pending)" in pending.err
    tbmigrate("run", database=target)
    assert tbmigrate("status", "--check", database=target).code == 0


def test_check_exits_1_when_an_applied_script_changed(target, scripts_dir):
    path = table_script(scripts_dir, "1.0.0", "a1")
    tbmigrate("run", database=target)
    path.write_text(path.read_text().replace("label VARCHAR(50)", "label VARCHAR(60)"))
    result = tbmigrate("status", "--check", database=target)
    assert result.code == 1 and "1 changed" in result.err


def test_status_marks_irreversible_and_non_atomic_scripts(target, scripts_dir):
    write_script(scripts_dir, "1.0.0", "one-way", down=None)
    write_script(scripts_dir, "1.0.1", "outside", atomic=False)
    lines = tbmigrate("status", database=target).out.splitlines()
    assert "irreversible" in next(line for line in lines if line.startswith("1.0.0"))
    assert "non-atomic" in next(line for line in lines if line.startswith("1.0.1"))
