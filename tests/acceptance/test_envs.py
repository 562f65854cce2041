"""Named environments (docs/environments.md) over HTTP and the CLI: build one from a
wheel this test makes itself (no network), run in it and outside it, list it in OML's
shape, delete it; a failed build, a build in progress, an environment in use, idle pools,
and who may do what.

Nothing here asserts on elapsed time: ``wait_for`` polls for a state."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from epe.settings import Settings
from tests.serverproc import API, API1, EpeServer, assert_error, run_cli, unique_name, wait_for

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
SIZE = re.compile(r"^\d+(\.\d)? (B|KiB|MiB|GiB|TiB)$")
IMPORTS_IT = "def f():\n    import epe_envtest_pkg\n    return epe_envtest_pkg.VALUE\n"
WHERE = ("def f():\n    import os, sys, numpy, pandas\n"
         "    return {'prefix': sys.prefix, 'uid': os.geteuid()}\n")
SLEEPER = "import time\ndef f():\n    time.sleep(3600)\n"


# -- a wheel, made here --------------------------------------------------------------


def make_wheel(folder: Path, name: str, value: int, version: str = "0.1") -> Path:
    """A pure-Python wheel of package ``name`` holding ``VALUE = value``, by hand."""
    info = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": f"VALUE = {value}\n",
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: epe-tests\n"
                              "Root-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{path},sha256={_digest(text)},{len(text.encode())}"
              for path, text in files.items()] + [f"{info}/RECORD,,"]
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
        z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel


def _digest(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    make_wheel(folder, "epe_envtest_pkg", 42)
    make_wheel(folder, "epe_envtest_cli", 7)
    return folder


# -- servers whose data folder the worker user can traverse ---------------------------


@pytest.fixture(scope="module")
def places() -> Iterator[Callable[[], Path]]:
    """Data folders under a parent every user may traverse (pytest's tmp is 0700): the
    worker user starts each environment's Python from ``<data dir>/envs``."""
    parent = Path(tempfile.mkdtemp(prefix="epe-envs-test-"))
    os.chmod(parent, 0o711)
    count = iter(range(1000))
    yield lambda: parent / f"data{next(count)}"
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="module")
def server(places: Callable[[], Path]) -> Iterator[EpeServer]:
    """This module's server, in place of the session's (``admin`` of tests/conftest.py
    works on it)."""
    server = EpeServer(places(), {"EPE_ENV_WORKERS": "1"}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def user(server: EpeServer) -> Iterator[httpx.Client]:
    _name, client = server.new_client()
    with client:
        yield client


@pytest.fixture(scope="module")
def built(admin: httpx.Client, wheels: Path) -> str:
    """An environment with epe_envtest_pkg, made through the API; its name."""
    name = unique_name("env")
    r = create(admin, name, packages=["epe_envtest_pkg"], findLinks=str(wheels),
               description="for the tests")
    assert r.status_code == 200, r.text
    return name


# -- helpers ---------------------------------------------------------------------------




def submit(c: httpx.Client, name: str, root: str = API, **body: Any) -> str:
    """POST /envs; assert the 201 answer of a job and return the job's URL."""
    r = c.post(f"{root}/envs", json={"name": name, **body})
    assert r.status_code == 201, r.text
    assert r.content == b""
    url = r.headers["Location"]
    assert url.startswith(str(c.base_url).rstrip("/") + root + "/jobs/"), url
    return url


def finish(c: httpx.Client, url: str, timeout: float = 120) -> httpx.Response:
    """Poll the job like a run's (202 ... 302) and fetch its result."""
    def ended() -> bool:
        r = c.get(url)
        assert r.status_code in (202, 302), r.text
        return r.status_code == 302
    wait_for(ended, timeout)
    return c.get(url + "/result")


def create(c: httpx.Client, name: str, **body: Any) -> httpx.Response:
    return finish(c, submit(c, name, **body))


def job_status(c: httpx.Client, url: str) -> str:
    jobs = {j["job_id"]: j for j in c.get(f"{API}/jobs").json()["result"]}
    return str(jobs[url.rsplit("/", 1)[1]]["status"])


def run(c: httpx.Client, source: str, env: str | None = None, root: str = API,
        **body: Any) -> httpx.Response:
    return c.post(f"{root}/do-eval", json={"script": source, **body,
                                           **({"envName": env} if env else {})})


def envs(c: httpx.Client) -> dict[str, dict[str, Any]]:
    r = c.get(f"{API}/envs")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"result"} and set(body["result"]) == {"envs"}
    return {e["name"]: e for e in body["result"]["envs"]}


