"""Employee tokens: short-lived JWTs an HR platform signs so an employee reads their own data.

A token is ``Authorization: Bearer <jwt>`` on the same routes as the API keys. The
program is its ``aud`` claim; the person is its ``sub``. What the program trusts is
in its settings, and the algorithm is pinned by the kind of key, never taken from
the token:

* ``employee_token_secret``      HS256 only;
* ``employee_token_public_key``  a PEM public key: RS256 for RSA (2048 bits or more),
                                 ES256 for EC P-256;
* ``employee_token_jwks_url``    a JWKS (fetched when first needed, cached, see
                                 ``rewards.jwks``): RS256 for ``kty: RSA``, ES256 for
                                 ``kty: EC`` on P-256, chosen by the token's ``kid``.

So ``alg: none``, an HS256 token made with the public key as its secret (algorithm
confusion), or an RS256 token where only a secret is configured are all refused.
``exp`` is required and may lie at most ``employee_token_max_lifetime`` seconds
(default one hour) after ``iat`` (or after now, without ``iat``); ``nbf`` and
``iat`` are honoured with ``LEEWAY`` of clock skew; times are judged by the
runtime's clock. A token's ``jti`` can be revoked before it expires
(``revoke``); revocations are read through the auth cache like API keys.

Every failure is ``Unauthenticated`` with a reason: the caller learns what to fix,
never which programs exist.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from engine.boards import boards_for
from rewards.db.audit_models import RevokedToken
from rewards.db.models import Program, User
from rewards.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from rewards.jwks import JwksError
from rewards.program_context import program_context
from rewards.program_settings import ProgramSettings
from rewards.runtime import Runtime
from rewards.services.keys import Principal

LEEWAY = timedelta(seconds=30)
DEFAULT_MAX_LIFETIME = 3600  # seconds
MAX_TOKEN_CHARS = 8192
MIN_RSA_BITS = 2048
AUTH_CACHE_LIMIT = 50_000
_JWT = re.compile(r"^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
_USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}$")


def looks_like_jwt(token: str) -> bool:
    """A bearer value shaped like a JWS compact token (API keys never contain a dot)."""
    return len(token) <= MAX_TOKEN_CHARS and _JWT.match(token) is not None


@dataclass(frozen=True)
class TrustedKeys:
    """What one program accepts, from its settings."""

    secret: str | None
    public_key: Any | None  # a loaded RSA or EC public key
    public_algorithm: str | None  # RS256 | ES256, fixed by the key's type
    jwks_url: str | None
    max_lifetime: int

    @property
    def configured(self) -> bool:
        return bool(self.secret or self.public_key is not None or self.jwks_url)


def algorithm_for_key(key: Any) -> str:
    """RS256 for an RSA key of 2048 bits or more, ES256 for an EC P-256 key; else refused."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"an RSA key needs at least {MIN_RSA_BITS} bits")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    raise ValueError("the key must be an RSA public key (RS256) or an EC P-256 public key (ES256)")


def load_public_key(pem: str) -> tuple[Any, str]:
    """A PEM public key and the one algorithm it verifies; ValueError if unusable."""
    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise ValueError("not a PEM public key (-----BEGIN PUBLIC KEY-----)") from exc
    return key, algorithm_for_key(key)


def trusted_keys(settings: Mapping[str, Any] | ProgramSettings) -> TrustedKeys:
    typed = ProgramSettings.of(settings)
    pem = typed.employee_token_public_key
    key, algorithm = load_public_key(pem) if pem else (None, None)
    return TrustedKeys(
        secret=typed.employee_token_secret or None,
        public_key=key,
        public_algorithm=algorithm,
        jwks_url=typed.employee_token_jwks_url or None,
        max_lifetime=typed.employee_token_max_lifetime or DEFAULT_MAX_LIFETIME,
    )


def remember(rt: Runtime, key: str, value: object, *, limit: int = AUTH_CACHE_LIMIT) -> None:
    """Cache ``value`` for the auth cache's life. The cache is shared with API keys and
    bounded: at ``AUTH_CACHE_LIMIT`` entries the stale ones go, or all if none is stale."""
    cache = rt.auth_cache
    now = time.monotonic()
    if len(cache) >= limit:
        for stale in [name for name, (until, _) in cache.items() if until <= now]:
            del cache[stale]
        if len(cache) >= limit:
            cache.clear()
    cache[key] = (now + rt.settings.auth_cache_seconds, value)


def forget_keys(rt: Runtime, program_id: str) -> None:
    """Drop the cached keys of a program whose settings changed."""
    rt.auth_cache.pop(f"jwt-keys:{program_id}", None)


async def _trusted(rt: Runtime, program_id: str) -> TrustedKeys | None:
    cache_key = f"jwt-keys:{program_id}"
    cached = rt.auth_cache.get(cache_key)
    if cached is not None and cached[0] > time.monotonic():
        found = cached[1]
        assert found is None or isinstance(found, TrustedKeys)
        return found
    async with rt.sessions() as session:
        settings = await session.scalar(select(Program.settings).where(Program.id == program_id))
    keys = trusted_keys(settings or {}) if settings is not None else None
    remember(rt, cache_key, keys)
    return keys


