"""xAPI: statements as an LMS sends them to an LRS, mapped to events, voids retracted."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from tests.conftest import Clock, ProgramClient

RULES = """\
version: 1
rules:
  - id: course_completed
    event: lms.course_completed
    points: 30
  - id: assessment_passed
    event: lms.assessment_passed
    when: 'event.attributes.score >= 0.8'
    points: 50
  - id: mastered
    event: lms.mastered
    points: 100
sources:
  xapi:
    statements:
      - verb: http://adlnet.gov/expapi/verbs/completed
        activity_type: http://adlnet.gov/expapi/activities/course
        event: lms.course_completed
      - verb: http://adlnet.gov/expapi/verbs/passed
        event: lms.assessment_passed
      - verb: http://adlnet.gov/expapi/verbs/mastered
        event: lms.mastered
"""
VERSION = {"X-Experience-API-Version": "1.0.3"}
COMPLETED = "http://adlnet.gov/expapi/verbs/completed"
PASSED = "http://adlnet.gov/expapi/verbs/passed"


def statement(
    statement_id: str,
    verb: str = COMPLETED,
    *,
    actor: dict[str, Any] | None = None,
    activity_type: str = "http://adlnet.gov/expapi/activities/course",
    result: dict[str, Any] | None = None,
    timestamp: str = "2026-03-02T10:00:00.000Z",
) -> dict[str, Any]:
    """A statement shaped like the ADL specification's examples."""
    body: dict[str, Any] = {
        "id": statement_id,
        "actor": actor
        or {"objectType": "Agent", "name": "Maria Lopez", "mbox": "mailto:Maria@Example.com"},
        "verb": {"id": verb, "display": {"en-US": verb.rsplit("/", 1)[-1]}},
        "object": {
            "objectType": "Activity",
            "id": "http://example.com/courses/security-101",
            "definition": {
                "name": {"en-US": "Security 101"},
                "type": activity_type,
            },
        },
        "timestamp": timestamp,
        "context": {"platform": "Example LMS", "language": "en-US"},
    }
    if result is not None:
        body["result"] = result
    return body


