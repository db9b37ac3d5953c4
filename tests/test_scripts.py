"""Loading scripts: every bad input is one clear error naming the file; and `create`."""

import re
from datetime import UTC, datetime

import pytest

from migrator.errors import ScriptError, UsageError
from migrator.scripts import checksum, create_script, load_scripts
from tests.conftest import write_script


def test_scripts_load_in_semantic_version_order(tmp_path):
    for version in ["1.0.10", "1.0.9", "1.0.2"]:
        write_script(tmp_path, version, f"v{version.replace('.', '-')}")
    assert [str(s.version) for s in load_scripts(tmp_path)] == ["1.0.2", "1.0.9", "1.0.10"]


def test_a_script_without_down_loads_as_irreversible(tmp_path):
    write_script(tmp_path, "1.0.0", "one-way", down=None)
    (script,) = load_scripts(tmp_path)
    assert script.reversible is False
    assert script.atomic is True


def test_files_starting_with_underscore_and_other_files_are_ignored(tmp_path):
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "_helpers.py").write_text("x = 1")
    (tmp_path / "README.md").write_text("notes")
    assert load_scripts(tmp_path) == []


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (
            lambda d: (d / "2026-01-01T00-00-00-1.0.1-broken.py").write_text(
                'version = "1.0.1"\ndef up(db)\n    pass\n'
            ),
            r"1\.0\.1-broken\.py, line 2: syntax error",
        ),
        (
            lambda d: (d / "2026-01-01T00-00-00-1.0.1-imports.py").write_text(
                'import no_such_module_here\nversion = "1.0.1"\ndef up(db): pass\n'
            ),
            r"1\.0\.1-imports\.py: importing it raised ModuleNotFoundError",
        ),
        (
            lambda d: (d / "2026-01-01T00-00-00-1.0.1-mismatch.py").write_text(
                'version = "1.0.2"\ndef up(db): pass\n'
            ),
            r"1\.0\.1-mismatch\.py: declares version 1\.0\.2 but its file name says 1\.0\.1",
        ),
        (
            lambda d: (d / "2026-01-01T00-00-00-1.0.1-bad-version.py").write_text(
                'version = "1.0"\ndef up(db): pass\n'
            ),
            r"1\.0\.1-bad-version\.py: '1\.0' is not a semantic version",
        ),
        (
            lambda d: (d / "2026-01-01T00-00-00-1.0.1-no-up.py").write_text('version = "1.0.1"\n'),
            r"1\.0\.1-no-up\.py: defines no up\(db\)",
        ),
        (
            lambda d: (d / "2026-01-01T00-00-00-1.0.1-no-version.py").write_text(
                "def up(db): pass\n"
            ),
            r"1\.0\.1-no-version\.py: defines no `version`",
        ),
        (
            lambda d: (d / "2026-01-01T00-00-00-1.0.1-atomic.py").write_text(
                'version = "1.0.1"\natomic = "no"\ndef up(db): pass\n'
            ),
            r"1\.0\.1-atomic\.py: `atomic` must be True or False",
        ),
        (
            lambda d: (d / "add-stuff.py").write_text('version = "1.0.1"\ndef up(db): pass\n'),
            r"add-stuff\.py: the file name must look like",
        ),
        (
            lambda d: (d / "2026-01-01T00-00-00-1.0-x.py").write_text(
                'version = "1.0"\ndef up(db): pass\n'
            ),
            r"1\.0-x\.py: the file name must look like",
        ),
        (
            lambda d: (d / "2026-01-01T00-00-00-1.0.1-Bad_Name.py").write_text(
                'version = "1.0.1"\ndef up(db): pass\n'
            ),
            r"Bad_Name\.py: the file name must look like",
        ),
    ],
    ids=[
        "syntax",
        "import",
        "mismatch",
        "semver",
        "no-up",
        "no-version",
        "atomic",
        "no-version-in-name",
        "short-version",
        "bad-name",
    ],
)
def test_each_bad_script_is_one_error_naming_the_file(tmp_path, setup, message):
    write_script(tmp_path, "1.0.0", "fine")
    setup(tmp_path)
    with pytest.raises(ScriptError, match=message) as info:
        load_scripts(tmp_path)
    assert "\n" not in str(info.value)


