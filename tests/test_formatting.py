"""migrator.formatting: one way to write a time, a duration, a rate, for the CLI and the admin."""

from datetime import UTC, datetime, timedelta, timezone

from migrator.formatting import count, duration, first_line, parse_time, rate, span, table, when

NEW_YORK_WINTER = timezone(timedelta(hours=-5))


def test_a_time_is_utc_to_the_second_whatever_its_zone():
    assert when(datetime(2026, 12, 1, 19, 46, 17, 900_000, tzinfo=UTC)) == "2026-12-01 19:46:17 UTC"
    local = datetime(2026, 12, 1, 14, 46, 17, tzinfo=NEW_YORK_WINTER)
    assert when(local) == "2026-12-01 19:46:17 UTC"
    assert when(datetime(2026, 12, 1, 19, 46, 17)) == "2026-12-01 19:46:17 UTC"  # naive: UTC
    assert when(None) == "" and when("") == ""


def test_times_given_as_text_are_read_first():
    assert when("2026-12-01T19:46:17Z") == "2026-12-01 19:46:17 UTC"
    assert when("2026-12-01T20:46:17+01:00") == "2026-12-01 19:46:17 UTC"
    assert when("2026-12-01 19:46:17") == "2026-12-01 19:46:17 UTC"  # the PostgreSQL lock's
    assert when("2026-12-01 19:46:17 UTC") == "2026-12-01 19:46:17 UTC"  # the SQLite lock's
    assert when("yesterday") == "yesterday"
    assert parse_time("not a time") is None


def test_durations_spans_counts_and_rates():
    assert [duration(v) for v in (0.42, 9.99, 812.4, 12_500)] == [
        "0.4 ms",
        "10.0 ms",
        "812 ms",
        "12.5 s",
    ]
    assert duration(None) == ""
    assert [span(v) for v in (0.4, 45, 60, 725, 3600, 12_000)] == [
        "0 s",
        "45 s",
        "1 min",
        "12 min 5 s",
        "1 h",
        "3 h 20 min",
    ]
    assert span(None) == "" and span(-3) == "0 s"
    assert count(120000) == "120,000" and count(None) == ""
    assert rate(8500.4) == "8,500 rows/s" and rate(None) == ""


def test_tables_align_and_ignore_colour_codes():
    lines = table(
        ["Version", "State"], [["1.0.0", "\x1b[32mapplied\x1b[0m"], ["1.0.10", "pending"]]
    )
    assert lines == ["Version  State", "1.0.0    \x1b[32mapplied\x1b[0m", "1.0.10   pending"]


def test_first_line_cuts_long_text_with_an_ellipsis():
    assert first_line("\n  boom: it broke  \nTraceback...") == "boom: it broke"
    assert first_line("x" * 300, 10) == "x" * 9 + "…"
    assert first_line(None) == "" and first_line("", 5) == ""


def test_the_command_line_and_the_admin_share_one_module():
    from migrator import chart
    from migrator.cli import render

    assert render.when is when and render.duration is duration and render.table is table
    assert chart.duration is duration


def test_the_admin_and_the_library_modules_import_neither_the_cli_nor_the_project():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "migrator"
    files = [*sorted((root / "admin").glob("*.py"))] + [
        root / name for name in ("chart.py", "formatting.py", "running.py", "diffs.py")
    ]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                assert not name.startswith(("migrator.cli", "tradingbot_site")), (path, name)


def test_sizes_read_as_people_read_them():
    from migrator.formatting import size

    assert [size(n) for n in (0, 512, 1536, 5 * 1024**3, 3 * 1024**4)] == [
        "0 B",
        "512 B",
        "1.5 KB",
        "5.0 GB",
        "3.0 TB",
    ]
