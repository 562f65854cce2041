"""One ``epe serve`` with the demo loaded, and Debian's Chromium driven by Playwright.

Playwright's own browser download is not used: the tests launch the system's
``chromium`` (``make test`` installs it when missing). Each test gets a fresh
browser context, so it signs in for itself.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.serverproc import EpeServer, run_cli

DEMO_USER, DEMO_PASSWORD = "OMLUSER", "Demo-Password-1"
# Short-lived tokens, so that the console refreshes them several times in a run.
TOKEN_LIFETIME = "30"
LAUNCH_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 60_000  # expect() waits for a state; this only bounds a broken run

expect.set_options(timeout=TIMEOUT_MS)


@dataclass
class Console:
    server: EpeServer
    url: str
    admin: tuple[str, str]


@pytest.fixture(scope="session")
def console() -> Iterator[Console]:
    """The server, under a folder every user may traverse: the worker user runs the
    environments built in it."""
    parent = Path(tempfile.mkdtemp(prefix="epe-console-test-"))
    os.chmod(parent, 0o711)
    server = EpeServer(parent / "data", {"EPE_TOKEN_LIFETIME": TOKEN_LIFETIME,
                                         "EPE_ENV_WORKERS": "1"})
    run_cli("demo", "--data-dir", str(server.data_dir),
            env={**server.env, "EPE_DEMO_PASSWORD": DEMO_PASSWORD})
    server.start()
    admin = server.add_user("ADMIN", admin=True)
    yield Console(server, server.url + "/", admin)
    server.stop()
    shutil.rmtree(parent, ignore_errors=True)


def chromium_path() -> str:
    found = os.environ.get("EPE_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail("the browser tests need Debian's chromium: `make test` installs it "
                    "(apt-get install chromium)")
    return found


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    b = playwright.chromium.launch(executable_path=chromium_path(), args=LAUNCH_ARGS)
    yield b
    b.close()


# Collects every Content-Security-Policy violation the page reports.
WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) =>
  window.__cspViolations.push(`${e.violatedDirective}: ${e.blockedURI} ${e.sample}`));
"""
# Chrome's own contenteditable editing may try to put a style attribute on an
# editor line when one types over a selection; the policy refuses it, harmlessly
# (the editor redraws its lines). Anything else is a failure.
TOLERATED = ("style-src-attr",)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a fresh context; the test fails if the page broke its CSP or threw."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    context.add_init_script(WATCH_CSP)
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    yield p
    violations = p.evaluate("window.__cspViolations || []") if not p.is_closed() else []
    context.close()
    assert not errors, errors
    assert not [v for v in violations if not v.startswith(TOLERATED)], violations


@pytest.fixture
def shot(tmp_path: Path) -> Callable[[Page, str], None]:
    """Save a screenshot as ``console-NAME.png``: into the folder named by
    ``EPE_CONSOLE_SCREENSHOTS`` (``make console-screenshots``: docs/images), or
    into the test's temporary folder."""
    folder = Path(os.environ.get("EPE_CONSOLE_SCREENSHOTS") or tmp_path)

    def save(page: Page, name: str, full_page: bool = False) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"console-{name}.png"), full_page=full_page,
                        animations="disabled", caret="hide")

    return save


def sign_in(page: Page, console: Console, user: str = DEMO_USER,
            password: str = DEMO_PASSWORD) -> None:
    page.goto(console.url)
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("user")).to_have_text(user.upper())


@pytest.fixture
def signed_in(page: Page, console: Console) -> Page:
    sign_in(page, console)
    return page
