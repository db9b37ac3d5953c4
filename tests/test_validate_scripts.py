"""`tbmigrate validate scripts`: every down undoes its up, on scratch databases of each vendor."""

import json
import os
import signal
import subprocess
import sys
import time

from tests.conftest import (
    PROJECT,
    cli_env,
    pg_admin,
    snapshot,
    table_script,
    tbmigrate,
    write_script,
)
from tests.validation_support import checks, scratch_databases


def roundtrips(result):
    return [c for c in checks(result) if c[1].startswith("roundtrip[")]


def test_the_starter_scripts_pass_the_round_trip(target, temp_dir):
    before = snapshot(target)
    result = tbmigrate("validate", "scripts", database=target)
    assert result.code == 0, result.out + result.err
    expected = [
        (
            "PASS",
            f"roundtrip[{vendor}]",
            "5 script(s) round-trip cleanly (down restores the schema, up runs again)",
        )
        for vendor in (["postgresql", "sqlite"] if target.vendor == "postgresql" else ["sqlite"])
    ]
    assert roundtrips(result) == expected
    assert "PASS  reversible: every one of the 5 script(s) has a down()" in result.out
    assert snapshot(target) == before  # the live database is not touched
    assert list(temp_dir.iterdir()) == [] and scratch_databases() == []


def test_a_down_that_forgets_an_index_is_reported(target, scripts_dir, temp_dir):
    table_script(scripts_dir, "1.0.0", "a")
    write_script(
        scripts_dir,
        "1.0.1",
        "index-a",
        # Plain SQL: db.create_index is idempotent, so its second up would pass.
        up='db.execute("CREATE INDEX a_label_idx ON a (label)")',
        down="pass  # forgets the index",
    )
    table_script(scripts_dir, "1.0.2", "b")
    result = tbmigrate("validate", "scripts", "--json", database=target)
    assert result.code == 1
    report = json.loads(result.out)
    own = [c for c in report["checks"] if c["name"] == f"roundtrip[{target.vendor}]"]
    messages = [c["message"] for c in own if c["level"] == "FAIL"]
    assert messages[0] == (
        "1.0.1 index-a: down does not restore the schema: index a_label_idx on a (label) is "
        "left behind"
    )
    assert messages[1].startswith("1.0.1 index-a: up fails after its down: ")
    assert "a_label_idx" in messages[1] and "(left behind by the down above)" in messages[1]
    assert own[0]["details"]["differences"][0]["change"] == "extra"
    clean = next(c for c in own if c["level"] == "PASS")
    assert clean["details"] == ["1.0.0 create-a", "1.0.2 create-b"]
    assert list(temp_dir.iterdir()) == [] and scratch_databases() == []


def test_a_down_that_raises_or_is_missing_does_not_hide_the_others(
    target,
    scripts_dir,
    temp_dir,
):
    table_script(scripts_dir, "1.0.0", "a")
    write_script(
        scripts_dir, "1.0.1", "one-way", up='db.execute("CREATE TABLE b (id INT)")', down=None
    )
    table_script(scripts_dir, "1.0.2", "c")
    write_script(
        scripts_dir,
        "1.0.3",
        "bad-down",
        up='db.execute("CREATE TABLE d (id INT)")',
        down='db.execute("DROP TABLE nothing_here")',
    )
    table_script(scripts_dir, "1.0.4", "e")
    result = tbmigrate("validate", "scripts", database=target)
    assert result.code == 1
    assert "WARN  reversible: 1 irreversible script(s) (no down()): 1.0.1 one-way" in result.out
    own = [c for c in roundtrips(result) if c[1] == f"roundtrip[{target.vendor}]"]
    assert own[0][0] == "FAIL" and own[0][2].startswith("1.0.3 bad-down: down fails: ")
    assert "nothing_here" in own[0][2]
    assert own[-1] == (
        "PASS",
        f"roundtrip[{target.vendor}]",
        "3 script(s) round-trip cleanly (down restores the schema, up runs again)",
    )
    assert list(temp_dir.iterdir()) == [] and scratch_databases() == []


def test_a_script_that_cannot_build_an_empty_database_fails(target, scripts_dir, temp_dir):
    write_script(
        scripts_dir, "1.0.0", "needs-legacy", up='db.execute("ALTER TABLE legacy ADD x INT")'
    )
    result = tbmigrate("validate", "scripts", database=target)
    assert result.code == 1
    assert "the scripts do not build an empty database: 1.0.0 needs-legacy failed to apply" in (
        result.out
    )
    assert list(temp_dir.iterdir()) == [] and scratch_databases() == []


