"""The demo's closing report: boards, around-me, streaks, the challenge, rewards, metrics."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from rewards.demo.play import Outcome, Player

SHOWN_METRICS = {"users", "events", "points", "rewards", "time_to_reward", "streaks", "challenges"}
BOARDS = ("global", "department:sales", "department:engineering", "tenure:2-5y")


def _get(player: Player, path: str, **params: Any) -> Any:
    response = player.engine.get(path, params=params, headers=player.auth)
    return response.json() if response.status_code == 200 else None


def boards(player: Player) -> dict[str, list[tuple[str, int]]]:
    """The top ten of each board, as (user, score): what the report shows and the checks
    compare with a rebuild."""
    found = {}
    for board in BOARDS:
        page = _get(player, f"/v1/leaderboards/{board}", limit=10)
        if page is not None:
            found[board] = [(e["user_id"], e["points"]) for e in page["entries"]]
    return found


def render(console: Console, player: Player, outcome: Outcome) -> None:
    names = {u["id"]: u.get("name") or u["id"] for u in _people(player, outcome)}
    top = Table(title="Top of the boards (all-time points)", expand=False)
    shown = boards(player)
    for board in shown:
        top.add_column(board)
    columns = list(shown.values())
    for row in range(5):
        top.add_row(
            *(
                f"{names.get(c[row][0], c[row][0])}  {c[row][1]}" if row < len(c) else ""
                for c in columns
            )
        )
    console.print(top)

    if outcome.featured:
        around = _get(player, f"/v1/leaderboards/global/around/{outcome.featured}", k=5)
        if around is not None:
            table = Table(title=f"Around {names.get(outcome.featured, outcome.featured)} (± 5)")
            table.add_column("rank", justify="right")
            table.add_column("person")
            table.add_column("points", justify="right")
            for entry in around["entries"]:
                me = entry["user_id"] == outcome.featured
                style = "bold green" if me else ""
                table.add_row(
                    str(entry["rank"]),
                    names.get(entry["user_id"], entry["user_id"]),
                    str(entry["points"]),
                    style=style,
                )
            console.print(table)

    streaks = Table(title="Weekly learning streaks (the longest running)")
    for column in ("person", "current", "longest", "grace until", "next milestone"):
        streaks.add_column(column)
    found = []
    for user_id in names:
        answer = _get(player, f"/v1/users/{user_id}/streaks")
        found += [s for s in (answer or {}).get("streaks", []) if s["current_streak"] > 0]
    found.sort(key=lambda s: (-s["current_streak"], s["user_id"]))
    for streak in found[:8]:
        upcoming = streak.get("next_milestone") or {}
        streaks.add_row(
            names[streak["user_id"]],
            f"{streak['current_streak']} {streak['period']}s",
            str(streak["longest_streak"]),
            str(streak.get("grace_period_until") or "")[:10],
            f"{upcoming['length']} for {upcoming['points']} pts" if upcoming else "all reached",
        )
    console.print(streaks)

    challenges = _get(player, "/v1/challenges") or {}
    table = Table(title="Challenges")
    for column in ("challenge", "window", "active", "slots taken", "multiplier"):
        table.add_column(column)
    for challenge in challenges.get("challenges", []):
        window = challenge["window"]
        first = challenge.get("first")
        taken = challenge["completions"]
        table.add_row(
            challenge.get("name") or challenge["id"],
            f"{str(window['starts'])[:16]} → {str(window['ends'])[:16]}",
            "yes" if challenge["active"] else "no",
            f"{taken} of {first}" if first else str(taken),
            f"x{challenge['multiplier']}" if challenge.get("multiplier") else "",
        )
    console.print(table)

    rewards = player.rewards()
    by_status: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    count: dict[str, int] = defaultdict(int)
    fees: dict[str, Decimal] = defaultdict(Decimal)
    for reward in rewards:
        count[reward["status"]] += 1
        by_status[reward["status"]][reward["currency"]] += Decimal(reward["amount"])
        if reward.get("fx_fee_amount"):
            fees[reward["currency"]] += Decimal(reward["fx_fee_amount"])
    table = Table(title="Rewards through GIFQ (the sandbox)")
    for column in ("status", "count", "face value"):
        table.add_column(column)
    for status in sorted(count):
        value = ", ".join(f"{a} {c}" for c, a in sorted(by_status[status].items()))
        table.add_row(status, str(count[status]), value)
    console.print(table)
    if fees:
        console.print("FX fees GIFQ charged: " + ", ".join(f"{a} {c}" for c, a in fees.items()))

    start, end = outcome.period
    metrics = _get(player, "/v1/metrics", **{"from": start, "to": end})
    if metrics is not None:
        table = Table(title=f"Programme metrics ({start} to {end})")
        table.add_column("measure")
        table.add_column("value", justify="right")
        for key, value in _flatten(metrics):
            if key.split(".")[0] in SHOWN_METRICS and table.row_count < 30:
                table.add_row(key, value)
        console.print(table)


def _people(player: Player, outcome: Outcome) -> list[dict[str, Any]]:
    return [{"id": person.id, "name": person.name} for person in player.people]


def _flatten(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _flatten(value, prefix=f"{name}.")
        elif not isinstance(value, list):
            rows.append((name, str(value)))
    return rows


def rebuild_matches(player: Player, before: dict[str, list[tuple[str, int]]]) -> bool:
    """After ``rewards leaderboards rebuild``, the same boards."""
    try:
        return boards(player) == before
    except httpx.HTTPError:
        return False
