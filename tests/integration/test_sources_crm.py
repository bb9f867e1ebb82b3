"""CRM webhooks: the shipped HubSpot and Salesforce mappings with vendor-shaped payloads."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from rewards.sources.signatures import hubspot_v3
from rules import load_rules_file
from tests.conftest import Clock, ProgramClient

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "sources"
PAYLOADS = EXAMPLES / "payloads"
SECRET = "hubspot-client-secret-0001"
NOW = "2026-03-04T10:00:00+00:00"


def payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def test_every_shipped_source_example_loads() -> None:
    for path in EXAMPLES.glob("*.yaml"):
        rules = load_rules_file(path)
        assert rules.sources is not None, path


async def setup(program: ProgramClient, example: str, clock: Clock) -> ProgramClient:
    clock.set(NOW)
    response = await program.put_rules((EXAMPLES / example).read_text())
    assert response.status_code == 200, response.text
    return program


def hubspot_headers(
    program: ProgramClient, mapping: str, body: bytes, *, at_ms: int, secret: str = SECRET
) -> dict[str, str]:
    uri = f"http://rewards.test/v1/sources/crm/{mapping}"
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Request-Timestamp": str(at_ms),
        "X-HubSpot-Signature-v3": hubspot_v3(
            secret=secret, method="POST", uri=uri, body=body, timestamp=str(at_ms)
        ),
    }


def now_ms(clock: Clock) -> int:
    return int(clock().timestamp() * 1000)


@pytest.fixture
async def hubspot(program: ProgramClient, clock: Clock) -> ProgramClient:
    await setup(program, "hubspot_deals.yaml", clock)
    response = await program.request(
        "PUT",
        "/v1/programs/current/settings",
        json={"crm_webhook_secrets": {"hubspot_deals": SECRET, "hubspot_deal_deletions": SECRET}},
    )
    assert response.status_code == 200, response.text
    assert response.json()["crm_webhook_secrets_set"] is True
    # A number in the directory matches HubSpot's text id.
    await program.put_user("maria", name="Maria", attributes={"hubspot_owner_id": 48213367})
    return program


async def post(program: ProgramClient, mapping: str, body: bytes, headers: dict[str, str]) -> Any:
    return await program.request(
        "POST", f"/v1/sources/crm/{mapping}", content=body, headers=headers
    )


async def test_hubspot_closed_won_then_reopened_then_deleted(
    hubspot: ProgramClient, clock: Clock
) -> None:
    body = payload("hubspot_deal_closedwon.json")
    won = await post(
        hubspot,
        "hubspot_deals",
        body,
        hubspot_headers(hubspot, "hubspot_deals", body, at_ms=now_ms(clock)),
    )
    assert won.status_code == 200, won.text
    [result] = won.json()["results"]
    assert (result["id"], result["status"], result["points"]) == (
        "hubspot-deal-1234567890",
        "applied",
        50,
    )
    [entry] = (await hubspot.request("GET", "/v1/users/maria/ledger")).json()["entries"]
    assert entry["event_id"] == "hubspot-deal-1234567890"
    # HubSpot retries: the same deal is a duplicate.
    again = await post(
        hubspot,
        "hubspot_deals",
        body,
        hubspot_headers(hubspot, "hubspot_deals", body, at_ms=now_ms(clock)),
    )
    assert again.json()["results"][0]["status"] == "duplicate"
    assert (await hubspot.balance("maria"))["balance"] == 50
    # Reopened: the workflow sends the deal again with another stage.
    deal = json.loads(body)
    deal["properties"]["dealstage"]["value"] = "contractsent"
    reopened_body = json.dumps(deal).encode()
    reopened = await post(
        hubspot,
        "hubspot_deals",
        reopened_body,
        hubspot_headers(hubspot, "hubspot_deals", reopened_body, at_ms=now_ms(clock)),
    )
    assert reopened.json()["results"][0]["status"] == "retracted"
    assert (await hubspot.balance("maria"))["balance"] == 0
    # Deleted, from the app subscription: retracting twice changes nothing.
    deletions = payload("hubspot_deal_deletion.json")
    deleted = await post(
        hubspot,
        "hubspot_deal_deletions",
        deletions,
        hubspot_headers(hubspot, "hubspot_deal_deletions", deletions, at_ms=now_ms(clock)),
    )
    assert [r["status"] for r in deleted.json()["results"]] == ["retracted", "ignored"]
    assert (await hubspot.balance("maria"))["balance"] == 0
    kinds = [
        e["kind"]
        for e in (await hubspot.request("GET", "/v1/users/maria/ledger")).json()["entries"]
    ]
    assert kinds == ["retract", "earn"]


async def test_hubspot_signatures(hubspot: ProgramClient, clock: Clock) -> None:
    body = payload("hubspot_deal_closedwon.json")
    wrong = hubspot_headers(
        hubspot, "hubspot_deals", body, at_ms=now_ms(clock), secret="not-the-secret"
    )
    assert (await post(hubspot, "hubspot_deals", body, wrong)).status_code == 401
    stale = hubspot_headers(hubspot, "hubspot_deals", body, at_ms=now_ms(clock) - 301_000)
    response = await post(hubspot, "hubspot_deals", body, stale)
    assert response.status_code == 401 and response.json()["error"]["code"] == "bad_signature"
    other_mapping = hubspot_headers(hubspot, "hubspot_deal_deletions", body, at_ms=now_ms(clock))
    assert (await post(hubspot, "hubspot_deals", body, other_mapping)).status_code == 401
    tampered = hubspot_headers(hubspot, "hubspot_deals", body, at_ms=now_ms(clock))
    assert (
        await post(hubspot, "hubspot_deals", body.replace(b"12000", b"92000"), tampered)
    ).status_code == 401
    bare = await post(hubspot, "hubspot_deals", body, {"Content-Type": "application/json"})
    assert bare.status_code == 401
    assert (await hubspot.balance("maria"))["balance"] == 0


async def test_hubspot_unknown_owner_and_malformed_bodies(
    hubspot: ProgramClient, clock: Clock
) -> None:
    deal = json.loads(payload("hubspot_deal_closedwon.json"))
    deal["properties"]["hubspot_owner_id"]["value"] = "999"
    body = json.dumps(deal).encode()
    response = await post(
        hubspot,
        "hubspot_deals",
        body,
        hubspot_headers(hubspot, "hubspot_deals", body, at_ms=now_ms(clock)),
    )
    [result] = response.json()["results"]
    assert result["status"] == "rejected" and result["error"]["code"] == "unknown_user"
    del deal["properties"]["hubspot_owner_id"]
    body = json.dumps(deal).encode()
    response = await post(
        hubspot,
        "hubspot_deals",
        body,
        hubspot_headers(hubspot, "hubspot_deals", body, at_ms=now_ms(clock)),
    )
    assert response.json()["results"][0]["error"]["code"] == "invalid_record"
    body = b"{not json"
    response = await post(
        hubspot,
        "hubspot_deals",
        body,
        hubspot_headers(hubspot, "hubspot_deals", body, at_ms=now_ms(clock)),
    )
    assert response.status_code == 400
    unknown = await post(hubspot, "nope", b"{}", {"Content-Type": "application/json"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_mapping"
    assert (await hubspot.balance("maria"))["balance"] == 0


async def test_salesforce_won_opportunity_and_reopening(
    program: ProgramClient, clock: Clock
) -> None:
    sf = await setup(program, "salesforce_opportunities.yaml", clock)
    clock.set("2026-03-20T16:10:00+00:00")
    await sf.put_user("maria", email="maria.lopez@example.com")
    body = payload("salesforce_opportunity_won.json")
    headers = {"Content-Type": "application/json"}
    won = await post(sf, "salesforce_opportunities", body, headers)
    assert won.status_code == 200, won.text
    [result] = won.json()["results"]
    assert (result["status"], result["points"]) == ("applied", 150), result["error"]
    stored = json.loads(body)
    event = await sf.request("GET", "/v1/users/maria/ledger")
    assert {e["rule"] for e in event.json()["entries"]} == {"deal_closed", "big_deal"}
    stored["opportunity"]["StageName"] = "Negotiation/Review"
    stored["opportunity"]["IsWon"] = False
    reopened = await post(sf, "salesforce_opportunities", json.dumps(stored).encode(), headers)
    [retracted] = reopened.json()["results"]
    assert {
        key: retracted[key] for key in ("id", "status", "user_id", "points", "retracted_at")
    } == {
        "id": "sfdc-opp-0065g00000XyZabAAF",
        "status": "retracted",
        "user_id": "maria",
        "points": -150,
        "retracted_at": "2026-03-20T16:10:00Z",
    }
    assert (await sf.balance("maria"))["balance"] == 0
    task = {"change": "updated", "opportunity": {"attributes": {"type": "Task"}, "Id": "00T1"}}
    ignored = await post(sf, "salesforce_opportunities", json.dumps(task).encode(), headers)
    assert ignored.json()["results"][0]["status"] == "ignored"


HMAC_RULES = """\
version: 1
rules:
  - {id: won, event: crm.won, points: 10}
