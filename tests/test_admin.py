"""The admin review pages, with real history made by real runs, on SQLite and PostgreSQL.

pytest-django's ``admin_client`` logs in a superuser kept in the in-memory ``default``
database; the history lives in the test's own ``target`` database, which the admin is
pointed at with ``TBMIGRATE_ADMIN_DATABASE`` (or ``?database=``).  The test case that
``admin_client`` opens only lets a test reach the aliases named in its ``django_db``
marker, and the target alias is made at run time, so ``review_client`` adds the marker
once the history exists and only then asks for ``admin_client``.
"""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from migrator import targets
from tests.conftest import (
    TestDatabase,
    rows,
    snapshot,
    table_script,
    tbmigrate,
    write_script,
)

# A password tbmigrate never knew, quoted by a script's error; its '@' defeats a simple
# user:password@ pattern, so only the text after it ("not-for-your-eyes") could leak.
URL_SECRET = "not-for-your-eyes"
LEAKY_ERROR = f"lost the replica at postgresql://trader:hunter2@{URL_SECRET}@db.internal:5432/tb"
HISTORY = "/admin/migrator/appliedmigration/"
AUDIT = "/admin/migrator/auditevent/"
PENDING = "/admin/migrator/appliedmigration/pending/"


def make_history(database: TestDatabase, folder: Path) -> None:
    """Real runs: seven applied (one slow backfill), two failures, one pending, one edited
    after it ran and one whose file is gone."""
    write_script(
        folder,
        "1.0.0",
        "create-accounts",
        up='db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER)")',
        down='db.execute("DROP TABLE accounts")',
    )
    table_script(folder, "1.0.1", "orders")
    edited = table_script(folder, "1.0.2", "fills")
    gone = table_script(folder, "1.0.3", "quotes")
    write_script(
        folder,
        "1.0.5",
        "backfill-accounts",
        up="""
            db.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40000) "
                "INSERT INTO accounts (id, balance) SELECT i, i * 7 FROM n"
            )
        """,
        down='db.execute("DELETE FROM accounts")',
    )
    table_script(folder, "1.0.9", "alerts")
    table_script(folder, "1.0.10", "reports")
    assert tbmigrate("run", database=database).code == 0
    # A real SQL error in an atomic step: nothing recorded but the audit event.
    failing = write_script(
        folder, "1.0.11", "fill-reports", up='db.execute("INSERT INTO no_such_table VALUES (1)")'
    )
    assert tbmigrate("run", database=database).code == 1
    # Then, rewritten as a non-atomic step, it stops half-way: a failed history row.
    failing.unlink()
    write_script(
        folder,
        "1.0.11",
        "fill-reports",
        atomic=False,
        up=(
            'db.execute("CREATE TABLE report_rows (id INTEGER)")\n'
            f'raise RuntimeError("{LEAKY_ERROR}")'
        ),
    )
    table_script(folder, "1.0.12", "archive")
    assert tbmigrate("run", database=database).code == 1
    edited.write_text(edited.read_text() + "# edited after it ran\n")
    gone.unlink()


def allow(request: pytest.FixtureRequest, *aliases: str) -> None:
    """Let the test case that ``db`` opens next read ``aliases`` besides ``default``.

    Call it before ``admin_client`` (or ``db``) is set up: pytest-django reads the
    ``django_db`` marker when it opens the test case, and only then.
    """
    request.node.add_marker(pytest.mark.django_db(databases=["default", *aliases]))


@pytest.fixture
def reviewed(target: TestDatabase, scripts_dir: Path, settings, request) -> TestDatabase:  # type: ignore[no-untyped-def]
    """The target with real history, made the admin's database."""
    make_history(target, scripts_dir)
    settings.TBMIGRATE_ADMIN_DATABASE = target.alias
    allow(request, target.alias)
    return target


@pytest.fixture
def client_(reviewed: TestDatabase, admin_client):  # type: ignore[no-untyped-def]
    """A logged-in superuser reviewing ``reviewed`` (set up after it, so it may read it)."""
    return admin_client


