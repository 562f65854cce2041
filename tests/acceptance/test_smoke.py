"""The walk-through of the README: token, create a script, do-eval."""

from tests.serverproc import API, EpeServer


def test_token_create_script_and_do_eval(server: EpeServer) -> None:
    _user, c = server.new_client()
    source = "import numpy as np\ndef f(num=5, scale=1):\n    return list(np.arange(num) / scale)"
    r = c.post(f"{API}/scripts", json={"name": "scaled", "script": source})
    assert r.status_code == 201, r.text
    r = c.post(f"{API}/do-eval/scaled", json={"parameters": '{"num":10,"scale":100}',
                                              "service": "LOW"})
    assert r.status_code == 200, r.text
    assert r.json() == {"result": [i / 100 for i in range(10)]}