sources:
  crm:
    pipedrive:
      records: "data[]"
      id: "join('-', ['deal', to_string(id)])"
      type: "join('.', ['crm', status])"
      user: owner
      user_match: id
      time: won_time
      verify: {header: X-Signature, algorithm: sha256, encoding: hex, prefix: "sha256=", timestamp_header: X-Timestamp}
"""


async def test_a_configured_hmac_and_records_in_a_batch(
    program: ProgramClient, clock: Clock
) -> None:
    clock.set(NOW)
    assert (await program.put_rules(HMAC_RULES)).status_code == 200
    await program.request(
        "PUT",
        "/v1/programs/current/settings",
        json={"crm_webhook_secrets": {"pipedrive": "s3cret-s3cret"}},
    )
    await program.put_user("ann")
    body = json.dumps(
        {
            "data": [
                {"id": 1, "status": "won", "owner": "ann", "won_time": "2026-03-04T09:00:00Z"},
                {"id": 2, "status": "won", "owner": "ann", "won_time": "2026-03-04 09:30:00"},
                {"id": 3, "status": "lost", "owner": "ann", "won_time": None},
            ]
        }
    ).encode()
    timestamp = str(int(clock().timestamp()))
    digest = hmac.new(
        b"s3cret-s3cret", timestamp.encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Signature": "sha256=" + digest,
        "X-Timestamp": timestamp,
    }
    response = await post(program, "pipedrive", body, headers)
    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["results"]] == ["applied", "applied", "rejected"]
    assert response.json()["results"][2]["error"]["code"] == "unknown_event_type"
    assert (await program.balance("ann"))["balance"] == 20
    base64_digest = base64.b64encode(bytes.fromhex(digest)).decode()
    wrong_encoding = {**headers, "X-Signature": "sha256=" + base64_digest}
    assert (await post(program, "pipedrive", body, wrong_encoding)).status_code == 401
    old = str(int(clock().timestamp()) - 600)
    stale = hmac.new(b"s3cret-s3cret", old.encode() + b"." + body, hashlib.sha256).hexdigest()
    stale_headers = {**headers, "X-Timestamp": old, "X-Signature": "sha256=" + stale}
    assert (await post(program, "pipedrive", body, stale_headers)).status_code == 401


async def test_mapping_errors_name_the_line(program: ProgramClient) -> None:
    bad = HMAC_RULES.replace("user: owner", "user: 'owner[?'")
    response = await program.put_rules(bad)
    assert response.status_code == 422
    [detail] = response.json()["error"]["details"]
    assert detail["pointer"] == "/sources/crm/pipedrive/user"
    assert detail["line"] == 10 and detail["code"] == "invalid_expression"


WEIRD = [
    None,
    17,
    "text",
    [],
    [1, "two", None],
    {"data": "not a list"},
    {"data": [{"id": {"nested": 1}, "status": "won", "owner": "ann"}]},
    {"data": [{"id": 1, "status": ["won"], "owner": "ann"}]},
    {"data": [{"id": 1, "status": "won", "owner": ["ann"]}]},
    {"data": [{"id": 1, "status": "won", "owner": "ann", "won_time": "0001-01-01T00:00:00+01:00"}]},
    {"data": [{"id": 1, "status": "won", "owner": "ann", "won_time": 1e300}]},
    {"data": [{"id": 1, "status": "won", "owner": "ann", "won_time": True}]},
    {"data": [{"id": "x" * 500, "status": "won", "owner": "ann"}]},
    {"data": [{"id": 2, "status": "won" * 100, "owner": "ann"}]},
    {"data": [{"id": 3, "status": "won", "owner": "ann", "won_time": "2026-03-04T09:00:00Z"}] * 3},
]


@pytest.mark.parametrize("body", WEIRD, ids=range(len(WEIRD)))
async def test_odd_payloads_never_fail_the_server(
    program: ProgramClient, clock: Clock, body: object
) -> None:
    clock.set(NOW)
    unsigned = HMAC_RULES.replace(
        '      verify: {header: X-Signature, algorithm: sha256, encoding: hex, prefix: "sha256=", timestamp_header: X-Timestamp}\n',
        "",
    )
    assert (await program.put_rules(unsigned)).status_code == 200
    await program.put_user("ann")
    response = await program.request(
        "POST",
        "/v1/sources/crm/pipedrive",
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        statuses = [r["status"] for r in response.json()["results"]]
        assert set(statuses) <= {"applied", "duplicate", "rejected", "ignored"}