def env_processes(folder: Path) -> set[int]:
    """Processes started from a Python under ``folder`` (an environment's workers)."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            argv0 = (entry / "cmdline").read_bytes().split(b"\0")[0].decode()
        except (OSError, UnicodeDecodeError):
            continue
        if argv0.startswith(str(folder) + "/"):
            found.add(int(entry.name))
    return found


# -- building through the API, and running there -------------------------------------


def test_a_package_in_an_environment_imports_there_and_not_elsewhere(
        user: httpx.Client, built: str) -> None:
    assert run(user, IMPORTS_IT, built).json() == {"result": 42}
    assert run(user, IMPORTS_IT, built, root=API1).json() == {"result": 42}
    body = assert_error(run(user, IMPORTS_IT), 400, 1011)
    assert "epe_envtest_pkg" in body["errorMessage"]


def test_a_run_in_an_environment_uses_its_python_with_the_server_libraries_layered(
        server: EpeServer, user: httpx.Client, built: str) -> None:
    r = run(user, WHERE, built)
    assert r.status_code == 200, r.text
    where = r.json()["result"]
    assert where["prefix"] == str((server.data_dir / "envs" / built).absolute())
    if os.geteuid() == 0:  # as the user's own uid, like the default environment's workers
        assert where["uid"] >= Settings().worker_uid_base
    default = run(user, WHERE).json()["result"]
    assert default["prefix"] != where["prefix"] and default["uid"] == where["uid"]


def test_every_run_operation_and_async_runs_take_envName(user: httpx.Client,
                                                         built: str) -> None:
    source = "def f(i):\n    import epe_envtest_pkg\n    return epe_envtest_pkg.VALUE + i\n"
    r = user.post(f"{API}/index-apply", json={"script": source, "times": 3, "envName": built,
                                              "parallelFlag": True})
    assert r.json() == {"result": [43, 44, 45]}, r.text
    r = user.post(f"{API}/do-eval", json={"script": IMPORTS_IT, "envName": built,
                                          "asyncFlag": True})
    assert r.status_code == 201, r.text
    assert finish(user, r.headers["Location"]).json() == {"result": 42}


def test_environments_are_listed_in_omls_shape(user: httpx.Client, built: str) -> None:
    entry = envs(user)[built]
    assert {"name", "description", "size", "number_of_installed_packages", "tags"} <= set(entry)
    assert entry["description"] == "for the tests"
    assert SIZE.match(entry["size"]), entry
    # Its own package and the server's, which it sees too.
    assert isinstance(entry["number_of_installed_packages"], int)
    assert entry["number_of_installed_packages"] > 10
    assert entry["tags"] == {"python": PYTHON, "application": "OML4PY"}
    assert user.get(f"{API1}/envs").json()["result"]["envs"] == list(envs(user).values())
    r = user.get(f"{API}/envs/{built}")
    assert r.status_code == 200 and r.json()["result"] == entry
    assert_error(user.get(f"{API}/envs/nonesuch"), 404, 4004)


def test_the_build_job_answers_the_new_environment_and_keeps_pips_output(
        admin: httpx.Client, wheels: Path) -> None:
    name = unique_name("env")
    wheel = wheels / "epe_envtest_cli-0.1-py3-none-any.whl"
    url = submit(admin, name, root=API1, packages=[str(wheel)], noIndex=True)
    r = finish(admin, url)
    assert r.status_code == 200, r.text
    assert r.json()["result"]["name"] == name
    assert r.json()["result"]["tags"]["python"] == PYTHON
    assert job_status(admin, url) == "FINISH"
    log = admin.get(url + "/log").json()["result"]
    assert "Successfully installed epe-envtest-cli" in log, log
    assert run(admin, "def f():\n    import epe_envtest_cli\n    return epe_envtest_cli.VALUE",
               name).json() == {"result": 7}
    assert admin.delete(f"{API}/envs/{name}").status_code == 200


# -- refusals ---------------------------------------------------------------------------


def test_an_unknown_environment_is_a_400(user: httpx.Client) -> None:
    for name in ("nonesuch", "../envs", ".building-x", "a" * 65):
        body = assert_error(run(user, "def f():\n    return 1", name), 400, 1001)
        assert "unknown environment" in body["errorMessage"]
        r = user.post(f"{API}/do-eval", json={"script": "def f():\n    return 1",
                                              "envName": name, "asyncFlag": True})
        assert_error(r, 400, 1001)


def test_only_admins_create_and_delete_environments(user: httpx.Client, admin: httpx.Client,
                                                    built: str, wheels: Path) -> None:
    r = user.post(f"{API}/envs", json={"name": unique_name("env"), "packages": ["x"],
                                       "findLinks": str(wheels)})
    assert_error(r, 403, 3001)
    assert_error(user.delete(f"{API}/envs/{built}"), 403, 3001)
    assert built in envs(user)


def test_bad_create_requests_are_refused_before_any_job(admin: httpx.Client,
                                                        built: str, wheels: Path) -> None:
    assert_error(admin.post(f"{API}/envs", json={"name": built, "packages": ["x"]}), 409, 4009)
    for body in ({"name": "bad/name", "packages": ["x"]},
                 {"name": "-dash", "packages": ["x"]},
                 {"name": unique_name("env")},  # nothing to install
                 {"name": unique_name("env"), "packages": ["--index-url=http://evil"]},
                 {"name": unique_name("env"), "packages": ["relative/x.whl"]},
                 {"name": unique_name("env"), "packages": "epe_envtest_pkg"},
                 {"name": unique_name("env"), "packages": ["x"], "findLinks": "relative"},
                 {"packages": ["x"]}):
        assert_error(admin.post(f"{API}/envs", json=body), 400)


def test_a_failed_build_ends_failed_with_pips_message_and_leaves_nothing(
        server: EpeServer, admin: httpx.Client, wheels: Path) -> None:
    name = unique_name("env")
    url = submit(admin, name, packages=["epe_no_such_pkg"], findLinks=str(wheels))
    r = finish(admin, url)
    body = assert_error(r, 400, 1001)
    assert "pip could not install" in body["errorMessage"]
    assert "epe_no_such_pkg" in body["errorMessage"], body
    assert "epe_no_such_pkg" in body["stdout"]  # pip's own output
    assert job_status(admin, url) == "FAILED"
    assert name not in envs(admin)
    assert [p.name for p in (server.data_dir / "envs").iterdir() if name in p.name] == []
    assert "unknown environment" in assert_error(run(admin, "def f():\n    return 1", name),
                                                 400)["errorMessage"]
    # The name is free again.
    assert create(admin, name, packages=["epe_envtest_pkg"],
                  findLinks=str(wheels)).status_code == 200
    assert admin.delete(f"{API}/envs/{name}").status_code == 200


# -- a build in progress -----------------------------------------------------------------


class _GatedWheels(http.server.SimpleHTTPRequestHandler):
    """Serves a folder of wheels, but only once ``gate`` is open: a build in progress."""

    gate = threading.Event()
    asked = threading.Event()

    def do_GET(self) -> None:
        type(self).asked.set()
        type(self).gate.wait(120)
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def gated(wheels: Path) -> Iterator[type[_GatedWheels]]:
    handler = type("Gated", (_GatedWheels,), {"gate": threading.Event(),
                                              "asked": threading.Event()})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: handler(*a, directory=str(wheels)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}/"  # type: ignore[attr-defined]
    yield handler
    handler.gate.set()
    server.shutdown()


def test_a_build_in_progress_blocks_no_run_and_cannot_be_picked(
        server: EpeServer, admin: httpx.Client, user: httpx.Client, built: str,
        gated: Any) -> None:
    name = unique_name("env")
    url = submit(admin, name, packages=["epe_envtest_pkg"], findLinks=gated.url)
    assert gated.asked.wait(60)  # pip is waiting for the index page
    assert admin.get(url).status_code == 202
    # Runs go on, in the default environment and in another one.
    assert run(user, "def f():\n    return 'still serving'").json() == {
        "result": "still serving"}
    assert run(user, IMPORTS_IT, built).json() == {"result": 42}
    # The half-made environment is neither listed nor usable, nor its name free.
    assert name not in envs(user)
    assert_error(run(user, IMPORTS_IT, name), 400, 1001)
    assert_error(admin.post(f"{API}/envs", json={"name": name, "packages": ["x"]}), 409, 4009)
    assert [p.name for p in (server.data_dir / "envs").iterdir()
            if p.name.startswith(f".building-{name}-")] != []
    gated.gate.set()
    assert finish(admin, url).status_code == 200
    assert run(user, IMPORTS_IT, name).json() == {"result": 42}
    assert admin.delete(f"{API}/envs/{name}").status_code == 200


def test_the_build_log_is_read_while_pip_runs(admin: httpx.Client, gated: Any) -> None:
    name = unique_name("env")
    url = submit(admin, name, packages=["epe_envtest_pkg"], findLinks=gated.url)
    assert gated.asked.wait(60)  # pip is waiting for the index page
    assert admin.get(url).status_code == 202
    log = admin.get(url + "/log").json()["result"]
    assert "$ pip install" in log and "epe_envtest_pkg" in log, log
    gated.gate.set()
    assert finish(admin, url).status_code == 200
    assert "Successfully installed epe_envtest_pkg" in admin.get(url + "/log").json()["result"]
    assert admin.delete(f"{API}/envs/{name}").status_code == 200


def test_deleting_a_build_job_stops_the_build_and_leaves_nothing(
        server: EpeServer, admin: httpx.Client, gated: Any) -> None:
    name = unique_name("env")
    url = submit(admin, name, packages=["epe_envtest_pkg"], findLinks=gated.url)
    assert gated.asked.wait(60)
    assert admin.delete(url).status_code == 200
    wait_for(lambda: not [p for p in (server.data_dir / "envs").iterdir() if name in p.name])
    assert name not in envs(admin)


# -- deleting -----------------------------------------------------------------------------


def test_an_environment_in_use_is_not_deleted_and_its_work_goes_on(
        server: EpeServer, admin: httpx.Client, user: httpx.Client, wheels: Path) -> None:
    name = unique_name("env")
    assert create(admin, name, packages=["epe_envtest_pkg"],
                  findLinks=str(wheels)).status_code == 200
    r = user.post(f"{API}/do-eval", json={"script": SLEEPER, "envName": name,
                                          "asyncFlag": True})
    job = r.headers["Location"]
    wait_for(lambda: job_status(user, job) == "RUNNING")
    body = assert_error(admin.delete(f"{API}/envs/{name}"), 409, 4009)
    assert "in use" in body["errorMessage"]
    cli = run_cli("env", "delete", name, "--data-dir", str(server.data_dir), check=False)
    assert cli.returncode == 1 and "in use" in cli.stderr, cli.stderr
    # Nothing was stopped: the job still runs, and the environment still serves.
    assert user.get(job).status_code == 202 and job_status(user, job) == "RUNNING"
    assert name in envs(user)
    assert user.delete(job).status_code == 200
    r = admin.delete(f"{API}/envs/{name}")
    assert r.status_code == 200 and r.json() == {"result": f"environment {name} deleted"}
    assert name not in envs(user)
    assert "unknown environment" in assert_error(run(user, IMPORTS_IT, name),
                                                 400)["errorMessage"]
    assert not (server.data_dir / "envs" / name).exists()
    assert_error(admin.delete(f"{API}/envs/{name}"), 404, 4004)


def test_a_waiting_job_keeps_its_environment(
        places: Callable[[], Path], wheels: Path) -> None:
    server = EpeServer(places(), {"EPE_ENV_WORKERS": "1", "EPE_JOB_CONCURRENCY_LOW": "1"}).start()
    try:
        _name, admin = server.new_client(admin=True)
        with admin:
            name = unique_name("env")
            assert create(admin, name, packages=["epe_envtest_pkg"],
                          findLinks=str(wheels)).status_code == 200
            first = admin.post(f"{API}/do-eval", json={"script": SLEEPER, "asyncFlag": True})
            wait_for(lambda: job_status(admin, first.headers["Location"]) == "RUNNING")
            second = admin.post(f"{API}/do-eval", json={"script": IMPORTS_IT, "envName": name,
                                                        "asyncFlag": True})
            assert job_status(admin, second.headers["Location"]) == "PENDING"
            assert_error(admin.delete(f"{API}/envs/{name}"), 409, 4009)
            assert admin.delete(first.headers["Location"]).status_code == 200
            assert finish(admin, second.headers["Location"]).json() == {"result": 42}
            assert admin.delete(f"{API}/envs/{name}").status_code == 200
    finally:
        server.stop()


# -- the command line ----------------------------------------------------------------------


def test_the_cli_builds_lists_and_deletes_while_the_server_runs(
        server: EpeServer, user: httpx.Client, wheels: Path, tmp_path: Path) -> None:
    name, data = unique_name("cli"), ["--data-dir", str(server.data_dir)]
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("epe_envtest_cli\n")
    made = run_cli("env", "create", name, "--packages", "epe_envtest_pkg", "-r",
                   str(requirements), "--find-links", str(wheels), "--description", "by cli",
                   *data)
    assert made.returncode == 0 and f"environment {name} created" in made.stdout
    assert "Successfully installed" in made.stderr  # pip's output, as it goes
    # The running server finds it at once.
    source = ("def f():\n    import epe_envtest_cli, epe_envtest_pkg\n"
              "    return epe_envtest_cli.VALUE + epe_envtest_pkg.VALUE\n")
    assert run(user, source, name).json() == {"result": 49}
    assert envs(user)[name]["description"] == "by cli"
    listed = run_cli("env", "list", *data).stdout
    assert re.search(rf"^{name}\tpython {PYTHON}\t", listed, re.MULTILINE), listed
    as_json = run_cli("env", "list", "--json", *data).stdout
    assert f'"name": "{name}"' in as_json
    again = run_cli("env", "create", name, "epe_envtest_pkg", "--find-links", str(wheels),
                    *data, check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    gone = run_cli("env", "delete", name, *data)
    assert gone.returncode == 0
    assert name not in envs(user)
    assert_error(run(user, source, name), 400, 1001)
    missing = run_cli("env", "delete", name, *data, check=False)
    assert missing.returncode == 1 and "no environment" in missing.stderr


def test_a_failed_cli_build_exits_1_with_pips_message(server: EpeServer, wheels: Path) -> None:
    name = unique_name("cli")
    r = run_cli("env", "create", name, "epe_no_such_pkg", "--find-links", str(wheels),
                "--data-dir", str(server.data_dir), check=False)
    assert r.returncode == 1
    assert "error: pip could not install" in r.stderr and "epe_no_such_pkg" in r.stderr
    assert [p for p in (server.data_dir / "envs").iterdir() if name in p.name] == []


def test_a_restored_backup_builds_the_environments_again_from_their_definitions(
        server: EpeServer, built: str, places: Callable[[], Path], tmp_path: Path) -> None:
    # docs/deploy.md#backups: a backup keeps what each environment was built from (here
    # a package from a folder of wheels), and restoring builds it again with pip.
    made = run_cli("backup", "--data-dir", str(server.data_dir), "--to", str(tmp_path / "b"))
    assert "environments" in made.stdout, made
    restored = places()
    done = run_cli("restore", "--from", str(tmp_path / "b"), "--data-dir", str(restored))
    assert f"building environment {built} again" in done.stdout, done
    listed = {e["name"]: e for e in json.loads(run_cli(
        "env", "list", "--json", "--data-dir", str(restored)).stdout)["result"]["envs"]}
    original = {e["name"]: e for e in json.loads(run_cli(
        "env", "list", "--json", "--data-dir", str(server.data_dir)).stdout)["result"]["envs"]}
    assert {k: v for k, v in listed[built].items() if k != "size"} == \
        {k: v for k, v in original[built].items() if k != "size"}
    imported = subprocess.run([str(restored / "envs" / built / "bin" / "python"), "-c",
                               "import epe_envtest_pkg; print(epe_envtest_pkg.VALUE)"],
                              capture_output=True, text=True, check=True)
    assert imported.stdout == "42\n"


# -- pools: started when needed, stopped when idle; environments outlive restarts ----------


def test_pools_start_on_first_use_and_stop_when_idle_and_envs_survive_a_restart(
        places: Callable[[], Path], wheels: Path) -> None:
    server = EpeServer(places(), {"EPE_ENV_WORKERS": "1", "EPE_ENV_IDLE_TIMEOUT": "1"}).start()
    try:
        _name, admin = server.new_client(admin=True)
        with admin:
            name = unique_name("env")
            assert create(admin, name, packages=["epe_envtest_pkg"],
                          findLinks=str(wheels)).status_code == 200
            folder = (server.data_dir / "envs" / name).absolute()
            assert env_processes(folder) == set()  # not started before a run needs it
            assert run(admin, IMPORTS_IT, name).json() == {"result": 42}
            assert env_processes(folder) != set()
            wait_for(lambda: env_processes(folder) == set(), timeout=60)
            assert run(admin, IMPORTS_IT, name).json() == {"result": 42}  # started again
        server.stop()
        server.start()
        user, password = server.add_user(admin=True)
        with server.client(user, password) as admin:
            assert name in envs(admin)
            assert run(admin, IMPORTS_IT, name).json() == {"result": 42}
    finally:
        server.stop()