def test_a_script_that_does_not_load_fails_without_running_anything(target, scripts_dir):
    (scripts_dir / "2026-01-01T00-00-00-1.0.0-typo.py").write_text(
        'version = "1.0.0"\ndef up(db)\n'
    )
    result = tbmigrate("validate", "scripts", database=target)
    assert result.code == 1
    assert "FAIL  scripts: 1 script problem(s): " in result.out
    assert "line 2: syntax error" in result.out
    assert roundtrips(result) == []


def test_ctrl_c_in_a_real_process_removes_the_scratch_database(target, tmp_path):
    """SIGINT while a script runs on the scratch database: exit 130, nothing left behind."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    marker = tmp_path / "scratch-name.txt"
    write_script(
        scripts,
        "1.0.0",
        "slow",
        header="import os, time",
        up="""
            db.execute("CREATE TABLE slow (id INTEGER)")
            with open(os.environ["TBM_MARKER"], "w") as handle:
                handle.write(str(db.connection.settings_dict["NAME"]))
            time.sleep(60)
        """,
    )
    env = cli_env(target, scripts, TBM_MARKER=str(marker), TMPDIR=str(tmp_path))
    process = subprocess.Popen(
        [sys.executable, str(PROJECT / "manage.py"), "tbmigrate", "validate", "scripts"],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for _ in range(600):
        if marker.exists() and marker.read_text():
            break
        time.sleep(0.1)
    scratch = marker.read_text()
    assert "tbmigrate_scratch_" in scratch
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "interrupted; validate scripts stopped, nothing was changed" in err
    assert "Traceback" not in err
    if target.vendor == "postgresql":
        with pg_admin() as conn:
            left = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [scratch])
            assert left.fetchall() == []
    else:
        assert not os.path.exists(scratch)
    assert [p for p in tmp_path.iterdir() if p.name.startswith("tbmigrate-scratch-")] == []


# -- the whole schema, before the up and after the down -----------------------------------
def _leftover_scripts(folder, vendor):
    """Idempotent ups (IF NOT EXISTS, OR REPLACE) whose downs forget something: the up
    runs again without complaint, so only comparing the schema finds the leftover."""
    from tests.validation_support import statements_script

    statements_script(
        folder,
        "1.0.0",
        "accounts",
        ["CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance NUMERIC NOT NULL DEFAULT 0)"],
        ["DROP TABLE accounts"],
    )
    if vendor == "postgresql":
        statements_script(
            folder,
            "1.0.1",
            "audit-trigger",
            [
                "CREATE OR REPLACE FUNCTION audit_balance() RETURNS trigger LANGUAGE plpgsql "
                "AS $$ BEGIN RETURN NEW; END $$",
                "CREATE OR REPLACE TRIGGER accounts_audit BEFORE UPDATE ON accounts "
                "FOR EACH ROW EXECUTE FUNCTION audit_balance()",
            ],
            ["DROP TRIGGER accounts_audit ON accounts"],  # forgets the function
        )
        statements_script(
            folder,
            "1.0.2",
            "invoice-numbers",
            ["CREATE SEQUENCE IF NOT EXISTS invoice_seq"],
            [],  # forgets the sequence
        )
        return [
            "1.0.1 audit-trigger: down does not restore the schema: function audit_balance() "
            "is left behind",
            "1.0.2 invoice-numbers: down does not restore the schema: sequence invoice_seq "
            "is left behind",
        ]
    statements_script(
        folder,
        "1.0.1",
        "audit-trigger",
        [
            "CREATE TRIGGER IF NOT EXISTS accounts_audit AFTER UPDATE ON accounts BEGIN "
            "SELECT 1; END"
        ],
        [],  # forgets the trigger
    )
    statements_script(
        folder,
        "1.0.2",
        "balance-index",
        ["CREATE INDEX IF NOT EXISTS accounts_balance_idx ON accounts (balance)"],
        [],
    )
    return [
        "1.0.1 audit-trigger: down does not restore the schema: trigger accounts_audit on "
        "accounts is left behind",
        "1.0.2 balance-index: down does not restore the schema: index accounts_balance_idx on "
        "accounts (balance) is left behind",
    ]


def test_a_down_leaving_objects_behind_an_idempotent_up_is_caught(target, scripts_dir, settings):
    settings.TBMIGRATE_VALIDATE_VENDORS = [target.vendor]
    expected = _leftover_scripts(scripts_dir, target.vendor)
    result = tbmigrate("validate", "scripts", database=target)
    assert result.code == 1, result.out
    failing = [m for _level, _name, m in checks(result, "FAIL")]
    assert failing == expected
    assert roundtrips(result)[-1] == (
        "PASS",
        f"roundtrip[{target.vendor}]",
        "1 script(s) round-trip cleanly (down restores the schema, up runs again)",
    )


def test_a_down_that_changes_what_it_should_not_is_named(target, scripts_dir, settings):
    """A down that drops a column of an older table, or alters one, is named too."""
    from tests.validation_support import statements_script

    settings.TBMIGRATE_VALIDATE_VENDORS = [target.vendor]
    statements_script(
        scripts_dir,
        "1.0.0",
        "accounts",
        ["CREATE TABLE accounts (id INTEGER PRIMARY KEY, code VARCHAR(20), note TEXT)"],
        ["DROP TABLE accounts"],
    )
    statements_script(
        scripts_dir,
        "1.0.1",
        "code-index",
        ["CREATE INDEX accounts_code_idx ON accounts (code)"],
        ["DROP INDEX accounts_code_idx", "ALTER TABLE accounts DROP COLUMN note"],
    )
    result = tbmigrate("validate", "scripts", database=target)
    assert result.code == 1
    failing = [m for _level, _name, m in checks(result, "FAIL")]
    assert failing == [
        "1.0.1 code-index: down does not restore the schema: column accounts.note is gone",
        "1.0.1 code-index: up after down gives a different schema: column accounts.note is gone",
    ]


def test_a_postgresql_only_project_can_use_it_as_a_ci_gate(make_database, tmp_path):
    """PL/pgSQL scripts, DATABASE_URL on PostgreSQL only: replayed on PostgreSQL alone."""
    from tests.conftest import cli
    from tests.validation_support import statements_script

    database = make_database("postgresql")
    scripts = tmp_path / "pg-scripts"
    scripts.mkdir()
    statements_script(
        scripts,
        "1.0.0",
        "plpgsql",
        [
            "CREATE TABLE fills (id BIGSERIAL PRIMARY KEY, price NUMERIC NOT NULL, "
            "seen TIMESTAMPTZ)",
            "CREATE FUNCTION touch_fill() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN NEW.seen := now(); RETURN NEW; END $$",
            "CREATE TRIGGER fills_touch BEFORE INSERT ON fills FOR EACH ROW "
            "EXECUTE FUNCTION touch_fill()",
        ],
        ["DROP TABLE fills", "DROP FUNCTION touch_fill()"],
    )
    done = cli("validate", "scripts", database=database, scripts=scripts)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS  roundtrip[postgresql]: 1 script(s) round-trip cleanly" in done.stdout
    assert "roundtrip[sqlite]" not in done.stdout
    # asked for SQLite too, the same scripts fail there, naming the script
    done = cli(
        "validate",
        "scripts",
        database=database,
        scripts=scripts,
        env={"DJANGO_SETTINGS_MODULE": "tests.vendors_settings"},
    )
    assert done.returncode == 1
    assert "FAIL  roundtrip[sqlite]: the scripts do not build an empty database: 1.0.0 " in (
        done.stdout
    )


def test_a_bad_vendors_setting_is_one_clear_line(target, scripts_dir, settings):
    table_script(scripts_dir, "1.0.0", "a")
    settings.TBMIGRATE_VALIDATE_VENDORS = ["oracle"]
    result = tbmigrate("validate", "scripts", database=target)
    assert result.code == 1
    assert "TBMIGRATE_VALIDATE_VENDORS is ['oracle']: give a list of" in result.err
    assert "Traceback" not in result.err


def test_a_script_that_cannot_build_does_not_hide_what_was_found_before_it(
    target, scripts_dir, settings
):
    settings.TBMIGRATE_VALIDATE_VENDORS = [target.vendor]
    table_script(scripts_dir, "1.0.0", "a")
    write_script(
        scripts_dir,
        "1.0.1",
        "index-a",
        # Plain SQL: db.create_index is idempotent, so its second up would pass.
        up='db.execute("CREATE INDEX a_label_idx ON a (label)")',
        down="pass  # forgets the index",
    )
    write_script(
        scripts_dir, "1.0.2", "needs-legacy", up='db.execute("ALTER TABLE legacy ADD x INT")'
    )
    result = tbmigrate("validate", "scripts", database=target)
    assert result.code == 1
    failing = [m for _level, _name, m in checks(result, "FAIL")]
    assert failing[0].startswith("1.0.1 index-a: down does not restore the schema: ")
    assert failing[-1].startswith(
        "the scripts do not build an empty database: 1.0.2 needs-legacy failed to apply"
    )
    assert ("PASS", f"roundtrip[{target.vendor}]") == roundtrips(result)[-1][:2]
