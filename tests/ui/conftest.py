"""Real-browser tests of the dashboard: Debian's Chromium driven by Playwright against real server processes.

One team server process (a seeded SQLite store with users) and one browser serve the whole test session;
each test gets a fresh browser context (no cookies). Skipped — naming the fix — only where Chromium,
Playwright or the built bundle is missing; with STRIATE_REQUIRE_UI=1 (CI) a missing one fails instead.
Playwright never downloads a browser here: it launches /usr/bin/chromium.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import CLI_ENV, free_port, get_json, stop_process, wait_for_health  # noqa: F401 - used by the ui tests

CHROMIUM = Path("/usr/bin/chromium")
PROJECT = "vision"
LOSS_STEPS = 5000  # more than max_points=1000: the chart draws the server's M4-downsampled series


def _require(ok: bool, problem: str, fix: str) -> None:
    if ok:
        return
    if os.environ.get("STRIATE_REQUIRE_UI") == "1":
        pytest.fail(f"{problem} (STRIATE_REQUIRE_UI=1): {fix}")
    pytest.skip(f"{problem}: {fix}")


def require_ui() -> None:
    """Skip (or fail in CI) unless the server extras, Playwright, Chromium and the built bundle are all here."""
    for module, fix in (("fastapi", "pip install -e '.[server]'"), ("playwright", "pip install -e '.[dev]'")):
        try:
            __import__(module)
        except ImportError:
            _require(False, f"{module} is not installed", fix)
    _require(CHROMIUM.exists(), f"no Chromium at {CHROMIUM}", "apt-get install -y chromium (as root)")
    from striate.server.ui import UI_DIST, ui_built

    _require(ui_built(), f"the dashboard bundle is not built ({UI_DIST} is missing)", "run `make ui`")


@dataclass
class SeededRun:
    id: str
    name: str
    lr: float
    acc: float
    status: str


def seed_store(folder: Path) -> list[SeededRun]:
    """Runs of project `vision` (and one of `other`): different learning rates and accuracies, a long loss
    series, two running runs (one to stop, one a viewer sees)."""
    from striate.tracking.store import open_store
    from striate.tracking.store.base import RunRecord
    from striate.tracking.store.codec import MetricSeries
    from striate.tracking.store.liveness import process_start_time

    store = open_store(folder)
    now = time.time()
    # The running runs are "recorded" by this test process (alive for the whole session): the crash policy,
    # applied whenever a client opens the store, must not turn them into `crashed` after 30 s of no heartbeat.
    alive = {"host": socket.gethostname(), "pid": os.getpid(), "pid_started_at": process_start_time()}
    specs = [("lenet-a", "lenet5", 0.1, 0.81, "finished"), ("lenet-b", "lenet5", 0.01, 0.88, "finished"),
             ("vgg-c", "vgg11", 0.05, 0.62, "failed"), ("resnet-d", "resnet18", 0.003, 0.91, "finished"),
             ("live-e", "lenet5", 0.02, 0.55, "running"), ("live-f", "vgg11", 0.004, 0.40, "running")]
    seeded = []
    for i, (name, model, lr, acc, status) in enumerate(specs):
        run_id = f"{i:02d}" + "ab" * 15
        ended = None if status == "running" else now - 100 + i
        store.create_run(RunRecord(
            id=run_id, name=name, project=PROJECT, status=status, created_at=now - 1000 + i * 10, ended_at=ended,
            heartbeat_at=now, model=model, config={"model": model, "optimizer": {"name": "sgd", "lr": lr},
                                                   "epochs": 3 + i},
            summary={"test/acc1": acc}, tags=["baseline"] if i < 2 else [],
            error="CUDA out of memory (seeded)" if status == "failed" else None,
            **(alive if status == "running" else {})))
        steps = np.arange(LOSS_STEPS, dtype=np.int64)
        times = now - 1000 + steps * 0.1
        loss = 2.3 * np.exp(-steps / (800 + 400 * i)) + 0.05 * np.sin(steps / 7.0)
        accs = np.array([acc * 0.6, acc * 0.85, acc])
        store.log_batch(run_id, [MetricSeries("train/loss", steps, times, loss.astype(np.float64)),
                                 MetricSeries("test/acc1", np.array([1000, 3000, 4999], dtype=np.int64),
                                              times[[1000, 3000, 4999]], accs)])
        seeded.append(SeededRun(run_id, name, lr, acc, status))
    store.create_run(RunRecord(id="ff" * 16, name="elsewhere", project="other", status="finished",
                               created_at=now, ended_at=now, heartbeat_at=now, model="lenet5"))
    return seeded


@dataclass
class TeamServer:
    base: str
    store: Path
    token: str  # alice: editor in `vision`
    viewer_token: str  # bob: viewer in `vision`
    runs: list[SeededRun]

    def run(self, name: str) -> SeededRun:
        return next(r for r in self.runs if r.name == name)


@pytest.fixture(scope="session")
def team_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamServer]:
    """One `striate server` process over a seeded store, with user alice (editor in `vision`)."""
    require_ui()
    from striate.server import schema_version
    from striate.server.auth import Auth
    from striate.tracking.store import open_store

    folder = tmp_path_factory.mktemp("team") / "store"
    folder.mkdir()
    runs = seed_store(folder)
    engine = open_store(folder).engine  # type: ignore[attr-defined]
    schema_version.upgrade(engine)
    auth = Auth(engine)
    alice = auth.create_user("alice")
    auth.set_role(PROJECT, alice, "editor")
    token = auth.issue_token(alice, "ui tests").value
    bob = auth.create_user("bob")
    auth.set_role(PROJECT, bob, "viewer")
    viewer_token = auth.issue_token(bob, "ui tests").value
    engine.dispose()
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "striate", "server", "--db", str(folder), "--port", str(port)],
                               env={**os.environ, **CLI_ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base, process, timeout=60)
        yield TeamServer(base, folder, token, viewer_token, runs)
    finally:
        stop_process(process)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Debian Chromium for the test session."""
    require_ui()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield launched
        launched.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    """A fresh page in its own context (no cookies), failing on any page error."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(15_000)
    new_page = context.new_page()
    errors: list[str] = []
    new_page.on("pageerror", lambda error: errors.append(str(error)))
    yield new_page
    context.close()
    assert not errors, f"errors in the page: {errors}"


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests save each page's screenshot: $STRIATE_UI_SCREENSHOTS, else a folder of the session's tmp."""
    folder = Path(os.environ.get("STRIATE_UI_SCREENSHOTS") or tmp_path_factory.mktemp("ui-screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_until(page: Any, expression: str, timeout_s: float = 15.0) -> None:
    """Poll a JavaScript expression until it is true (page.wait_for_function evaluates strings with eval, which
    the dashboard's Content-Security-Policy forbids; page.evaluate runs outside it)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"still false after {timeout_s} s: {expression}"
        time.sleep(0.05)


def log_in(page: Any, server: TeamServer, token: str | None = None) -> None:
    """Open the dashboard and log in through the login form (as alice unless ``token`` is given)."""
    page.goto(f"{server.base}/")
    page.get_by_label("API token").fill(token or server.token)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_selector("#runs-table tbody tr")
