"""Cohort leaderboards: boards and periods, ties, membership changes, opt-outs, reversals,
Redis failures and the outbox, rebuilds, snapshots and history. Real Redis throughout."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import delete, func, select
from typer.testing import CliRunner

from bench.common import free_port
from engine.boards import decode_score, encode_score
from rewards.db.leaderboard_models import LeaderboardOutbox, LeaderboardPosting
from rewards.exposition import outbox_state
from rewards.leaderboards import outbox, scripts
from rewards.leaderboards import rebuild as rebuild_module
from rewards.leaderboards.directory import refresh_users
from rewards.leaderboards.keys import program_keys
from rewards.leaderboards.rebuild import LockRenewal, rebuild
from rewards.leaderboards.snapshots import snapshot_closed_periods
from rewards.runtime import Runtime
from rewards.services.events import ingest, parse_batch
from rewards.services.ledger import expire_due
from tests.conftest import Clock, ProgramClient
from workers.worker import leaderboards_sweep

RULES = """\
version: 1
timezone: Europe/London
points_expire_after: P12M
cohorts:
  - department
  - role
  - tier
  - name: tenure
    bands: ["0-1y", "1-2y", "2-5y", "5y+"]
  - attribute: region
rules:
  - id: bonus
    event: hr.bonus
    points: 'event.attributes.points'
