"""Browser sessions: token login -> HttpOnly/Secure/SameSite cookie + CSRF token; failed logins rate-limited."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from striate.server import schema_version, sessions  # noqa: E402
from striate.server.app import create_app  # noqa: E402
from striate.server.auth import Auth  # noqa: E402
from striate.tracking.store import open_store  # noqa: E402


@pytest.fixture()
def app(tmp_path: Path):
    store = open_store(tmp_path / "store")
    schema_version.upgrade(store.engine)  # type: ignore[attr-defined]
    auth = Auth(store.engine)  # type: ignore[attr-defined]
    alice = auth.create_user("alice")
    auth.set_role("vision", alice, "editor")
    token = auth.issue_token(alice, "browser")
    application = create_app(store, store.engine, "test-store")  # type: ignore[attr-defined]
    application.state.test_store = store
    return application, auth, token


def _browser(application) -> TestClient:
    # https: the session cookie is Secure, so a client keeps sending it only over HTTPS (or to localhost)
    return TestClient(application, base_url="https://testserver")


def test_login_sets_a_locked_down_cookie_and_changes_need_the_csrf_token(app) -> None:
    application, _auth, token = app
    browser = _browser(application)
    login = browser.post("/api/v1/session", json={"token": token.value})
    assert login.status_code == 200, login.text
    cookie = login.headers["set-cookie"]
    assert "striate_session=" in cookie and "HttpOnly" in cookie and "Secure" in cookie
    assert "samesite=strict" in cookie.lower() and "Path=/api/v1" in cookie
    assert token.value not in cookie and token.value not in login.text, "the token is never echoed"
    csrf = login.json()["csrf_token"]
    assert login.json()["user"] == "alice"

    assert browser.get("/api/v1/me").json()["user"] == "alice"  # reads need only the cookie
    assert browser.get("/api/v1/session").json()["csrf_token"] == csrf  # a reloaded page gets it back
    refused = browser.post("/api/v1/tokens", json={"name": "more"})
    assert refused.status_code == 403 and "X-CSRF-Token" in refused.json()["error"]
    wrong = browser.post("/api/v1/tokens", json={"name": "more"}, headers={"X-CSRF-Token": csrf[:-1] + "x"})
    assert wrong.status_code == 403
    made = browser.post("/api/v1/tokens", json={"name": "more"}, headers={"X-CSRF-Token": csrf})
    assert made.status_code == 201, made.text

    assert browser.delete("/api/v1/session").status_code == 403  # logging out is a change too
    assert browser.delete("/api/v1/session", headers={"X-CSRF-Token": csrf}).status_code == 204
    after = browser.get("/api/v1/me")
    assert after.status_code == 401


def test_a_session_ends_when_its_token_is_revoked(app) -> None:
    application, auth, token = app
    browser = _browser(application)
    login = browser.post("/api/v1/session", json={"token": token.value})
    assert browser.get("/api/v1/me").status_code == 200
    alice = auth.authenticate(token.value)
    auth.revoke_token(token.id, alice)
    ended = browser.get("/api/v1/me")
    assert ended.status_code == 401 and "session has ended" in ended.json()["error"]
    assert login.json()["csrf_token"] not in ended.text


def test_a_stolen_cookie_value_is_useless_after_logout_and_a_forged_one_never_works(app) -> None:
    application, _auth, token = app
    browser = _browser(application)
    login = browser.post("/api/v1/session", json={"token": token.value})
    value = browser.cookies.get("striate_session")
    assert value
    browser.delete("/api/v1/session", headers={"X-CSRF-Token": login.json()["csrf_token"]})
    thief = _browser(application)
    for forged in (value, "x" * 43, "", "a" * 500):
        thief.cookies.set("striate_session", forged, domain="testserver.local")
        response = thief.get("/api/v1/me", cookies={"striate_session": forged})
        assert response.status_code == 401


def test_failed_logins_are_limited_per_client_and_the_count_is_shared(app, monkeypatch: pytest.MonkeyPatch) -> None:
    application, _auth, token = app
    monkeypatch.setattr(sessions, "LOGIN_FAILURES_ALLOWED", 3)
    browser = _browser(application)
    for _ in range(3):
        assert browser.post("/api/v1/session", json={"token": "stt_000000000000_" + "a" * 43}).status_code == 401
    limited = browser.post("/api/v1/session", json={"token": token.value})  # even the right token, for now
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    assert "too many failed logins" in limited.json()["error"] and limited.json()["fix"]
    # another app over the same database (another worker, or after a restart) sees the same count
    store = application.state.test_store
    other = _browser(create_app(store, store.engine, "test-store"))
    assert other.post("/api/v1/session", json={"token": token.value}).status_code == 429
    # a bearer token still works: the limit is on logins only
    assert browser.get("/api/v1/me", headers={"Authorization": f"Bearer {token.value}"}).status_code == 200
    monkeypatch.setattr(sessions, "LOGIN_WINDOW_S", 0.0)  # once the window has passed
    assert browser.post("/api/v1/session", json={"token": token.value}).status_code == 200