def void(statement_id: str, target: str) -> dict[str, Any]:
    return {
        "id": statement_id,
        "actor": {"objectType": "Agent", "name": "LMS admin", "mbox": "mailto:admin@example.com"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/voided", "display": {"en-US": "voided"}},
        "object": {"objectType": "StatementRef", "id": target},
    }


S1 = "fd41c918-b88b-4b20-a0a5-a4c32391aaa0"
S2 = "7ccd3322-e1a5-411a-a67d-6a735c76f119"
S3 = "2a41c918-b88b-4b20-a0a5-a4c32391aaa1"


@pytest.fixture
async def lms(program: ProgramClient, clock: Clock) -> ProgramClient:
    clock.set("2026-03-02T12:00:00+00:00")
    assert (await program.put_rules(RULES)).status_code == 200
    await program.put_user("maria", email="maria@example.com", name="Maria")
    await program.put_user("joe", email="joe@example.com", name="Joe")
    return program


async def send(program: ProgramClient, body: Any, **kwargs: Any) -> Any:
    headers = {**VERSION, **kwargs.pop("headers", {})}
    return await program.request(
        "POST", "/v1/sources/xapi/statements", json=body, headers=headers, **kwargs
    )


async def test_statements_earn_points_and_the_answer_is_their_ids(lms: ProgramClient) -> None:
    response = await send(
        lms,
        [
            statement(S1),
            statement(
                S2,
                PASSED,
                actor={
                    "objectType": "Agent",
                    "account": {"homePage": "https://lms.example.com", "name": "joe"},
                },
                activity_type="http://adlnet.gov/expapi/activities/assessment",
                result={
                    "score": {"scaled": 0.92, "raw": 92, "min": 0, "max": 100},
                    "success": True,
                    "completion": True,
                },
            ),
        ],
    )
    assert response.status_code == 200, response.text
    assert response.json() == [S1, S2]
    assert response.headers["X-Experience-API-Version"] == "1.0.3"
    assert (await lms.balance("maria"))["balance"] == 30
    assert (await lms.balance("joe"))["balance"] == 50
    [entry] = (await lms.request("GET", "/v1/users/joe/ledger")).json()["entries"]
    assert entry["event_id"] == f"xapi:{S2}"


async def test_the_score_reaches_the_rules(lms: ProgramClient) -> None:
    low = statement(S1, PASSED, result={"score": {"scaled": 0.5}, "success": False})
    response = await send(lms, low, params={"explain": "true"})
    [result] = response.json()["results"]
    assert result["status"] == "applied" and result["points"] == 0
    assert (await lms.balance("maria"))["balance"] == 0


async def test_a_resent_statement_is_a_duplicate(lms: ProgramClient) -> None:
    await send(lms, statement(S1))
    again = await send(lms, statement(S1), params={"explain": "true"})
    assert again.json()["results"][0]["status"] == "duplicate"
    assert (await lms.balance("maria"))["balance"] == 30
    changed = statement(S1, result={"completion": True})
    conflict = await send(lms, [statement(S2), changed])
    assert conflict.status_code == 409, conflict.text
    assert conflict.json()["error"]["code"] == "statement_conflict"
    assert (await lms.balance("maria"))["balance"] == 30  # the batch applied nothing


async def test_put_with_statement_id(lms: ProgramClient) -> None:
    body = statement(S1)
    del body["id"]
    response = await lms.request(
        "PUT", "/v1/sources/xapi/statements", params={"statementId": S1}, json=body, headers=VERSION
    )
    assert response.status_code == 204, response.text
    assert (await lms.balance("maria"))["balance"] == 30
    other = await lms.request(
        "PUT",
        "/v1/sources/xapi/statements",
        params={"statementId": S2},
        json=statement(S1),
        headers=VERSION,
    )
    assert other.status_code == 400


async def test_a_voiding_statement_retracts_the_event(lms: ProgramClient) -> None:
    await send(lms, statement(S1))
    voided = await send(lms, void(S2, S1), params={"explain": "true"})
    assert voided.json()["results"][0]["status"] == "retracted"
    assert (await lms.balance("maria"))["balance"] == 0
    again = await send(lms, void(S3, S1), params={"explain": "true"})
    assert again.json()["results"][0]["status"] == "retracted"
    assert (await lms.balance("maria"))["balance"] == 0
    entries = (await lms.request("GET", "/v1/users/maria/ledger")).json()["entries"]
    assert [e["kind"] for e in entries] == ["retract", "earn"]
    nothing = await send(
        lms,
        void("3a41c918-b88b-4b20-a0a5-a4c32391aaa2", "00000000-0000-4000-8000-000000000000"),
        params={"explain": "true"},
    )
    assert nothing.json()["results"][0]["status"] == "unknown"


async def test_a_statement_and_its_void_in_one_batch(lms: ProgramClient) -> None:
    response = await send(lms, [statement(S1), void(S2, S1)], params={"explain": "true"})
    assert [r["status"] for r in response.json()["results"]] == ["applied", "retracted"]
    assert (await lms.balance("maria"))["balance"] == 0


async def test_actors_by_sha1_and_unknown_learners(lms: ProgramClient) -> None:
    digest = hashlib.sha1(b"mailto:joe@example.com").hexdigest()
    response = await send(
        lms,
        [
            statement(S1, actor={"mbox_sha1sum": digest}),
            statement(S2, actor={"mbox": "mailto:nobody@example.com"}),
            statement(S3, "http://adlnet.gov/expapi/verbs/experienced"),
        ],
        params={"explain": "true"},
    )
    assert response.status_code == 200
    assert [r["status"] for r in response.json()["results"]] == ["applied", "rejected", "ignored"]
    assert response.json()["results"][1]["error"]["code"] == "unknown_user"
    assert (await lms.balance("joe"))["balance"] == 30


@pytest.mark.parametrize(
    "body",
    [
        {"actor": {"mbox": "mailto:maria@example.com"}, "verb": {"id": COMPLETED}},
        {
            "actor": {"mbox": "maria@example.com"},
            "verb": {"id": COMPLETED},
            "object": {"id": "x:y"},
        },
        {"actor": {}, "verb": {"id": COMPLETED}, "object": {"id": "x:y"}},
        {
            "id": "not-a-uuid",
            "actor": {"mbox": "mailto:a@b.c"},
            "verb": {"id": COMPLETED},
            "object": {"id": "x:y"},
        },
        {
            "actor": {"mbox": "mailto:a@b.c"},
            "verb": {"id": COMPLETED},
            "object": {"id": "x:y"},
            "timestamp": "yesterday",
        },
        {
            "actor": {"mbox": "mailto:a@b.c"},
            "verb": {"id": COMPLETED},
            "object": {"id": "x:y"},
            "result": {"score": {"scaled": 7}},
        },
        {
            "actor": {"mbox": "mailto:a@b.c"},
            "verb": {"id": COMPLETED},
            "object": {"id": "x:y"},
            "timestamp": "0001-01-01T00:00:00+01:00",
        },
        {
            "actor": {"mbox": "mailto:a@b.c", "account": {"homePage": "h", "name": "n"}},
            "verb": {"id": COMPLETED},
            "object": {"id": "x:y"},
        },
        {
            "actor": {"mbox": "mailto:a@b.c"},
            "verb": {"id": COMPLETED},
            "object": {"id": "x:y", "objectType": "StatementRef"},
        },
        [],
        "a statement",
        None,
        17,
    ],
)
async def test_a_malformed_statement_rejects_the_batch(lms: ProgramClient, body: Any) -> None:
    batch = [statement(S1), body] if isinstance(body, dict) else body
    response = await send(lms, batch)
    assert response.status_code == 400, response.text
    assert (await lms.balance("maria"))["balance"] == 0


async def test_version_header_and_credentials(lms: ProgramClient) -> None:
    missing = await lms.request("POST", "/v1/sources/xapi/statements", json=statement(S1))
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "unsupported_xapi_version"
    old = await send(lms, statement(S1), headers={"X-Experience-API-Version": "0.95"})
    assert old.status_code == 400
    created = await lms.request(
        "POST", "/v1/programs/current/keys", json={"name": "LMS", "scopes": ["events:write"]}
    )
    assert created.status_code == 201, created.text
    key = created.json()
    basic = base64.b64encode(f"{key['id']}:{key['key']}".encode()).decode()
    ok = await lms.http.post(
        "/v1/sources/xapi/statements",
        json=statement(S1),
        headers={**VERSION, "Authorization": f"Basic {basic}"},
    )
    assert ok.status_code == 200, ok.text
    wrong_id = base64.b64encode(f"key_other:{key['key']}".encode()).decode()
    bad = await lms.http.post(
        "/v1/sources/xapi/statements",
        json=statement(S2),
        headers={**VERSION, "Authorization": f"Basic {wrong_id}"},
    )
    assert bad.status_code == 401
    garbage = await lms.http.post(
        "/v1/sources/xapi/statements",
        json=statement(S2),
        headers={**VERSION, "Authorization": "Basic !!!"},
    )
    assert garbage.status_code == 401
    read_only = await lms.request(
        "POST", "/v1/programs/current/keys", json={"name": "r", "scopes": ["read"]}
    )
    reader = await lms.http.post(
        "/v1/sources/xapi/statements",
        json=statement(S2),
        headers={**VERSION, "Authorization": f"Bearer {read_only.json()['key']}"},
    )
    assert reader.status_code == 403
    assert (await lms.balance("maria"))["balance"] == 30


async def test_the_about_resource(program: ProgramClient) -> None:
    response = await program.http.get("/v1/sources/xapi/about")
    assert response.json() == {"version": ["1.0.3"]}
