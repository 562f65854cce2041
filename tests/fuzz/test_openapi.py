"""The fuzzing gate: schemathesis over the OpenAPI document a real ``epe serve`` serves.

Every operation of ``/openapi.json`` is sent ``EXAMPLES`` generated requests with a
valid bearer token (an admin's, so the admin routes are reached too): schema-valid
ones, schema-invalid ones, ones built from the document's examples, and valid ones
aimed at objects that exist (a script, a table, a datastore, a job, users) so that they
get past the 404 into the code behind it. Fuzz dictionaries mix text that breaks
servers (NUL characters, nesting too deep for Python's parser, SQL and path injection)
into the generated strings. No answer may be a 5xx (a 500 is a bug in epe,
docs/errors.md), and every error
must carry the documented body ``{"errorCode": int, "errorMessage": str}``, never
FastAPI's 422. The main operations must accept some of what they get, which shows the
document describes the requests well enough for the fuzzer to reach past validation.

Generation is seeded per operation, so a run is reproducible: the same schemathesis
and Hypothesis versions send the same requests. A failure lists each bad answer with a
curl command that reproduces it (the token filtered out). About 2,600 requests in all,
a minute and a half on two cores; ``pytest -s tests/fuzz`` prints what each operation
answered.
"""

from __future__ import annotations

import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.serverproc import API, ROOT, EpeServer, iris_csv

EXAMPLES = 30  # generated requests per operation
USERS = "/omlusers/api/v1/users"
# Left out, and why: everything else in the document is fuzzed.
EXCLUDED = {
    ("POST", "/omlusers/api/oauth2/v1/token/revoke"): "it revokes the token the fuzzer uses",
    ("POST", f"{ROOT}/v1/envs"): "each accepted body builds a venv with pip from a package "
                                 "index: minutes of CPU and network per request",
    ("POST", f"{ROOT}/v2/envs"): "as for v1",
}
# Operations whose generated requests must be accepted (2xx) at least once, in both versions.
MAIN = [("GET", "/scripts"), ("POST", "/scripts"), ("GET", "/scripts/{name}"),
        ("POST", "/do-eval/{scriptName}"), ("POST", "/table-apply/{scriptName}"),
        ("POST", "/row-apply/{scriptName}"), ("POST", "/group-apply/{scriptName}"),
        ("POST", "/index-apply/{scriptName}"), ("PUT", "/tables/{name}"),
        ("GET", "/tables/{name}"), ("POST", "/query"), ("GET", "/datastores/{name}")]

SCRIPT = "fz_script"
SOURCE = "def f(*args, **kwargs):\n    return 1\n"  # takes whatever a run hands it
TABLE = "IRIS"  # the table OML's examples (and the document's) query
DATASTORE = "fz_ds"
FRIEND = "FZ_FRIEND"  # a user the fuzzer's script and datastore are granted to
VICTIM = "FZ_VICTIM"  # a user DELETE /users/{name} may delete (prepare makes it again)


# Fuzz dictionaries (schemathesis mixes their entries into generated values): text
# that has broken servers before, and values that get a request past validation. Lone
# surrogates cannot go here (schemathesis itself cannot encode them): the acceptance
# tests in tests/acceptance/test_hostile_input.py send those.
SCRIPTS = ["\x00", "def f():\n    return 1\x00\n", "def f():\n    return a" + ".a" * 100_000,
           SOURCE, "f = lambda: 1\n", "def g(x=1):\n    return x\n",
           "import math\n\ndef area(r=1):\n    return math.pi * r * r\n", "def f(:\n",
           "import os\n", "x = 1\n"]
TEXT = ["\x00", "a\x00b", "' OR 1=1 --", '"; DROP TABLE IRIS; --',
        "../../etc/passwd", "%s%n{0}", "\u202e\U0001d54f", " ", "PYQSYS", "PUBLIC", "9" * 40,
        "NaN", "SELECT * FROM IRIS", "SPECIES", "SEPAL_LENGTH,SPECIES", '{"num": 3}',
        '{"oml_input_type": "numpy.recarray"}', '{"oml_na_omit": "yes"}', "[]", "null"]
IN_PATHS = ["\x00", "..", "%00", "a b", " ", "PYQSYS", "PUBLIC", "9" * 40, "\u202e"]


