"""Streaks over HTTP: milestones, grace, breaks without events, pauses, late events, timezones."""

from datetime import date, datetime, timedelta

import pytest

from rewards.runtime import Runtime
from rewards.services.ledger import verify_balances
from tests.conftest import Clock, ProgramClient, event

STREAKS = """\
version: 1
timezone: Europe/London
rules:
  - id: course_completed
    event: lms.course_completed
    points: 30
streaks:
  - id: weekly_training
    events: [lms.course_completed]
    period: week
    grace_periods: 1
    milestones:
      - {length: 4, points: 50}
      - {length: 10, points: 200}
  - id: daily_login
    events: [app.login]
    period: day
"""


def monday(week: int) -> date:
    """Monday of week ``week``: week 1 starts on 5 January 2026."""
    return date(2026, 1, 5) + timedelta(weeks=week - 1)


def at(day: date, time: str = "10:00:00") -> str:
    return f"{day.isoformat()}T{time}Z"


@pytest.fixture
async def ready(program: ProgramClient) -> ProgramClient:
    assert (await program.put_rules(STREAKS)).status_code == 200, "rules"
    await program.put_user("ann")
    await program.put_user("kenji", timezone="Asia/Tokyo")
    return program


async def streaks(program: ProgramClient, user: str) -> dict[str, dict]:
    response = await program.request("GET", f"/v1/users/{user}/streaks")
    assert response.status_code == 200, response.text
    return {s["streak_type"]: s for s in response.json()["streaks"]}


async def train(program: ProgramClient, clock: Clock, week: int, user: str = "ann") -> dict:
    day = monday(week) + timedelta(days=2)
    clock.set(datetime.fromisoformat(at(day, "12:00:00")))
    [result] = await program.post_events(event(f"{user}-w{week}", user, at=at(day)))
    assert result["status"] == "applied", result
    return result


async def test_a_ten_week_streak_survives_one_missed_week_and_breaks_on_the_second(
    ready: ProgramClient, clock: Clock, runtime: Runtime
) -> None:
    results = [await train(ready, clock, week) for week in range(1, 11)]
    progress = [r["streaks"][0] for r in results]
    assert [p["current_streak"] for p in progress] == list(range(1, 11))
    assert {i + 1: p["milestones"] for i, p in enumerate(progress) if p["milestones"]} == {
        4: [{"length": 4, "points": 50}],
        10: [{"length": 10, "points": 200}],
    }
    assert results[3]["points"] == 30 + 50 and results[9]["points"] == 30 + 200
    assert progress[0] == {
        "streak_type": "weekly_training",
        "period_start": "2026-01-05",
        "counted": True,
        "current_streak": 1,
        "longest_streak": 1,
        "milestones": [],
    }

    # Week 11 is missed; in week 12 the streak is alive on grace until the end of week 12.
    clock.set(datetime.fromisoformat(at(monday(12), "08:00:00")))
    weekly = (await streaks(ready, "ann"))["weekly_training"]
    assert weekly == {
        "user_id": "ann",
        "streak_type": "weekly_training",
        "current_streak": 10,
        "longest_streak": 10,
        "last_qualifying_event": "2026-03-11T10:00:00Z",
        "grace_period_until": "2026-03-29T23:59:59+01:00",  # summer time from the 29th
        "period": "week",
        "grace_periods": 1,
        "timezone": "Europe/London",
        "paused": False,
        "next_milestone": None,
    }
    assert (await train(ready, clock, 12))["streaks"][0]["current_streak"] == 11

    # Weeks 13 and 14 are missed: read in week 15 (no event has arrived), it is broken.
    clock.set(datetime.fromisoformat(at(monday(14), "08:00:00")))
    assert (await streaks(ready, "ann"))["weekly_training"]["current_streak"] == 11
    clock.set(datetime.fromisoformat(at(monday(15), "08:00:00")))
    broken = (await streaks(ready, "ann"))["weekly_training"]
    assert (broken["current_streak"], broken["longest_streak"]) == (0, 11)
    assert broken["grace_period_until"] is None
    assert broken["next_milestone"] == {"length": 4, "points": 50}

    # A new streak starts from one, and its milestones are paid again.
    assert (await train(ready, clock, 15))["streaks"][0]["current_streak"] == 1

    entries = (await ready.request("GET", "/v1/users/ann/ledger?limit=100")).json()["entries"]
    bonuses = [(e["kind"], e["points"], e["details"]) for e in entries if e["kind"] != "earn"]
    assert bonuses == [
        (
            "streak_bonus",
            200,
            {"streak": "weekly_training", "length": 10, "run_start": "2026-01-05"},
        ),
        ("streak_bonus", 50, {"streak": "weekly_training", "length": 4, "run_start": "2026-01-05"}),
    ]
    balance = await ready.balance("ann")
    assert (balance["balance"], balance["lifetime_earned"]) == (12 * 30 + 250,) * 2
    async with runtime.sessions() as session:
        assert await verify_balances(session, ready.id) == []


async def test_a_repeated_event_replays_its_streak_outcome(
    ready: ProgramClient, clock: Clock
) -> None:
    first = await train(ready, clock, 1)
    clock.set(datetime.fromisoformat(at(monday(1) + timedelta(days=2), "13:00:00")))
    [again] = await ready.post_events(event("ann-w1", "ann", at=at(monday(1) + timedelta(days=2))))
    assert again == first | {"status": "duplicate"}
    [second] = await ready.post_events(event("ann-w1b", "ann", at=at(monday(1), "08:00:00")))
    assert second["streaks"][0] | {"counted": True} == first["streaks"][0]
    assert second["streaks"][0]["counted"] is False


