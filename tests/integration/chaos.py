"""The chaos test's world and its actors (``test_chaos.py`` runs the scenario).

- the load: a seeded plan of events with duplicates, posted singly and in batches;
- ``rewards worker`` subprocesses on the test's database, Redis and key prefix;
- the recipients, who redeem, partly redeem or open their links in the GIFQ sandbox;
- a forger posting webhooks GIFQ never signed;
- readers of the state on both sides: the rewards, GIFQ's orders, arq's keys.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import sys
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

import httpx
from redis.asyncio import Redis
from sqlalchemy import select

from rewards.db.reward_models import Reward
from rewards.gifq.webhooks import HmacSha256TimestampScheme
from rewards.runtime import Runtime
from rewards.settings import Settings
from sandbox.server import SandboxHandle
from tests.conftest import PLATFORM_KEY

USERS = 100
EVENTS_PER_USER = (6, 22)  # inclusive range
POINTS = {"lms.course_completed": 30, "crm.deal_closed": 70}
EVERY = 300  # the threshold: a reward each time lifetime points pass a multiple of this
AMOUNT = Decimal("25.00")
DUPLICATE_SHARE = 0.2  # of the unique events, sent once more: a third raced, the rest later
BATCH_SHARE = 0.4  # of the postings, batches of 5 to 60 events rather than single events
CLIENTS = 12  # concurrent HTTP clients posting events
FORGED = 30  # forged webhooks, each naming an untouched recipient as redeemed
REPLAYED = 10  # per pass: signed, stale webhooks, each sent twice with one delivery id
REPO = Path(__file__).resolve().parents[2]


def rules(campaign_id: str) -> str:
    return f"""\
version: 1
rules:
  - id: course
    event: lms.course_completed
    points: {POINTS["lms.course_completed"]}
  - id: deal
    event: crm.deal_closed
    points: {POINTS["crm.deal_closed"]}
thresholds:
  - id: card
    every: {EVERY}
    reward: {{amount: "{AMOUNT}", currency: GBP}}
    payout_type: gift_cards
    campaign_id: {campaign_id}
