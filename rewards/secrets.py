"""Secrets at rest: program settings such as the GIFQ token are stored encrypted.

Keys come from ``REWARDS_SECRET_KEY``: one or more Fernet keys (``rewards secrets new-key``
makes one), comma-separated, newest first. The newest encrypts; any of them decrypts, so a
new key is rolled out by putting it in front, running ``rewards secrets rotate`` (which
re-encrypts every stored secret with it), then dropping the old one. In development,
without the setting, a key is generated once and kept in the data folder (like the
platform key); production refuses to start without it (``rewards.settings``).

Fernet (``cryptography``) is AES-128-CBC with HMAC-SHA256 and a timestamp: authenticated,
so a changed or truncated value is refused rather than decrypted into garbage.

Stored form: ``fernet:<token>``. A value without that prefix is a secret stored in plain
text before encryption existed: it is read as it is and encrypted at the next write, or
by ``rewards secrets rotate``. Encryption happens in the database layer
(``ProgramSettings``, the type of ``programs.settings``): code reading or writing a
program's settings sees plain values and needs to know nothing of this.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import JSON, String, column, select, table, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from rewards.db.engine import create_engine
from rewards.settings import Environment, Settings

log = logging.getLogger("rewards.secrets")

PREFIX: Final = "fernet:"
KEY_FILE: Final = "secret-key"
# Program settings that are secrets: write-only over the API, encrypted at rest.
SECRET_SETTINGS: Final = frozenset(
    {
        "gifq_api_token",
        "gifq_webhook_secret",
        "slack_signing_secret",
        "slack_bot_token",
        "crm_webhook_secrets",
        "employee_token_secret",
        "alert_webhook_secret",
    }
)
# Secrets that are a mapping (name -> secret): sealed whole, as their JSON text.
MAPPING_SECRETS: Final = frozenset({"crm_webhook_secrets"})


def _secret_text(name: str, value: object) -> str | None:
    """The text to encrypt for a stored secret value; None if it is nothing to encrypt."""
    if isinstance(value, str):
        return value
    if name in MAPPING_SECRETS and isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return None


class SecretKeyError(ValueError):
    """``REWARDS_SECRET_KEY`` is missing (in production) or not a list of Fernet keys."""


class Keyring:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise SecretKeyError("REWARDS_SECRET_KEY names no key")
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.encode()))
            except (ValueError, TypeError):
                raise SecretKeyError(
                    f"REWARDS_SECRET_KEY: key {position} is not a Fernet key "
                    "(32 url-safe base64-encoded bytes; `rewards secrets new-key` makes one)"
                ) from None
        self._newest = fernets[0]
        self._any = MultiFernet(fernets)

    def encrypt(self, plain: str) -> str:
        return PREFIX + self._newest.encrypt(plain.encode()).decode()

    def decrypt(self, stored: str) -> str:
        """The plain text; a value without the prefix is a legacy plain one and comes back as is.

        Raises ``InvalidToken`` when no key in the ring opens it.
        """
        if not stored.startswith(PREFIX):
            return stored
        return self._any.decrypt(stored[len(PREFIX) :].encode()).decode()


def new_key() -> str:
    return Fernet.generate_key().decode()


def keyring_for(settings: Settings) -> Keyring:
    """The configured keys; in development without them, the data folder's generated key."""
    if settings.secret_key:
        return Keyring([key.strip() for key in settings.secret_key.split(",") if key.strip()])
    if settings.env is Environment.production:
        raise SecretKeyError("production needs REWARDS_SECRET_KEY to be set")
    return Keyring([_development_key(settings.data_dir)])


def _development_key(data_dir: Path) -> str:
    path = data_dir / KEY_FILE
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = new_key()
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


_keyring: Keyring | None = None


def configure(settings: Settings) -> Keyring:
    """Install this process's keyring (``open_runtime`` does it)."""
    global _keyring
    _keyring = keyring_for(settings)
    return _keyring


