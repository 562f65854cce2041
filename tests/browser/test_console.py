"""The web console in a real browser, against a real ``epe serve`` (docs/console.md).

Every assertion waits for a state with ``expect`` (never for a time); the
screenshots these tests take are the ones in docs/console.md.
"""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from playwright.sync_api import Page, expect
from sklearn.linear_model import LogisticRegression

from tests.acceptance.test_envs import make_wheel
from tests.browser.conftest import DEMO_PASSWORD, DEMO_USER, Console, sign_in
from tests.serverproc import API, put_table

Shot = Callable[..., None]

# Oracle's group_count, from OML4Py's documentation.
GROUP_COUNT = ("def group_count(dat):\n"
               "    import pandas as pd\n"
               "    return pd.DataFrame([(dat[\"SPECIES\"][0], dat.shape[0])],\n"
               "                        columns=[\"SPECIES\", \"CNT\"])\n")
TICKS = ("import time\n"
         "def ticks(i, pause=0.5):\n"
         "    time.sleep(pause)\n"
         "    print('tick', i)\n"
         "    return i * i\n")
COLUMNS = ["SEPAL_LENGTH", "SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH"]
SLEEPER = "import time\ndef sleeper():\n    time.sleep(60)\n    return 'woke up'\n"


@pytest.fixture
def api(console: Console) -> Iterator[httpx.Client]:
    """The demo user's own HTTP client, for setting the scene and checking the server."""
    with console.server.client(DEMO_USER, DEMO_PASSWORD) as client:
        yield client


def put_script(c: httpx.Client, name: str, source: str, description: str = "") -> None:
    r = c.post(f"{API}/scripts", json={"name": name, "script": source,
                                       "description": description, "overwrite": True})
    assert r.status_code == 201, r.text


def open_page(page: Page, link: str) -> None:
    page.get_by_role("navigation", name="main").get_by_role("link", name=link).click()
    expect(page.get_by_role("heading", name=link, level=2)).to_be_visible()


def run_form(page: Page, operation: str, script: str) -> None:
    open_page(page, "Run")
    page.get_by_label("Operation").select_option(operation)
    page.get_by_role("combobox", name="Script").select_option(label=f"{script} ({DEMO_USER})")


def type_code(page: Page, editor_label: str, source: str) -> None:
    """Replace the code editor's text, as if pasted."""
    editor = page.get_by_label(editor_label)
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(source)
    expect(editor).to_contain_text(source.splitlines()[0])


# -- serving ---------------------------------------------------------------------


def test_served_at_root_and_console_without_a_token_with_a_strict_csp(console: Console) -> None:
    with httpx.Client(base_url=console.server.url) as h:
        for path in ("/", "/console"):
            r = h.get(path)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe" not in csp, csp
            nonce = re.search(r"'nonce-([^']+)'", csp)
            assert nonce and nonce.group(1) in r.text  # styles only, fresh each time
        for asset in ("console.js", "console.css", "THIRD-PARTY-LICENSES.txt"):
            r = h.get(f"/console/assets/{asset}")
            assert r.status_code == 200 and "script-src 'self'" in r.headers[
                "content-security-policy"]
        assert h.get("/console/").status_code == 307
        # The page is public; the data behind it is not.
        assert h.get(f"{API}/scripts").status_code == 401


# -- sign-in, refresh, sign-out -------------------------------------------------------


def test_sign_in(page: Page, console: Console, shot: Shot) -> None:
    page.goto(console.url)
    page.get_by_label("User name").fill(DEMO_USER)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("invalid username or password")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    shot(page, "signin")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("user")).to_have_text(DEMO_USER)
    expect(page.get_by_role("table", name="scripts")).to_contain_text("group_count")


def test_keyboard_alone_signs_in_and_navigates(page: Page, console: Console) -> None:
    page.goto(console.url)
    page.get_by_label("User name").focus()
    page.keyboard.type(DEMO_USER)
    page.keyboard.press("Tab")
    page.keyboard.type(DEMO_PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("user")).to_have_text(DEMO_USER)
    tables = page.get_by_role("navigation", name="main").get_by_role("link", name="Tables")
    tables.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Tables", level=2)).to_be_visible()
    page.get_by_role("link", name="IRIS").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("table", name="first rows")).to_contain_text("setosa")


