"""The program's directory of people: upsert one, upsert many (JSON or CSV), read one."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime
from typing import Annotated, Any

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from engine.facts import UserFacts
from rewards.db.dialect import insert_for
from rewards.db.models import User, UserBalance
from rewards.errors import BadRequest, InvalidInput, PayloadTooLarge
from rewards.services.attributes import Attributes
from rewards.services.programs import TIMEZONES, validate_timezone
from rules import TenureBand, tenure_band

MAX_BULK_ROWS = 10_000
UPSERT_PAGE = 1_000  # users per INSERT statement
USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DIRECTORY_FIELDS = (
    "email",
    "name",
    "department",
    "role",
    "hire_date",
    "tier",
    "country",
    "timezone",
    "slack_id",
)
SLACK_ID = re.compile(r"^[UW][A-Z0-9]{2,63}$")


def date_text(value: object) -> object:
    """Dates come as ``YYYY-MM-DD`` text: a number is not read as a Unix time."""
    if value is None or isinstance(value, str | date):
        return value
    raise ValueError("must be a date as text, YYYY-MM-DD")


class UserIn(BaseModel):
    """A person as the HR platform knows them. PUT replaces every field."""

    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(
        default=None, max_length=320, json_schema_extra={"pattern": EMAIL.pattern}
    )
    name: str | None = Field(default=None, max_length=200)
    department: str | None = Field(default=None, max_length=120)
    role: str | None = Field(default=None, max_length=120)
    hire_date: Annotated[date | None, BeforeValidator(date_text)] = None
    tier: str | None = Field(default=None, max_length=120)
    country: str | None = Field(
        default=None,
        description="ISO 3166-1 alpha-2",
        json_schema_extra={"pattern": "^[A-Za-z]{2}$"},  # checked below, with a plain message
    )
    timezone: str | None = Field(default=None, json_schema_extra={"enum": [*TIMEZONES, None]})
    slack_id: str | None = Field(default=None, description="Slack member id, e.g. U024BE7LH")
    attributes: Attributes = Field(default_factory=dict)
    leaderboard_opt_out: StrictBool = False

    @field_validator("slack_id")
    @classmethod
    def _slack_id(cls, value: str | None) -> str | None:
        if value is not None and not SLACK_ID.match(value):
            raise ValueError("not a Slack member id (like U024BE7LH)")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not EMAIL.match(value):
            raise ValueError("not an email address")
        return value

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.fullmatch(r"[A-Za-z]{2}", value):
            raise ValueError("must be a two-letter ISO 3166-1 country code")
        return value.upper()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else validate_timezone(value)


class BulkUserIn(UserIn):
    id: str


def check_user_id(user_id: str) -> str:
    if not USER_ID.match(user_id):
        raise InvalidInput(
            "user id must be 1-128 characters: letters, digits and _ . : @ + -",
            code="invalid_user_id",
            details=[{"pointer": "/user_id"}],
        )
    return user_id


def validation_details(exc: ValidationError, *, prefix: str = "") -> list[dict[str, Any]]:
    return [
        {
            "pointer": prefix + "".join(f"/{part}" for part in error["loc"]),
            "message": error["msg"],
            "code": error["type"],
        }
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


async def upsert_user(
    session: AsyncSession, *, program_id: str, user_id: str, data: UserIn, now: datetime
) -> tuple[User, bool]:
    """Create or replace a user. Returns the row and whether it was created."""
    results = await upsert_users(session, program_id=program_id, rows=[(user_id, data)], now=now)
    user = await session.get(User, (program_id, user_id), populate_existing=True)
    assert user is not None
    return user, results[0]


async def upsert_users(
    session: AsyncSession, *, program_id: str, rows: list[tuple[str, UserIn]], now: datetime
) -> list[bool]:
    """Upsert many users in one statement; returns, per row, whether it was created."""
    if not rows:
        return []
    ids = [user_id for user_id, _ in rows]
    existing = set(
        await session.scalars(
            select(User.id).where(User.program_id == program_id, User.id.in_(ids))
        )
    )
    insert = insert_for(session)
    # A row repeated in one upload: the last one wins (one statement cannot touch a row twice).
    latest = {user_id: data for user_id, data in rows}
    values = [
        {
            "program_id": program_id,
            "id": user_id,
            **data.model_dump(),
            "created_at": now,
            "updated_at": now,
        }
        for user_id, data in latest.items()
    ]
    # A page of rows per statement: one statement binds at most 32,767 values on PostgreSQL
    # (asyncpg) and 32,766 on SQLite, and a user row has fifteen.
    for start in range(0, len(values), UPSERT_PAGE):
        page = values[start : start + UPSERT_PAGE]
        statement = insert(User).values(page)
        updated = {
            column: statement.excluded[column]
            for column in (*DIRECTORY_FIELDS, "attributes", "leaderboard_opt_out", "updated_at")
        }
        await session.execute(
            statement.on_conflict_do_update(index_elements=["program_id", "id"], set_=updated)
        )
        await session.execute(
            insert(UserBalance)
            .values(
                [
                    {
                        "program_id": program_id,
                        "user_id": row["id"],
                        "balance": 0,
                        "lifetime_earned": 0,
                        "held": 0,
                    }
                    for row in page
                ]
            )
            .on_conflict_do_nothing(index_elements=["program_id", "user_id"])
        )
    created: list[bool] = []
    seen: set[str] = set()
    for user_id in ids:
        created.append(user_id not in existing and user_id not in seen)
        seen.add(user_id)
    return created


def parse_bulk(body: bytes, content_type: str) -> list[tuple[int, dict[str, Any]]]:
    """Rows of a bulk upload, numbered from 1, as plain dicts (validated later, row by row)."""
    if "csv" in content_type:
        rows = _csv_rows(body)
    else:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"body is not JSON: {exc}", code="invalid_json") from exc
        if isinstance(data, dict) and isinstance(data.get("users"), list):
            data = data["users"]
        if not isinstance(data, list):
            raise InvalidInput('expected a JSON array of users (or {"users": [...]})')
        rows = list(enumerate(data, start=1))
    if len(rows) > MAX_BULK_ROWS:
        raise PayloadTooLarge(f"at most {MAX_BULK_ROWS} users per request; got {len(rows)}")
    return rows


def _csv_rows(body: bytes) -> list[tuple[int, dict[str, Any]]]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadRequest("CSV must be UTF-8", code="invalid_csv") from exc
    try:
        return _read_csv(text)
    except csv.Error as exc:
        raise BadRequest(f"the CSV cannot be read: {exc}", code="invalid_csv") from exc


def _read_csv(text: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or "id" not in reader.fieldnames:
        raise InvalidInput("CSV needs a header row with an 'id' column", code="invalid_csv")
    rows: list[tuple[int, dict[str, Any]]] = []
    for number, record in enumerate(reader, start=1):
        row: dict[str, Any] = {"attributes": {}}
        for column, cell in record.items():
            if column is None:
                raise InvalidInput(
                    f"CSV row {number} has more cells than the header", code="invalid_csv"
                )
            value = cell.strip() if isinstance(cell, str) and cell.strip() != "" else None
            if column == "leaderboard_opt_out":
                row[column] = (value or "false").lower() in {"1", "true", "yes", "y"}
            elif column in (*DIRECTORY_FIELDS, "id"):
                row[column] = value
            elif value is not None:
                name = column.removeprefix("attributes.")
                row["attributes"][name] = value
        rows.append((number, row))
    return rows


def user_facts(user: User, *, bands: tuple[TenureBand, ...], today: date) -> UserFacts:
    return UserFacts(
        id=user.id,
        email=user.email,
        name=user.name,
        department=user.department,
        role=user.role,
        hire_date=user.hire_date,
        tier=user.tier,
        country=user.country,
        timezone=user.timezone,
        attributes=user.attributes or {},
        tenure_band=tenure_band(bands, user.hire_date, today) if user.hire_date else None,
        active=user.active is not False,
    )


def user_view(user: User, *, bands: tuple[TenureBand, ...], today: date) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "department": user.department,
        "role": user.role,
        "hire_date": user.hire_date,
        "tier": user.tier,
        "country": user.country,
        "timezone": user.timezone,
        "attributes": user.attributes or {},
        "leaderboard_opt_out": user.leaderboard_opt_out,
        "slack_id": user.slack_id,
        "active": user.active,
        "tenure_band": tenure_band(bands, user.hire_date, today) if user.hire_date else None,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
    }