"""
WEDNESDAY = "2026-03-18T12:00:00+00:00"  # in ISO week 2026-W12 (16 to 22 March)
_ids = itertools.count()


@pytest.fixture
async def lb(program: ProgramClient, clock: Clock) -> ProgramClient:
    clock.set(WEDNESDAY)
    assert (await program.put_rules(RULES)).status_code == 200
    people = {
        "ann": ("Ann", "sales", "sdr", "gold", "2025-01-10", "emea"),
        "bob": ("Bob", "sales", "ae", "silver", "2020-05-01", "amer"),
        "cy": ("Cy", "marketing", "sdr", "gold", "2026-01-05", "emea"),
    }
    for user, (name, department, role, tier, hired, region) in people.items():
        await program.put_user(
            user,
            name=name,
            department=department,
            role=role,
            tier=tier,
            hire_date=hired,
            attributes={"region": region},
        )
    return program


def bonus(user: str, points: int, at: str) -> dict[str, Any]:
    return {
        "id": f"b{next(_ids)}",
        "type": "hr.bonus",
        "user_id": user,
        "occurred_at": at,
        "attributes": {"points": points},
    }


async def earn(program: ProgramClient, clock: Clock, user: str, points: int, at: str) -> str:
    clock.set(at)
    event = bonus(user, points, at)
    [result] = await program.post_events(event)
    assert result["status"] == "applied", result
    return str(event["id"])


async def board(program: ProgramClient, name: str, **params: Any) -> dict[str, Any]:
    response = await program.request("GET", f"/v1/leaderboards/{name}", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def standings(
    program: ProgramClient, name: str, period: str = "all"
) -> list[tuple[str, int]]:
    page = await board(program, name, period=period, limit=500)
    return [(e["user_id"], e["points"]) for e in page["entries"]]


async def test_points_reach_every_board_and_period_of_the_earner(
    lb: ProgramClient, clock: Clock
) -> None:
    await earn(lb, clock, "ann", 30, "2026-03-16T09:00:00+00:00")
    await earn(lb, clock, "bob", 50, "2026-03-17T09:00:00+00:00")
    await earn(lb, clock, "cy", 20, "2026-03-18T09:00:00+00:00")
    await earn(lb, clock, "ann", 40, "2026-03-18T10:00:00+00:00")

    page = await board(lb, "global")
    assert page["entries"] == [
        {"rank": 1, "user_id": "ann", "name": "Ann", "points": 70},
        {"rank": 2, "user_id": "bob", "name": "Bob", "points": 50},
        {"rank": 3, "user_id": "cy", "name": "Cy", "points": 20},
    ]
    assert (page["period"], page["start"], page["end"], page["next_reset"]) == (
        "all",
        None,
        None,
        None,
    )
    assert await standings(lb, "department:sales") == [("ann", 70), ("bob", 50)]
    assert await standings(lb, "department:marketing") == [("cy", 20)]
    assert await standings(lb, "role:sdr") == [("ann", 70), ("cy", 20)]
    assert await standings(lb, "tier:silver") == [("bob", 50)]
    assert await standings(lb, "tenure:1-2y") == [("ann", 70)]
    assert await standings(lb, "tenure:5y+") == [("bob", 50)]
    assert await standings(lb, "tenure:0-1y") == [("cy", 20)]
    assert await standings(lb, "region:emea") == [("ann", 70), ("cy", 20)]
    for period in ("week", "2026-W12", "month", "2026-03"):
        assert await standings(lb, "global", period) == [("ann", 70), ("bob", 50), ("cy", 20)]
    assert await standings(lb, "global", "2026-W11") == []

    week = await board(lb, "department:sales", period="week")
    assert week["period"] == "2026-W12"
    assert (week["start"], week["end"], week["next_reset"]) == (
        "2026-03-16T00:00:00+00:00",
        "2026-03-23T00:00:00+00:00",
        "2026-03-23T00:00:00+00:00",
    )
    month = await board(lb, "global", period="month")
    # The month ends at local midnight, which is 23:00 UTC after the clocks go forward.
    assert (month["period"], month["start"], month["end"]) == (
        "2026-03",
        "2026-03-01T00:00:00+00:00",
        "2026-04-01T00:00:00+01:00",
    )

    ranks = (await lb.request("GET", "/v1/users/cy/ranks")).json()
    assert {(r["board"], r["period"]): (r["rank"], r["points"]) for r in ranks["ranks"]} == {
        (board, period): (rank, 20)
        for board, rank in [
            ("global", 3),
            ("department:marketing", 1),
            ("role:sdr", 2),
            ("tier:gold", 2),
            ("tenure:0-1y", 1),
            ("region:emea", 2),
        ]
        for period in ("all", "2026-W12", "2026-03")
    }


async def test_equal_points_rank_by_who_reached_them_first(lb: ProgramClient, clock: Clock) -> None:
    await earn(lb, clock, "bob", 30, "2026-03-16T09:00:00+00:00")
    await earn(lb, clock, "ann", 30, "2026-03-16T10:00:00+00:00")
    assert await standings(lb, "global") == [("bob", 30), ("ann", 30)]
    await earn(lb, clock, "ann", 30, "2026-03-17T09:00:00+00:00")
    await earn(lb, clock, "bob", 30, "2026-03-17T10:00:00+00:00")
    # Both on 60; Ann got there first.
    assert await standings(lb, "global") == [("ann", 60), ("bob", 60)]
    # Same points in the same second: user id order.
    await earn(lb, clock, "cy", 60, "2026-03-18T09:00:00+00:00")
    clock.set("2026-03-18T09:30:00+00:00")
    await lb.post_events(
        bonus("cy", 10, "2026-03-18T09:30:00+00:00"), bonus("bob", 10, "2026-03-18T09:30:00+00:00")
    )
    assert await standings(lb, "global") == [("bob", 70), ("cy", 70), ("ann", 60)]


async def test_pages_around_and_errors(lb: ProgramClient, clock: Clock) -> None:
    for n in range(7):
        await lb.put_user(f"u{n}", name=f"User {n}", department="ops")
    clock.set(WEDNESDAY)
    await lb.post_events(*[bonus(f"u{n}", 10 * (n + 1), WEDNESDAY) for n in range(7)])
    seen: list[tuple[int, str]] = []
    cursor = None
    while True:
        page = await board(lb, "department:ops", limit=3, **({"cursor": cursor} if cursor else {}))
        seen += [(e["rank"], e["user_id"]) for e in page["entries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [(rank, f"u{7 - rank}") for rank in range(1, 8)]
    assert page["size"] == 7

    def around(user: str, **params: Any) -> Any:
        return lb.request("GET", f"/v1/leaderboards/department:ops/around/{user}", params=params)

    near = (await around("u3", k=1)).json()
    assert (near["rank"], near["points"]) == (4, 40)
    assert [(e["rank"], e["user_id"]) for e in near["entries"]] == [
        (3, "u4"),
        (4, "u3"),
        (5, "u2"),
    ]
    top = (await around("u6", k=2)).json()
    assert [e["user_id"] for e in top["entries"]] == ["u6", "u5", "u4"]
    absent = (await around("ann")).json()  # a real user, not on this board
    assert (absent["rank"], absent["entries"]) == (None, [])

    async def error(path: str, **params: Any) -> tuple[int, str]:
        response = await lb.request("GET", path, params=params)
        return response.status_code, response.json()["error"]["code"]

    assert await error("/v1/leaderboards/department:ops/around/nobody") == (404, "unknown_user")
    assert await error("/v1/leaderboards/country:GB") == (404, "unknown_board")
    assert await error("/v1/leaderboards/everyone") == (404, "unknown_board")
    assert await error("/v1/leaderboards/tenure:3-4y") == (404, "unknown_board")
    assert await error("/v1/leaderboards/global", limit=0) == (422, "invalid_limit")
    assert await error("/v1/leaderboards/global", limit=501) == (422, "invalid_limit")
    assert await error("/v1/leaderboards/global", cursor="!!") == (422, "invalid_cursor")
    assert await error("/v1/leaderboards/global", period="2026-W54") == (422, "invalid_period")
    assert await error("/v1/leaderboards/global", period="yesterday") == (422, "invalid_period")
    assert await error("/v1/leaderboards/global/around/ann", k=51) == (422, "invalid_k")
    assert await error("/v1/users/nobody/ranks") == (404, "unknown_user")


async def test_moving_department_mid_period_splits_the_points(
    lb: ProgramClient, clock: Clock
) -> None:
    await earn(lb, clock, "ann", 30, "2026-03-16T09:00:00+00:00")
    await lb.put_user(
        "ann",
        name="Ann",
        department="marketing",
        role="sdr",
        tier="gold",
        hire_date="2025-03-19",  # her first anniversary is on Thursday
        attributes={"region": "emea"},
    )
    await earn(lb, clock, "ann", 50, "2026-03-18T09:00:00+00:00")
    await earn(lb, clock, "ann", 5, "2026-03-19T09:00:00+00:00")
    for period in ("all", "week", "month"):
        assert await standings(lb, "department:sales", period) == [("ann", 30)]
        assert await standings(lb, "department:marketing", period) == [("ann", 55)]
        assert await standings(lb, "global", period) == [("ann", 85)]
    # Tenure rolls with the calendar: points before the anniversary stay in the old band.
    assert await standings(lb, "tenure:0-1y") == [("ann", 50)]
    assert await standings(lb, "tenure:1-2y") == [("ann", 35)]
    # Her ranks follow where she is now.
    ranks = (await lb.request("GET", "/v1/users/ann/ranks")).json()["ranks"]
    assert {r["board"] for r in ranks} == {
        "global",
        "department:marketing",
        "role:sdr",
        "tier:gold",
        "tenure:1-2y",
        "region:emea",
    }


async def test_retractions_and_expiries_take_points_off_open_periods(
    lb: ProgramClient, clock: Clock, runtime: Runtime
) -> None:
    first = await earn(lb, clock, "ann", 30, "2026-03-16T09:00:00+00:00")
    second = await earn(lb, clock, "ann", 20, "2026-03-17T09:00:00+00:00")
    await earn(lb, clock, "bob", 25, "2026-03-17T10:00:00+00:00")
    clock.set("2026-03-18T09:00:00+00:00")
    assert (await lb.request("POST", f"/v1/events/{second}/retract")).status_code == 200
    await outbox.wait_for_deliveries()
    for period in ("all", "week", "month"):
        assert await standings(lb, "global", period) == [("ann", 30), ("bob", 25)]
    # Retracted after its week closed: the week is final, the month and all time move.
    clock.set("2026-03-24T09:00:00+00:00")
    assert (await lb.request("POST", f"/v1/events/{first}/retract")).status_code == 200
    await outbox.wait_for_deliveries()
    assert await standings(lb, "global", "2026-W12") == [("ann", 30), ("bob", 25)]
    assert await standings(lb, "global", "month") == [("bob", 25)]
    assert await standings(lb, "global") == [("bob", 25)]
    # Bob's points expire a year after they were earned, long after their periods closed.
    clock.set("2027-03-18T09:00:00+00:00")
    assert await expire_due(runtime, lb.id) == 1
    assert await standings(lb, "global") == []
    assert await standings(lb, "global", "2026-03") == [("bob", 25)]


async def test_opted_out_people_never_appear_and_ranks_close_up(
    lb: ProgramClient, clock: Clock, runtime: Runtime
) -> None:
    await lb.put_user("dee", name="Dee", department="sales", leaderboard_opt_out=True)
    await earn(lb, clock, "dee", 100, "2026-03-16T09:00:00+00:00")
    await earn(lb, clock, "bob", 50, "2026-03-16T10:00:00+00:00")
    await earn(lb, clock, "ann", 30, "2026-03-16T11:00:00+00:00")
    assert await standings(lb, "department:sales") == [("bob", 50), ("ann", 30)]
    near = (await lb.request("GET", "/v1/leaderboards/global/around/dee")).json()
    assert (near["rank"], near["entries"]) == (None, [])
    ranks = (await lb.request("GET", "/v1/users/dee/ranks")).json()
    assert ranks["leaderboard_opt_out"] is True
    assert {r["rank"] for r in ranks["ranks"]} == {None}

    # Bob opts out: he leaves every board and Ann moves up.
    await lb.put_user("bob", name="Bob", department="sales", leaderboard_opt_out=True)
    assert await refresh_users(runtime, lb.id, ["bob"])
    assert await standings(lb, "department:sales") == [("ann", 30)]
    assert await standings(lb, "global", "week") == [("ann", 30)]
    near = (await lb.request("GET", "/v1/leaderboards/global/around/ann")).json()
    assert (near["rank"], [e["user_id"] for e in near["entries"]]) == (1, ["ann"])
    await earn(lb, clock, "bob", 5, "2026-03-16T12:00:00+00:00")
    assert await standings(lb, "global") == [("ann", 30)]

    # Opting back in restores him exactly, points earned meanwhile included; the
    # worker's sweep finds the change by itself.
    await lb.put_user("bob", name="Robert", department="sales")
    assert await refresh_users(runtime, lb.id)
    assert await standings(lb, "department:sales") == [("bob", 55), ("ann", 30)]
    assert (await board(lb, "global"))["entries"][0]["name"] == "Robert"


async def test_a_redis_failure_after_commit_loses_nothing(
    lb: ProgramClient, clock: Clock, runtime: Runtime
) -> None:
    await earn(lb, clock, "ann", 30, "2026-03-16T09:00:00+00:00")
    down = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    broken = dataclasses.replace(runtime, redis=down)
    try:
        clock.set("2026-03-16T10:00:00+00:00")
        events = [
            bonus("ann", 20, "2026-03-16T10:00:00+00:00"),
            bonus("bob", 45, "2026-03-16T10:00:00+00:00"),
        ]
        results = await ingest(broken, lb.id, parse_batch({"events": events}))
    finally:
        await down.aclose()
    assert [r["status"] for r in results] == ["applied", "applied"]
    assert (await lb.balance("ann"))["balance"] == 50  # the ledger has it...
    assert await standings(lb, "global") == [("ann", 30)]  # ...the boards not yet
    # Both batches wait in the outbox: the first reached Redis, the second did not.
    assert await pending(runtime, lb.id) == 2

    # Too recent for the sweeper (the writer might still be delivering it)...
    assert await outbox.sweep(runtime, program_id=lb.id) == 0
    # ...until it is old enough; then it is applied once, however often the sweeper runs
    # (the worker's job sweeps every program).
    clock.set("2026-03-16T10:01:00+00:00")
    assert await outbox.sweep(runtime, program_id=lb.id) == 1
    assert await leaderboards_sweep({"runtime": runtime}) == 0
    assert await standings(lb, "global") == [("ann", 50), ("bob", 45)]
    assert await pending(runtime, lb.id) == 0


async def test_the_outbox_lag_finds_a_missing_batch_behind_delivered_ones(
    lb: ProgramClient, clock: Clock, runtime: Runtime
) -> None:
    async with runtime.engine.begin() as connection:  # the rows earlier tests left
        await connection.execute(delete(LeaderboardOutbox))
    for user in ("ann", "bob", "cy"):
        await earn(lb, clock, user, 10, "2026-03-16T09:00:00+00:00")
    down = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    try:
        clock.set("2026-03-16T09:30:00+00:00")
        events = [bonus("ann", 20, "2026-03-16T09:30:00+00:00")]
        await ingest(
            dataclasses.replace(runtime, redis=down), lb.id, parse_batch({"events": events})
        )
    finally:
        await down.aclose()
    await earn(lb, clock, "bob", 10, "2026-03-16T09:30:00+00:00")
    clock.set("2026-03-16T09:31:00+00:00")
    # Read two rows at a time: the missing batch is the fourth of five, on the second page.
    assert await outbox_state(runtime, scan=None, page_size=2) == (5, 60.0)
    # A scrape reads a bounded number of rows: these three were all delivered.
    assert await outbox_state(runtime, scan=3, page_size=2) == (5, 0.0)
    assert await outbox.sweep(runtime, program_id=lb.id) == 1
    assert await outbox_state(runtime, scan=None) == (0, 0.0)


async def test_a_crash_between_redis_and_the_outbox_delete_does_not_double_count(
    lb: ProgramClient, clock: Clock, runtime: Runtime
) -> None:
    down = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    clock.set("2026-03-16T10:00:00+00:00")
    try:
        await ingest(
            dataclasses.replace(runtime, redis=down),
            lb.id,
            parse_batch(bonus("cy", 40, "2026-03-16T10:00:00+00:00")),
        )
    finally:
        await down.aclose()
    [batch] = await pending_batches(runtime, lb.id)
    # The batch reached Redis, then the process died before deleting the outbox row.
    assert await outbox.apply_batch(runtime, batch) == outbox.APPLIED
    assert await outbox.apply_batch(runtime, batch) == outbox.ALREADY_APPLIED
    clock.set("2026-03-16T10:01:00+00:00")
    assert await outbox.sweep(runtime, program_id=lb.id) == 0  # nothing left to apply
    assert await standings(lb, "global") == [("cy", 40)]
    assert await pending(runtime, lb.id) == 0
    keys = program_keys(runtime, lb.id)
    assert await runtime.redis.zcard(keys.applied) == 0


async def test_rebuild_after_losing_redis_gives_identical_boards(
    lb: ProgramClient, clock: Clock, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    await lb.put_user("dee", name="Dee", department="sales", leaderboard_opt_out=True)
    await earn(lb, clock, "ann", 30, "2026-03-09T09:00:00+00:00")  # last week
    await earn(lb, clock, "bob", 30, "2026-03-10T09:00:00+00:00")
    await earn(lb, clock, "dee", 80, "2026-03-16T08:00:00+00:00")
    retracted = await earn(lb, clock, "cy", 70, "2026-03-16T09:00:00+00:00")
    await earn(lb, clock, "cy", 25, "2026-03-16T09:30:00+00:00")
    await lb.put_user("ann", name="Ann", department="marketing", role="sdr", tier="gold")
    await earn(lb, clock, "ann", 40, "2026-03-17T09:00:00+00:00")
    await earn(lb, clock, "bob", 10, "2026-03-17T09:00:00+00:00")
    clock.set("2026-03-18T09:00:00+00:00")
    await lb.request("POST", f"/v1/events/{retracted}/retract")
    await outbox.wait_for_deliveries()
    live = await dump(runtime, lb.id)
    assert len(live["boards"]) > 20 and live["hidden"] == [b"dee"]

    # Rebuilding over live boards changes nothing.
    report = await rebuild(runtime, lb.id)
    assert report.postings == 8
    assert await dump(runtime, lb.id) == live

    # Every key of the program gone (what FLUSHALL would do to it, without touching anyone
    # else's data on a shared Redis), then a rebuild: the same boards, scores and all.
    await wipe(runtime, lb.id)
    assert await standings(lb, "global") == []
    await rebuild(runtime, lb.id)
    assert await dump(runtime, lb.id) == live
    assert await standings(lb, "global") == [("ann", 70), ("bob", 40), ("cy", 25)]

    # The same with everyone in a slice of their own (PostgreSQL scores slice by slice).
    monkeypatch.setattr(rebuild_module, "PEOPLE_PER_SLICE", 1)
    await wipe(runtime, lb.id)
    await rebuild(runtime, lb.id)
    assert await dump(runtime, lb.id) == live


@pytest.mark.parametrize("people_per_slice", [None, 1000])
async def test_a_rebuild_of_thousands_of_people_gives_identical_boards(
    lb: ProgramClient,
    clock: Clock,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    people_per_slice: int | None,
) -> None:
    # Enough people that the rebuild sends a board in many calls: 3,500 on one total (more
    # than one call holds), a long tail of distinct totals (many small chunks to merge),
    # some opted out, two departments, this week and last. On PostgreSQL, also in eight
    # slices of people (each board then reaches Redis in eight passes).
    if people_per_slice is not None:
        monkeypatch.setattr(rebuild_module, "PEOPLE_PER_SLICE", people_per_slice)
    people = [
        {
            "id": f"p{i:04d}",
            "name": f"Person {i}",
            "department": "sales" if i % 3 else "support",
            "leaderboard_opt_out": i % 97 == 0,
        }
        for i in range(4200)
    ]
    for start in range(0, len(people), 1000):
        response = await lb.request("POST", "/v1/users:bulk", json=people[start : start + 1000])
        assert response.status_code == 200, response.text
    for day, at in enumerate(("2026-03-10T09:00:00+00:00", "2026-03-17T09:00:00+00:00")):
        clock.set(at)
        events = [
            bonus(person["id"], 50 if i < 3500 else 1 + (i * 7 + day) % 600, at)
            for i, person in enumerate(people)
        ]
        for start in range(0, len(events), 1000):
            results = await lb.post_events(*events[start : start + 1000])
            assert {result["status"] for result in results} == {"applied"}
    await outbox.wait_for_deliveries()
    live = await dump(runtime, lb.id)
    everyone = program_keys(runtime, lb.id).board("all", "global").encode()
    assert len(live["boards"][everyone]) > 4000

    await wipe(runtime, lb.id)
    report = await rebuild(runtime, lb.id)
    assert report.postings == 2 * len(people)
    assert await dump(runtime, lb.id) == live


async def test_a_rebuild_sums_postings_beyond_integer_range(
    lb: ProgramClient, clock: Clock, runtime: Runtime
) -> None:
    # PostgreSQL sums the points as integer (faster), and again as bigint when a posting
    # does not fit: the total stays exact either way.
    await earn(lb, clock, "ann", 30, "2026-03-16T09:00:00+00:00")
    async with runtime.engine.begin() as connection:
        await connection.execute(
            LeaderboardPosting.__table__.insert(),
            [
                {
                    "program_id": lb.id,
                    "dedupe_key": "manual:big",
                    "user_id": "bob",
                    "points": 3_000_000_000,
                    "posted_at": datetime(2026, 3, 16, 10, tzinfo=UTC),
                    "boards": ["global"],
                    "week": None,
                    "month": None,
                }
            ],
        )
    clock.set("2026-03-16T11:00:00+00:00")
    report = await rebuild(runtime, lb.id)
    assert report.postings == 2
    assert await standings(lb, "global") == [("bob", 3_000_000_000), ("ann", 30)]


async def test_the_rebuild_lock_is_renewed_while_the_database_works(runtime: Runtime) -> None:
    # A rebuild renews its lock from a task of its own, so a long database statement
    # (minutes, at 10M postings) does not let it lapse; it stops once the lock is not its own.
    key = f"{runtime.settings.redis_prefix}:test-lock:{next(_ids)}"
    await runtime.redis.set(key, "mine", px=300)
    renewal = LockRenewal(runtime.redis, key, "mine", lock_ms=300, every=0.05)
    keeping = asyncio.create_task(renewal.keep())
    try:
        await asyncio.sleep(0.9)  # three times the lock's life
        assert await runtime.redis.get(key) == b"mine"
        await runtime.redis.set(key, "another rebuild's", px=300)
        await asyncio.wait_for(keeping, timeout=5)  # it stands down
    finally:
        keeping.cancel()
        await runtime.redis.delete(key)


async def test_a_rebuild_includes_what_waits_in_the_outbox_once(
    lb: ProgramClient, clock: Clock, runtime: Runtime
) -> None:
    await earn(lb, clock, "ann", 30, "2026-03-16T09:00:00+00:00")
    down = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    try:
        clock.set("2026-03-16T10:00:00+00:00")
        await ingest(
            dataclasses.replace(runtime, redis=down),
            lb.id,
            parse_batch(bonus("bob", 45, "2026-03-16T10:00:00+00:00")),
        )
    finally:
        await down.aclose()
    await wipe(runtime, lb.id)
    await rebuild(runtime, lb.id)
    assert await pending(runtime, lb.id) == 0
    clock.set("2026-03-16T11:00:00+00:00")
    assert await outbox.sweep(runtime, program_id=lb.id) == 0
    assert await standings(lb, "global") == [("bob", 45), ("ann", 30)]


async def test_the_cli_rebuilds_with_a_progress_bar(
    lb: ProgramClient, clock: Clock, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rewards.cli import app

    # The command runs on the real clock, so the points are earned now.
    clock.now = None
    await lb.post_events(bonus("ann", 30, datetime.now(UTC).isoformat()))
    live = await dump(runtime, lb.id)
    await wipe(runtime, lb.id)
    monkeypatch.setenv("REWARDS_DATABASE_URL", runtime.settings.effective_database_url)
    monkeypatch.setenv("REWARDS_REDIS_URL", runtime.redis_url)
    if runtime.settings.queue_redis_url:  # on a Redis Cluster
        monkeypatch.setenv("REWARDS_QUEUE_REDIS_URL", runtime.settings.queue_redis_url)
    monkeypatch.setenv("REWARDS_REDIS_PREFIX", runtime.settings.redis_prefix)
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["leaderboards", "rebuild", "--program", lb.id]
    )
    assert result.exit_code == 0, result.output
    assert f"{lb.id}: 1 postings" in result.output
    assert await dump(runtime, lb.id) == live
    missing = await asyncio.to_thread(
        CliRunner().invoke, app, ["leaderboards", "rebuild", "--program", "nope"]
    )
    assert missing.exit_code == 1


async def test_closed_periods_are_saved_and_kept_as_history(
    lb: ProgramClient, clock: Clock, runtime: Runtime
) -> None:
    await earn(lb, clock, "bob", 30, "2026-03-16T09:00:00+00:00")
    await earn(lb, clock, "ann", 30, "2026-03-16T10:00:00+00:00")
    await earn(lb, clock, "cy", 10, "2026-03-17T10:00:00+00:00")
    await lb.put_user("cy", name="Cy", department="marketing", leaderboard_opt_out=True)

    def history(name: str, period: str, **params: Any) -> Any:
        return lb.request(
            "GET", f"/v1/leaderboards/{name}/history", params={"period": period, **params}
        )

    assert (await history("global", "2026-W12")).json()["error"]["code"] == "period_not_closed"
    assert (await history("global", "all")).status_code == 422
    # The week closes at midnight on Sunday; the snapshot waits a few minutes to settle.
    clock.set("2026-03-23T00:01:00+00:00")
    assert await snapshot_closed_periods(runtime, [lb.id]) == 1  # only W11 (empty), not W12
    assert (await history("global", "2026-W12")).json()["error"]["code"] == "snapshot_not_found"
    clock.set("2026-03-23T00:10:00+00:00")
    assert await snapshot_closed_periods(runtime, [lb.id]) == 1
    saved = (await history("global", "2026-W12")).json()
    assert [(e["rank"], e["user_id"], e["name"], e["points"]) for e in saved["entries"]] == [
        (1, "bob", "Bob", 30),
        (2, "ann", "Ann", 30),
    ]
    assert (saved["period"], saved["start"], saved["end"], saved["next_reset"]) == (
        "2026-W12",
        "2026-03-16T00:00:00+00:00",
        "2026-03-23T00:00:00+00:00",
        None,
    )
    page = (await history("department:sales", "2026-W12", limit=1)).json()
    assert [e["user_id"] for e in page["entries"]] == ["bob"] and page["next_cursor"]
    rest = (await history("department:sales", "2026-W12", cursor=page["next_cursor"])).json()
    assert [e["user_id"] for e in rest["entries"]] == ["ann"] and rest["next_cursor"] is None
    # Later changes do not touch a closed period's standings.
    await earn(lb, clock, "ann", 100, "2026-03-23T09:00:00+00:00")
    assert await snapshot_closed_periods(runtime, [lb.id]) == 0
    assert (await history("global", "2026-W12")).json()["entries"] == saved["entries"]
    assert (await history("global", "2025-W01")).status_code == 404
    # The closed week's keys expire from Redis; all time's never do.
    keys = program_keys(runtime, lb.id)
    assert await runtime.redis.ttl(keys.board("2026-W12", "global")) > 0
    assert await runtime.redis.ttl(keys.board("all", "global")) == -1


async def test_lua_scores_match_the_python_encoding(runtime: Runtime) -> None:
    probe = scripts.Script(
        scripts.SCORES
        + """
