"""Guessing passwords: failed logins are counted per user name and per client address,
and past the limit even the right password gets 429 with ``Retry-After`` until the
window has passed (docs/security.md)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.serverproc import TOKEN_URL, EpeServer, assert_error, wait_for


def login(srv: EpeServer, user: str, password: str) -> httpx.Response:
    with srv.http() as c:
        return c.post(TOKEN_URL, json={"grant_type": "password", "username": user,
                                       "password": password})


def test_too_many_failures_for_a_name_are_refused_for_a_while(make_server: Any) -> None:
    srv = make_server(EPE_LOGIN_MAX_FAILURES="3", EPE_LOGIN_WINDOW="4")
    user, password = srv.add_user()
    other, other_password = srv.add_user()
    for _ in range(3):
        assert_error(login(srv, user, "wrong"), 401)
    refused = login(srv, user, password)  # the right password, but too late
    body = assert_error(refused, 429, 4029)
    assert "too many failed logins" in body["errorMessage"]
    assert 1 <= int(refused.headers["retry-after"]) <= 4
    assert login(srv, other, other_password).status_code == 200  # another name is not
    wait_for(lambda: login(srv, user, password).status_code == 200, timeout=30, interval=0.5)


def test_too_many_failures_from_an_address_are_refused(make_server: Any) -> None:
    srv = make_server(EPE_LOGIN_MAX_FAILURES_PER_ADDRESS="4", EPE_LOGIN_WINDOW="60")
    user, password = srv.add_user()
    for i in range(4):  # guesses spread over names, from one address
        assert_error(login(srv, f"GUESS{i}", "x"), 401)
    assert_error(login(srv, user, password), 429, 4029)


def test_a_success_clears_the_names_count(make_server: Any) -> None:
    srv = make_server(EPE_LOGIN_MAX_FAILURES="3", EPE_LOGIN_WINDOW="60")
    user, password = srv.add_user()
    for _ in range(2):
        assert_error(login(srv, user, "wrong"), 401)
    assert login(srv, user, password).status_code == 200
    for _ in range(2):
        assert_error(login(srv, user, "wrong"), 401)
    assert login(srv, user, password).status_code == 200
