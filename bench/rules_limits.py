"""What big or costly rules cost the server: CEL evaluation at the cost budget, and
``/healthz`` latency while oversized rule sets are being refused.

    .venv/bin/python -m bench.rules_limits            # both parts
    .venv/bin/python -m bench.rules_limits --cel      # CEL only, in-process

Part 1 evaluates, in this process, expressions that the checker accepts close to its
budget, with event values at the sizes it assumes (lists of ``MAX_ITEMS``, strings of
``MAX_CHARS``), and prints the estimated cost next to the measured time.

Part 2 starts ``rewards serve`` (one worker, embedded SQLite/Redis in a temporary
folder), samples ``/healthz`` every 10 ms on its own connection, and meanwhile sends:
just under 1 MB of rules with 1,000-character expressions (accepted), the same with its
last expression misspelt, a 2 MB YAML of 20,000 rules and a 50 MB YAML (refused), and a
``/v1/simulate`` with nested comprehensions (refused). It prints each request's answer
and time and ``/healthz`` p50/p99/max.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from rules import Activation, Expr
from rules.celcheck import COST_BUDGET, MAX_CHARS, MAX_ITEMS


def _cel() -> None:
    big_list = [f"tag{i}" for i in range(MAX_ITEMS)]
    rows = [{"price": i, "tags": ["a", "b"]} for i in range(MAX_ITEMS)]
    text = "x" * MAX_CHARS
    activation = Activation(
        {
            "event": {
                "type": "t",
                "attributes": {"tags": big_list, "rows": rows, "s": text, "t": text},
            },
            "user": {"id": "u", "name": "n", "attributes": {}},
        }
    )
    hundred = "[" + ", ".join(str(n) for n in range(100)) + "]"
    cases = [
        'event.attributes.tags.exists(t, t.startsWith("zz"))',
        "event.attributes.rows.map(r, r.price > 100 ? 1 : 0).size() > 2",
        "event.attributes.rows.map(r, r.price * 2).size() > 0",
        "event.attributes.rows.exists(r, r.price > 1000 && size(r.tags) > 1)",
        'event.attributes.rows.exists(r, ["a", "b", "c"].exists(t, t in r.tags))',
        "size(event.attributes.rows.filter(r, r.price > 100)) > 2",
        "size(event.attributes.s + event.attributes.t) > 0",
        'event.attributes.s.contains("needle")',
        f"{hundred}.map(a, a * 2).size() > 0",
        f"{hundred}.map(a, [1, 2, 3, 4, 5].map(b, a + b)).size() > 0",
    ]
    print(f"CEL at the budget ({COST_BUDGET:,} units); load {os.getloadavg()[0]:.2f}")
    print(f"{'estimate':>10} {'median µs':>10} {'max µs':>8}  expression")
    for source in cases:
        try:
            expr = Expr.compile(source)
        except ValueError as exc:
            print(f"{'refused':>10} {'':>10} {'':>8}  {source[:70]}: {str(exc)[:40]}…")
            continue
        times = []
        for _ in range(30):
            start = time.perf_counter()
            try:
                expr.evaluate(activation)
            except Exception as exc:  # report, don't hide
                print("  failed:", exc)
                break
            times.append((time.perf_counter() - start) * 1e6)
        if times:
            print(
                f"{expr.cost:>10,} {statistics.median(times):>10.0f} {max(times):>8.0f}  "
                f"{source[:70]}"
            )


def _sampler(base: str, stop: threading.Event, out: list[float]) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        while not stop.is_set():
            start = time.perf_counter()
            client.get("/healthz")
            out.append((time.perf_counter() - start) * 1000)
            time.sleep(0.01)


def _figures(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered):.1f} ms, p99 {p99:.1f} ms, max {ordered[-1]:.1f} ms"


def _server() -> None:
    from bench.common import create_program, server

    long_when = " && ".join(["event.attributes.amount >= 1"] * 33)  # ~1,000 characters
    rule = "  - id: r{n}\n    event: e{e}\n    when: '" + long_when + "'\n    points: 5\n"
    count = 990_000 // len(rule.format(n=1000, e=10))
    accepted = "version: 1\nrules:\n" + "".join(rule.format(n=n, e=n % 50) for n in range(count))
    many = "version: 1\nrules:\n" + "".join(
        f"  - id: r{n}\n    event: e{n}\n    when: 'event.attributes.amount >= {n}'\n"
        "    points: 5\n"
        for n in range(20_000)
    )
    huge = "version: 1\n# " + "x" * 50_000_000 + "\n"
    nested = "[" + ", ".join(str(n) for n in range(100)) + "]"
    attack = f"version: 1\nrules:\n  - id: r\n    event: e\n    when: '{nested}.map(a, {nested}.map(b, {nested}.map(c, a + b + c))).size() > 0'\n    points: 1\n"
    with tempfile.TemporaryDirectory() as folder, server(workers=1, data_dir=Path(folder)) as base:
        key = create_program(
            base, "bench", "version: 1\nrules:\n  - {id: r, event: e, points: 1}\n"
        )
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/yaml"}
        idle: list[float] = []
        stop = threading.Event()
        thread = threading.Thread(target=_sampler, args=(base, stop, idle))
        thread.start()
        time.sleep(2)
        stop.set()
        thread.join()
        print(f"\n/healthz idle: {_figures(idle)}; load {os.getloadavg()[0]:.2f}")
        uploads = [
            (
                f"{len(accepted) / 1e6:.2f} MB, {count} rules of 1,000-character expressions",
                accepted,
                "rules",
            ),
            (
                f"{len(accepted) / 1e6:.2f} MB, the last expression misspelt",
                accepted[: accepted.rindex("event.attributes.amount")]
                + "user.departmnt"
                + accepted[accepted.rindex("event.attributes.amount") + 23 :],
                "rules",
            ),
            (f"{len(many) / 1e6:.1f} MB, 20,000 rules", many, "rules"),
            ("50 MB", huge, "rules"),
            ("simulate, three nested maps", attack, "simulate"),
        ]
        with httpx.Client(base_url=base, timeout=120) as client:
            for label, body, route in uploads:
                samples: list[float] = []
                stop = threading.Event()
                thread = threading.Thread(target=_sampler, args=(base, stop, samples))
                thread.start()
                time.sleep(0.2)
                start = time.perf_counter()
                if route == "rules":
                    response = client.put(
                        "/v1/programs/current/rules", content=body, headers=headers
                    )
                else:
                    response = client.post(
                        "/v1/simulate",
                        json={
                            "id": "x",
                            "type": "e",
                            "user_id": "u",
                            "occurred_at": "2026-03-02T10:00:00Z",
                            "rules": body,
                        },
                        headers={"Authorization": f"Bearer {key}"},
                    )
                took = (time.perf_counter() - start) * 1000
                time.sleep(0.2)
                stop.set()
                thread.join()
                code = response.json().get("error", {}).get("details", [{}])
                what = code[0].get("code", "") if code else ""
                print(
                    f"{label}: {response.status_code} {what} in {took:.0f} ms; "
                    f"/healthz meanwhile {_figures(samples)}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cel", action="store_true", help="only the in-process CEL part")
    args = parser.parse_args()
    _cel()
    if not args.cel:
        _server()


if __name__ == "__main__":
    main()
