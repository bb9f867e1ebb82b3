"""The HRIS directory: full syncs, deactivation, leave as streak pauses, anniversaries."""

from __future__ import annotations

from datetime import date

import pytest

from rewards.runtime import Runtime
from rewards.sources.anniversaries import anniversary_on, send_anniversaries
from tests.conftest import Clock, ProgramClient, event

RULES = """\
version: 1
timezone: Europe/London
rules:
  - id: course_completed
    event: lms.course_completed
    points: 30
  - id: anniversary
    event: hris.work_anniversary
    points: 'event.attributes.years * 100'
  - id: birthday
    event: hris.birthday
    points: 25
streaks:
  - id: weekly_training
    events: [lms.course_completed]
    period: week
"""


@pytest.fixture
async def hr(program: ProgramClient, clock: Clock) -> ProgramClient:
    clock.set("2026-03-04T12:00:00+00:00")
    assert (await program.put_rules(RULES)).status_code == 200
    return program


async def sync(program: ProgramClient, body: object | str, **params: str) -> dict:
    if isinstance(body, str):
        response = await program.request(
            "POST",
            "/v1/users:sync",
            content=body,
            headers={"Content-Type": "text/csv"},
            params=params,
        )
    else:
        response = await program.request("POST", "/v1/users:sync", json=body, params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_a_full_sync_upserts_deactivates_and_reactivates(hr: ProgramClient) -> None:
    first = await sync(
        hr,
        [
            {
                "id": "ann",
                "email": "ann@example.com",
                "slack_id": "U0ANN0001",
                "hire_date": "2020-03-04",
            },
            {"id": "bob", "email": "bob@example.com"},
            {"id": "cy", "email": "cy@example.com"},
        ],
    )
    assert first["created"] == ["ann", "bob", "cy"] and first["deactivated"] == []
    assert (await hr.request("GET", "/v1/users/ann")).json()["slack_id"] == "U0ANN0001"
    [applied] = await hr.post_events(event("e1", "bob", at="2026-03-04T10:00:00Z"))
    assert applied["status"] == "applied"
    # Bob leaves the company: the next export does not list him.
    preview = await sync(hr, "id,email\nann,ann@example.com\ncy,cy@example.com\n", dry_run="true")
    assert (preview["dry_run"], preview["deactivated"], preview["updated"]) == (
        True,
        ["bob"],
        ["ann", "cy"],
    )
    assert (await hr.request("GET", "/v1/users/bob")).json()["active"] is True
    report = await sync(hr, "id,email\nann,ann@example.com\ncy,cy@example.com\n")
    assert report["deactivated"] == ["bob"]
    bob = (await hr.request("GET", "/v1/users/bob")).json()
    assert bob["active"] is False
    [refused] = await hr.post_events(event("e2", "bob", at="2026-03-04T11:00:00Z"))
    assert refused["error"]["code"] == "inactive_user"
    assert (await hr.balance("bob"))["balance"] == 30  # the ledger stays
    board = (await hr.request("GET", "/v1/leaderboards/global")).json()
    assert "bob" not in [entry["user_id"] for entry in board["entries"]]
    trail = (await hr.request("GET", "/v1/audit", params={"target": "bob"})).json()
    assert "user.deactivate" in [entry["action"] for entry in trail["entries"]], trail
    # He comes back.
    back = await sync(hr, [{"id": "ann"}, {"id": "bob"}, {"id": "cy"}])
    assert back["reactivated"] == ["bob"]
    [again] = await hr.post_events(event("e3", "bob", at="2026-03-04T11:30:00Z"))
    assert again["status"] == "applied"
    board = (await hr.request("GET", "/v1/leaderboards/global")).json()
    assert "bob" in [entry["user_id"] for entry in board["entries"]]


async def test_bad_rows_and_empty_exports(hr: ProgramClient) -> None:
    await sync(hr, [{"id": "ann"}, {"id": "bob"}])
    report = await sync(hr, [{"id": "ann"}, {"id": "bob", "hire_date": "soon"}, {"id": "bad id!"}])
    assert [r["id"] for r in report["rejected"]] == ["bob", "bad id!"]
    assert report["deactivated"] == []  # a row rejected for its contents still lists bob
    empty = await hr.request("POST", "/v1/users:sync", json=[{"id": "x y"}])
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "empty_export"
    assert (await hr.request("GET", "/v1/users/ann")).json()["active"] is True


async def test_leave_pauses_streaks_once(hr: ProgramClient) -> None:
    await sync(
        hr,
        "id,leave_starts,leave_ends,leave_kind\nann,2026-03-09,2026-03-20,parental\nbob,,,\n",
    )
    pauses = (await hr.request("GET", "/v1/users/ann/streak-pauses")).json()["pauses"]
    assert [(p["starts"], p["ends"], p["reason"]) for p in pauses] == [
        ("2026-03-09", "2026-03-20", "leave:parental")
    ]
    assert (await hr.request("GET", "/v1/users/bob/streak-pauses")).json()["pauses"] == []
    csv = "id,leave_starts,leave_ends,leave_kind\nann,2026-03-09,2026-03-20,parental\nbob,,,\n"
    assert (await sync(hr, csv, dry_run="true"))["leave_added"] == 0
    # The same leave again, by sync or by the route, is one pause.
    await sync(
        hr,
        [
            {
                "id": "ann",
                "leave": [{"starts": "2026-03-09", "ends": "2026-03-20", "kind": "parental"}],
            },
            {"id": "bob"},
        ],
    )
    again = await hr.request(
        "POST",
        "/v1/users/ann/leave",
        json={"starts": "2026-03-09", "ends": "2026-03-20", "kind": "parental"},
    )
    assert again.status_code == 201 and again.json()["status"] == "duplicate"
    holiday = await hr.request(
        "POST",
        "/v1/users/bob/leave",
        json={"starts": "2026-04-01", "ends": "2026-04-05", "kind": "pto"},
    )
    assert holiday.json()["status"] == "created" and holiday.json()["reason"] == "leave:pto"
    assert len((await hr.request("GET", "/v1/users/ann/streak-pauses")).json()["pauses"]) == 1
    backwards = await hr.request(
        "POST", "/v1/users/bob/leave", json={"starts": "2026-04-05", "ends": "2026-04-01"}
    )
    assert backwards.status_code == 422
    ancient = await hr.request(
        "POST", "/v1/users/bob/leave", json={"starts": "0001-01-01", "ends": "0001-01-02"}
    )
    assert ancient.status_code == 422
    nobody = await hr.request(
        "POST", "/v1/users/zed/leave", json={"starts": "2026-04-01", "ends": "2026-04-02"}
    )
    assert nobody.status_code == 404


@pytest.mark.parametrize(
    ("hire", "today", "expected"),
    [
        (date(2020, 3, 4), date(2026, 3, 4), date(2026, 3, 4)),
        (date(2026, 3, 4), date(2026, 3, 4), None),  # the hire day itself is no anniversary
        (date(2020, 2, 29), date(2026, 3, 1), date(2026, 2, 28)),
        (date(2020, 2, 29), date(2028, 2, 29), date(2028, 2, 29)),
    ],
)
def test_anniversary_dates(hire: date, today: date, expected: date | None) -> None:
    assert anniversary_on(hire, today) == expected


async def test_anniversaries_once_per_person_per_year_on_their_local_date(
    hr: ProgramClient, runtime: Runtime, clock: Clock
) -> None:
    await sync(
        hr,
        [
            {"id": "ann", "hire_date": "2020-03-05", "timezone": "Asia/Tokyo"},
            {"id": "bob", "hire_date": "2023-03-05", "timezone": "America/Los_Angeles"},
            {"id": "cy", "hire_date": "2024-07-01", "attributes": {"birth_date": "1990-03-05"}},
            {"id": "dee", "hire_date": "2021-03-05"},
        ],
    )
    # Dee left: no anniversary for her.
    await sync(
        hr,
        [
            {"id": "ann", "hire_date": "2020-03-05", "timezone": "Asia/Tokyo"},
            {"id": "bob", "hire_date": "2023-03-05", "timezone": "America/Los_Angeles"},
            {"id": "cy", "hire_date": "2024-07-01", "attributes": {"birth_date": "1990-03-05"}},
        ],
    )
    clock.set("2026-03-04T16:00:00+00:00")  # 01:00 on 5 March in Tokyo; still 4 March in LA
    await send_anniversaries(runtime)
    await send_anniversaries(runtime)  # the cron may run twice
    assert (await hr.balance("ann"))["balance"] == 600
    assert (await hr.balance("bob"))["balance"] == 0
    clock.set("2026-03-05T09:00:00+00:00")
    await send_anniversaries(runtime)
    assert (await hr.balance("ann"))["balance"] == 600
    assert (await hr.balance("bob"))["balance"] == 300
    [entry] = (await hr.request("GET", "/v1/users/bob/ledger")).json()["entries"]
    assert entry["event_id"] == "hris.work_anniversary:bob:2026"
    assert (await hr.balance("cy"))["balance"] == 0  # birthdays are off by default
    assert (await hr.balance("dee"))["balance"] == 0
    # Birthdays, once switched on (a missed day is caught up within a week).
    await hr.put_rules(RULES + "sources:\n  hris: {birthdays: true}\n")
    clock.set("2026-03-07T09:00:00+00:00")
    assert await send_anniversaries(runtime) >= 1
    assert (await hr.balance("cy"))["balance"] == 25
