"""A poison event fails alone: its neighbours in a shared group-commit transaction go through.

The poison is a database trigger that refuses, at write time, events whose id starts with
``poison`` in one program: a value the database itself rejects, on either backend, the way a
timestamp out of PostgreSQL's range or an overflowing integer did (issue 12 §5).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError

from rewards.db.dialect import dialect_name
from rewards.errors import NotFound
from rewards.runtime import Runtime
from rewards.services.group_commit import about_the_input
from tests.conftest import ProgramClient, event
from tests.integration.rulesets import BASIC


class _Orig(Exception):
    """A driver error as SQLAlchemy wraps it, with PostgreSQL's error code."""

    def __init__(self, sqlstate: str | None) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.fixture
async def poisoned(program: ProgramClient, runtime: Runtime) -> AsyncIterator[ProgramClient]:
    await program.put_rules(BASIC)
    response = await program.request(
        "POST", "/v1/users:bulk", json=[{"id": f"u{i}"} for i in range(10)]
    )
    assert response.status_code == 200, response.text
    name = f"poison_{uuid.uuid4().hex[:8]}"
    async with runtime.engine.begin() as connection:
        if dialect_name(connection) == "sqlite":
            await connection.execute(
                text(
                    f"CREATE TRIGGER {name} BEFORE INSERT ON events "
                    f"WHEN NEW.program_id = '{program.id}' AND NEW.id LIKE 'poison%' "
                    "BEGIN SELECT RAISE(ABORT, 'poison event'); END"
                )
            )
        else:
            await connection.execute(
                text(
                    f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    f"IF NEW.program_id = '{program.id}' AND NEW.id LIKE 'poison%' THEN "
                    "RAISE EXCEPTION 'poison event' USING ERRCODE = '22008'; END IF; "
                    f"IF NEW.program_id = '{program.id}' AND NEW.id LIKE 'overload%' THEN "
                    "RAISE EXCEPTION 'too many clients' USING ERRCODE = '53300'; END IF; "
                    "RETURN NEW; END $$"
                )
            )
            await connection.execute(
                text(
                    f"CREATE TRIGGER {name} BEFORE INSERT ON events "
                    f"FOR EACH ROW EXECUTE FUNCTION {name}()"
                )
            )
    try:
        yield program
    finally:
        async with runtime.engine.begin() as connection:
            await connection.execute(
                text(
                    f"DROP TRIGGER {name}"
                    + ("" if dialect_name(connection) == "sqlite" else " ON events")
                )
            )
            if dialect_name(connection) != "sqlite":
                await connection.execute(text(f"DROP FUNCTION {name}()"))


async def test_a_poison_event_among_concurrent_requests_fails_alone(
    poisoned: ProgramClient,
) -> None:
    good = [event(f"good-{i}", f"u{i % 10}") for i in range(40)]
    singles = [poisoned.request("POST", "/v1/events", json=body) for body in good]
    poison = poisoned.request("POST", "/v1/events", json=event("poison-1", "u0"))
    responses = await asyncio.gather(*singles[:20], poison, *singles[20:])
    assert [r.status_code for r in responses] == [200] * 41
    results = [r.json()["results"][0] for r in responses]
    assert results[20]["status"] == "rejected"
    assert results[20]["error"]["code"] == "event_failed"
    assert [r["status"] for r in results[:20] + results[21:]] == ["applied"] * 40
    totals = [(await poisoned.balance(f"u{i}"))["balance"] for i in range(10)]
    assert sum(totals) == 40 * 30


async def test_a_poison_event_inside_concurrent_batches_fails_alone(
    poisoned: ProgramClient,
) -> None:
    def batch(offset: int) -> dict:
        events = [event(f"b{offset}-{i}", f"u{i % 10}") for i in range(25)]
        if offset == 3:
            events[7] = event("poison-in-batch", "u1")
        return {"events": events}

    responses = await asyncio.gather(
        *[poisoned.request("POST", "/v1/events", json=batch(offset)) for offset in range(6)]
    )
    assert [r.status_code for r in responses] == [200] * 6
    statuses = [[item["status"] for item in r.json()["results"]] for r in responses]
    assert statuses[3][7] == "rejected"
    assert responses[3].json()["results"][7]["error"]["code"] == "event_failed"
    assert sum(s.count("applied") for s in statuses) == 6 * 25 - 1
    # Rejected means not stored: once the cause is gone it can be sent again.


async def test_a_poison_event_is_not_stored_and_can_be_sent_again(
    poisoned: ProgramClient,
) -> None:
    (first,) = await poisoned.post_events(event("poison-2", "u2"))
    assert first["status"] == "rejected"
    (again,) = await poisoned.post_events(event("poison-2", "u2"))
    assert again["status"] == "rejected"
    assert (await poisoned.balance("u2"))["balance"] == 0


async def test_a_server_side_failure_is_not_blamed_on_the_events(
    poisoned: ProgramClient, runtime: Runtime
) -> None:
    """An error about the server (here PostgreSQL's "too many clients") is not a rejection:
    the request fails as a whole, so the client sends it again."""
    async with runtime.engine.connect() as connection:
        if dialect_name(connection) == "sqlite":
            pytest.skip("SQLite has no error classes to raise from a trigger")
    response = await poisoned.request("POST", "/v1/events", json=event("overload-1", "u3"))
    assert response.status_code >= 500
    assert (await poisoned.balance("u3"))["balance"] == 0


@pytest.mark.parametrize(
    ("error", "input_caused"),
    [
        (DataError("INSERT", {}, _Orig("22008")), True),
        (DBAPIError("INSERT", {}, _Orig("53300")), False),
        (DBAPIError("INSERT", {}, _Orig("08006")), False),
        (IntegrityError("INSERT", {}, _Orig(None)), True),
        (OperationalError("BEGIN", {}, _Orig(None)), False),
        (OverflowError("Python int too large to convert to SQLite INTEGER"), True),
        (NotFound("no program 'x'"), False),
        (ConnectionError("redis"), False),
    ],
)
def test_which_failures_are_blamed_on_the_events(error: Exception, input_caused: bool) -> None:
    assert about_the_input(error) is input_caused
