"""End to end, as a new user would: real runs, `manage.py migrate`, `createsuperuser`,
`runserver --insecure` on a free local port, then a real headless Chromium logs in and
reads the history, its duration chart, the pending page and a failed audit event.

Debian's ``chromium`` (``/usr/bin/chromium``) driven by Playwright's Python API: the
browser Playwright would download cannot be fetched here, so it is given Debian's
(``executable_path``); ``.ci/run`` installs the package when it is missing.  Screenshots
are saved under the test's ``tmp_path``.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PROJECT, TestDatabase, cli, cli_env, rows, table_script, write_script
from tests.running_support import held_run

# Debian's chromium here and in .ci/run; CircleCI's Ubuntu images have none, so its test job
# installs Google Chrome and names it in TBMIGRATE_TEST_CHROMIUM.
CHROMIUM = os.environ.get("TBMIGRATE_TEST_CHROMIUM") or "/usr/bin/chromium"
# Flags that work on these machines (root, no GPU, no network beyond the registries).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
USER, PASSWORD = "reviewer", "a-long-local-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PROJECT / "manage.py"), *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def wait_until_up(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"runserver exited early:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"runserver did not answer within 60 s:\n{log.read_text()}")


@contextlib.contextmanager
def served(target: TestDatabase, scripts: Path, tmp_path: Path) -> Iterator[str]:
    """The README's steps on ``target``: `migrate`, `createsuperuser`, `runserver --insecure`."""
    env = {**cli_env(target, scripts), "PYTHONUNBUFFERED": "1"}
    migrated = manage("migrate", "--no-input", env=env)
    assert migrated.returncode == 0, migrated.stderr
    made = manage(
        "createsuperuser",
        "--no-input",
        "--username",
        USER,
        "--email",
        "reviewer@example.com",
        env={**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD},
    )
    assert made.returncode == 0, made.stderr
    port = free_port()
    log = tmp_path / "runserver.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                str(PROJECT / "manage.py"),
                "runserver",
                "--noreload",
                "--insecure",
                f"127.0.0.1:{port}",
            ],
            cwd=PROJECT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/admin/login/", server, log)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def first_history(scripts: Path) -> None:
    write_script(
        scripts,
        "1.0.0",
        "create-accounts",
        up='db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER)")',
        down='db.execute("DROP TABLE accounts")',
    )
    write_script(
        scripts,
        "1.0.1",
        "backfill-accounts",
        up="""
            db.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60000) "
                "INSERT INTO accounts (id, balance) SELECT i, i * 3 FROM n"
            )
        """,
        down='db.execute("DELETE FROM accounts")',
    )
    table_script(scripts, "1.0.2", "orders")
    table_script(scripts, "1.0.9", "alerts")
    table_script(scripts, "1.0.10", "reports")