def fuzz_config(document: dict[str, Any]) -> schemathesis.Config:
    """Bind the dictionaries: SCRIPTS to ``script`` fields, TEXT to every other string
    field of every request body in ``document``, IN_PATHS to path and query strings."""
    fields = {name for model in document["components"]["schemas"].values()
              for name, prop in model.get("properties", {}).items()
              if "string" in {prop.get("type"), *(o.get("type") for o in prop.get("anyOf", []))}}
    bindings = {f"body.{name}": {"dictionary": "script" if name == "script" else "text",
                                 "probability": 0.5 if name == "script" else 0.2}
                for name in fields if name.replace("_", "").isalnum()}
    return schemathesis.Config.from_dict({
        "dictionaries": {"script": {"values": SCRIPTS}, "text": {"values": TEXT},
                         "path": {"values": IN_PATHS}},
        "generation": {"dictionaries": {"string": {"dictionary": "path", "probability": 0.2}}},
        "parameters": bindings,
    })


@schemathesis.serializer("application/vnd.apache.parquet")
def _parquet(_ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


@dataclass
class Fuzz:
    server: EpeServer
    user: str
    token: str
    schema: schemathesis.BaseSchema
    session: requests.Session = field(default_factory=requests.Session)
    job: str = ""
    dirty: bool = True  # the last operation may have deleted or changed what prepare makes

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def prepare(self) -> None:
        """Make again what an earlier operation may have deleted (each step is idempotent)."""
        with self.server.http(headers=self.headers) as c:
            ok(c.post(f"{API}/scripts", json={"name": SCRIPT, "script": SOURCE,
                                             "overwrite": True}))
            ok(c.put(f"{API}/tables/{TABLE}", params={"overwrite": "true"},
                     content=iris_csv().encode(), headers={"Content-Type": "text/csv"}))
            for user in (FRIEND, VICTIM):
                r = c.post(USERS, json={"username": user, "password": "pw-Secret1"})
                assert r.status_code in (201, 409), r.text
            ok(c.post(f"{API}/scripts/{SCRIPT}/grants", json={"user": FRIEND}))
            ok(c.post(f"{API}/do-eval", json={"script": (
                "def f():\n    import oml\n"
                f"    oml.ds.save({{'x': 1}}, {DATASTORE!r}, grantable=True, overwrite=True)\n")}))
            if not self.job or c.get(f"{API}/jobs/{self.job}").status_code == 404:
                r = c.post(f"{API}/index-apply/{SCRIPT}", json={"times": 2, "asyncFlag": True})
                assert r.status_code == 201, r.text
                self.job = r.headers["location"].rsplit("/", 1)[1]

    def known(self, path: str, names: list[str]) -> dict[str, str]:
        """Path parameters naming objects that exist, for this operation's path."""
        by_resource = {"scripts": SCRIPT, "tables": TABLE, "datastores": DATASTORE,
                       "users": VICTIM}
        values = {"scriptName": SCRIPT, "ownerName": self.user, "owner": self.user,
                  "user": FRIEND, "jobId": self.job, "version": "v2"}
        for resource, value in by_resource.items():
            if f"/{resource}/{{name}}" in path:
                values["name"] = value
        return {n: values[n] for n in names if n in values}


def ok(r: httpx.Response) -> None:
    assert r.status_code < 300, r.text


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    # A server of its own: the fuzzer creates and deletes users, which must not be
    # the other tests'.
    srv = EpeServer(Path(tmp_path_factory.mktemp("epe-fuzz")),
                    # Every run within 5 s: the document says so (timeout's maximum), so
                    # the fuzzer asks for no more, and index-apply's 1,000,000 invocations
                    # end in a 400 (time limit) instead of running for half a minute.
                    {"EPE_DEFAULT_TIMEOUT": "5", "EPE_MAX_TIMEOUT": "5",
                     # The fuzzer logs in wrongly on purpose, far more than a person would.
                     "EPE_LOGIN_MAX_FAILURES": "100000",
                     "EPE_LOGIN_MAX_FAILURES_PER_ADDRESS": "100000"}).start()
    try:
        user, password = srv.add_user("FZ_ADMIN", admin=True)
        document = httpx.get(f"{srv.url}/openapi.json").json()
        schema = schemathesis.openapi.from_dict(document, config=fuzz_config(document))
        state = Fuzz(srv, user, srv.token(user, password), schema)
        yield state
        state.session.close()
    finally:
        srv.stop()


def operations() -> list[tuple[str, str]]:
    """Every operation of the document, read from the app without serving it (pytest
    needs the list before any server runs; the test then fuzzes the served one)."""
    import tempfile

    from epe.app import create_app
    from epe.settings import Settings

    with tempfile.TemporaryDirectory() as data:
        document = create_app(Settings(data_dir=Path(data))).openapi()
    return [(method.upper(), path) for path, methods in document["paths"].items()
            for method in methods]


@dataclass
class Outcome:
    statuses: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def record(self, case: Any, response: requests.Response) -> None:
        self.statuses[response.status_code] += 1
        problem = check(response)
        if problem and len(self.problems) < 5:
            curl = case.as_curl_command(headers={"Authorization": "Bearer [token]"})
            self.problems.append(f"{problem}\n    {response.text[:300]}\n    {curl[:800]}")

    @property
    def accepted(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)


def check(response: requests.Response) -> str | None:
    """What is wrong with an answer, if anything."""
    status = response.status_code
    if status >= 500:
        return f"{status}: a server error"
    if status < 400:
        return None
    if status == 422:
        return "422: validation errors are 400 here"
    try:
        body = response.json()
    except ValueError:
        return f"{status} without a JSON body"
    if not (isinstance(body, dict) and type(body.get("errorCode")) is int
            and isinstance(body.get("errorMessage"), str)):
        return f"{status} whose body is not the error body"
    return None


def aimed(case: Any, known: dict[str, str]) -> Any:
    """``case`` with its path naming objects that exist."""
    case.path_parameters = {**(case.path_parameters or {}), **known}
    return case


def run(fuzz: Fuzz, method: str, path: str) -> Outcome:
    operation = fuzz.schema[path][method]
    names = [p.name for p in operation.path_parameters]
    known = fuzz.known(path, names)
    examples = operation.get_strategies_from_examples()  # the document's examples, filled in
    strategies = [operation.as_strategy(GenerationMode.POSITIVE),
                  operation.as_strategy(GenerationMode.NEGATIVE),
                  *examples]
    if known:
        strategies += [operation.as_strategy(GenerationMode.POSITIVE, path_parameters=known),
                       *(s.map(partial(aimed, known=known)) for s in examples)]
    outcome = Outcome()

    @seed(zlib.crc32(f"{method} {path}".encode()))
    @settings(max_examples=EXAMPLES, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(case=st.one_of(strategies))
    def send(case: Any) -> None:
        response = case.call(base_url=fuzz.server.url, session=fuzz.session,
                             headers=fuzz.headers, timeout=60, allow_redirects=False)
        outcome.record(case, response)

    send()
    return outcome


@pytest.mark.parametrize(("method", "path"), [
    pytest.param(m, p, id=f"{m} {p.removeprefix(ROOT)}") for m, p in operations()])
def test_operation_never_answers_5xx(fuzz: Fuzz, method: str, path: str) -> None:
    if (method, path) in EXCLUDED:
        pytest.skip(EXCLUDED[(method, path)])
    if fuzz.dirty:
        fuzz.prepare()
    started = time.monotonic()
    outcome = run(fuzz, method, path)
    took = time.monotonic() - started
    fuzz.dirty = method in ("DELETE", "PUT") or path.endswith(("/scripts", "/users", "/grants"))
    summary = f"{method} {path}: {dict(outcome.statuses)} in {took:.1f}s"
    print(summary)  # shown with -s: what each operation answered
    assert not outcome.problems, summary + "\n" + "\n".join(outcome.problems)
    if any(method == m and path.endswith(tail) and path.startswith(f"{ROOT}/v")
           for m, tail in MAIN):
        assert outcome.accepted > 0, "nothing generated was accepted: " + summary


def test_every_operation_is_fuzzed_but_the_excluded_ones() -> None:
    listed = operations()
    assert set(EXCLUDED) <= set(listed)
    assert len(listed) - len(EXCLUDED) > 80  # the whole API, in both versions
    for method, tail in MAIN:
        assert sum(m == method and p.endswith(tail) for m, p in listed) == 2, tail
