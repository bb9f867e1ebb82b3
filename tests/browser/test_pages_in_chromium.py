"""The pages in a real browser (issue 16): Debian's headless Chromium driven by Playwright,
against ``rewards demo --serve`` (a real server, worker and GIFQ sandbox with a scaled-down
month of demo data).

* ``/app/me`` opens from a person's link, shows the boards, and the rank changes without a
  reload when an event posted through the API moves the person up (Server-Sent Events);
* ``/app/admin`` signs in with the admin key, approves the reward that waits for an admin,
  and the reward goes out to GIFQ.

Screenshots of both pages go to ``$REWARDS_ARTIFACTS`` (default ``tests/browser/artifacts/``).
Chromium is ``/usr/bin/chromium`` (``apt-get install chromium``; ``.ci/run`` installs it);
Playwright never downloads a browser here. With ``CI=true`` a missing Chromium fails.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEMO_SECONDS = 300
STAR_AWARD = 1400  # points: past examples/demo's star award (at 1,200, over the approval limit)
ARTIFACTS = Path(os.environ.get("REWARDS_ARTIFACTS") or Path(__file__).parent / "artifacts")

if sys.platform == "win32":  # pragma: no cover
    pytest.skip("POSIX signals", allow_module_level=True)
if not CHROMIUM.exists():
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs {CHROMIUM} (apt-get install chromium)", pytrace=False)
    pytest.skip(
        f"no {CHROMIUM}: `apt-get install chromium` to run the browser tests",
        allow_module_level=True,
    )

from playwright.async_api import Browser, Page, async_playwright, expect  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Demo:
    base: str
    me_link: str
    admin_key: str
    featured: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """``rewards demo --serve``, scaled down, left running for the module; stopped with
    Ctrl-C (SIGINT), which stops its server, worker and sandbox in order."""
    data_dir = tmp_path_factory.mktemp("browser-demo")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REWARDS_DATABASE_URL", "REWARDS_REDIS_URL")
    }
    env["REWARDS_DATA_DIR"] = str(data_dir)
    port = free_port()
    command = [sys.executable, "-m", "rewards.cli", "demo", "--people", "40", "--days", "21"]
    command += ["--port", str(port), "--sandbox-port", str(free_port()), "--serve"]
    log = (data_dir / "demo-output.log").open("wb")
    process = subprocess.Popen(
        command,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        # Ctrl-C stops the demo: make sure it hears SIGINT even if this runs in a background job.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    summary_path = data_dir / "demo" / "demo-summary.json"
    try:
        deadline = time.monotonic() + DEMO_SECONDS
        while not summary_path.exists():
            assert process.poll() is None, (data_dir / "demo-output.log").read_text()[-4000:]
            assert time.monotonic() < deadline, "the demo did not finish in time"
            time.sleep(0.5)
        time.sleep(0.5)  # the summary is written in one go; let it land
        summary = json.loads(summary_path.read_text())
        stored = json.loads((data_dir / "demo" / "demo-program.json").read_text())
        base = f"http://127.0.0.1:{port}"
        link: str = summary["pages"]["me"]
        featured = link_user(link)
        yield Demo(base=base, me_link=link, admin_key=stored["key"], featured=featured)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def link_user(link: str) -> str:
    import jwt

    token = link.split("token=", 1)[1]
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        found = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield found
        finally:
            await found.close()


async def new_page(browser: Browser, *, width: int = 1280, height: int = 900) -> Page:
    context = await browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(60_000)  # a busy 2-core machine
    return await context.new_page()


def shot(name: str) -> str:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return str(ARTIFACTS / name)


def api(demo: Demo) -> httpx.Client:
    return httpx.Client(
        base_url=demo.base, headers={"Authorization": f"Bearer {demo.admin_key}"}, timeout=30
    )


def anniversaries(demo: Demo, count: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC).replace(microsecond=0)
    return [
        {
            "id": f"browser-{uuid.uuid4().hex}-{index}",
            "type": "hris.work_anniversary",
            "user_id": demo.featured,
            "occurred_at": now.isoformat(),
        }
        for index in range(count)
    ]


async def test_my_page_shows_my_board_and_my_rank_moves_live(demo: Demo, browser: Browser) -> None:
    page = await new_page(browser)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(f"{message.type}: {message.text}"))
    await page.goto(demo.me_link)
    assert page.url == f"{demo.base}/app/me"  # the token left the address bar
    await expect(page.locator("h1")).to_contain_text("Hi ")
    board = page.locator('.board[data-board="global"]')
    await expect(board.locator("ol.ranks li.me")).to_have_count(1)
    await expect(page.locator("#live")).to_be_visible(timeout=10_000)  # the stream is open
    await page.screenshot(path=shot("me.png"))
    await page.screenshot(path=shot("me-full.png"), full_page=True)
    phone = await new_page(browser, width=390, height=844)
    await phone.goto(demo.me_link)
    await phone.screenshot(path=shot("me-phone.png"), full_page=False)
    await phone.close()

    before = int(await board.locator(".my-rank").inner_text())
    assert before > 1
    with api(demo) as client:
        top = client.get("/v1/leaderboards/global", params={"limit": 1}).json()["entries"][0]
        mine = client.get(f"/v1/leaderboards/global/around/{demo.featured}", params={"k": 0})
        # To the top, and past the star award's 1,200 points (a reward for an admin to approve).
        needed = max(top["points"] + 1, STAR_AWARD) - mine.json()["points"]
        response = client.post(
            "/v1/events", json={"events": anniversaries(demo, math.ceil(needed / 150))}
        )
        assert response.status_code == 200, response.text
    # No reload: the stream brings the new standing.
    await expect(board.locator(".my-rank")).to_have_text("1", timeout=15_000)
    await expect(board.locator("ol.ranks li").first).to_have_class("me")
    assert int(await page.evaluate("document.body.dataset.updates")) >= 2
    assert not [e for e in errors if e.startswith("error")], errors  # CSP refusals included


async def test_an_admin_approves_a_reward_and_it_goes_out(demo: Demo, browser: Browser) -> None:
    with api(demo) as client:
        waiting = client.get("/v1/rewards", params={"status": "awaiting_approval"})
        if not waiting.json()["rewards"]:  # the scaled-down month left none: make one
            mine = client.get(f"/v1/leaderboards/global/around/{demo.featured}", params={"k": 0})
            needed = STAR_AWARD - (mine.json()["points"] or 0)
            events = anniversaries(demo, max(math.ceil(needed / 150), 1))
            assert client.post("/v1/events", json={"events": events}).status_code == 200
    page = await new_page(browser)
    await page.goto(f"{demo.base}/app/admin")
    await page.fill("#key", demo.admin_key)
    await page.click("button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Acme demo", timeout=10_000)
    waiting = page.locator("#approvals .approval")
    await expect(waiting.first).to_be_visible()
    await expect(page.locator(".hl").first).to_be_visible()  # the rules, highlighted
    await page.screenshot(path=shot("admin.png"))
    await page.screenshot(path=shot("admin-full.png"), full_page=True)
    reward_id = await waiting.first.get_attribute("data-reward")
    assert reward_id is not None
    await waiting.first.locator("button.approve").click()
    await expect(page.locator(".flash.ok")).to_contain_text(f"Reward #{reward_id} approved")
    row = page.locator(f'#recent tr[data-reward="{reward_id}"]')
    deadline = time.monotonic() + 60
    while True:  # the worker sends it to the sandbox; the page shows it as it stands now
        status = (await row.locator(".pill").inner_text()) if await row.count() else ""
        if status in ("submitted", "redeemed"):  # GIFQ took the order
            break
        assert time.monotonic() < deadline, f"reward {reward_id} still '{status}'"
        await page.wait_for_timeout(1000)
        await page.reload()
    order = await row.locator(".mono").inner_text()
    assert order not in ("", "—")  # GIFQ's order id
    with api(demo) as client:
        found = client.get("/v1/rewards", params={"limit": 500}).json()["rewards"]
    reward = next(r for r in found if str(r["id"]) == reward_id)
    assert reward["status"] in ("submitted", "redeemed") and reward["gifq_order_id"]
    assert reward["decided_by"]


async def test_the_dry_run_in_the_browser(demo: Demo, browser: Browser) -> None:
    page = await new_page(browser)
    await page.goto(f"{demo.base}/app/admin")
    await page.fill("#key", demo.admin_key)
    await page.click("button[type=submit]")
    event = anniversaries(demo, 1)[0] | {"id": "dry-run-only"}
    await page.fill("#event", json.dumps(event))
    await page.click("#dry-run button[type=submit]")
    await expect(page.locator("#dry-result")).to_contain_text('"dry_run": true')
    await expect(page.locator("#dry-result")).to_contain_text("150")
    with contextlib.suppress(Exception):
        await page.screenshot(path=shot("admin-dry-run.png"), full_page=False)