local score = encode(tonumber(ARGV[1]), tonumber(ARGV[2]))
local points, reached = decode(score)
return {string.format('%.17g', score), string.format('%d', points), string.format('%d', reached)}
"""
    )
    for points, reached in [
        (30, 12_345),
        (2**21 - 1, 2**32 - 1),
        (2**21, 99),
        (2**40 + 5, 1_000_000),
        (-75, 4),
        (2**52 - 1, 2**31),
    ]:
        score, back, when = await probe(runtime.redis, [], [points, reached])
        assert float(score) == encode_score(points, reached)
        assert (int(back), int(when)) == decode_score(encode_score(points, reached))


# ---------------------------------------------------------------------------------------


async def pending(runtime: Runtime, program_id: str) -> int:
    return len(await pending_batches(runtime, program_id))


async def pending_batches(runtime: Runtime, program_id: str) -> list[Any]:
    from sqlalchemy import select

    from rewards.leaderboards.postings import Batch

    async with runtime.sessions() as session:
        rows = await session.execute(
            select(
                LeaderboardOutbox.id, LeaderboardOutbox.program_id, LeaderboardOutbox.payload
            ).where(LeaderboardOutbox.program_id == program_id)
        )
        return [Batch.from_row(*row) for row in rows]


async def dump(runtime: Runtime, program_id: str) -> dict[str, Any]:
    """Every board of the program with its members and exact scores, names, hidden."""
    keys = program_keys(runtime, program_id)
    registry = await runtime.redis.hgetall(keys.registry)  # type: ignore[misc]
    boards = {}
    for visible, twin in registry.items():
        for key in (visible, twin):
            members = await runtime.redis.zrange(key, 0, -1, withscores=True)
            if members:
                boards[key] = members
    return {
        "boards": boards,
        "hidden": sorted(await runtime.redis.smembers(keys.hidden)),  # type: ignore[misc]
        "names": await runtime.redis.hgetall(keys.names),  # type: ignore[misc]
    }


async def wipe(runtime: Runtime, program_id: str) -> None:
    async for key in runtime.redis.scan_iter(match=program_keys(runtime, program_id).pattern):
        await runtime.redis.unlink(key)


async def test_an_unreadable_outbox_row_does_not_stop_the_sweeper(
    lb: ProgramClient, clock: Clock, runtime: Runtime
) -> None:
    async with runtime.engine.begin() as connection:
        await connection.execute(
            LeaderboardOutbox.__table__.insert(),
            [
                {
                    "id": "poison-" + lb.id[:20],
                    "program_id": lb.id,
                    "created_at": datetime(2026, 3, 16, 8, tzinfo=UTC),
                    "payload": {"timezone": "UTC", "postings": [["not", "a", "posting"]]},
                }
            ],
        )
    await earn(lb, clock, "ann", 30, "2026-03-16T09:00:00+00:00")
    clock.set("2026-03-16T10:00:00+00:00")
    assert await outbox.sweep(runtime, program_id=lb.id) == 0  # skipped and logged, no crash
    assert await standings(lb, "global") == [("ann", 30)]
    async with runtime.engine.begin() as connection:
        kept = await connection.scalar(
            select(func.count()).where(LeaderboardOutbox.program_id == lb.id)
        )
        assert kept == 1  # kept for an operator
        await connection.execute(
            LeaderboardOutbox.__table__.delete().where(LeaderboardOutbox.program_id == lb.id)
        )


async def test_an_opt_out_through_the_api_is_immediate(lb: ProgramClient, clock: Clock) -> None:
    await earn(lb, clock, "ann", 30, "2026-03-16T09:00:00+00:00")
    await earn(lb, clock, "bob", 50, "2026-03-16T09:00:00+00:00")
    assert await standings(lb, "global") == [("bob", 50), ("ann", 30)]
    await lb.put_user("bob", name="Bob", department="sales", leaderboard_opt_out=True)
    assert await standings(lb, "global") == [("ann", 30)]  # no sweep, no refresh call
    rows = [{"id": "bob", "name": "Bob", "department": "sales"}]
    assert (await lb.request("POST", "/v1/users:bulk", json=rows)).status_code == 200
    assert await standings(lb, "global") == [("bob", 50), ("ann", 30)]
