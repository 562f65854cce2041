"""epe.auth.tokens: HS256 access tokens with a capped refresh chain."""

from __future__ import annotations

import base64
import json
import stat
import time
from pathlib import Path

import jwt
import pytest

from epe.auth.tokens import ALGORITHM, TokenService, load_or_create_key
from epe.errors import Unauthorized

KEY = b"k" * 64


def service(lifetime: int = 3600, chain_lifetime: int = 8 * 3600) -> TokenService:
    return TokenService(KEY, lifetime, chain_lifetime)


def test_issue_and_decode_round_trip() -> None:
    before = time.time()
    issued = service().issue("OMLUSER")
    claims = service().decode(issued.token)
    assert issued.expires_in == 3600
    assert claims.user == "OMLUSER"
    assert before <= claims.chain_start <= time.time()
    assert claims.expires == pytest.approx(claims.chain_start + 3600)
    assert len(claims.jti) == 32


def test_every_token_has_its_own_id() -> None:
    tokens = service()
    first, second = (tokens.decode(tokens.issue("A").token) for _ in range(2))
    assert first.jti != second.jti


def test_the_token_is_an_hs256_jwt() -> None:
    token = service().issue("A").token
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert set(jwt.decode(token, KEY, algorithms=[ALGORITHM])) == {
        "sub", "jti", "iat", "exp", "chain"}


def test_refresh_keeps_the_chain_start() -> None:
    tokens = service()
    start = time.time() - 600
    refreshed = tokens.decode(tokens.issue("A", chain_start=start).token)
    assert refreshed.chain_start == pytest.approx(start)
    assert refreshed.expires == pytest.approx(time.time() + 3600, abs=5)


def test_a_refresh_never_outlives_the_chain() -> None:
    tokens = service(lifetime=3600, chain_lifetime=4000)
    issued = tokens.issue("A", chain_start=time.time() - 3900)  # 100 s of chain left
    assert 95 <= issued.expires_in <= 100
    assert tokens.decode(issued.token).expires == pytest.approx(time.time() + 100, abs=5)


def test_the_chain_cap_refuses_refresh_after_the_chain_lifetime() -> None:
    tokens = service(lifetime=3600, chain_lifetime=8 * 3600)
    with pytest.raises(Unauthorized, match="can no longer be refreshed") as info:
        tokens.issue("A", chain_start=time.time() - 8 * 3600 - 1)
    assert (info.value.status, info.value.code) == (401, 2001)


def test_an_expired_token_is_refused() -> None:
    now = time.time()
    token = jwt.encode({"sub": "A", "jti": "x", "iat": int(now) - 120, "exp": now - 60,
                        "chain": now - 120}, KEY, algorithm=ALGORITHM)
    with pytest.raises(Unauthorized, match="has expired"):
        service().decode(token)


def test_a_token_used_before_is_refused_once_it_expires() -> None:
    tokens = service(lifetime=1)
    token = tokens.issue("A").token
    expires = tokens.decode(token).expires  # verified, and kept as verified
    while time.time() < expires:
        time.sleep(0.05)
    with pytest.raises(Unauthorized, match="has expired"):
        tokens.decode(token)


def test_a_token_signed_with_another_key_is_refused() -> None:
    other = TokenService(b"o" * 64, 3600, 8 * 3600).issue("A").token
    with pytest.raises(Unauthorized, match="not valid"):
        service().decode(other)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_tampered_token_is_refused() -> None:
    header, payload, signature = service().issue("ALICE").token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "ADMIN"
    forged = ".".join([header, b64url(json.dumps(claims).encode()), signature])
    with pytest.raises(Unauthorized, match="not valid"):
        service().decode(forged)


def test_an_unsigned_token_is_refused() -> None:
    now = time.time()
    unsigned = ".".join([b64url(b'{"alg":"none","typ":"JWT"}'),
                         b64url(json.dumps({"sub": "A", "jti": "x", "exp": now + 60,
                                            "chain": now}).encode()), ""])
    with pytest.raises(Unauthorized, match="not valid"):
        service().decode(unsigned)


@pytest.mark.parametrize("missing", ["sub", "jti", "exp", "chain"])
def test_a_token_missing_a_required_claim_is_refused(missing: str) -> None:
    now = time.time()
    claims = {"sub": "A", "jti": "x", "iat": int(now), "exp": now + 60, "chain": now}
    del claims[missing]
    with pytest.raises(Unauthorized, match="not valid"):
        service().decode(jwt.encode(claims, KEY, algorithm=ALGORITHM))


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x"])
def test_garbage_is_refused(garbage: str) -> None:
    with pytest.raises(Unauthorized):
        service().decode(garbage)


def test_the_key_file_is_created_with_mode_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "token-signing.key"
    key = load_or_create_key(path)
    assert len(key) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == key
    assert load_or_create_key(path) == key


def test_tokens_survive_a_restart_with_the_same_key_file(tmp_path: Path) -> None:
    path = tmp_path / "token-signing.key"
    token = TokenService(load_or_create_key(path), 3600, 8 * 3600).issue("A").token
    restarted = TokenService(load_or_create_key(path), 3600, 8 * 3600)
    assert restarted.decode(token).user == "A"


def test_each_data_folder_gets_its_own_key(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert load_or_create_key(tmp_path / "a" / "k") != load_or_create_key(tmp_path / "b" / "k")
