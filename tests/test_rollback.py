"""`tbmigrate rollback` on both databases: every form, and every refusal reverting nothing."""

import pytest

from migrator import history
from tests.conftest import snapshot, table_script, tables_of, tbmigrate, write_script


@pytest.fixture
def four_applied(target, scripts_dir):
    for n in range(4):
        table_script(scripts_dir, f"1.0.{n}", f"t{n}")
    assert tbmigrate("run", database=target).code == 0
    return target


def applied(target):
    return [str(r.version) for r in history.load(target.alias)]


def test_rollback_without_argument_reverts_only_the_newest(four_applied, scripts_dir):
    result = tbmigrate("rollback", "--no-input", database=four_applied)
    assert result.code == 0, result.err
    assert "Reverting 1.0.3 create-t3... OK" in result.out
    assert applied(four_applied) == ["1.0.0", "1.0.1", "1.0.2"]
    assert "t3" not in tables_of(four_applied) and "t2" in tables_of(four_applied)


def test_rollback_version_reverts_it_and_every_newer_one_newest_first(four_applied, scripts_dir):
    result = tbmigrate("rollback", "1.0.1", "--no-input", database=four_applied)
    assert result.code == 0, result.err
    assert result.out.index("1.0.3") < result.out.index("1.0.2") < result.out.index("1.0.1")
    assert applied(four_applied) == ["1.0.0"]
    assert tables_of(four_applied) & {"t1", "t2", "t3"} == set()


def test_rollback_to_reverts_everything_newer_than_the_target(four_applied, scripts_dir):
    assert tbmigrate("rollback", "--to", "1.0.1", "--no-input", database=four_applied).code == 0
    assert applied(four_applied) == ["1.0.0", "1.0.1"]


def test_rollback_to_zero_reverts_everything(four_applied, scripts_dir):
    assert tbmigrate("rollback", "--to", "0", "--no-input", database=four_applied).code == 0
    assert applied(four_applied) == []
    assert tables_of(four_applied) & {"t0", "t1", "t2", "t3"} == set()
    reverts = [e for e in history.events(four_applied.alias) if e["action"] == "revert"]
    assert [e["version"] for e in reverts] == [
        "1.0.0",
        "1.0.1",
        "1.0.2",
        "1.0.3",
    ]  # newest event first


def test_rollback_dry_run_changes_nothing(four_applied, scripts_dir):
    before = snapshot(four_applied)
    result = tbmigrate("rollback", "1.0.2", "--dry-run", database=four_applied)
    assert result.code == 0
    assert "Would roll back 2 migration(s), newest first:" in result.out
    assert snapshot(four_applied) == before


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["9.9.9"], 2, "rollback: there is no migration 9.9.9"),
        (["--to", "9.9.9"], 2, "--to: there is no migration 9.9.9"),
        (["nine"], 2, "not a semantic version"),
        (["1.0.1", "--to", "1.0.0"], 2, "either a VERSION or --to"),
    ],
)
def test_unknown_targets_are_bad_usage_and_change_nothing(
    four_applied, scripts_dir, args, code, message
):
    before = snapshot(four_applied)
    result = tbmigrate("rollback", *args, "--no-input", database=four_applied)
    assert result.code == code
    assert message in result.err
    assert snapshot(four_applied) == before


def test_an_unapplied_version_is_refused(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a")
    table_script(scripts_dir, "1.0.1", "b")
    tbmigrate("run", "--to", "1.0.0", database=target)
    result = tbmigrate("rollback", "1.0.1", "--no-input", database=target)
    assert result.code == 2 and "1.0.1 is not applied" in result.err
    assert applied(target) == ["1.0.0"]


def test_a_script_without_down_refuses_the_whole_rollback(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a")
    write_script(
        scripts_dir, "1.0.1", "one-way", up='db.execute("CREATE TABLE b (id INTEGER)")', down=None
    )
    table_script(scripts_dir, "1.0.2", "c")
    tbmigrate("run", database=target)
    before = snapshot(target)
    result = tbmigrate("rollback", "--to", "0", "--no-input", database=target)
    assert result.code == 1
    assert (
        "1.0.1 one-way has no down() and cannot be reverted; nothing was rolled back" in result.err
    )
    assert snapshot(target) == {
        **before,
        "tbmigrate_audit_event": snapshot(target)["tbmigrate_audit_event"],
    }
    assert applied(target) == ["1.0.0", "1.0.1", "1.0.2"]
    assert "c" in tables_of(target)
    # newer than the irreversible one is still fine
    assert tbmigrate("rollback", "--no-input", database=target).code == 0


def test_a_changed_or_missing_file_refuses_rollback(four_applied, scripts_dir):
    edited = next(scripts_dir.glob("*1.0.3-*"))
    edited.write_text(edited.read_text() + "# edited\n")
    result = tbmigrate("rollback", "--no-input", database=four_applied)
    assert result.code == 1
    assert "rollback refused: 1.0.3 create-t3 was edited after it was applied" in result.err
    assert edited.name in result.err
    edited.write_text(edited.read_text().replace("# edited\n", ""))
    next(scripts_dir.glob("*1.0.2-*")).unlink()
    result = tbmigrate("rollback", "1.0.2", "--no-input", database=four_applied)
    assert (
        result.code == 1 and "1.0.2 create-t2 is applied but its script file is gone" in result.err
    )
    assert applied(four_applied) == ["1.0.0", "1.0.1", "1.0.2", "1.0.3"]
    refusals = [e for e in history.events(four_applied.alias) if e["outcome"] == "refused"]
    assert len(refusals) == 2


def test_a_failing_down_is_rolled_back_and_keeps_the_row(target, scripts_dir):
    write_script(
        scripts_dir,
        "1.0.0",
        "bad-down",
        up='db.execute("CREATE TABLE k (id INTEGER)")',
        down='db.execute("DROP TABLE k")\nraise RuntimeError("down broke")',
    )
    tbmigrate("run", database=target)
    result = tbmigrate("rollback", "--no-input", database=target)
    assert (
        result.code == 1
        and "1.0.0 bad-down failed to revert: RuntimeError: down broke" in result.err
    )
    assert "k" in tables_of(target)
    assert applied(target) == ["1.0.0"]


def test_rollback_asks_for_confirmation_and_refuses_without_a_terminal(four_applied, scripts_dir):
    result = tbmigrate("rollback", database=four_applied)
    assert result.code == 1 and "add --no-input" in result.err
    assert applied(four_applied) == ["1.0.0", "1.0.1", "1.0.2", "1.0.3"]


def test_nothing_to_roll_back(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "a")
    result = tbmigrate("rollback", "--no-input", database=target)
    assert result.code == 0 and "Nothing to roll back." in result.out
