"""Boards heal themselves: a program whose boards Redis lost is rebuilt by the worker's
cron, and reads say ``rebuilding`` meanwhile. Real database and Redis throughout."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import httpx
from arq.cron import CronJob
from redis.asyncio import Redis
from sqlalchemy import select

from api.app import create_app
from bench.common import free_port
from rewards.db.leaderboard_models import LeaderboardGeneration
from rewards.leaderboards import healing, outbox
from rewards.leaderboards.keys import program_keys
from rewards.runtime import Runtime
from tests.conftest import PLATFORM_KEY, Clock, ProgramClient
from tests.integration.test_leaderboards import RULES, dump, earn, wipe
from workers import worker


async def setup(program: ProgramClient, clock: Clock) -> None:
    clock.set("2026-03-18T12:00:00+00:00")
    assert (await program.put_rules(RULES)).status_code == 200
    for user, name, department in (("ann", "Ann", "sales"), ("bob", "Bob", "sales")):
        await program.put_user(user, name=name, department=department)
    await program.put_user("cy", name="Cy", department="marketing", leaderboard_opt_out=True)
    await earn(program, clock, "ann", 30, "2026-03-16T09:00:00+00:00")
    await earn(program, clock, "bob", 50, "2026-03-17T09:00:00+00:00")
    await earn(program, clock, "cy", 70, "2026-03-17T10:00:00+00:00")
    await earn(program, clock, "ann", 40, "2026-03-18T10:00:00+00:00")
    await outbox.wait_for_deliveries()


async def reads(program: ProgramClient) -> dict[str, Any]:
    """What a user of the API sees: a page, around-me and someone's ranks."""
    out = {}
    for path in (
        "/v1/leaderboards/global?period=week",
        "/v1/leaderboards/department:sales",
        "/v1/leaderboards/global/around/bob?k=1",
        "/v1/users/ann/ranks",
    ):
        response = await program.request("GET", path)
        assert response.status_code == 200, response.text
        out[path] = response.json()
    return out


def without_flag(seen: dict[str, Any]) -> dict[str, Any]:
    return {path: {**body, "rebuilding": None} for path, body in seen.items()}


async def generation_in_database(runtime: Runtime, program_id: str) -> str | None:
    async with runtime.sessions() as session:
        return await session.scalar(
            select(LeaderboardGeneration.generation).where(
                LeaderboardGeneration.program_id == program_id
            )
        )


async def test_a_new_program_has_a_generation_and_nothing_to_heal(
    program: ProgramClient, runtime: Runtime
) -> None:
    keys = program_keys(runtime, program.id)
    marker = await runtime.redis.get(keys.generation)
    assert marker is not None and marker.decode() == await generation_in_database(
        runtime, program.id
    )
    assert await healing.stale_programs(runtime, [program.id]) == []
    page = (await program.request("GET", "/v1/leaderboards/global")).json()
    assert page["rebuilding"] is False


async def test_boards_lost_from_redis_read_as_before_after_the_cron(
    program: ProgramClient, clock: Clock, runtime: Runtime
) -> None:
    await setup(program, clock)
    before = await reads(program)
    assert all(body["rebuilding"] is False for body in before.values())
    assert [e["user_id"] for e in before["/v1/leaderboards/department:sales"]["entries"]] == [
        "ann",
        "bob",
    ]
    boards = await dump(runtime, program.id)
    generation = await generation_in_database(runtime, program.id)

    # Redis loses every key of the program (what FLUSHDB does to it).
    await wipe(runtime, program.id)
    lost = await reads(program)
    assert all(body["rebuilding"] is True for body in lost.values())
    assert lost["/v1/leaderboards/department:sales"]["entries"] == []
    assert await healing.stale_programs(runtime, [program.id]) == [program.id]

    # The worker's cron notices and rebuilds; no command is run.
    report = await healing.heal(runtime, [program.id])
    assert [r.program_id for r in report.rebuilt] == [program.id]
    assert await reads(program) == before
    assert await dump(runtime, program.id) == boards
    new = await generation_in_database(runtime, program.id)
    assert new != generation
    assert (await runtime.redis.get(program_keys(runtime, program.id).generation)) == new.encode()
    # Healed: the next run has nothing to do.
    assert (await healing.heal(runtime, [program.id])).rebuilt == []


