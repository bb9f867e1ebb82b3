"""API keys: created per program with scopes, stored as SHA-256 hashes, shown once."""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rewards.db.models import ApiKey, Program
from rewards.errors import InvalidInput, NotFound, Unauthenticated
from rewards.program_settings import ProgramSettings
from rewards.runtime import Runtime
from rewards.services.ratelimit import Rate


class Scope(StrEnum):
    events_write = "events:write"  # post and retract events
    read = "read"  # read users, balances, ledgers, boards
    admin = "admin"  # rules, users, keys, settings, simulate; implies the others


@dataclass(frozen=True)
class Principal:
    program_id: str
    key_id: str
    scopes: frozenset[Scope]
    rate: Rate | None = None  # the program's own request rate per key; None: the default
    # Set for an employee token (``rewards.services.tokens``): the only person it may read.
    user_id: str | None = None
    token_id: str | None = None  # the token's ``jti``

    def allows(self, scope: Scope) -> bool:
        return Scope.admin in self.scopes or scope in self.scopes


def hash_key(key: str) -> str:
    # Keys carry 256 bits of randomness, so a fast hash is as safe as a slow one here.
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(raw: list[str]) -> list[str]:
    if not raw:
        raise InvalidInput("at least one scope is needed", details=[{"pointer": "/scopes"}])
    bad = [s for s in raw if s not in {scope.value for scope in Scope}]
    if bad:
        raise InvalidInput(
            f"unknown scope {bad[0]!r}; scopes are {', '.join(s.value for s in Scope)}",
            details=[{"pointer": "/scopes"}],
        )
    return sorted(set(raw))


async def create_key(
    session: AsyncSession, *, program_id: str, name: str, scopes: list[str], now: datetime
) -> tuple[ApiKey, str]:
    secret = "rwk_" + secrets.token_urlsafe(32)
    row = ApiKey(
        id="key_" + secrets.token_hex(8),
        program_id=program_id,
        name=name,
        scopes=parse_scopes(scopes),
        key_hash=hash_key(secret),
        created_at=now,
    )
    session.add(row)
    await session.flush()
    return row, secret


def cached(rt: Runtime, token: str) -> Principal | None:
    """The principal of a key authenticated moments ago, without asking the database."""
    entry = rt.auth_cache.get(hash_key(token))
    if entry is None or entry[0] <= time.monotonic():
        return None
    principal = entry[1]
    assert isinstance(principal, Principal)
    return principal


def program_rate(settings: Mapping[str, object] | ProgramSettings) -> Rate | None:
    """The request rate a program set for its keys (``rate_limit_per_second`` and
    ``rate_limit_burst``), or None to use the installation's default."""
    typed = ProgramSettings.of(settings)
    per_second, burst = typed.rate_limit_per_second, typed.rate_limit_burst
    if per_second is None:
        return None
    if burst is None:
        burst = max(1, math.ceil(per_second * 2))
    return Rate(per_second=per_second, burst=burst)


async def authenticate(rt: Runtime, token: str) -> Principal:
    principal = cached(rt, token)
    if principal is not None:
        return principal
    digest = hash_key(token)
    async with rt.sessions() as session:
        row = (
            await session.execute(
                select(ApiKey, Program.settings)
                .join(Program, Program.id == ApiKey.program_id)
                .where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
            )
        ).one_or_none()
    if row is None:
        raise Unauthenticated("unknown or revoked API key")
    key, settings = row
    principal = Principal(
        key.program_id,
        key.id,
        frozenset(Scope(s) for s in key.scopes),
        rate=program_rate(settings or {}),
    )
    rt.auth_cache[digest] = (time.monotonic() + rt.settings.auth_cache_seconds, principal)
    return principal


async def list_keys(session: AsyncSession, program_id: str) -> list[ApiKey]:
    rows = await session.scalars(
        select(ApiKey).where(ApiKey.program_id == program_id).order_by(ApiKey.created_at)
    )
    return list(rows)


async def revoke_key(rt: Runtime, session: AsyncSession, *, program_id: str, key_id: str) -> ApiKey:
    row = await session.scalar(
        select(ApiKey).where(ApiKey.program_id == program_id, ApiKey.id == key_id)
    )
    if row is None:
        raise NotFound(f"no API key '{key_id}'")
    if row.revoked_at is None:
        row.revoked_at = rt.clock()
        rt.auth_cache.pop(row.key_hash, None)
    return row