def test_the_token_is_refreshed_before_it_expires(signed_in: Page) -> None:
    page = signed_in
    first = page.evaluate("JSON.parse(sessionStorage.getItem('epe.console.session')).token")
    with page.expect_request(lambda r: r.url.endswith("/oauth2/v1/token")
                             and "refresh_token" in (r.post_data or ""),
                             timeout=60_000) as refresh:
        pass
    assert refresh.value.headers["authorization"] == f"Bearer {first}"
    expect(page.get_by_test_id("user")).to_have_text(DEMO_USER)
    page.wait_for_function(
        f"JSON.parse(sessionStorage.getItem('epe.console.session')).token !== '{first}'")
    # Past the first token's lifetime: data calls still work with the refreshed one.
    open_page(page, "Tables")
    expect(page.get_by_role("table", name="tables")).to_contain_text("IRIS")


def test_sign_out_revokes_the_token(signed_in: Page, console: Console) -> None:
    page = signed_in
    token = page.evaluate("JSON.parse(sessionStorage.getItem('epe.console.session')).token")
    with httpx.Client(base_url=console.server.url,
                      headers={"Authorization": f"Bearer {token}"}) as h:
        assert h.get(f"{API}/tables").status_code == 200
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("status")).to_have_text("You are signed out.")
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        assert page.evaluate("sessionStorage.getItem('epe.console.session')") is None
        r = h.get(f"{API}/tables")
        assert r.status_code == 401, r.text
        assert "revoked" in r.json()["errorMessage"]


# -- scripts and runs -------------------------------------------------------------------


def test_create_a_script_and_run_group_apply_on_iris(signed_in: Page, shot: Shot) -> None:
    page = signed_in
    name = "species_count"
    page.get_by_role("button", name="New script").click()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Description", exact=True).fill("Oracle's group_count: rows per species")
    type_code(page, "script source", GROUP_COUNT)
    shot(page, "editor")
    page.get_by_role("button", name="Save").click()

    expect(page.get_by_role("heading", name=name)).to_be_visible()
    source = page.get_by_label(f"source of {name}")
    expect(source).to_contain_text('columns=["SPECIES", "CNT"]')
    expect(source.locator(".cm-line span").first).to_be_visible()  # highlighted tokens
    page.get_by_label("Filter scripts").fill("species")
    expect(page.get_by_role("table", name="scripts").locator("tbody tr")).to_have_count(1)
    shot(page, "scripts")

    page.get_by_role("button", name="Run…").click()
    page.get_by_label("Operation").select_option("group-apply")
    expect(page.get_by_role("combobox", name="Script")).to_have_value(f"{DEMO_USER}/{name}")
    page.get_by_label("Group by").fill("SPECIES")
    page.get_by_role("button", name="Run now").click()
    rows = page.get_by_role("table", name="result").locator("tbody tr")
    expect(rows).to_have_count(3)
    for species in ("setosa", "versicolor", "virginica"):
        expect(rows.filter(has_text=species)).to_contain_text("50")
    shot(page, "run-group-apply", full_page=True)


def test_a_plotting_script_shows_two_images(signed_in: Page, shot: Shot) -> None:
    page = signed_in
    run_form(page, "do-eval", "RandomRedDots")
    page.get_by_label("Capture figures").check()
    page.get_by_label("parameter 1 name").fill("num_dots_1")
    page.get_by_label("parameter 1 value").fill("300")
    page.get_by_role("button", name="Run now").click()
    figures = page.locator(".graphics figure")
    expect(figures).to_have_count(2)
    expect(figures.locator("figcaption")).to_have_text(["Random Red Dots"] * 2)
    for i in range(2):
        img = figures.nth(i).locator("img")
        expect(img).to_have_attribute("src", re.compile(r"^data:image/png;base64,"))
        assert img.evaluate("i => i.complete && i.naturalWidth > 0")
    # The function's value (a DataFrame) as a table under the figures.
    expect(page.get_by_role("table", name="value").locator("tbody tr")).to_have_count(9)
    shot(page, "run-graphics", full_page=True)


