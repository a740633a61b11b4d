"""The dashboard in a real browser against a real `striate server`: login, runs table, run page, compare, stop."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path
from typing import Any

from striate.tracking.store import open_store
from tests.ui.conftest import LOSS_STEPS, PROJECT, TeamServer, get_json, log_in, wait_until


def _names(page: Any) -> list[str]:
    return page.locator("#runs-table tbody tr td:nth-child(2)").all_inner_texts()


def test_login_with_a_token_lists_the_projects_runs(page: Any, team_server: TeamServer, screenshots: Path) -> None:
    page.goto(team_server.base + "/")
    page.screenshot(path=str(screenshots / "login.png"))
    page.get_by_label("API token").fill("stt_000000000000_" + "a" * 43)
    page.get_by_role("button", name="Log in").click()
    assert "invalid, expired or revoked token" in page.get_by_role("alert").inner_text()

    log_in(page, team_server)
    expected = {r.name for r in team_server.runs}
    assert set(_names(page)) == expected
    assert page.locator("#run-count").inner_text() == f"{len(expected)} runs"
    assert "elsewhere" not in _names(page), "alice is not a member of project `other`"
    assert page.locator("#who").inner_text().startswith("alice")
    # the token is nowhere the page's scripts can read it: only in an HttpOnly cookie's session
    assert page.evaluate("document.cookie") == ""
    assert team_server.token not in page.content()
    page.screenshot(path=str(screenshots / "runs.png"), full_page=True)


def test_a_bad_filter_shows_the_servers_error_and_a_good_one_filters(page: Any, team_server: TeamServer,
                                                                    screenshots: Path) -> None:
    log_in(page, team_server)
    bad = "params.optimizer.lr >"
    page.get_by_label("Filter").fill(bad)
    page.get_by_role("button", name="Apply").click()
    alert = page.locator("#filter-error [role=alert]")
    alert.wait_for()
    status, body = get_json(f"{team_server.base}/api/v1/runs?where={urllib.parse.quote(bad)}&project={PROJECT}",
                            team_server.token)
    assert status == 400
    assert body["error"] in alert.inner_text() and body["fix"] in alert.inner_text()
    assert page.get_by_label("Filter").get_attribute("aria-invalid") == "true"
    column = int(re.search(r"at column (\d+)", body["error"]).group(1))
    assert page.locator("#filter-caret").inner_text() == f"{bad}\n{' ' * (column - 1)}^", "a caret at the position"
    page.screenshot(path=str(screenshots / "runs-filter-error.png"))

    page.get_by_label("Filter").fill("params.optimizer.lr >= 0.02 and model = lenet5")
    page.get_by_role("button", name="Apply").click()
    page.locator("#run-count", has_text="match").wait_for()
    assert sorted(_names(page)) == ["lenet-a", "live-e"]
    assert page.locator("#filter-error [role=alert]").count() == 0


def test_sorting_by_a_column_asks_the_server_and_toggles(page: Any, team_server: TeamServer) -> None:
    log_in(page, team_server)
    page.locator("button[data-sort='name']").click()
    page.wait_for_selector("th[aria-sort='ascending'] button[data-sort='name']")
    assert _names(page) == sorted(r.name for r in team_server.runs)
    page.locator("button[data-sort='name']").click()
    page.wait_for_selector("th[aria-sort='descending'] button[data-sort='name']")
    assert _names(page) == sorted((r.name for r in team_server.runs), reverse=True)

    page.locator("button[data-sort='params.optimizer.lr']").click()
    page.wait_for_selector("th[aria-sort='ascending'] button[data-sort='params.optimizer.lr']")
    assert _names(page) == [r.name for r in sorted(team_server.runs, key=lambda r: r.lr)]
    assert "sort=params.optimizer.lr" in page.url, "the sort is kept in the address (a reload keeps it)"
    page.keyboard.press("Tab")  # the sort buttons are reachable from the keyboard
    page.locator("button[data-sort='metrics.test/acc1.last']").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("th[aria-sort='ascending'] button[data-sort='metrics.test/acc1.last']")
    assert _names(page) == [r.name for r in sorted(team_server.runs, key=lambda r: r.acc)]


def test_the_run_page_draws_the_servers_downsampled_series(page: Any, team_server: TeamServer,
                                                          screenshots: Path) -> None:
    run = team_server.run("lenet-a")
    log_in(page, team_server)
    page.get_by_role("link", name="lenet-a").click()
    page.wait_for_selector("figure[data-key='train/loss'] canvas")
    wait_until(page, "window.striate.charts['train/loss'] !== undefined")
    drawn = page.evaluate("window.striate.charts['train/loss'].data[1].length")
    expected = len(open_store(team_server.store).history(run.id, "train/loss", max_points=1000))
    assert 100 < expected <= 1000 < LOSS_STEPS, "M4 on the server: fewer points than stored"
    assert drawn == expected
    assert page.locator("figure[data-key='train/loss']").get_attribute("data-points") == str(expected)
    assert page.evaluate("window.striate.charts['test/acc1'].data[1].length") == 3
    assert page.locator("#run-status").inner_text() == "finished"
    assert page.locator("#stop").count() == 0, "no Stop button for a finished run"
    assert "sgd" in page.locator("#config-table").inner_text()
    assert "0.81" in page.locator("#summary-table").inner_text()
    page.screenshot(path=str(screenshots / "run.png"), full_page=True)


def test_compare_overlays_the_selected_runs(page: Any, team_server: TeamServer, screenshots: Path) -> None:
    log_in(page, team_server)
    compare = page.get_by_role("button", name=re.compile("Compare selected"))
    assert compare.is_disabled()
    page.get_by_label("Select lenet-a").check()
    page.get_by_label("Select resnet-d").check()
    compare.click()
    page.wait_for_selector("figure.chart canvas")
    figure = page.locator("figure.chart")
    assert figure.get_attribute("data-series") == "2"
    key = page.get_by_label("Metric").input_value()
    assert key == "test/acc1"
    assert page.evaluate(f"window.striate.charts['compare:{key}'].series.length") == 3  # x and two runs
    assert page.locator("#compared-runs").inner_text().split() == ["lenet-a", "resnet-d"]
    assert page.locator("#compare-params tr.differs", has_text="optimizer.lr").count() == 1
    page.screenshot(path=str(screenshots / "compare.png"), full_page=True)


def test_dark_theme_and_a_narrow_window(browser: Any, team_server: TeamServer, screenshots: Path) -> None:
    context = browser.new_context(viewport={"width": 380, "height": 800}, color_scheme="dark")
    page = context.new_page()
    try:
        log_in(page, team_server)
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(21, 24, 28)", "prefers-color-scheme: dark gives the dark theme"
        # the page itself does not scroll sideways in a narrow window: only the table's own region does
        assert page.evaluate("document.documentElement.scrollWidth") <= 380
        page.screenshot(path=str(screenshots / "runs-dark-narrow.png"), full_page=True)
        page.get_by_role("link", name="lenet-a").click()
        page.wait_for_selector("figure[data-key='train/loss'] canvas")
        assert page.evaluate("document.documentElement.scrollWidth") <= 380
        page.screenshot(path=str(screenshots / "run-dark-narrow.png"), full_page=True)
    finally:
        context.close()


def test_the_stop_button_records_a_stop_request(page: Any, team_server: TeamServer) -> None:
    run = team_server.run("live-e")
    assert open_store(team_server.store).get_run(run.id).stop_requested_at is None
    log_in(page, team_server)
    page.goto(f"{team_server.base}/#/run/{run.id}")
    stop = page.get_by_role("button", name="Stop run")
    page.once("dialog", lambda dialog: dialog.accept())
    stop.click()
    page.locator("#stop-requested").wait_for()
    assert open_store(team_server.store).get_run(run.id).stop_requested_at is not None


def test_tags_are_edited_from_the_run_page(page: Any, team_server: TeamServer) -> None:
    run = team_server.run("lenet-b")
    log_in(page, team_server)
    page.goto(f"{team_server.base}/#/run/{run.id}")
    page.get_by_label("Add tag").fill("promising")
    page.get_by_role("button", name="Add", exact=True).click()
    page.locator("#tags", has_text="promising").wait_for()
    assert sorted(open_store(team_server.store).get_run(run.id).tags) == ["baseline", "promising"]
    page.get_by_role("button", name="Remove tag baseline").click()
    wait_until(page, "!document.querySelector('#tags').textContent.includes('baseline')")
    assert open_store(team_server.store).get_run(run.id).tags == ["promising"]


def test_a_viewer_sees_a_run_read_only(page: Any, team_server: TeamServer) -> None:
    run = team_server.run("live-f")  # running, and nobody asked it to stop
    log_in(page, team_server, team_server.viewer_token)
    page.goto(f"{team_server.base}/#/run/{run.id}")
    page.locator("#read-only").wait_for()
    assert "viewer" in page.locator("#read-only").inner_text()
    assert page.locator("#run-status").inner_text() == "running"
    assert page.get_by_role("button", name="Stop run").count() == 0
    assert page.get_by_label("Add tag").count() == 0
    assert page.get_by_role("button", name=re.compile("Remove tag")).count() == 0
    # and the server refuses the change anyway: the page only mirrors the role
    status = page.evaluate("""async (id) => {
        const session = await (await fetch('/api/v1/session')).json();
        const headers = {'X-CSRF-Token': session.csrf_token};
        const r = await fetch(`/api/v1/runs/${id}/stop`, {method: 'POST', headers});
        return r.status; }""", run.id)
    assert status == 403
    assert open_store(team_server.store).get_run(run.id).stop_requested_at is None