"""


# ---- the load: events, duplicates, singles and batches (pure, seeded) ---------------------


@dataclass(frozen=True)
class Posting:
    """One request to ``POST /v1/events``; a twin is sent twice at the same moment."""

    events: tuple[dict[str, Any], ...]
    twin: bool = False

    def body(self) -> dict[str, Any]:
        return self.events[0] if len(self.events) == 1 else {"events": list(self.events)}


@dataclass(frozen=True)
class Load:
    users: tuple[str, ...]
    events: tuple[dict[str, Any], ...]  # each unique event once
    postings: tuple[Posting, ...]

    @property
    def sent(self) -> int:
        """Events sent in all, duplicates included."""
        return sum(len(p.events) * (2 if p.twin else 1) for p in self.postings)

    def lifetime(self) -> dict[str, int]:
        earned = dict.fromkeys(self.users, 0)
        for event in self.events:
            earned[event["user_id"]] += POINTS[event["type"]]
        return earned

    def expected_rewards(self) -> set[tuple[str, int]]:
        """(user, level): a level is the lifetime points at which it is reached."""
        return {
            (user, EVERY * n)
            for user, points in self.lifetime().items()
            for n in range(1, points // EVERY + 1)
        }


def make_load(seed: int) -> Load:
    dice = random.Random(seed)
    users = tuple(f"u{n:03d}" for n in range(USERS))
    events = tuple(
        {
            "id": f"{user}-e{n:02d}",
            "type": dice.choice(sorted(POINTS)),
            "user_id": user,
            "occurred_at": f"2026-03-02T{dice.randrange(8, 18):02d}:{dice.randrange(60):02d}:00Z",
        }
        for user in users
        for n in range(dice.randint(*EVENTS_PER_USER))
    )
    sends = list(events)
    resent = dice.sample(events, int(len(events) * DUPLICATE_SHARE))
    raced = [Posting((event,), twin=True) for event in resent[::3]]
    sends += [event for n, event in enumerate(resent) if n % 3]  # later, singly or in a batch
    dice.shuffle(sends)
    postings: list[Posting] = []
    while sends:
        size = dice.randint(5, 60) if dice.random() < BATCH_SHARE else 1
        postings.append(Posting(tuple(sends[:size])))
        del sends[:size]
    batches = [p for p in postings if len(p.events) > 1]
    postings += [Posting(p.events, twin=True) for p in dice.sample(batches, 5)]  # whole batches
    postings += raced
    dice.shuffle(postings)
    return Load(users, events, tuple(postings))


def intent(user_id: str, level: int) -> str:
    """What the recipient of a reward does: the same on every run and backend."""
    roll = zlib.crc32(f"{user_id}/{level}".encode()) % 100
    if roll < 40:
        return "redeem"
    if roll < 55:
        return "partial"
    if roll < 70:
        return "view"
    return "none"


RECIPIENT_STATUS = {"redeem": "redeemed", "partial": "partially_redeemed", "view": "viewed"}


# ---- the worker processes ----------------------------------------------------------------


def open_log(path: Path) -> IO[bytes]:
    return path.open("ab")


@dataclass
class WorkerProcesses:
    """``rewards worker`` subprocesses on the test's database, Redis and key prefix."""

    settings: Settings
    log: Path
    running: list[asyncio.subprocess.Process] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        assert self.settings.redis_url is not None
        return {
            **os.environ,
            "REWARDS_DATABASE_URL": self.settings.effective_database_url,
            "REWARDS_REDIS_URL": self.settings.redis_url,
            "REWARDS_REDIS_PREFIX": self.settings.redis_prefix,
            "REWARDS_DATA_DIR": str(self.settings.data_dir),
            "REWARDS_PLATFORM_KEY": PLATFORM_KEY,
        }

    async def start(self) -> asyncio.subprocess.Process:
        with open_log(self.log) as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "rewards.cli",
                "worker",
                env=self.env(),
                cwd=REPO,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        self.running.append(process)
        return process

    async def kill(self, process: asyncio.subprocess.Process) -> None:
        process.send_signal(signal.SIGKILL)
        await process.wait()
        self.running.remove(process)

    async def stop_all(self) -> None:
        for process in list(self.running):
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 15)
                except TimeoutError:
                    process.kill()
                    await process.wait()
            self.running.remove(process)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def failed_jobs(self) -> tuple[list[str], int]:
        """Jobs that raised, from arq's log lines, and how many were arq's own KeyError on
        a job id run twice at once in one worker (a flushed Redis loses the in-progress
        marker that prevents it); the engine must cope with the double run, and does."""
        failures = re.findall(r"! (\S+?):\w+ failed, (\w+): (.*)", self.output())
        doubled = [f for f in failures if f[1] == "KeyError" and f[2] == repr(f[0])]
        return [" ".join(f) for f in failures if f not in doubled], len(doubled)


# ---- reading state back ------------------------------------------------------------------


async def rewards_of(runtime: Runtime, program_id: str) -> list[Reward]:
    async with runtime.sessions() as session:
        return list(
            await session.scalars(
                select(Reward).where(Reward.program_id == program_id).order_by(Reward.id)
            )
        )


async def sandbox_orders(sandbox: SandboxHandle) -> list[dict[str, Any]]:
    """Every order of the gift-card campaign, page by page (faults must be off)."""
    orders: list[dict[str, Any]] = []
    async with sandbox.api_client(timeout=30) as api:
        page = 1
        while True:
            response = await api.get(
                "/api/payout-orders",
                params={"campaign_id": sandbox.gift_card_campaign_id, "page": page, "limit": 20},
            )
            assert response.status_code == 200, response.text
            orders += response.json()
            if page >= int(response.headers["total-pages"]):
                return orders
            page += 1


def reward_marker(order: dict[str, Any]) -> int | None:
    """The reward an order pays, from the ``?reward=<id>`` marker in its callback URL."""
    values = parse_qs(urlsplit(order.get("callback_url") or "").query).get("reward")
    return int(values[0]) if values else None