def test_an_async_job_reaches_finished_without_reloading(signed_in: Page, api: httpx.Client,
                                                          shot: Shot) -> None:
    page = signed_in
    put_script(api, "ticks", TICKS, "Sleeps, prints and squares (index-apply)")
    run_form(page, "index-apply", "ticks")
    page.get_by_role("spinbutton", name="Invocations").fill("6")
    page.evaluate("window.__sameDocument = true")
    page.get_by_role("button", name="Submit as job").click()

    job = page.get_by_role("article", name="job")
    expect(job.get_by_text("index-apply")).to_be_visible()
    expect(job.locator("[data-status]")).to_have_text("FINISH")
    expect(job.locator(".log")).to_contain_text("tick 6")
    expect(job.locator(".json")).to_contain_text("36")
    expect(page.get_by_role("table", name="jobs").locator("[data-status]").first
           ).to_have_text("FINISH")
    assert page.evaluate("window.__sameDocument") is True  # polled, never reloaded
    shot(page, "jobs")


def test_cancel_a_long_job(signed_in: Page, api: httpx.Client) -> None:
    page = signed_in
    put_script(api, "sleeper", SLEEPER, "Sleeps a minute")
    run_form(page, "do-eval", "sleeper")
    page.get_by_role("button", name="Submit as job").click()
    job = page.get_by_role("article", name="job")
    expect(job.locator("[data-status]")).to_have_text("RUNNING")
    job_id = page.url.rsplit("/", 1)[1]
    job.get_by_role("button", name="Cancel job").click()
    job.get_by_role("button", name="Stop and delete").click()
    expect(page.get_by_role("article", name="job")).to_have_count(0)
    expect(page.locator(f'tr[data-job="{job_id}"]')).to_have_count(0)
    assert api.get(f"{API}/jobs/{job_id}").status_code == 404


def test_upload_a_csv_and_preview_it(signed_in: Page, tmp_path: Path, shot: Shot) -> None:
    page = signed_in
    name = "FLIGHTS"
    csv = tmp_path / "flights.csv"
    csv.write_text("ORIGIN,DEST,DISTANCE,DELAYED\nSFO,JFK,2586,true\nBOS,ORD,867,false\n"
                   "SEA,LAX,954,\n")
    open_page(page, "Tables")
    upload = page.get_by_role("form", name="upload a table")
    upload.get_by_label("File").set_input_files(str(csv))
    expect(upload.get_by_label("Table name")).to_have_value(name)
    upload.get_by_role("button", name="Upload").click()

    expect(page.get_by_role("heading", name=name, level=3)).to_be_visible()
    preview = page.get_by_role("table", name="first rows")
    expect(preview.locator("tbody tr")).to_have_count(3)
    expect(preview.locator("tbody tr").first).to_have_text(re.compile(r"SFO\s*JFK\s*2586"))
    expect(page.get_by_role("table", name="columns")).to_contain_text("BIGINT")
    expect(page.get_by_role("table", name="tables")).to_contain_text(name)
    shot(page, "tables")

    page.get_by_role("button", name="Drop table").click()
    page.get_by_role("button", name="Drop", exact=True).click()
    expect(page.get_by_role("table", name="tables")).not_to_contain_text(name)


# -- escaping --------------------------------------------------------------------------

PAYLOAD = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def test_user_data_is_shown_as_text_never_run(page: Page, console: Console, api: httpx.Client,
                                              shot: Shot) -> None:
    source = f"def hostile():\n    # {PAYLOAD}\n    raise ValueError({PAYLOAD!r})\n"
    put_script(api, "hostile", source, PAYLOAD)
    put_table(api, "HOSTILE", f"ID,NOTE\n1,\"{PAYLOAD.replace(chr(34), chr(34) * 2)}\"\n")
    sign_in(page, console)

    page.get_by_role("link", name="hostile").click()
    expect(page.get_by_label("source of hostile")).to_contain_text(f"# {PAYLOAD}")
    expect(page.get_by_role("table", name="scripts")).to_contain_text(PAYLOAD)

    open_page(page, "Tables")
    page.get_by_role("link", name="HOSTILE").click()
    expect(page.get_by_role("table", name="first rows").locator("td").nth(1)
           ).to_have_text(PAYLOAD)

    run_form(page, "do-eval", "hostile")
    page.get_by_role("button", name="Run now").click()
    error = page.get_by_role("alert")
    expect(error.locator(".message")).to_have_text(f"ValueError: {PAYLOAD}")
    expect(error.locator(".traceback")).to_contain_text("raise ValueError")
    shot(page, "error")

    assert page.evaluate("window.__pwned") is None
    assert page.locator('img[src="x"], main script').count() == 0


# -- datastores, environments, users ------------------------------------------------------

