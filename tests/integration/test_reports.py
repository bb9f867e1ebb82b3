"""Reports: the rewards list (cursor pages, filters, the per-card CSV) and rewards by user
and year, on rewards paid through the sandbox over HTTP with an FX conversion."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from rewards.runtime import Runtime
from rewards.services.fulfilment import fulfil
from rewards.services.tracking import reconcile
from tests.conftest import event
from tests.integration.test_fulfilment import World, connect, rewards_of, webhooks_processed
from tests.integration.test_fulfilment import world as world_fixture

world = world_fixture


async def paid_world(world: World, runtime: Runtime) -> list[dict[str, Any]]:
    """Ann earns two rewards and redeems one (two cards), Bob earns one; the wallet is
    in USD, so GIFQ converts each GBP 25.00 at its rate and charges an FX fee."""
    # With a callback URL each order's body names its reward; without one, GIFQ's
    # body dedup would make Ann's two identical orders one.
    await connect(world, callback=True)
    response = await world.program.request(
        "PUT", "/v1/programs/current/settings", json={"wallet_currency": "USD"}
    )
    assert response.status_code == 200, response.text
    await world.program.put_user("bob", name="=Bob", email="bob@example.com")
    await world.program.post_events(*(event(f"a{n}", "ann") for n in range(4)))
    await world.program.post_events(event("b1", "bob"), event("b2", "bob"))
    listed = (await world.program.request("GET", "/v1/rewards")).json()["rewards"]
    for reward in listed:
        assert await fulfil(runtime, reward["id"]) == "submitted"
    first = min(r["id"] for r in await rewards_of(world.program))
    [anns] = [r for r in await rewards_of(world.program) if r["id"] == first]
    order = await world.sandbox.control.order(anns["gifq_order_id"])
    recipient = order["recipients"][0]["id"]
    await world.sandbox.control.redeem(recipient, brand="amazon-uk", amount="10.00")
    await world.sandbox.control.redeem(recipient, brand="deliveroo-uk")
    await world.sandbox.control.flush_webhooks()
    await webhooks_processed(runtime, world.program.id)
    await reconcile(runtime, program_id=world.program.id)
    return list((await world.program.request("GET", "/v1/rewards")).json()["rewards"])


def parse_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_the_rewards_list_pages_filters_and_exports_one_line_per_card(
    world: World, runtime: Runtime
) -> None:
    rewards = await paid_world(world, runtime)
    assert len(rewards) == 3
    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = (await world.program.request("GET", "/v1/rewards", params=params)).json()
        pages.append([r["id"] for r in body["rewards"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == [[r["id"] for r in rewards[:2]], [rewards[2]["id"]]]

    async def ids(**params: Any) -> list[int]:
        response = await world.program.request("GET", "/v1/rewards", params=params)
        assert response.status_code == 200, response.text
        return [r["id"] for r in response.json()["rewards"]]

    redeemed = [r["id"] for r in rewards if r["status"] == "redeemed"]
    assert len(redeemed) == 1
    assert await ids(status="redeemed") == redeemed
    assert await ids(user_id="bob") == [r["id"] for r in rewards if r["user_id"] == "bob"]
    assert await ids(campaign_id=world.sandbox.gift_card_campaign_id) == [r["id"] for r in rewards]
    assert await ids(campaign_id=world.sandbox.crypto_campaign_id) == []
    now = datetime.now(UTC)
    hour = timedelta(hours=1)
    assert await ids(**{"from": (now - hour).isoformat(), "to": (now + hour).isoformat()}) == [
        r["id"] for r in rewards
    ]
    assert await ids(**{"from": (now + hour).isoformat()}) == []
    for bad in (
        {"cursor": "nope"},
        {"status": "lost"},
        {"limit": 0},
        {"from": now.isoformat(), "to": (now - hour).isoformat()},
    ):
        response = await world.program.request("GET", "/v1/rewards", params=bad)
        assert response.status_code == 422, (bad, response.text)

    response = await world.program.request("GET", "/v1/rewards", headers={"Accept": "text/csv"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    lines = parse_csv(response.text)
    [redeemed_reward] = [r for r in rewards if r["status"] == "redeemed"]
    cards = [line for line in lines if line["reward_id"] == str(redeemed_reward["id"])]
    assert sorted((c["brand"], c["card_amount"], c["card_currency"]) for c in cards) == [
        ("amazon-uk", "10.00", "GBP"),
        ("deliveroo-uk", "15.00", "GBP"),
    ]
    for line in lines:
        assert (line["face_amount"], line["face_currency"]) == ("25.00", "GBP")
        assert (line["wallet_amount"], line["wallet_currency"]) == ("31.25", "USD")
        assert line["fx_fee_amount"] == "0.78"
        assert line["gifq_order_id"] and line["gifq_request_id"].startswith("req_")
    # Two cards for one reward, one line each for the others: four lines.
    assert len(lines) == 4
    assert [line["reward_id"] for line in lines] == sorted(
        (line["reward_id"] for line in lines), key=int
    )
    only_bob = await world.program.request(
        "GET", "/v1/rewards", params={"user_id": "bob", "format": "csv"}
    )
    assert {line["user_id"] for line in parse_csv(only_bob.text)} == {"bob"}


async def test_rewards_by_user_gives_face_and_converted_values_per_year(
    world: World, runtime: Runtime
) -> None:
    await paid_world(world, runtime)
    year = datetime.now(UTC).year
    response = await world.program.request(
        "GET", "/v1/reports/rewards-by-user", params={"year": year}
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["year"] == year
    people = {person["user_id"]: person for person in report["users"]}
    assert people["ann"]["rewards"] == 2 and people["bob"]["rewards"] == 1
    [ann] = people["ann"]["by_currency"]
    assert (ann["face_currency"], ann["face_value"]) == ("GBP", "50.00")
    assert (ann["wallet_currency"], ann["converted_value"], ann["fx_fees"]) == (
        "USD",
        "62.50",
        "1.56",
    )
    csv_response = await world.program.request(
        "GET",
        "/v1/reports/rewards-by-user",
        params={"year": year},
        headers={"Accept": "text/csv"},
    )
    lines = parse_csv(csv_response.text)
    assert [(line["user_id"], line["face_value"], line["converted_value"]) for line in lines] == [
        ("ann", "50.00", "62.50"),
        ("bob", "25.00", "31.25"),
    ]
    assert lines[1]["name"] == "'=Bob"  # no spreadsheet formula from a user's name
    empty = await world.program.request(
        "GET", "/v1/reports/rewards-by-user", params={"year": year - 1}
    )
    assert empty.json()["users"] == []
    for bad in ("1999", "20x6"):
        response = await world.program.request(
            "GET", "/v1/reports/rewards-by-user", params={"year": bad}
        )
        assert response.status_code == 422
