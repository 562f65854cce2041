"""An OpenID Connect provider: its discovery document, its signing keys, the access
tokens it issues checked as bearer tokens, and the console's authorization code flow
with PKCE (docs/sign-in.md#openid-connect).

A provider token is accepted only when signed by one of the provider's published keys
with an asymmetric algorithm (``alg: none`` and the HMAC family never: a public key
must not double as a shared secret), from the configured issuer, for the configured
audience, and not expired. Keys are fetched from ``jwks_uri`` and kept for
``EPE_SIGNIN_CACHE_TTL``; a token naming a key id not among them fetches the set again
(at most once every ``REFETCH_INTERVAL`` seconds, so made-up key ids cannot hammer the
provider), which is how a rotated key is picked up. A provider that cannot be reached
is ``SignInUnavailable`` (503).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt

from epe.errors import SignInUnavailable, Unauthorized
from epe.settings import Settings

log = logging.getLogger("epe.auth")

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
              "ES512", "EdDSA")
REFETCH_INTERVAL = 2.0  # seconds between fetches of the keys for unknown key ids
LEEWAY = 30  # seconds of clock skew allowed on exp, nbf and iat


@dataclass(frozen=True)
class ProviderIdentity:
    subject: str
    username: str  # the username claim, as the provider spells it
    groups: frozenset[str]  # the groups claim, as the provider spells them
    admin: bool
    expires: float


@dataclass(frozen=True)
class Pkce:
    """What the console's sign-in keeps between the redirect and the callback."""

    state: str
    nonce: str
    verifier: str

    @classmethod
    def new(cls) -> Pkce:
        return cls(secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48))

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Provider:
    def __init__(self, settings: Settings, retry_after: int) -> None:
        self.settings = settings
        self.issuer = settings.oidc_issuer.rstrip("/")
        self.retry_after = retry_after
        self._http = httpx.Client(timeout=settings.oidc_timeout, follow_redirects=False)
        self._lock = threading.Lock()
        self._metadata: tuple[float, dict[str, Any]] | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._keys_fetched = 0.0  # when the keys held were fetched
        self._keys_asked = -REFETCH_INTERVAL  # when the provider was last asked for them
        self._verified: dict[str, ProviderIdentity] = {}

    def close(self) -> None:
        self._http.close()

    # -- discovery and keys ---------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The discovery document, kept for ``EPE_SIGNIN_CACHE_TTL`` seconds."""
        cached = self._metadata
        if cached and time.monotonic() - cached[0] < self.settings.signin_cache_ttl:
            return cached[1]
        found = self._get_json(f"{self.issuer}/.well-known/openid-configuration")
        if str(found.get("issuer", "")).rstrip("/") != self.issuer:
            raise self._unavailable(f"its discovery document names the issuer "
                                    f"{found.get('issuer')!r}, not EPE_OIDC_ISSUER")
        self._metadata = (time.monotonic(), found)
        return found

    def _key(self, kid: str | None) -> jwt.PyJWK:
        now = time.monotonic()
        with self._lock:
            may_ask = now - self._keys_asked >= REFETCH_INTERVAL
            unknown = kid not in self._keys if kid else len(self._keys) != 1
            if unknown and may_ask:
                self._fetch_keys()
            elif may_ask and now - self._keys_fetched >= self.settings.signin_cache_ttl:
                self._refresh_keys()
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        if kid is None or kid not in self._keys:
            raise Unauthorized("the token is not valid: it is not signed by a key the "
                               "provider publishes")
        return self._keys[kid]

    def _refresh_keys(self) -> None:
        """The keys fetched again because they are old; while the provider cannot answer,
        the ones held serve on (asked again every ``REFETCH_INTERVAL`` seconds), so tokens
        signed by a known key outlive an outage."""
        try:
            self._fetch_keys()
        except SignInUnavailable:
            if not self._keys:
                raise

    def _fetch_keys(self) -> None:
        self._keys_asked = time.monotonic()
        document = self._get_json(str(self.metadata()["jwks_uri"]))
        keys = {}
        for entry in document.get("keys", []):
            if entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue  # a key of a type PyJWT cannot use (or no kid): skip it
            keys[str(entry.get("kid", ""))] = key
        self._keys, self._keys_fetched = keys, time.monotonic()
        self._verified.clear()

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            r = self._http.get(url, headers={"Accept": "application/json"})
            r.raise_for_status()
            found = r.json()
        except (httpx.HTTPError, ValueError) as e:
            raise self._unavailable(f"{url}: {e.__class__.__name__}") from None
        if not isinstance(found, dict):
            raise self._unavailable(f"{url} is not a JSON object")
        return found

    def _unavailable(self, why: str) -> SignInUnavailable:
        log.warning("the OpenID provider cannot be used now: %s", why)
        return SignInUnavailable("the identity provider cannot be reached now; retry later",
                                 retry_after=self.retry_after)

    # -- tokens ----------------------------------------------------------------------------

    def cached(self, token: str) -> ProviderIdentity | None:
        """A token verified before and not expired since: no signature check again."""
        found = self._verified.get(token)
        if found is not None and found.expires <= time.time():
            self._verified.pop(token, None)
            return None
        return found

    def verify_access_token(self, token: str) -> ProviderIdentity:
        """The identity an access token carries, if it holds (Unauthorized otherwise)."""
        if (found := self.cached(token)) is not None:
            return found
        claims = self._verify(token, self.settings.oidc_audience)
        identity = self.identity(claims)
        if len(self._verified) >= 10_000:
            self._verified.clear()
        self._verified[token] = identity
        return identity

    def verify_id_token(self, token: str, nonce: str) -> dict[str, Any]:
        claims = self._verify(token, self.settings.oidc_client_id)
        if claims.get("nonce") != nonce:
            raise Unauthorized("the sign-in did not complete: the ID token's nonce is wrong")
        return claims

    def _verify(self, token: str, audience: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("the token is not valid") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise Unauthorized(f"the token is not valid: algorithm {alg!r} is not accepted")
        key = self._key(header.get("kid"))
        try:
            return jwt.decode(token, key.key, algorithms=[alg], audience=audience,
                              issuer=self.settings.oidc_issuer, leeway=LEEWAY,
                              options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("the token is not valid: it is meant for another audience "
                               "(EPE_OIDC_AUDIENCE)") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("the token is not valid: another issuer made it") from None
        except jwt.PyJWTError:
            raise Unauthorized("the token is not valid") from None

    def identity(self, claims: dict[str, Any]) -> ProviderIdentity:
        s = self.settings
        name = claims.get(s.oidc_username_claim)
        if not isinstance(name, str) or not name.strip():
            raise Unauthorized(f"the token has no {s.oidc_username_claim!r} claim to name the "
                               "user (EPE_OIDC_USERNAME_CLAIM)")
        raw = claims.get(s.oidc_groups_claim) or []
        groups = frozenset(str(g) for g in ([raw] if isinstance(raw, str) else raw)
                           if isinstance(g, str | int))
        admin_group = s.oidc_admin_group.strip().lower()
        admin = bool(admin_group) and admin_group in {g.lower() for g in groups}
        return ProviderIdentity(str(claims["sub"]), name.strip(), groups, admin,
                                float(claims["exp"]))

    # -- the console's sign-in: authorization code with PKCE ------------------------------------

    def authorization_url(self, redirect_uri: str, pkce: Pkce) -> str:
        query = {"response_type": "code", "client_id": self.settings.oidc_client_id,
                 "redirect_uri": redirect_uri, "scope": "openid profile email",
                 "state": pkce.state, "nonce": pkce.nonce, "code_challenge": pkce.challenge,
                 "code_challenge_method": "S256"}
        if self.settings.oidc_audience:
            query["resource"] = self.settings.oidc_audience
        return f"{self.metadata()['authorization_endpoint']}?{urlencode(query)}"

    def exchange(self, code: str, redirect_uri: str, pkce: Pkce) -> dict[str, Any]:
        """The provider's answer to the code (ID token and access token): its claims,
        those of the ID token over those of a JWT access token's (Keycloak and Entra ID
        put groups in one or the other)."""
        s = self.settings
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": redirect_uri, "code_verifier": pkce.verifier,
                "client_id": s.oidc_client_id}
        # A confidential client authenticates with HTTP Basic (client_secret_basic, the
        # default every provider supports); a public one is known by PKCE alone.
        auth = httpx.BasicAuth(s.oidc_client_id, s.oidc_client_secret) \
            if s.oidc_client_secret else None
        try:
            r = self._http.post(str(self.metadata()["token_endpoint"]), data=form,
                                auth=auth or httpx.USE_CLIENT_DEFAULT)
        except httpx.HTTPError as e:
            raise self._unavailable(f"token endpoint: {e.__class__.__name__}") from None
        if r.status_code >= 500:
            raise self._unavailable(f"token endpoint answered {r.status_code}")
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") \
            else {}
        if r.status_code != 200 or "id_token" not in body:
            why = body.get("error_description") or body.get("error") or r.status_code
            raise Unauthorized(f"the identity provider refused the sign-in: {why}")
        claims = self.verify_id_token(str(body["id_token"]), pkce.nonce)
        access = body.get("access_token")
        if s.oidc_audience and isinstance(access, str) and access.count(".") == 2:
            # An opaque or foreign access token: the ID token speaks alone.
            with contextlib.suppress(Unauthorized):
                claims = {**self._verify(access, s.oidc_audience), **claims}
        return claims