def _jwk_algorithm(jwk: dict[str, Any]) -> tuple[str, Any]:
    key: Any
    try:
        if jwk.get("kty") == "RSA":
            key = jwt.algorithms.RSAAlgorithm.from_jwk(jwk)
        elif jwk.get("kty") == "EC":
            key = jwt.algorithms.ECAlgorithm.from_jwk(jwk)
        else:
            raise ValueError(f"unsupported key type {jwk.get('kty')!r}")
        algorithm = algorithm_for_key(key)
    except (ValueError, jwt.InvalidKeyError) as exc:
        raise Unauthenticated(
            f"invalid employee token: the signing key is unusable: {exc}"
        ) from exc
    if jwk.get("alg") not in (None, algorithm):
        raise Unauthenticated("invalid employee token: the key's 'alg' does not match its type")
    return algorithm, key


async def _verification_key(
    rt: Runtime, trusted: TrustedKeys, algorithm: str, kid: str | None
) -> Any:
    """The key that must have signed a token of ``algorithm``: the algorithm is checked
    against the key's kind, so no token can choose how it is verified."""
    if algorithm == "HS256" and trusted.secret:
        return trusted.secret
    if trusted.public_key is not None and algorithm == trusted.public_algorithm:
        return trusted.public_key
    if trusted.jwks_url and algorithm in ("RS256", "ES256"):
        try:
            jwk = await rt.jwks.key(trusted.jwks_url, kid)
        except JwksError as exc:
            raise Unauthenticated(f"invalid employee token: {exc}") from exc
        pinned, key = _jwk_algorithm(jwk)
        if pinned == algorithm:
            return key
    raise Unauthenticated(
        f"invalid employee token: the program does not accept {algorithm!r} tokens"
    )


def _audience(claims: dict[str, Any]) -> str:
    aud = claims.get("aud")
    if isinstance(aud, list) and len(aud) == 1:
        aud = aud[0]
    if not isinstance(aud, str) or not aud:
        raise Unauthenticated("invalid employee token: 'aud' must be the program id")
    return aud


def _instant(claims: dict[str, Any], name: str) -> datetime | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unauthenticated(f"invalid employee token: '{name}' must be a NumericDate")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise Unauthenticated(f"invalid employee token: '{name}' is out of range") from exc


def check_times(claims: dict[str, Any], *, now: datetime, max_lifetime: int) -> None:
    """``exp`` required and not past; ``nbf``/``iat`` not in the future; a bounded life."""
    expires = _instant(claims, "exp")
    if expires is None:
        raise Unauthenticated("invalid employee token: 'exp' is required")
    if expires <= now - LEEWAY:
        raise Unauthenticated("the employee token has expired", code="token_expired")
    not_before = _instant(claims, "nbf")
    if not_before is not None and not_before > now + LEEWAY:
        raise Unauthenticated("the employee token is not valid yet ('nbf')")
    issued = _instant(claims, "iat")
    if issued is not None and issued > now + LEEWAY:
        raise Unauthenticated("invalid employee token: 'iat' is in the future")
    start = issued if issued is not None else now
    if expires - start > timedelta(seconds=max_lifetime) + LEEWAY:
        raise Unauthenticated(
            f"invalid employee token: it lives longer than the program's maximum of "
            f"{max_lifetime} seconds ('exp' - 'iat')"
        )


async def authenticate(rt: Runtime, token: str) -> Principal:
    """Verify an employee token; the principal reads only its own user's data."""
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"invalid employee token: {exc}") from exc
    algorithm = header.get("alg")
    if algorithm not in ("HS256", "RS256", "ES256"):
        raise Unauthenticated(f"invalid employee token: algorithm {algorithm!r} is refused")
    program_id = _audience(unverified)
    trusted = await _trusted(rt, program_id)
    if trusted is None or not trusted.configured:
        raise Unauthenticated("invalid employee token: its audience accepts no employee tokens")
    kid = header.get("kid")
    key = await _verification_key(rt, trusted, algorithm, kid if isinstance(kid, str) else None)
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=program_id,
            options={
                "require": ["exp", "sub", "aud"],
                "verify_exp": False,  # judged below by the runtime's clock
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"invalid employee token: {exc}") from exc
    check_times(claims, now=rt.clock(), max_lifetime=trusted.max_lifetime)
    user_id = claims["sub"]
    if not isinstance(user_id, str) or not _USER_ID.match(user_id):
        raise Unauthenticated("invalid employee token: 'sub' must be a user id")
    jti = claims.get("jti")
    if jti is not None and (not isinstance(jti, str) or len(jti) > 200):
        raise Unauthenticated("invalid employee token: 'jti' must be a string")
    if jti is not None and await is_revoked(rt, program_id, jti):
        raise Unauthenticated("the employee token has been revoked", code="token_revoked")
    return Principal(program_id, f"employee:{user_id}", frozenset(), user_id=user_id, token_id=jti)