def text_of(response) -> str:  # type: ignore[no-untyped-def]
    """What a person reads: the page without tags, styles and runs of spaces."""
    html = response.content.decode()
    html = re.sub(r"<(style|script)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def listed_versions(response) -> list[str]:  # type: ignore[no-untyped-def]
    return re.findall(
        r'<th class="field-version_label"><a [^>]*>([^<]+)</a>', response.content.decode()
    )


def every_page(database: TestDatabase) -> list[str]:
    history_ids = [r[0] for r in rows(database, "SELECT id FROM tbmigrate_applied_migration")]
    event_ids = [r[0] for r in rows(database, "SELECT id FROM tbmigrate_audit_event")]
    return [
        "/admin/",
        "/admin/migrator/",
        HISTORY,
        AUDIT,
        PENDING,
        *(f"{HISTORY}{pk}/change/" for pk in history_ids),
        *(f"{AUDIT}{pk}/change/" for pk in event_ids),
    ]


def test_every_page_renders_the_real_history_and_writes_nothing(reviewed, client_):
    before = snapshot(reviewed)
    pages = every_page(reviewed)
    assert len(pages) > 5 + 8  # 8 history rows, and more audit events
    for url in pages:
        response = client_.get(url)
        assert response.status_code == 200, url
        assert URL_SECRET not in response.content.decode(), url
    assert snapshot(reviewed) == before  # reading the admin changes nothing


def test_history_is_in_semantic_order_with_durations_and_file_states(reviewed, client_):
    response = client_.get(HISTORY)
    assert listed_versions(response) == [
        "1.0.0",
        "1.0.1",
        "1.0.2",
        "1.0.3",
        "1.0.5",
        "1.0.9",
        "1.0.10",
        "1.0.11",
    ]
    page = text_of(response)
    assert re.search(r"1\.0\.2 create-fills applied changed", page)
    assert re.search(r"1\.0\.3 create-quotes applied missing", page)
    assert re.search(r"1\.0\.0 create-accounts applied unchanged", page)
    assert re.search(r"1\.0\.11 fill-reports failed unchanged", page)
    assert f"History of {reviewed.alias}" in page


def test_the_chart_marks_the_slowest_migration(reviewed, client_):
    durations = dict(rows(reviewed, "SELECT version, duration_ms FROM tbmigrate_applied_migration"))
    slowest = max(durations, key=lambda v: durations[v])
    html = client_.get(HISTORY).content.decode()
    bars = re.findall(r'<rect class="tbm-bar( tbm-slowest)?" data-version="([^"]+)"', html)
    assert sorted(version for _, version in bars) == sorted(durations)
    assert [version for mark, version in bars if mark] == [slowest]
    heights = dict(
        re.findall(
            r'data-version="([^"]+)" data-duration-ms="[^"]+" '
            r'x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)"',
            html,
        )
    )
    assert max(heights, key=lambda v: float(heights[v])) == slowest
    assert re.search(rf'id="tbm-slowest">Slowest: <a [^>]+><strong>{re.escape(slowest)} ', html)


def test_failures_show_the_full_error_and_traceback(reviewed, client_):
    failures = rows(
        reviewed,
        "SELECT id, version, error FROM tbmigrate_audit_event WHERE outcome = 'failure' "
        "AND version = '1.0.11' ORDER BY id",
    )
    assert len(failures) == 2
    sql_failure, half_way = failures
    page = text_of(client_.get(f"{AUDIT}{sql_failure[0]}/change/"))
    assert "What went wrong" in page
    assert "no_such_table" in page and "Traceback (most recent call last)" in page
    assert "INSERT INTO no_such_table VALUES (1)" in page  # the statement it ran
    page = text_of(client_.get(f"{AUDIT}{half_way[0]}/change/"))
    assert "postgresql://trader:***@db.internal:5432/tb" in page
    assert URL_SECRET not in page and "hunter2" not in page
    failed_row = rows(
        reviewed, "SELECT id FROM tbmigrate_applied_migration WHERE status = 'failed'"
    )
    page = text_of(client_.get(f"{HISTORY}{failed_row[0][0]}/change/"))
    assert "Why it failed" in page and "lost the replica" in page and URL_SECRET not in page


def test_detail_shows_description_and_the_source_as_it_is_now(reviewed, client_):
    (pk,) = rows(reviewed, "SELECT id FROM tbmigrate_applied_migration WHERE version = '1.0.2'")[0]
    page = text_of(client_.get(f"{HISTORY}{pk}/change/"))
    assert "test create-fills" in page  # the description
    assert "# edited after it ran" in page  # today's source, not the one that ran
    assert "CHANGED" in page and "Every audit event of 1.0.2" in page
    (gone,) = rows(reviewed, "SELECT id FROM tbmigrate_applied_migration WHERE version = '1.0.3'")[
        0
    ]
    assert "the file is gone" in text_of(client_.get(f"{HISTORY}{gone}/change/"))


def test_pending_page_shows_the_next_run_and_what_needs_attention(reviewed, client_):
    index = client_.get("/admin/").content.decode()
    assert f'href="{PENDING}"' in index  # linked from the admin index
    page = text_of(client_.get(PENDING))
    assert "9 migrations: 5 applied, 1 pending, 1 changed, 1 missing, 1 failed" in page
    assert re.search(r"would apply .*1\.0\.12 create-archive", page)
    assert "It would refuse to run: run refused:" in page
    for version, state in (("1.0.2", "changed"), ("1.0.3", "missing"), ("1.0.11", "failed")):
        assert re.search(rf"{re.escape(version)} \S+ {state} ", page), version
    assert "Recent failures" in page and "no_such_table" in page and URL_SECRET not in page


def test_search_and_filters_narrow_the_lists(reviewed, client_):
    assert listed_versions(client_.get(HISTORY, {"q": "1.0.1"})) == ["1.0.1", "1.0.10", "1.0.11"]
    assert listed_versions(client_.get(HISTORY, {"q": "backfill"})) == ["1.0.5"]
    assert listed_versions(client_.get(HISTORY, {"status__exact": "failed"})) == ["1.0.11"]
    assert listed_versions(client_.get(HISTORY, {"script": "changed"})) == ["1.0.2"]
    assert listed_versions(client_.get(HISTORY, {"script": "missing"})) == ["1.0.3"]
    days = [
        r[0].date() for r in rows(reviewed, "SELECT applied_at FROM tbmigrate_applied_migration")
    ]
    day = days[0]
    dated = {
        "applied_at__year": day.year,
        "applied_at__month": day.month,
        "applied_at__day": day.day,
    }
    assert len(listed_versions(client_.get(HISTORY, dated))) == days.count(day) > 0
    assert listed_versions(client_.get(HISTORY, {**dated, "applied_at__year": day.year - 1})) == []

    all_events = client_.get(AUDIT).context["cl"].result_count
    failures = client_.get(AUDIT, {"outcome__exact": "failure"}).context["cl"]
    assert 0 < failures.result_count < all_events
    assert {e.outcome for e in failures.result_list} == {"failure"}
    applies = client_.get(AUDIT, {"action__exact": "apply"}).context["cl"]
    assert 0 < applies.result_count < all_events
    assert {e.action for e in applies.result_list} == {"apply"}
    recorded = targets.describe(reviewed.alias)
    same_db = client_.get(AUDIT, {"recorded_database": recorded}).context["cl"]
    assert same_db.result_count == all_events
    assert (
        client_.get(AUDIT, {"recorded_database": "sqlite:///elsewhere"}).context["cl"].result_count
        == 0
    )
    found = client_.get(AUDIT, {"q": "1.0.11"}).context["cl"]
    # 1.0.11 is non-atomic: journaled (started), then failed; and the failed run's own event
    assert found.result_count == 3 and {e.version for e in found.result_list} == {"1.0.11"}


def test_nobody_can_add_change_or_delete_not_even_a_superuser(reviewed, client_):
    before = snapshot(reviewed)
    (pk,) = rows(reviewed, "SELECT id FROM tbmigrate_applied_migration WHERE version = '1.0.0'")[0]
    (event,) = rows(reviewed, "SELECT MIN(id) FROM tbmigrate_audit_event")[0]
    for base, key in ((HISTORY, pk), (AUDIT, event)):
        assert client_.get(f"{base}add/").status_code == 403
        assert client_.post(f"{base}add/", {"version": "9.9.9"}).status_code == 403
        assert client_.post(f"{base}{key}/change/", {"name": "renamed"}).status_code == 403
        assert client_.get(f"{base}{key}/delete/").status_code == 403
        assert client_.post(f"{base}{key}/delete/", {"post": "yes"}).status_code == 403
        listing = client_.get(base).content.decode()
        assert 'name="action"' not in listing  # no bulk actions (delete selected)
        assert f'href="{base}add/"' not in listing
        detail = client_.get(f"{base}{key}/change/").content.decode()
        assert 'name="_save"' not in detail and "/delete/" not in detail
    assert snapshot(reviewed) == before


def test_anonymous_visitors_are_sent_to_the_login_page(client, db):
    for url in ("/admin/", HISTORY, AUDIT, PENDING, f"{HISTORY}1/change/"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/login/?next=/admin/"), url


def test_staff_without_the_view_permission_cannot_see_pending(client_, django_user_model):
    staff = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    client_.force_login(staff)
    assert client_.get(PENDING).status_code == 403
    assert client_.get(HISTORY).status_code == 403


def test_database_selector_and_setting(reviewed, client_, settings):
    settings.TBMIGRATE_ADMIN_DATABASE = "default"  # Django's own tables; no history there
    page = text_of(client_.get(HISTORY))
    assert "No migration is recorded on this database yet" in page
    assert listed_versions(client_.get(HISTORY)) == []
    chosen = client_.get(HISTORY, {"database": reviewed.alias})
    assert len(listed_versions(chosen)) == 8
    # The list's links keep the database, so the detail page reads the same one.
    link = re.search(r'<th class="field-version_label"><a href="([^"]+)"', chosen.content.decode())
    detail = client_.get(link.group(1).replace("&amp;", "&"))
    assert detail.status_code == 200 and "1.0.0" in text_of(detail)
    assert "1.0.12" in text_of(client_.get(PENDING, {"database": reviewed.alias}))
    # The choice sticks for this session, so the admin's own menu keeps showing it.
    assert len(listed_versions(client_.get(HISTORY))) == 8
    assert f"History of {reviewed.alias}" in text_of(client_.get(AUDIT))
    unknown = text_of(client_.get(HISTORY, {"database": "nowhere"}))
    assert "unknown database alias 'nowhere'" in unknown


@pytest.fixture
def with_password(make_database, scripts_dir, settings, request):  # type: ignore[no-untyped-def]
    """A PostgreSQL alias whose URL has a password (trust auth ignores it), with history."""
    database = make_database("postgresql")
    parts = urlsplit(database.url)
    user = parts.username or "postgres"
    secret = parts.password or "S3cret-Pa55word"
    host = parts.hostname or "127.0.0.1"
    netloc = f"{user}:{secret}@{host}" + (f":{parts.port}" if parts.port else "")
    alias = targets.add("with_password", urlunsplit(parts._replace(netloc=netloc)))
    request.addfinalizer(lambda: targets.remove(alias))
    table_script(scripts_dir, "1.0.0", "a1")
    write_script(scripts_dir, "1.0.1", "boom", up=f'raise RuntimeError("cannot use {secret}")')
    assert tbmigrate("run", "--database", alias).code == 1
    settings.TBMIGRATE_ADMIN_DATABASE = alias
    pages = every_page(database)
    allow(request, alias)
    return pages, f"{user}:***@{host}", secret


def test_a_database_password_never_shows(with_password, admin_client):
    pages, masked, secret = with_password
    shown_masked = False
    for url in pages:
        body = admin_client.get(url).content.decode()
        assert secret not in body, url
        shown_masked |= masked in body
    assert shown_masked


# -- the incident room: times, what ran, runs, resolutions, failing checks ---------------------
UTC_TIME = re.compile(r"\b20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC\b")
DJANGO_TIME = re.compile(r"\b(a\.m\.|p\.m\.|midnight|noon)|[A-Z][a-z]{2}\. \d{1,2}, 20\d\d")


def pk_of(database: TestDatabase, version: str) -> int:
    found = rows(
        database, "SELECT id FROM tbmigrate_applied_migration WHERE version = %s", [version]
    )
    return int(found[0][0])


def test_every_time_on_every_page_is_utc_to_the_second(reviewed, client_):
    for url in every_page(reviewed):
        page = text_of(client_.get(url))
        assert not DJANGO_TIME.search(page), (url, DJANGO_TIME.search(page))
        if "/change/" in url or url in (HISTORY, AUDIT):
            assert UTC_TIME.search(page), url
    stored = rows(
        reviewed, "SELECT applied_at FROM tbmigrate_applied_migration WHERE version = '1.0.0'"
    )
    expected = stored[0][0].strftime("%Y-%m-%d %H:%M:%S") + " UTC"
    assert expected in text_of(client_.get(f"{HISTORY}{pk_of(reviewed, '1.0.0')}/change/"))


def test_a_changed_script_shows_what_ran_against_the_file_now(reviewed, client_):
    html = client_.get(f"{HISTORY}{pk_of(reviewed, '1.0.2')}/change/").content.decode()
    diff = re.search(r'<pre class="tbm-pre tbm-diff" id="tbm-diff">(.*?)</pre>', html, re.S)
    assert diff, "no diff on a changed script's page"
    added = re.findall(r'<span class="tbm-diff-add">([^<]*)</span>', diff.group(1))
    removed = re.findall(r'<span class="tbm-diff-del">([^<]*)</span>', diff.group(1))
    assert added == ["+# edited after it ran"] and removed == []
    assert "1.0.2 as applied" in unescape(diff.group(1))
    # An unchanged script says so and shows what ran once.
    page = text_of(client_.get(f"{HISTORY}{pk_of(reviewed, '1.0.0')}/change/"))
    assert "The file on disk is the script that ran." in page
    # A script whose file is gone: what ran, all of it removed.
    gone = client_.get(f"{HISTORY}{pk_of(reviewed, '1.0.3')}/change/").content.decode()
    assert "The file is gone; this is what ran." in gone
    assert '<span class="tbm-diff-del">-    db.execute(&quot;CREATE TABLE quotes' in gone


# The admin's users in ``default``, in a transactional test case: the tests below make their
# history first and only then log in, so ``default`` must be set up whatever is selected.
@pytest.mark.django_db(transaction=True)
def test_a_row_applied_before_the_text_was_kept_says_so(target, scripts_dir, settings, request):
    table_script(scripts_dir, "1.0.0", "a1")
    assert tbmigrate("run", database=target).code == 0
    # As a row applied before tbmigrate kept scripts' text: migration 0002 added the column
    # NULL to every row that existed then.
    rows(target, "UPDATE tbmigrate_applied_migration SET script_text = NULL RETURNING id")
    assert rows(target, "SELECT script_text FROM tbmigrate_applied_migration") == [(None,)]
    settings.TBMIGRATE_ADMIN_DATABASE = target.alias
    client = request.getfixturevalue("admin_client")
    page = text_of(client.get(f"{HISTORY}{pk_of(target, '1.0.0')}/change/"))
    assert "The text that ran was not kept" in page


def test_a_run_shows_its_events_versions_duration_and_outcome(reviewed, client_):
    (run_id,) = rows(
        reviewed,
        "SELECT run_id FROM tbmigrate_applied_migration WHERE version = '1.0.0'",
    )[0]
    events = rows(
        reviewed,
        "SELECT id, action, version FROM tbmigrate_audit_event WHERE run_id = %s",
        [run_id],
    )
    assert len(events) == 8  # seven applies and the run's own event
    html = client_.get(f"/admin/migrator/auditevent/runs/{run_id}/").content.decode()
    page = text_of_html(html).replace(" ,", ",")
    assert "tbmigrate run : success" in page
    assert "Applied 1.0.0, 1.0.1, 1.0.2, 1.0.3, 1.0.5, 1.0.9, 1.0.10 " in page
    assert "Reverted none" in page
    assert re.search(r"Duration \d+(\.\d)? (ms|s) ", page)
    assert len(re.findall(r'<tr class="tbm-event-row"', html)) == 8
    for pk, _action, _version in events:  # every event links to its own page
        assert f'href="{AUDIT}{pk}/change/?database=' in html
    # The history row links to its run, and the run's list of runs names it.
    detail = client_.get(f"{HISTORY}{pk_of(reviewed, '1.0.0')}/change/").content.decode()
    assert f"/admin/migrator/auditevent/runs/{run_id}/" in detail
    runs = client_.get("/admin/migrator/auditevent/runs/").content.decode()
    assert f'data-run="{run_id}"' in runs
    listed = re.findall(r'<tr class="tbm-run-row" data-run="([^"]+)"', runs)
    assert len(listed) == len(
        set(r[0] for r in rows(reviewed, "SELECT DISTINCT run_id FROM tbmigrate_audit_event"))
    )
    assert client_.get("/admin/migrator/auditevent/runs/no-such-run/").status_code == 404


def text_of_html(html: str) -> str:
    html = re.sub(r"<(style|script)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def test_an_event_links_to_its_history_row_and_the_row_back_to_it(reviewed, client_):
    (event,) = rows(
        reviewed,
        "SELECT id FROM tbmigrate_audit_event WHERE action = 'apply' AND version = '1.0.1'",
    )[0]
    row = pk_of(reviewed, "1.0.1")
    html = client_.get(f"{AUDIT}{event}/change/").content.decode()
    assert f'class="tbm-history-link" href="{HISTORY}{row}/change/?database=' in html
    listing = client_.get(AUDIT).content.decode()
    assert f'href="{HISTORY}{row}/change/?database=' in listing
    back = client_.get(f"{HISTORY}{row}/change/").content.decode()
    assert f'href="{AUDIT}{event}/change/?database=' in back


# The admin's users in ``default``, in a transactional test case: the tests below make their
# history first and only then log in, so ``default`` must be set up whatever is selected.
@pytest.mark.django_db(transaction=True)
def test_failures_say_unresolved_until_a_later_success_resolves_them(
    target, scripts_dir, settings, request
):
    table_script(scripts_dir, "1.0.0", "a1")
    broken = write_script(
        scripts_dir, "1.0.1", "fill", up='db.execute("INSERT INTO nowhere VALUES (1)")'
    )
    assert tbmigrate("run", database=target).code == 1
    settings.TBMIGRATE_ADMIN_DATABASE = target.alias
    client = request.getfixturevalue("admin_client")
    failed_step, failed_run = (
        r[0]
        for r in rows(
            target,
            "SELECT id FROM tbmigrate_audit_event WHERE outcome = 'failure' "
            "ORDER BY action = 'run', id",
        )
    )
    for pk in (failed_step, failed_run):
        assert "Resolved by: unresolved" in text_of(client.get(f"{AUDIT}{pk}/change/"))
    assert "unresolved" in text_of(client.get(PENDING))

    broken.write_text(broken.read_text().replace("INSERT INTO nowhere VALUES (1)", "SELECT 1"))
    assert tbmigrate("run", database=target).code == 0
    (fixed,) = rows(
        target,
        "SELECT id FROM tbmigrate_audit_event WHERE action = 'apply' AND version = '1.0.1' "
        "AND outcome = 'success'",
    )[0]
    for pk in (failed_step, failed_run):
        html = client.get(f"{AUDIT}{pk}/change/").content.decode()
        assert re.search(rf'id="tbm-resolved-by" href="{AUDIT}{fixed}/change/\?database=', html)
        assert "Resolved by: unresolved" not in text_of_html(html)
    pending = client.get(PENDING).content.decode()
    assert f'class="tbm-resolved" href="{AUDIT}{fixed}/change/?database=' in pending


# The admin's users in ``default``, in a transactional test case: the tests below make their
# history first and only then log in, so ``default`` must be set up whatever is selected.
@pytest.mark.django_db(transaction=True)
def test_a_failed_validation_shows_its_failing_checks_as_rows(
    target, scripts_dir, settings, request
):
    table_script(scripts_dir, "1.0.0", "a1")
    assert tbmigrate("run", database=target).code == 0
    # Validating a migration that is already applied fails its checks (a real report).
    assert tbmigrate("validate", "migration", "1.0.0", database=target).code == 1
    ((pk, details),) = rows(
        target, "SELECT id, details FROM tbmigrate_audit_event WHERE action = 'validate'"
    )
    import json

    report = json.loads(details) if isinstance(details, str) else details
    failing = [c for c in report["checks"] if c["level"] == "FAIL"]
    assert failing
    settings.TBMIGRATE_ADMIN_DATABASE = target.alias
    client = request.getfixturevalue("admin_client")
    html = client.get(f"{AUDIT}{pk}/change/").content.decode()
    shown_rows = re.findall(
        r'<tr class="tbm-check-row"><td>([^<]*)</td><td><span class="tbm-level-(\w+)">', html
    )
    assert [name for name, level in shown_rows if level == "fail"] == [c["name"] for c in failing]
    assert shown_rows[: len(failing)] == [(c["name"], "fail") for c in failing]  # failures first
    for check in failing:
        assert unescape(check["message"]) in unescape(html)
    # The list's error column names them instead of "-".
    listing = text_of(client.get(AUDIT, {"action__exact": "validate"}))
    assert f"{len(failing)} failing check(s): {failing[0]['name']}: " in listing