SAVES_DATASTORE = ("def keep():\n"
                   "    import oml, pandas as pd\n"
                   "    oml.ds.save(objs={'frame': pd.DataFrame({'A': [1, 2, 3]}),\n"
                   "                      'answer': 42},\n"
                   "                name='console_ds', description='saved by a test',\n"
                   "                grantable=True, overwrite=True)\n"
                   "    return 'kept'\n")


def test_datastores_list_and_describe(signed_in: Page, api: httpx.Client) -> None:
    page = signed_in
    put_script(api, "keep", SAVES_DATASTORE)
    assert api.post(f"{API}/do-eval/keep").json() == {"result": "kept"}
    open_page(page, "Datastores")
    page.get_by_role("link", name="console_ds").click()
    objects = page.get_by_role("table", name="objects")
    expect(objects.locator("tbody tr")).to_have_count(2)
    expect(objects).to_contain_text("DataFrame")
    grants = page.get_by_role("region", name="grants")
    grants.get_by_role("button", name="Grant read").click()
    expect(grants.get_by_role("status")).to_have_text("Granted to everyone.")
    grants.get_by_label("User to grant to or revoke from").fill("analysts")
    grants.get_by_role("button", name="Grant to group").click()
    expect(grants.get_by_role("status")).to_have_text("Granted to group ANALYSTS.")
    grants.get_by_role("button", name="Revoke from group").click()
    expect(grants.get_by_role("status")).to_have_text("Revoked from group ANALYSTS.")


def test_models_endpoints_a_scored_record_and_a_scoring_job(signed_in: Page,
                                                           api: httpx.Client) -> None:
    from tests.acceptance.test_models import onnx_zip, scoring_job

    x = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]],
                 dtype=np.float32)
    clf = LogisticRegression().fit(x, ["setosa", "virginica", "versicolor"])
    zipped = onnx_zip(clf, x[:1], {"function": "classification", "inputColumns": COLUMNS})
    r = api.post("/omlmod/v1/models", files={"modelData": ("m.zip", zipped)},
                 data={"modelName": "console_iris", "modelType": "ONNX", "version": "1"})
    assert r.status_code == 201, r.text
    model = r.json()["modelId"]
    assert api.post("/omlmod/v1/deployment", json={"modelId": model, "uri": "console-iris"}
                    ).status_code == 201
    put_table(api, "CONSOLE_IN", ",".join(COLUMNS) + "\n5.1,3.5,1.4,0.2\n")
    scoring_job(api, {"jobName": "console_job", "jobType": "MODEL_SCORING",
                      "jobSchedule": {"jobStartDate": "2100-01-01T00:00:00Z",
                                      "repeatInterval": "FREQ=DAILY"},
                      "jobProperties": {"modelId": model, "inputData": "CONSOLE_IN",
                                        "outputData": "CONSOLE_OUT"}})
    page = signed_in
    open_page(page, "Models")
    expect(page.get_by_role("table", name="models")).to_contain_text("console_iris")
    page.get_by_role("link", name="console-iris").click()
    form = page.get_by_role("form", name="score a record")
    for name, value in zip(COLUMNS, x[0], strict=True):
        form.get_by_label(name).fill(str(float(value)))
    form.get_by_role("button", name="Score").click()
    expect(page.get_by_role("region", name="scoring result")).to_contain_text("setosa")
    job = page.get_by_role("article", name="scoring job console_job")
    job.get_by_role("button", name="Run now").click()
    job.get_by_role("button", name="Runs").click()
    expect(page.get_by_role("table", name="runs of console_job")).to_contain_text("FINISH")
    # The owner grants the model to a group and takes it back, with the scripts' control.
    page.get_by_role("link", name="console_iris").click()
    described = page.get_by_role("article", name="model console_iris")
    expect(described).to_contain_text(model)
    grants = described.get_by_role("region", name="grants")
    grants.get_by_label("Grant to user").fill("analysts")
    grants.get_by_role("button", name="Grant to group").click()
    expect(grants.get_by_role("status")).to_have_text("Granted to group ANALYSTS.")
    expect(grants.get_by_role("listitem")).to_have_text("group ANALYSTS Revoke")
    assert api.get(f"/omlmod/v1/models/{model}/grants").json()["result"]["groups"] == \
        ["ANALYSTS"]
    grants.get_by_role("button", name="Revoke").click()
    expect(grants.get_by_text("Nobody: it is private.")).to_be_visible()