@pytest.fixture
def site(target: TestDatabase, tmp_path: Path) -> Iterator[str]:
    """History from real runs (five applied, one failed), then the admin, served."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    first_history(scripts)
    write_script(
        scripts, "1.0.11", "fill-reports", up='db.execute("INSERT INTO no_such_table VALUES (1)")'
    )
    run = cli("run", database=target, scripts=scripts)
    assert run.returncode == 1 and "1.0.11" in run.stderr  # a real failure, after five steps
    with served(target, scripts, tmp_path) as base:
        yield base


@pytest.mark.slow
def test_a_reviewer_finds_the_slowest_migration_and_why_one_failed(site, target, tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"{CHROMIUM} is missing: `apt-get install -y chromium` (.ci/run does it)",
            pytrace=False,
        )
    from playwright.sync_api import expect, sync_playwright

    durations = dict(rows(target, "SELECT version, duration_ms FROM tbmigrate_applied_migration"))
    slowest = max(durations, key=lambda version: durations[version])

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh --user-data-dir
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = browser.new_page()
            page.goto(f"{site}/admin/")
            expect(page).to_have_url(f"{site}/admin/login/?next=/admin/")
            page.fill("#id_username", USER)
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            expect(page).to_have_url(f"{site}/admin/")
            # The admin's own stylesheet came through runserver --insecure.
            header = page.evaluate(
                "getComputedStyle(document.getElementById('header')).backgroundColor"
            )
            assert header not in ("", "rgba(0, 0, 0, 0)", "transparent")
            review = page.locator("#tbm-review")
            expect(review).to_contain_text("Pending migrations")

            review.get_by_role("link", name="Applied migrations").click()
            expect(page.locator("#tbm-database")).to_contain_text("History of default")
            versions = page.locator("#result_list th.field-version_label").all_inner_texts()
            assert versions == ["1.0.0", "1.0.1", "1.0.2", "1.0.9", "1.0.10"]
            chart = page.locator("#tbm-duration-chart")
            expect(chart).to_be_visible()
            bars = page.locator("#tbm-duration-chart rect.tbm-bar")
            expect(bars).to_have_count(len(durations))
            marked = page.locator("#tbm-duration-chart rect.tbm-slowest")
            expect(marked).to_have_count(1)
            assert marked.get_attribute("data-version") == slowest
            # On screen, the slowest bar is the tallest one.
            heights = {
                bar.get_attribute("data-version"): bar.bounding_box()["height"]
                for bar in bars.all()
            }
            assert max(heights, key=lambda version: heights[version]) == slowest
            expect(page.locator("#tbm-slowest")).to_contain_text(f"Slowest: {slowest} ")
            page.screenshot(path=str(tmp_path / "history.png"), full_page=True)

            page.get_by_role("link", name="Pending migrations").first.click()
            expect(page.locator("#tbm-next-run")).to_contain_text("1.0.11")
            expect(page.locator("#tbm-failures")).to_contain_text("no_such_table")
            page.screenshot(path=str(tmp_path / "pending.png"), full_page=True)

            # The step's own event (the run's event sums it up, without the traceback).
            step_cell = page.get_by_role("cell", name="apply", exact=True)
            page.locator("#tbm-failures tr", has=step_cell).locator("a").first.click()
            expect(page.locator("h1")).to_contain_text("audit event")
            expect(page.locator(".tbm-error")).to_contain_text("no_such_table")
            expect(page.locator(".tbm-traceback")).to_contain_text(
                "Traceback (most recent call last)"
            )
            expect(page.locator(".tbm-sql")).to_contain_text("INSERT INTO no_such_table")
            expect(page.locator("input[name=_save]")).to_have_count(0)
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        finally:
            browser.close()
    print(f"screenshots in {tmp_path}")


def test_ci_installs_chromium_when_it_is_missing():
    # .ci/run runs ./run-tests, the README's test command, which installs it
    ci = (PROJECT / "run-tests").read_text()
    install = ci.index("apt-get install -y -qq chromium")
    assert ci.index("command -v chromium") < install < ci.index("-m pytest")


def test_circleci_installs_the_browser_it_names_before_the_tests():
    import yaml

    job = yaml.safe_load((PROJECT / ".circleci" / "config.yml").read_text())["jobs"]["test"]
    browser = job["docker"][0]["environment"]["TBMIGRATE_TEST_CHROMIUM"]
    commands = [s["run"]["command"] for s in job["steps"] if isinstance(s, dict) and "run" in s]
    install = next(i for i, c in enumerate(commands) if "apt-get install" in c)
    tests = next(i for i, c in enumerate(commands) if "-m pytest" in c or c == "./run-tests")
    assert install < tests
    assert browser == "/usr/bin/google-chrome" and "google-chrome-stable" in commands[install]


# -- the incident room, at 1366 px ---------------------------------------------------------------
LONG_ERROR = (
    "reconciliation failed: the end-of-day report of the exchange lists 3 accounts whose "
    "balances differ from ours by more than the tolerance; "
) * 6
SCREENSHOTS = os.environ.get("TBMIGRATE_SCREENSHOTS", "")  # a folder: also save the README's


@pytest.fixture
def incident(target: TestDatabase, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A deploy that failed with a long error and was fixed, a script edited after it ran, a
    failed validation; then the admin, served."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    first_history(scripts)
    assert cli("run", database=target, scripts=scripts).returncode == 0
    failing = write_script(
        scripts, "1.0.11", "reconcile-fills", up=f"raise RuntimeError({LONG_ERROR!r})"
    )
    assert cli("run", database=target, scripts=scripts).returncode == 1
    failing.write_text(failing.read_text().replace(f"raise RuntimeError({LONG_ERROR!r})", "pass"))
    assert cli("run", database=target, scripts=scripts).returncode == 0
    edited = next(scripts.glob("*-1.0.2-*.py"))
    (tmp_path / "1.0.2.as-applied").write_text(edited.read_text())
    edited.write_text(
        edited.read_text().replace("label VARCHAR(50)", "label VARCHAR(80)")
        + "# widened after it ran\n"
    )
    assert cli("validate", "migration", "1.0.0", database=target, scripts=scripts).returncode == 1
    with served(target, scripts, tmp_path) as base:
        yield base, scripts


def shoot(page, element: str, name: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Save a screenshot of ``element`` in the test's folder (and the README's, when asked)."""
    page.locator(element).screenshot(path=str(tmp_path / f"{name}.png"))
    if SCREENSHOTS:
        page.locator(element).screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"))