async def arq_keys(redis: Redis, job_id: str) -> list[str]:
    """Which of arq's keys exist for a reward's job id (to explain a reward left behind)."""
    found = []
    for prefix in ("job", "in-progress", "retry", "result"):
        key = f"arq:{prefix}:{job_id}"
        if await redis.exists(key):
            found.append(f"{key} (ttl {await redis.ttl(key)} s)")
    return found


# ---- the recipients and the forger -------------------------------------------------------


@dataclass
class Recipients:
    """Plays each recipient's intent once their order exists; a 409 (the link is not
    sent yet) means try again on the next pass."""

    sandbox: SandboxHandle
    done: set[int] = field(default_factory=set)
    actions: Counter[str] = field(default_factory=Counter)

    def waiting(self, rewards: list[Reward]) -> list[Reward]:
        return [
            r
            for r in rewards
            if r.recipient_id and r.id not in self.done and intent(r.user_id, r.level) != "none"
        ]

    async def act(self, reward: Reward) -> None:
        control, recipient = self.sandbox.control, str(reward.recipient_id)
        action = intent(reward.user_id, reward.level)
        try:
            if action == "redeem":
                await control.redeem(recipient, brand="amazon-uk")
            elif action == "partial":
                await control.redeem(recipient, brand="amazon-uk", amount="10.00")
            else:
                await control.view(recipient)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 409:
                return
            raise
        except httpx.TransportError:
            return  # the sandbox's injected faults cut this connection: try again next round
        self.done.add(reward.id)
        self.actions[action] += 1

    async def play(self, rewards: list[Reward]) -> None:
        gate = asyncio.Semaphore(8)

        async def one(reward: Reward) -> None:
            async with gate:
                await self.act(reward)

        await asyncio.gather(*(one(r) for r in self.waiting(rewards)))


FORGERIES = ("wrong_secret", "stale", "other_body", "unsigned")


def forged_headers(kind: str, secret: str, body: bytes) -> dict[str, str]:
    scheme, now = HmacSha256TimestampScheme(), int(time.time())
    headers = {"Content-Type": "application/json"}
    if kind == "wrong_secret":
        headers["X-Gifq-Signature"] = scheme.sign(secret="whsec_forged", body=body, timestamp=now)
    elif kind == "stale":
        headers["X-Gifq-Signature"] = scheme.sign(secret=secret, body=body, timestamp=now - 3600)
    elif kind == "other_body":
        headers["X-Gifq-Signature"] = scheme.sign(secret=secret, body=b"{}", timestamp=now)
    return headers  # "unsigned": no signature at all


def documented(order_id: str | None, status: str) -> bytes:
    """A webhook body exactly as GIFQ documents it."""
    event = (
        "payout.terminal_state" if status in ("redeemed", "expired") else "payout.status_changed"
    )
    return json.dumps({"event": event, "payout_order_uuid": order_id, "status": status}).encode()


async def forge(url: str, secret: str, rewards: list[Reward], sent: dict[int, int]) -> None:
    """Claim that untouched recipients redeemed, without GIFQ's signature; keep the answers."""
    targets = [
        r
        for r in rewards
        if r.recipient_id and r.id not in sent and intent(r.user_id, r.level) == "none"
    ][: FORGED - len(sent)]
    async with httpx.AsyncClient(timeout=30) as http:
        for reward in targets:
            body = documented(reward.gifq_order_id, "redeemed")
            kind = FORGERIES[len(sent) % len(FORGERIES)]
            headers = {
                **forged_headers(kind, secret, body),
                "X-Gifq-Delivery": f"forged-{reward.id}",
            }
            response = await http.post(url, content=body, headers=headers)
            sent[reward.id] = response.status_code