class GatedWheels(http.server.SimpleHTTPRequestHandler):
    """Serves a folder of wheels once ``gate`` is set: until then, a build is in progress."""

    gate = threading.Event()
    asked = threading.Event()

    def do_GET(self) -> None:
        self.asked.set()
        self.gate.wait(120)
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def gated_wheels(tmp_path: Path) -> Iterator[tuple[str, type[GatedWheels]]]:
    """A local package index holding one wheel, that answers only when let."""
    make_wheel(tmp_path, "epe_console_pkg", 7)
    handler = type("Gated", (GatedWheels,), {"gate": threading.Event(),
                                             "asked": threading.Event()})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: handler(*a, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", handler
    handler.gate.set()
    server.shutdown()


def test_an_admin_builds_an_environment_watching_its_log(
        page: Page, console: Console, gated_wheels: tuple[str, type[GatedWheels]],
        shot: Shot) -> None:
    index, gate = gated_wheels
    sign_in(page, console, *console.admin)
    open_page(page, "Environments")
    form = page.get_by_role("form", name="create an environment")
    form.get_by_label("Name", exact=True).fill("forecasting")
    form.get_by_label("Description", exact=True).fill("built from the console")
    form.get_by_label("Packages").fill("epe_console_pkg")
    form.get_by_text("Where pip looks").click()
    form.get_by_label("A folder of wheels").fill(index)
    form.get_by_label("Only there").check()
    form.get_by_role("button", name="Create").click()

    build = page.get_by_role("region", name="build")
    log = build.get_by_label("build log")
    # pip is waiting for the index: the log is there while the build runs.
    expect(log).to_contain_text("$ pip install")
    assert gate.asked.wait(60)
    expect(build.locator("[data-status]")).to_have_text("RUNNING")
    shot(page, "environment-build")
    gate.gate.set()
    expect(build.locator("[data-status]")).to_have_text("FINISH", timeout=180_000)
    expect(log).to_contain_text("Successfully installed")
    expect(page.get_by_role("table", name="environments")).to_contain_text("forecasting")

    page.get_by_role("row", name=re.compile("forecasting")).get_by_role(
        "button", name="Delete").click()
    page.get_by_role("button", name="Delete", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Environment forecasting deleted.")


def test_an_admin_lists_adds_and_deletes_users(page: Page, console: Console) -> None:
    sign_in(page, console, *console.admin)
    expect(page.locator(".who")).to_contain_text("(admin)")
    open_page(page, "Users")
    users = page.get_by_role("table", name="users")
    expect(users).to_contain_text("OMLUSER")
    adding = page.get_by_role("region", name="Add a user")
    adding.get_by_label("User name").fill("analyst")
    adding.get_by_label("Password").fill("pw-Secret1")
    adding.get_by_role("button", name="Add user").click()
    expect(adding.get_by_role("status")).to_have_text("User ANALYST created.")
    row = users.get_by_role("row", name=re.compile("ANALYST"))
    expect(row).to_contain_text("user")
    # No way to delete oneself is offered.
    expect(users.get_by_role("row", name=re.compile(rf"^{console.admin[0]} ")).get_by_role(
        "button")).to_have_count(0)
    row.get_by_role("button", name="Delete").click()
    row.get_by_role("button", name="Delete").click()
    listing = page.get_by_role("region", name="Users")
    expect(listing.get_by_role("status")).to_have_text("user ANALYST deleted")
    expect(users).not_to_contain_text("ANALYST")


def test_a_user_who_is_not_an_admin_is_offered_no_admin_controls(signed_in: Page) -> None:
    page = signed_in
    nav = page.get_by_role("navigation", name="main")
    expect(nav.get_by_role("link", name="Environments")).to_be_visible()
    expect(nav.get_by_role("link", name="Users")).to_have_count(0)
    expect(page.locator(".who")).not_to_contain_text("(admin)")
    open_page(page, "Environments")
    expect(page.get_by_role("heading", name="Environments")).to_be_visible()
    expect(page.get_by_role("form", name="create an environment")).to_have_count(0)
    # Typing the admin page's address leads to the first page, not to its controls.
    page.goto(page.url.split("#")[0] + "#/users")
    expect(page.get_by_role("form", name="add a user")).to_have_count(0)
    expect(page.get_by_role("heading", name="Scripts", exact=True)).to_be_visible()