async def test_pauses_freeze_streaks_even_when_added_afterwards(
    ready: ProgramClient, clock: Clock
) -> None:
    def login(day: int) -> dict:
        return event(f"login-{day}", "ann", "app.login", at=f"2026-03-{day:02d}T09:00:00Z")

    clock.set("2026-03-10T12:00:00+00:00")
    await ready.post_events(login(2), login(3))  # days 2 and 3, no grace
    assert (await streaks(ready, "ann"))["daily_login"]["current_streak"] == 0
    # PTO from the 4th to the 9th, recorded on the 10th.
    response = await ready.request(
        "POST",
        "/v1/users/ann/streak-pauses",
        json={"starts": "2026-03-04", "ends": "2026-03-09", "reason": "pto"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["reason"] == "pto" and response.json()["author_key_id"]
    daily = (await streaks(ready, "ann"))["daily_login"]
    assert (daily["current_streak"], daily["grace_period_until"]) == (2, "2026-03-10T23:59:59Z")
    [result] = await ready.post_events(login(10))
    assert result["streaks"][0]["current_streak"] == 3
    # While a pause runs, the streak waits and says so.
    await ready.request(
        "POST", "/v1/users/ann/streak-pauses", json={"starts": "2026-03-11", "ends": "2026-03-20"}
    )
    clock.set("2026-03-15T12:00:00+00:00")
    daily = (await streaks(ready, "ann"))["daily_login"]
    assert (daily["current_streak"], daily["paused"]) == (3, True)
    assert daily["grace_period_until"] == "2026-03-21T23:59:59Z"
    pauses = (await ready.request("GET", "/v1/users/ann/streak-pauses")).json()["pauses"]
    assert [(p["starts"], p["ends"]) for p in pauses] == [
        ("2026-03-04", "2026-03-09"),
        ("2026-03-11", "2026-03-20"),
    ]


async def test_pause_requests_are_checked(ready: ProgramClient) -> None:
    backwards = await ready.request(
        "POST", "/v1/users/ann/streak-pauses", json={"starts": "2026-03-13", "ends": "2026-03-02"}
    )
    assert backwards.status_code == 422
    unknown = await ready.request(
        "POST", "/v1/users/zed/streak-pauses", json={"starts": "2026-03-02", "ends": "2026-03-13"}
    )
    assert unknown.status_code == 404
    assert (await ready.request("GET", "/v1/users/zed/streaks")).status_code == 404
    created = await ready.request(
        "POST", "/v1/programs/current/keys", json={"name": "r", "scopes": ["read"]}
    )
    reader = {"Authorization": f"Bearer {created.json()['key']}"}
    body = {"starts": "2026-03-02", "ends": "2026-03-13"}
    denied = await ready.http.post("/v1/users/ann/streak-pauses", json=body, headers=reader)
    assert denied.status_code == 403
    assert (await ready.http.get("/v1/users/ann/streaks", headers=reader)).status_code == 200


async def test_late_and_out_of_order_events_recompute_the_streak(
    ready: ProgramClient, clock: Clock
) -> None:
    def login(day: int, suffix: str = "") -> dict:
        return event(f"login-{day}{suffix}", "ann", "app.login", at=f"2026-03-{day:02d}T09:00:00Z")

    clock.set("2026-03-06T12:00:00+00:00")
    results = await ready.post_events(login(5), login(2), login(3))
    assert [r["streaks"][0]["current_streak"] for r in results] == [1, 1, 1]
    # The 4th arrives late: the two runs join.
    [late] = await ready.post_events(login(4))
    assert (late["streaks"][0]["current_streak"], late["streaks"][0]["longest_streak"]) == (4, 4)
    # Older than the lateness window (14 days) on arrival: points, but no streak move.
    clock.set("2026-03-25T12:00:00+00:00")
    await ready.post_events(login(24))
    [stale] = await ready.post_events(login(1))
    assert (stale["status"], stale["streaks"]) == ("applied", [])
    daily = (await streaks(ready, "ann"))["daily_login"]
    assert (daily["current_streak"], daily["longest_streak"]) == (1, 4)


async def test_periods_are_in_the_users_timezone(ready: ProgramClient, clock: Clock) -> None:
    # 23:30 UTC on Sunday 1 March is already Monday 2 March in Tokyo.
    clock.set("2026-03-02T00:00:00+00:00")
    [ann] = await ready.post_events(event("a", "ann", at="2026-03-01T23:30:00Z"))
    [kenji] = await ready.post_events(event("k", "kenji", at="2026-03-01T23:30:00Z"))
    assert ann["streaks"][0]["period_start"] == "2026-02-23"
    assert kenji["streaks"][0]["period_start"] == "2026-03-02"
    weekly = (await streaks(ready, "kenji"))["weekly_training"]
    assert weekly["timezone"] == "Asia/Tokyo"
    assert weekly["last_qualifying_event"] == "2026-03-02T08:30:00+09:00"
    assert weekly["grace_period_until"] == "2026-03-22T23:59:59+09:00"


async def test_pauses_are_bounded_and_documented(ready: ProgramClient) -> None:
    long = await ready.request(
        "POST", "/v1/users/ann/streak-pauses", json={"starts": "2026-01-01", "ends": "2027-06-30"}
    )
    assert long.status_code == 422 and "at most 366 days" in long.text
    spec = (await ready.http.get("/openapi.json")).json()
    assert "get" in spec["paths"]["/v1/users/{user_id}/streaks"]
    pauses = spec["paths"]["/v1/users/{user_id}/streak-pauses"]
    assert "422" in pauses["post"]["responses"] and "get" in pauses
