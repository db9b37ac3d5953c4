"""The history page's duration chart (pure geometry) and masking URLs inside free text."""

from datetime import UTC, datetime, timedelta

from migrator.chart import Point, duration_chart
from migrator.redact import mask_urls

START = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def point(version: str, ms: float, minutes: int) -> Point:
    return Point(version, f"step-{version}", START + timedelta(minutes=minutes), ms)


def test_no_history_draws_no_chart():
    assert duration_chart([]) is None


def test_bars_follow_the_time_of_application_and_are_as_tall_as_their_duration():
    # Given out of order: the chart sorts by when each ran, not by version.
    chart = duration_chart(
        [point("1.0.10", 40.0, 2), point("1.0.9", 10.0, 1), point("1.0.0", 20.0, 0)]
    )
    assert chart is not None
    assert [bar.point.version for bar in chart.bars] == ["1.0.0", "1.0.9", "1.0.10"]
    xs = [bar.x for bar in chart.bars]
    assert xs == sorted(xs)
    tallest = chart.bottom - chart.top
    assert [bar.height for bar in chart.bars] == [tallest / 2, tallest / 4, tallest]
    assert all(bar.y + bar.height == chart.bottom for bar in chart.bars)
    assert [tick.label for tick in chart.ticks] == ["0", "20 ms", "40 ms"]
    assert (chart.first_applied, chart.last_applied) == (START, START + timedelta(minutes=2))


def test_the_slowest_migration_is_marked_once_and_named():
    points = [point(f"1.0.{i}", 5.0, i) for i in range(30)]
    points[17] = point("1.0.17", 2500.0, 17)
    chart = duration_chart(points)
    assert chart is not None
    assert [bar.point.version for bar in chart.bars if bar.slowest] == ["1.0.17"]
    assert chart.slowest is not None and chart.slowest.point.version == "1.0.17"
    assert chart.slowest_duration == "2500 ms"
    assert chart.slowest.title == "1.0.17 step-1.0.17: 2500 ms, applied 2026-11-26 09:17:00 UTC"
    # Thirty bars leave no room for every label: the first, the last and the slowest keep theirs.
    assert [bar.label for bar in chart.bars if bar.label] == ["1.0.0", "1.0.17", "1.0.29"]
    assert all(bar.x + bar.width <= chart.right for bar in chart.bars)


def test_instant_or_faked_steps_still_show_and_nothing_is_called_slowest():
    chart = duration_chart([point("1.0.0", 0.0, 0), point("1.0.1", 0.0, 1)])
    assert chart is not None
    assert chart.slowest is None and all(bar.height == 1.0 for bar in chart.bars)
    assert [tick.label for tick in chart.ticks] == ["0"]


def test_mask_urls_hides_any_url_password_in_free_text():
    text = (
        "could not reach postgresql://trader:hunter2@db.internal:5432/tb (timeout); "
        "see https://docs.example.com/x and sqlite:///tmp/a.db; quoted 'postgres://a:p@ss@h/db'"
    )
    assert mask_urls(text) == (
        "could not reach postgresql://trader:***@db.internal:5432/tb (timeout); "
        "see https://docs.example.com/x and sqlite:///tmp/a.db; quoted 'postgres://a:***@h/db'"
    )
    assert mask_urls("") == ""


def test_scrub_masks_a_password_holding_at_signs_before_it_is_stored():
    from migrator.redact import scrub

    stored = scrub("could not reach postgresql://a:p@ss@h:5432/db (timeout)", secrets=[])
    assert stored == "could not reach postgresql://a:***@h:5432/db (timeout)"
    assert "ss@" not in stored
