"""What signing in through a directory or a provider costs a run, after the first call
(docs/benchmarks.md#sign-in).

Starts a real OpenLDAP (tests/ldapserver.py), a real OpenID provider
(tests/oidcprovider.py) and one ``epe serve`` using both, then times a sync do-eval of
``def f(): return 1``, interleaved round by round so machine noise hits every kind
alike, for four callers:

* ``epe``: a local user with a token of epe's (the baseline);
* ``ldap``: a directory user, their token got by the password grant checked by the
  directory (the first sign-in made the user; the token is epe's own after that);
* ``oidc``: a provider user calling with the provider's own access token (its signature
  checked by the provider's keys on first use, then remembered until it expires);
* ``automation``: a local user's automation token as the bearer token.

Each caller makes one call before the timing starts (the first call makes the user,
starts their workers, fetches the provider's keys). Target: each median <= 1.1x epe's.

Run: ``.venv/bin/python bench/sign_in.py [--quick] [--json]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchserver import BenchServer, commit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.ldapserver import ACTIVE_FILTER, GROUPS, PEOPLE, SERVICE_DN, SERVICE_PW, Slapd
from tests.oidcprovider import AUDIENCE, CLIENT_ID, CLIENT_SECRET, OidcProvider

API = "/oml/api/py-scripts/v2"
TOKEN_URL = "/omlusers/api/oauth2/v1/token"
USER, PASSWORD = "BENCH", "bench-Secret1"
SCRIPT = "def f():\n    return 1\n"
TARGET = 1.1


def settings(slapd: Slapd, provider: OidcProvider) -> dict[str, str]:
    return {"EPE_LDAP_URL": slapd.ldaps_url, "EPE_LDAP_CA_FILE": slapd.ca_file,
            "EPE_LDAP_BIND_DN": SERVICE_DN, "EPE_LDAP_BIND_PASSWORD": SERVICE_PW,
            "EPE_LDAP_USER_BASE": PEOPLE, "EPE_LDAP_USER_FILTER": ACTIVE_FILTER,
            "EPE_LDAP_GROUP_BASE": GROUPS, "EPE_OIDC_ISSUER": provider.issuer,
            "EPE_OIDC_CLIENT_ID": CLIENT_ID, "EPE_OIDC_CLIENT_SECRET": CLIENT_SECRET,
            "EPE_OIDC_AUDIENCE": AUDIENCE}


def password_token(url: str, user: str, password: str) -> str:
    r = httpx.post(url + TOKEN_URL, json={"grant_type": "password", "username": user,
                                          "password": password}, timeout=60)
    r.raise_for_status()
    return str(r.json()["accessToken"])


def callers(server: BenchServer, provider: OidcProvider) -> dict[str, httpx.Client]:
    """One keep-alive client per kind of token, each with the script stored."""
    epe = password_token(server.url, USER, PASSWORD)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {epe}"}) as c:
        r = c.post("/omlusers/api/v1/tokens", json={"name": f"bench-{time.time()}"})
        r.raise_for_status()
        automation = r.json()["token"]
    tokens = {"epe": epe, "ldap": password_token(server.url, "alice", "alice-pw"),
              "oidc": provider.access_token("oscar"), "automation": automation}
    made = {kind: httpx.Client(base_url=server.url, timeout=60,
                               headers={"Authorization": f"Bearer {token}"})
            for kind, token in tokens.items()}
    for c in made.values():
        r = c.post(f"{API}/scripts", json={"name": "one", "script": SCRIPT, "overwrite": True})
        r.raise_for_status()
        call(c)  # the first call: the user, their workers, the provider's keys
    return made


def call(c: httpx.Client) -> float:
    start = time.perf_counter()
    r = c.post(f"{API}/do-eval/one", json={"service": "LOW"})
    elapsed = time.perf_counter() - start
    if r.status_code != 200 or r.json() != {"result": 1}:
        raise RuntimeError(f"do-eval: {r.status_code} {r.text[:300]}")
    return elapsed


def measure(made: dict[str, httpx.Client], rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {kind: [] for kind in made}
    for i in range(rounds):
        kinds = list(made) if i % 2 == 0 else list(reversed(made))
        for kind in kinds:
            times[kind].append(call(made[kind]))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    rounds = 100 if args.quick else 400
    slapd, provider = Slapd().start(), OidcProvider().start()
    try:
        root = Path(tempfile.mkdtemp(prefix="epe-bench-signin-"))
        server = BenchServer(root / "data", settings(slapd, provider))
        server.add_user(USER, PASSWORD)
        server.start()
        with server.guarded():
            made = callers(server, provider)
            times = measure(made, rounds)
    finally:
        provider.close()
        slapd.stop()
    base = statistics.median(times["epe"])
    rows = {kind: {"median_ms": round(statistics.median(t) * 1000, 3),
                   "ratio": round(statistics.median(t) / base, 3)} for kind, t in times.items()}
    report = {"commit": commit(), "machine": platform.node(), "rounds": rounds, "rows": rows,
              "target": TARGET, "met": all(r["ratio"] <= TARGET for r in rows.values())}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"sync do-eval, {rounds} rounds, median per kind of caller (commit {report['commit']})")
    for kind, row in rows.items():
        print(f"  {kind:<11} {row['median_ms']:8.3f} ms  {row['ratio']:.3f}x epe's token")
    print(f"target: every ratio <= {TARGET}: {'met' if report['met'] else 'NOT met'}")


if __name__ == "__main__":
    main()