def configure_once(settings: Settings) -> Keyring:
    """The process's keyring, configured from ``settings`` if it has none yet.

    ``open_runtime`` calls this: a process has one keyring, and a second runtime opened in
    the same process (tests, tools) must not swap the key its secrets were sealed with.
    """
    return _keyring or configure(settings)


def keyring() -> Keyring:
    """The process's keyring; configured from the environment on first use if need be."""
    return _keyring or configure(Settings())


def seal(settings: dict[str, Any]) -> dict[str, Any]:
    """Program settings as stored: every secret encrypted (an already sealed one is kept)."""
    ring = keyring()
    sealed = dict(settings)
    for name in SECRET_SETTINGS & settings.keys():
        text = _secret_text(name, settings[name])
        if text is not None and not text.startswith(PREFIX):
            sealed[name] = ring.encrypt(text)
    return sealed


def unseal(stored: dict[str, Any], *, program_id: str | None = None) -> dict[str, Any]:
    """Program settings as used: every secret in plain text.

    A secret no key opens (a key dropped too early) is kept sealed, so it is neither lost
    nor used, and logged: the integration fails visibly until the key comes back or the
    secret is set again.
    """
    ring = keyring()
    plain = dict(stored)
    for name in SECRET_SETTINGS & plain.keys():
        value = plain[name]
        if isinstance(value, str):
            try:
                text = ring.decrypt(value)
                plain[name] = json.loads(text) if name in MAPPING_SECRETS else text
            except InvalidToken:
                log.error(
                    "program %s: %s was encrypted with a key not in REWARDS_SECRET_KEY",
                    program_id or "?",
                    name,
                )
    return plain


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


class ProgramSettings(TypeDecorator[dict[str, Any]]):
    """JSON program settings whose secrets are encrypted on the way in, decrypted on the way out."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())

    def process_bind_param(self, value: dict[str, Any] | None, dialect: Dialect) -> Any:
        return None if value is None else seal(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> dict[str, Any] | None:
        return None if value is None else unseal(value)


@dataclass
class RotateReport:
    programs: int = 0
    encrypted: int = 0  # stored in plain text until now
    rotated: int = 0  # re-encrypted with the newest key
    unreadable: list[str] = field(default_factory=list)  # "<program>: <setting>" no key opens


async def rotate(
    database_url: str, *, only_plain: bool = False, keys: Callable[[], Keyring] | None = None
) -> RotateReport:
    """Re-encrypt every stored secret with the newest key (``rewards secrets rotate``).

    With ``only_plain``, only encrypt the secrets still stored in plain text (what
    ``rewards db upgrade`` and ``rewards serve`` do after migrating). Each program is
    updated in its own short transaction, locked while it is.
    """
    ring = keyring()
    report = RotateReport()
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            program_ids = list(await connection.scalars(select(_PROGRAMS.c.id)))
        for program_id in program_ids:
            async with engine.begin() as connection:
                query = select(_PROGRAMS.c.settings).where(_PROGRAMS.c.id == program_id)
                if connection.dialect.name != "sqlite":
                    query = query.with_for_update()
                stored = (await connection.execute(query)).scalar_one_or_none() or {}
                changed = dict(stored)
                for name in sorted(SECRET_SETTINGS & stored.keys()):
                    value = _secret_text(name, stored[name])
                    if value is None or (only_plain and is_sealed(value)):
                        continue
                    ring = (keys or keyring)()
                    try:
                        plain = ring.decrypt(value)
                    except InvalidToken:
                        report.unreadable.append(f"{program_id}: {name}")
                        continue
                    changed[name] = ring.encrypt(plain)
                    if is_sealed(value):
                        report.rotated += 1
                    else:
                        report.encrypted += 1
                if changed != stored:
                    await connection.execute(
                        update(_PROGRAMS)
                        .where(_PROGRAMS.c.id == program_id)
                        .values(settings=changed)
                    )
                    report.programs += 1
    finally:
        await engine.dispose()
    return report


# The table as stored, without ProgramSettings' decoding: rotation reads the sealed values.
_PROGRAMS = table(
    "programs",
    column("id", String),
    column("settings", JSON().with_variant(JSONB(), "postgresql")),
)