async def replay(url: str, secret: str, rewards: list[Reward], answers: Counter[str]) -> None:
    """Correctly signed, documented webhooks that are late and repeated: a stale ``sent``
    for recipients who acted, each delivered twice with one ``X-Gifq-Delivery``. They may
    only cause a fetch; the status comes from GIFQ."""
    targets = [
        r
        for r in rewards
        if r.gifq_order_id and intent(r.user_id, r.level) != "none" and r.id % 7 == 0
    ][:REPLAYED]
    scheme = HmacSha256TimestampScheme()
    async with httpx.AsyncClient(timeout=30) as http:
        for reward in targets:
            body, delivery = documented(reward.gifq_order_id, "sent"), f"replay-{uuid.uuid4()}"
            for _ in range(2):
                headers = {
                    "Content-Type": "application/json",
                    "X-Gifq-Event": "payout.status_changed",
                    "X-Gifq-Delivery": delivery,
                    "X-Gifq-Signature": scheme.sign(
                        secret=secret, body=body, timestamp=int(time.time())
                    ),
                }
                response = await http.post(url, content=body, headers=headers)
                answers[f"{response.status_code} {response.json().get('status')}"] += 1


# ---- the run's bookkeeping -----------------------------------------------------------------------------


@dataclass
class Chaos:
    """What happened during the run, for the assertions and the failure messages."""

    killed_in_flight: int = 0
    flushed_queued: int = 0
    flushed_in_flight: int = 0
    results: Counter[str] = field(default_factory=Counter)
    applied: Counter[str] = field(default_factory=Counter, repr=False)
    engine_errors: list[str] = field(default_factory=list)
    forged: dict[int, int] = field(default_factory=dict, repr=False)
    replayed: Counter[str] = field(default_factory=Counter)
    rounds: int = 0
    timings: dict[str, float] = field(default_factory=dict)


async def post_all(
    http: httpx.AsyncClient, load: Load, chaos: Chaos, progress: Callable[[], None]
) -> None:
    """Post the load from ``CLIENTS`` concurrent clients, twins twice at once."""
    queue: asyncio.Queue[Posting] = asyncio.Queue()
    for posting in load.postings:
        queue.put_nowait(posting)

    async def send(posting: Posting) -> None:
        for attempt in range(3):
            try:
                response = await http.post("/v1/events", json=posting.body())
                break
            except httpx.TransportError:
                # A dropped connection (a pooled one the server closed as it was reused):
                # an integrator sends the same events again; their ids make that safe.
                if attempt == 2:
                    raise
        if response.status_code != 200:
            chaos.engine_errors.append(f"POST /v1/events {response.status_code}: {response.text}")
            return
        for result in response.json()["results"]:
            chaos.results[result["status"]] += 1
            if result["status"] == "applied":
                chaos.applied[result["id"]] += 1

    async def client() -> None:
        while not queue.empty():
            posting = queue.get_nowait()
            await asyncio.gather(*(send(posting) for _ in range(2 if posting.twin else 1)))
            progress()

    await asyncio.gather(*(client() for _ in range(CLIENTS)))


async def until(
    condition: Callable[[], bool | Awaitable[bool]], *, within: float, what: str
) -> None:
    deadline = time.monotonic() + within
    while True:
        outcome = condition()
        if outcome if isinstance(outcome, bool) else await outcome:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def unsettled(
    rewards: list[Reward],
    expected: set[tuple[str, int]],
    truth: dict[int | None, dict[str, Any]],
    recipients: Recipients,
) -> list[str]:
    """What has not settled yet (empty when everything has)."""
    problems = []
    made = {(r.user_id, r.level) for r in rewards}
    if made != expected:
        problems.append(
            f"missing {sorted(expected - made)[:5]}, extra {sorted(made - expected)[:5]}"
        )
    for r in rewards:
        order = truth.get(r.id)
        if r.status not in ("submitted", "redeemed"):
            problems.append(f"reward {r.id} is {r.status} ({r.status_reason})")
        elif order is None:
            problems.append(f"reward {r.id} is {r.status} with no order")
        elif r.recipient_status != order["recipients"][0]["status"]:
            problems.append(
                f"reward {r.id}: recipient {r.recipient_status}, GIFQ says"
                f" {order['recipients'][0]['status']}"
            )
        elif r.id not in recipients.done and intent(r.user_id, r.level) != "none":
            problems.append(f"reward {r.id}: its recipient has not acted yet")
    return problems
