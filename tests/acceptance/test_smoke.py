"""The walk-through of the README: token, create a script, do-eval; and what a new install
shows after ``epe demo`` (the demo's scripts over IRIS, an async job, a plot, the console).

The release tests (tests/release) run these same checks against the installed wheel and
the container image: ``check_walkthrough`` and ``check_new_install`` take any server.
"""

import base64

from tests.serverproc import API, EpeServer, wait_for


def check_walkthrough(server: EpeServer) -> None:
    """A new user's token, a stored script, a do-eval with parameters."""
    _user, c = server.new_client()
    with c:
        source = ("import numpy as np\n"
                  "def f(num=5, scale=1):\n    return list(np.arange(num) / scale)")
        r = c.post(f"{API}/scripts", json={"name": "scaled", "script": source})
        assert r.status_code == 201, r.text
        r = c.post(f"{API}/do-eval/scaled", json={"parameters": '{"num":10,"scale":100}',
                                                  "service": "LOW"})
        assert r.status_code == 200, r.text
        assert r.json() == {"result": [i / 100 for i in range(10)]}


def check_new_install(server: EpeServer, demo_password: str) -> None:
    """What ``epe demo`` gave the server: OMLUSER's scripts over IRIS, sync and async, a
    plot drawn by matplotlib, and the web console's page and bundle."""
    with server.http() as anyone:
        assert anyone.get("/health/ready").status_code == 200
        page = anyone.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "console/assets/console.js" in page.text, page.text[:500]
        bundle = anyone.get("/console/assets/console.js")
        assert bundle.status_code == 200 and len(bundle.content) > 1000
    with server.client("OMLUSER", demo_password) as c:
        r = c.post(f"{API}/do-eval/hello_world")
        assert r.json() == {"result": "Hello World!"}, r.text
        r = c.post(f"{API}/group-apply/group_count",
                   json={"input": "select * from IRIS", "groupBy": "SPECIES"})
        assert r.status_code == 200, r.text
        counts = {species: group["COUNT"]["0"] for species, group in r.json()["result"].items()}
        assert counts == {"setosa": 50, "versicolor": 50, "virginica": 50}
        r = c.post(f"{API}/index-apply/compute_random_mean",
                   json={"times": 3, "asyncFlag": True})
        assert r.status_code == 201, r.text
        job = r.headers["Location"]
        wait_for(lambda: c.get(job).status_code == 302, timeout=120)
        r = c.get(f"{job}/result")
        assert r.status_code == 200 and len(r.json()["result"]) == 3, r.text
        r = c.post(f"{API}/do-eval/RandomRedDots", json={"graphicsFlag": True})
        assert r.status_code == 200, r.text
        images = r.json()["result"]
        assert len(images) == 2
        assert base64.b64decode(images[0]["IMAGE"]).startswith(b"\x89PNG\r\n\x1a\n")


def test_token_create_script_and_do_eval(server: EpeServer) -> None:
    check_walkthrough(server)
