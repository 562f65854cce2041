"""A real OpenID provider for the tests: ``oidc-provider`` from npm (pinned in
tests/oidc/package-lock.json, installed there by ``npm ci`` when missing) under
Debian's ``nodejs``, started with a configuration the tests write (tests/oidc/provider.mjs).

The tests make the provider's signing keys, so that besides the tokens it issues they
can sign the ones it never would (another issuer, expired, ``alg: none``, a key it does
not publish). ``restart`` publishes a new key set: how a provider rotates its keys.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.pgserver import free_port, terminate

HERE = Path(__file__).parent / "oidc"
AUDIENCE = "https://epe.example.org/api"
CLIENT_ID, CLIENT_SECRET = "epe", "epe-client-secret"
USERS = {"oscar": ("oscar-pw", ["data-science"]), "olga": ("olga-pw", ["epe-admins"]),
         "otto": ("otto-pw", [])}
ADMIN_GROUP = "epe-admins"


class SigningKey:
    def __init__(self) -> None:
        self.kid = uuid.uuid4().hex[:12]
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key))
        return {**found, "kid": self.kid, "use": "sig", "alg": "RS256"}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})


def npm_install() -> None:
    if (HERE / "node_modules" / "oidc-provider").exists():
        return
    if shutil.which("npm") is None:
        raise RuntimeError("the OpenID provider needs Node.js and npm: `make test` installs "
                           "Debian's (apt-get install nodejs npm)")
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True,
                   capture_output=True, timeout=600)


class OidcProvider:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="epe-oidc-"))
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.keys = [SigningKey()]
        self.redirect_uris: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def start(self, redirect_uris: list[str] | None = None) -> OidcProvider:
        npm_install()
        self.redirect_uris = redirect_uris or self.redirect_uris
        config = {
            "issuer": self.issuer, "port": self.port, "audience": AUDIENCE,
            "jwks": {"keys": [k.jwk() for k in self.keys]},
            "users": {u: {"password": p, "groups": g} for u, (p, g) in USERS.items()},
            "clients": [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                         "redirect_uris": self.redirect_uris or ["http://127.0.0.1/cb"],
                         "grant_types": ["authorization_code"], "response_types": ["code"],
                         "token_endpoint_auth_method": "client_secret_basic"}],
        }
        path = self.root / "config.json"
        path.write_text(json.dumps(config))
        self.proc = subprocess.Popen(["node", str(HERE / "provider.mjs"), str(path)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ready = threading.Event()
        threading.Thread(target=self._pump, args=(ready,), daemon=True).start()
        if not ready.wait(60) or self.proc.poll() is not None:
            raise RuntimeError("the OpenID provider did not start:\n" + "".join(self.output))
        return self

    def _pump(self, ready: threading.Event) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if "ready on" in line:
                ready.set()
        ready.set()

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)

    def restart(self, keys: list[SigningKey]) -> None:
        """The provider again on the same port, publishing ``keys`` (it signs with the
        first)."""
        self.stop()
        self.keys = keys
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def claims(self, user: str, **over: Any) -> dict[str, Any]:
        """What the provider's own access tokens for ``user`` claim."""
        now = int(time.time())
        return {"iss": self.issuer, "sub": user, "aud": AUDIENCE, "iat": now, "exp": now + 600,
                "preferred_username": user, "groups": USERS[user][1], "scope": "api",
                "jti": uuid.uuid4().hex, **over}

    def access_token(self, user: str, resource: str = AUDIENCE) -> str:
        """An access token the provider issues to ``user`` through its authorization code
        flow with PKCE, its login page filled in as a browser would."""
        return str(self.code_flow(user, resource)["access_token"])

    def code_flow(self, user: str, resource: str = AUDIENCE) -> dict[str, Any]:
        verifier = base64.urlsafe_b64encode(uuid.uuid4().bytes * 2).rstrip(b"=").decode()
        challenge = base64.urlsafe_b64encode(
            __import__("hashlib").sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        redirect = self.redirect_uris[0] if self.redirect_uris else "http://127.0.0.1/cb"
        with httpx.Client(base_url=self.issuer, timeout=30) as h:
            r = h.get("/auth", params={
                "client_id": CLIENT_ID, "response_type": "code", "scope": "openid profile",
                "redirect_uri": redirect, "code_challenge": challenge,
                "code_challenge_method": "S256", "resource": resource, "nonce": "n",
                "state": "s"})
            while r.status_code in (302, 303):
                location = urljoin(str(r.url), r.headers["location"])
                if location.startswith(redirect):
                    break
                r = h.get(location)
            if "name=\"login\"" in r.text:
                action = re.search(r'action="([^"]+)"', r.text)
                assert action is not None, r.text
                r = h.post(action.group(1).replace("&amp;", "&"),
                           data={"prompt": "login", "login": user,
                                 "password": USERS[user][0]})
                while r.status_code in (302, 303):
                    location = urljoin(str(r.url), r.headers["location"])
                    if location.startswith(redirect):
                        break
                    r = h.get(location)
            code = parse_qs(urlsplit(location).query)["code"][0]
            token = h.post("/token", data={
                "grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
                "code_verifier": verifier, "resource": resource},
                auth=(CLIENT_ID, CLIENT_SECRET))
            token.raise_for_status()
            return dict(token.json())