async def test_a_different_generation_in_redis_is_rebuilt_too(
    program: ProgramClient, clock: Clock, runtime: Runtime
) -> None:
    """Redis restored from an older copy: boards and marker present, but not the database's."""
    await setup(program, clock)
    before = await reads(program)
    keys = program_keys(runtime, program.id)
    await runtime.redis.set(keys.generation, "0" * 32)
    await runtime.redis.delete(keys.board("all", "global"))  # the older copy missed points
    assert await healing.stale_programs(runtime, [program.id]) == [program.id]
    await healing.heal(runtime, [program.id])
    assert await reads(program) == before


async def test_reads_say_rebuilding_while_a_rebuild_holds_the_boards(
    program: ProgramClient, clock: Clock, runtime: Runtime
) -> None:
    await setup(program, clock)
    before = await reads(program)
    keys = program_keys(runtime, program.id)
    await runtime.redis.set(keys.rebuilding, "someone-else", px=60_000)
    try:
        during = await reads(program)
        assert all(body["rebuilding"] is True for body in during.values())
        assert without_flag(during) == without_flag(before)
        # A heal run meanwhile leaves the running rebuild alone.
        await runtime.redis.delete(keys.generation)
        report = await healing.heal(runtime, [program.id])
        assert (report.rebuilt, report.busy) == ([], [program.id])
    finally:
        await runtime.redis.delete(keys.rebuilding)
    await healing.heal(runtime, [program.id])
    assert await reads(program) == before


async def test_the_worker_runs_the_heal_every_minute_and_at_startup(runtime: Runtime) -> None:
    [job] = [j for j in worker.cron_jobs("rw") if j.coroutine is worker.leaderboards_heal]
    assert isinstance(job, CronJob)
    assert job.run_at_startup and job.unique
    assert (job.minute, job.second) == (None, 0)  # every minute, on the minute
    assert worker.leaderboards_heal in worker.FUNCTIONS


async def test_a_program_created_while_redis_is_down_gets_its_marker_from_the_heal(
    runtime: Runtime,
) -> None:
    down = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    app = create_app(runtime.settings, runtime=dataclasses.replace(runtime, redis=down))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    program_id = f"down-{uuid.uuid4().hex[:8]}"
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://rewards.test") as http:
            response = await http.post(
                "/v1/programs",
                json={"id": program_id, "name": "Down"},
                headers={"Authorization": f"Bearer {PLATFORM_KEY}"},
            )
    finally:
        await down.aclose()
    assert response.status_code == 201, response.text
    assert await healing.stale_programs(runtime, [program_id]) == [program_id]
    await healing.heal(runtime, [program_id])
    assert await healing.stale_programs(runtime, [program_id]) == []


async def test_an_upgrade_from_keys_without_hash_tags_heals_itself(
    program: ProgramClient, clock: Clock, runtime: Runtime
) -> None:
    """Boards written before the keys carried a hash tag (``<prefix>:lb:<program>:…``) are
    not read any more: the marker is missing under the new names, so the heal rebuilds
    them from the database, and reads are as before."""
    await setup(program, clock)
    before = await reads(program)
    keys = program_keys(runtime, program.id)
    old_base = f"{runtime.settings.redis_prefix}:lb:{program.id}"
    # Move every key to its old name, one key at a time (a cluster cannot RENAME across slots).
    async for key in runtime.redis.scan_iter(match=keys.pattern):
        old = old_base + key.decode().removeprefix(keys.base)
        await runtime.redis.restore(old, 0, await runtime.redis.dump(key), replace=True)
        await runtime.redis.unlink(key)
    assert await healing.stale_programs(runtime, [program.id]) == [program.id]
    assert all(body["rebuilding"] is True for body in (await reads(program)).values())
    await healing.heal(runtime, [program.id])
    assert await reads(program) == before
    async for old in runtime.redis.scan_iter(match=f"{old_base}:*"):
        await runtime.redis.unlink(old)