@pytest.mark.slow
def test_the_incident_room_in_a_real_browser(incident, target, tmp_path):
    """What ran in that deploy, what changed since, what failed and whether it was fixed, and
    what is running now, read from the admin alone at 1366 px."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium`", pytrace=False)
    from playwright.sync_api import expect, sync_playwright

    site, scripts = incident
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1366, "height": 768},
        )
        try:
            page = browser.new_page()
            page.goto(f"{site}/admin/login/?next=/admin/")
            page.fill("#id_username", USER)
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            expect(page).to_have_url(f"{site}/admin/")

            # The audit log fits 1366 px: long errors wrap instead of widening the page.
            page.goto(f"{site}/admin/migrator/auditevent/")
            expect(page.locator("#result_list")).to_be_visible()
            widths = page.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
            )
            assert widths[0] <= widths[1], f"sideways scrolling: {widths}"
            long_cell = page.locator(
                "#result_list td.field-error_summary", has_text="reconciliation"
            )
            expect(long_cell.first).to_be_visible()
            box = long_cell.first.bounding_box()
            assert box is not None and box["height"] > 40  # wrapped onto several lines
            assert not page.get_by_text(re.compile(r"[ap]\.m\.")).count()

            # A failure, and the later event that resolved it.
            failed = page.locator("#result_list tr", has_text="reconcile-fills").filter(
                has=page.locator(".tbm-failure")
            )
            failed.locator("th a").first.click()
            expect(page.locator(".tbm-error")).to_contain_text("reconciliation failed")
            page.locator("#tbm-resolved-by").click()
            expect(page.locator(".field-outcome_label")).to_contain_text("success")
            expect(page.locator(".field-version_link")).to_contain_text("1.0.11")
            # ... whose version links to its history row, which lists the events back.
            page.locator("a.tbm-history-link").click()
            expect(page.locator("#tbm-row-events")).to_contain_text("failure")

            # A failed validation: its checks as rows.
            page.goto(f"{site}/admin/migrator/auditevent/?action__exact=validate")
            page.locator("#result_list tbody th.field-time a").first.click()
            rows_ = page.locator("#tbm-checks tr.tbm-check-row")
            expect(rows_.first.locator(".tbm-level-fail")).to_have_text("FAIL")
            assert rows_.count() >= 1

            # What ran in that deploy: the runs, and the first run's page.
            page.goto(f"{site}/admin/")
            page.locator("#tbm-review").get_by_role("link", name="Runs").click()
            first_run = page.locator("tr.tbm-run-row").last  # newest first: the oldest is last
            first_run.locator("td a").first.click()
            expect(page.locator("#tbm-run-outcome")).to_have_text("success")
            expect(page.locator("#tbm-run-applied")).to_have_text(
                "1.0.0, 1.0.1, 1.0.2, 1.0.9, 1.0.10"
            )
            expect(page.locator("#tbm-run-event-table tr.tbm-event-row")).to_have_count(6)
            expect(page.locator("#tbm-run-started")).to_have_text(re.compile(r" UTC$"))
            shoot(page, "#content", "run", tmp_path)

            # What changed since: the edited script's diff.
            page.goto(f"{site}/admin/migrator/appliedmigration/")
            page.locator("#result_list th.field-version_label a", has_text="1.0.2").click()
            diff = page.locator("#tbm-diff")
            expect(diff.locator(".tbm-diff-add").first).to_contain_text("VARCHAR(80)")
            expect(diff.locator(".tbm-diff-del").first).to_contain_text("VARCHAR(50)")
            shoot(page, "fieldset:has(#tbm-diff)", "diff", tmp_path)

            # What is running now: a real run, held in the middle of its step (the edited
            # script put back first: `run` refuses while an applied script is changed).
            next(scripts.glob("*-1.0.2-*.py")).write_text(
                (tmp_path / "1.0.2.as-applied").read_text()
            )
            with held_run(
                target,
                scripts,
                tmp_path,
                version="1.0.12",
                name="rebalance-accounts",
                atomic=False,
                work='db.batched_update("accounts", "balance = balance + 1", batch_size=10000)',
                # accounts' 60,000 rows are large: the lock-hazard gate would first rehearse
                # the step, marker and wait included, on a scratch database
                env={"TBMIGRATE_HAZARD_TABLE_ROWS": "0"},
            ) as held:
                page.goto(f"{site}/admin/migrator/appliedmigration/running/")
                expect(page.locator("#tbm-holder-process")).to_contain_text(
                    f"pid {held.process.pid}"
                )
                expect(page.locator("#tbm-step-label")).to_have_text(
                    "apply 1.0.12 rebalance-accounts"
                )
                update = page.locator("tr.tbm-update-row[data-table=accounts]")
                expect(update.locator(".tbm-rows-done")).to_have_text("60,000")
                expect(update.locator(".tbm-rate")).to_have_text(re.compile(r" rows/s$"))
                expect(page.locator("#tbm-holder-since")).to_have_text(re.compile(r" UTC$"))
                shoot(page, "#content", "running", tmp_path)
                checked = page.locator("#tbm-checked-at").inner_text()
                finished = held.release()
                assert finished.returncode == 0, finished.stderr
                # No click: the page reloads itself and sees the run gone.
                expect(page.locator("#tbm-idle")).to_be_visible(timeout=30_000)
                assert page.locator("#tbm-checked-at").inner_text() != checked
            page.screenshot(path=str(tmp_path / "idle.png"))
        finally:
            browser.close()
    print(f"screenshots in {tmp_path}")
