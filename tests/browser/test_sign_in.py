"""The console's single sign-on in a real browser (docs/sign-in.md#the-console): "Sign in
with …" through a real OpenID provider's own login page, back to the console signed in
as the provider's user with its groups (and, with cgroups, their cgroups made for their
first run); then a script granted to a group there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.acceptance.test_resource_limits import here, made_soon, user_groups
from tests.acceptance.test_sign_in_oidc import oidc_settings
from tests.conftest import OIDC_SERVER_PORTS
from tests.oidcprovider import OidcProvider
from tests.serverproc import API, EpeServer


@pytest.fixture(scope="module")
def sso_console(oidc_provider: OidcProvider, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[EpeServer]:
    srv = EpeServer(tmp_path_factory.mktemp("epe-sso"), oidc_settings(oidc_provider),
                    port=OIDC_SERVER_PORTS["console"]).start()
    yield srv
    srv.stop()


def provider_sign_in(page: Page, user: str, password: str) -> None:
    page.get_by_role("button", name="Sign in with Example SSO").click()
    page.locator("input[name=login]").fill(user)
    page.locator("input[name=password]").fill(password)
    page.get_by_role("button", name="Sign-in").click()


def test_sign_in_with_the_provider_and_grant_a_script_to_a_group(
        page: Page, sso_console: EpeServer, oidc_provider: OidcProvider,
        shot: object, tmp_path: Path) -> None:
    page.goto(sso_console.url + "/console")
    provider_sign_in(page, "oscar", "wrong")
    expect(page.get_by_text("Wrong login or password")).to_be_visible()  # the provider's page

    page.goto(sso_console.url + "/console")
    expect(page.get_by_role("button", name="Sign in", exact=True)).to_be_visible()
    shot(page, "sign-in-sso")  # type: ignore[operator]
    # Where OSCAR's groups go, found first: finding it sweeps the empty groups of others.
    groups = user_groups("OSCAR") if here() != "rlimit" else []
    provider_sign_in(page, "oscar", "oscar-pw")
    expect(page.get_by_test_id("user")).to_have_text("OSCAR")
    assert "token" not in page.url  # taken out of the address at once
    assert made_soon(groups)  # and their groups made, ready for their first run

    token = oidc_provider.access_token("oscar")
    with sso_console.http(headers={"Authorization": f"Bearer {token}"}) as c:
        r = c.post(f"{API}/scripts", json={"name": "team_report",
                                           "script": "def f():\n    return 1\n"})
        assert r.status_code == 201, r.text
    page.reload()
    page.get_by_role("link", name="team_report").click()
    grants = page.get_by_role("region", name="grants")
    grants.get_by_label("Grant to user").fill("data-science")
    grants.get_by_role("button", name="Grant to group").click()
    expect(grants.get_by_role("status")).to_have_text("Granted to group DATA-SCIENCE.")
    expect(grants.get_by_role("listitem")).to_have_text("group DATA-SCIENCE Revoke")
    with sso_console.http(headers={"Authorization": f"Bearer {token}"}) as c:
        listed = {s["name"]: s for s in c.get(f"{API}/scripts").json()["result"]}
        assert listed["team_report"]["groupGrantees"] == ["DATA-SCIENCE"]
    grants.get_by_role("button", name="Revoke").click()
    expect(grants.get_by_text("Nobody: it is private.")).to_be_visible()