def test_a_duplicate_version_names_both_files(tmp_path):
    first = write_script(tmp_path, "1.0.3", "one")
    second = write_script(tmp_path, "1.0.3", "two", stamp="2026-02-02T00-00-00")
    with pytest.raises(ScriptError) as info:
        load_scripts(tmp_path)
    assert "version 1.0.3 is used by both" in str(info.value)
    assert first.name in str(info.value) and second.name in str(info.value)


def test_every_problem_is_reported_at_once(tmp_path):
    (tmp_path / "2026-01-01T00-00-00-1.0.1-a.py").write_text("def up(db) pass\n")
    (tmp_path / "2026-01-01T00-00-00-1.0.2-b.py").write_text(
        'version = "9.9.9"\ndef up(db): pass\n'
    )
    with pytest.raises(ScriptError, match="2 migration script problems") as info:
        load_scripts(tmp_path)
    assert "1.0.1-a.py" in str(info.value) and "1.0.2-b.py" in str(info.value)


def test_a_missing_scripts_folder_says_how_to_fix_it(tmp_path):
    with pytest.raises(ScriptError, match=r"does not exist .*TBMIGRATE_SCRIPTS_DIR"):
        load_scripts(tmp_path / "nope")


def test_checksum_ignores_line_endings_but_not_content():
    assert checksum(b"a\r\nb\r\n") == checksum(b"a\nb\n")
    assert checksum(b"a\nb\n") != checksum(b"a\nc\n")


def test_the_checksum_is_of_the_bytes_that_were_compiled(tmp_path):
    path = write_script(tmp_path, "1.0.0", "x")
    (script,) = load_scripts(tmp_path)
    assert script.checksum == checksum(path.read_bytes())


# -- create ---------------------------------------------------------------------------
def test_create_writes_a_timestamped_script_that_loads(tmp_path):
    now = datetime(2026, 11, 26, 10, 0, 5, tzinfo=UTC)
    path = create_script(tmp_path, "1.0.3", "add-trading-sessions", "Add sessions", now=now)
    assert path.name == "2026-11-26T10-00-05-1.0.3-add-trading-sessions.py"
    (script,) = load_scripts(tmp_path)
    assert (str(script.version), script.name, script.description) == (
        "1.0.3",
        "add-trading-sessions",
        "Add sessions",
    )
    assert script.reversible
    with pytest.raises(NotImplementedError, match=r"write up\(\) of 1\.0\.3"):
        script.up(None)


def test_create_file_name_follows_the_guide(tmp_path):
    path = create_script(tmp_path, "1.0.3", "add-trading-sessions")
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-1\.0\.3-add-trading-sessions\.py", path.name
    )


@pytest.mark.parametrize(
    ("version", "name", "message"),
    [
        ("1.0", "x", "not a semantic version"),
        ("1.0.3", "Add_Things", "not a valid name"),
        ("1.0.3", "add things", "not a valid name"),
        ("1.0.3", "-x", "not a valid name"),
    ],
)
def test_create_refuses_bad_input(tmp_path, version, name, message):
    with pytest.raises(UsageError, match=message):
        create_script(tmp_path, version, name)
    assert list(tmp_path.iterdir()) == []


def test_create_refuses_an_existing_version(tmp_path):
    existing = write_script(tmp_path, "1.0.3", "first")
    with pytest.raises(UsageError, match=f"version 1.0.3 already exists in .*{existing.name}"):
        create_script(tmp_path, "1.0.3", "second")
    assert len(list(tmp_path.iterdir())) == 1


def test_create_description_with_quotes_still_loads(tmp_path):
    create_script(tmp_path, "2.0.0", "quoted", 'It\'s "quoted" """ and {braced}')
    (script,) = load_scripts(tmp_path)
    assert script.description == 'It\'s "quoted" """ and {braced}'