async def authorise(
    rt: Runtime, principal: Principal, path: Mapping[str, Any], *, allowed: bool
) -> None:
    """An employee token (already authenticated) on a route: 403 on a route employees may
    not use or a board of a cohort they are not in, 404 for another person's data."""
    if not allowed:
        raise Forbidden("an employee token cannot use this route")
    user_id = path.get("user_id")
    if user_id is not None and user_id != principal.user_id:
        raise NotFound(f"no user '{user_id}'", code="unknown_user")
    board = path.get("board")
    if board is not None and board not in await boards_of(rt, principal):
        raise Forbidden("an employee token reads only the boards of its own cohorts")


async def boards_of(rt: Runtime, principal: Principal) -> tuple[str, ...]:
    """The boards the token's user is on today: ``global`` and one per cohort (cached like
    the credentials, so a move to another department shows within the auth cache's life)."""
    cache_key = f"boards:{principal.program_id}:{principal.user_id}"
    cached = rt.auth_cache.get(cache_key)
    if cached is not None and cached[0] > time.monotonic():
        assert isinstance(cached[1], tuple)
        return cached[1]
    boards = await _boards_now(rt, principal)
    remember(rt, cache_key, boards)
    return boards


async def _boards_now(rt: Runtime, principal: Principal) -> tuple[str, ...]:
    async with rt.sessions() as session:
        context = await program_context(rt, await session.connection(), principal.program_id)
        user = await session.get(User, (principal.program_id, principal.user_id))
    if user is None:
        return ()
    cohorts = context.rules.cohorts if context.rules else ()
    return boards_for(cohorts, user, rt.clock().astimezone(context.tz).date())


async def is_revoked(rt: Runtime, program_id: str, jti: str) -> bool:
    cache_key = f"jti:{program_id}:{jti}"
    cached = rt.auth_cache.get(cache_key)
    if cached is not None and cached[0] > time.monotonic():
        return bool(cached[1])
    async with rt.sessions() as session:
        found = await session.scalar(
            select(RevokedToken.jti).where(
                RevokedToken.program_id == program_id, RevokedToken.jti == jti
            )
        )
    remember(rt, cache_key, found is not None)
    return found is not None


class RevocationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jti: str = Field(min_length=1, max_length=200, description="the token's `jti` claim")
    reason: str | None = Field(default=None, max_length=500)


def revocation_view(row: RevokedToken) -> dict[str, Any]:
    return {
        "jti": row.jti,
        "reason": row.reason,
        "revoked_by": row.revoked_by,
        "revoked_at": row.revoked_at,
    }


async def revoke(
    rt: Runtime, session: AsyncSession, *, program_id: str, data: RevocationIn, by: str
) -> tuple[RevokedToken, bool]:
    """Revoke a token id (idempotent). Returns the row and whether it is new."""
    row = await session.get(RevokedToken, (program_id, data.jti))
    if row is not None:
        return row, False
    row = RevokedToken(
        program_id=program_id,
        jti=data.jti,
        reason=data.reason,
        revoked_by=by,
        revoked_at=rt.clock(),
    )
    session.add(row)
    await session.flush()
    rt.auth_cache.pop(f"jti:{program_id}:{data.jti}", None)
    return row, True


async def list_revocations(session: AsyncSession, program_id: str) -> list[RevokedToken]:
    rows = await session.scalars(
        select(RevokedToken)
        .where(RevokedToken.program_id == program_id)
        .order_by(RevokedToken.revoked_at.desc())
        .limit(1000)
    )
    return list(rows)


_TTL = re.compile(r"^(\d{1,6})([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> timedelta:
    """``30s``, ``10m``, ``1h``, ``1d``."""
    match = _TTL.match(text.strip())
    if not match:
        raise InvalidInput(f"{text!r} is not a lifetime; write e.g. 30s, 10m or 1h")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def mint(*, secret: str, program_id: str, user_id: str, ttl: timedelta, now: datetime) -> str:
    """An HS256 employee token, as an HR platform would sign it (development, tests)."""
    issued = int(now.timestamp())
    claims = {
        "sub": user_id,
        "aud": program_id,
        "iat": issued,
        "exp": issued + int(ttl.total_seconds()),
        "jti": secrets.token_hex(12),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


async def mint_for(
    session: AsyncSession, *, program_id: str, user_id: str, ttl: timedelta, now: datetime
) -> str:
    """A token signed with the program's own ``employee_token_secret`` (``rewards tokens mint``)."""
    program = await session.get(Program, program_id)
    if program is None:
        raise NotFound(f"no program '{program_id}'")
    secret = (program.settings or {}).get("employee_token_secret")
    if not secret:
        raise InvalidInput(
            f"program '{program_id}' has no employee_token_secret; set it with "
            "PUT /v1/programs/current/settings"
        )
    if await session.get(User, (program_id, user_id)) is None:
        raise NotFound(f"no user '{user_id}' in program '{program_id}'")
    return mint(secret=secret, program_id=program_id, user_id=user_id, ttl=ttl, now=now)
