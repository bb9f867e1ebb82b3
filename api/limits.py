"""What ``api.gate`` applies to each route: the credential it needs and its body limit.

One table, read top to bottom, first match wins. A route that needs an API key must
be covered by a ``Credential.api_key`` row so its key is checked before its body is
read (``tests/integration/test_gate.py`` checks every route of the app against it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

KB = 1024
MB = 1024 * KB


class Credential(StrEnum):
    none = "none"  # public, or signed over its body by a third party (GIFQ, Slack)
    api_key = "api_key"  # Authorization: Bearer <key>, recognised by api.deps.identify
    platform = "platform"  # Authorization: Bearer <REWARDS_PLATFORM_KEY>
    # The pages (``api.pages``): an API key or employee token in the page's cookie, checked
    # and rated like a bearer when present; without one the page asks to sign in.
    page = "page"


@dataclass(frozen=True)
class RoutePolicy:
    credential: Credential
    max_body: int  # bytes, counted as they arrive; Content-Length over it is refused unread
    # Refuse JSON strings no database stores (NUL, lone surrogates). Off where a signature
    # covers the raw body: that route's own checks answer first.
    screen: bool = True
    # Also take the key as the password of HTTP Basic (xAPI's LRS clients send key id:secret).
    basic: bool = False


ROUTES: tuple[tuple[str, re.Pattern[str], RoutePolicy], ...] = tuple(
    (method, re.compile(path, re.DOTALL), policy)
    for method, path, policy in (
        ("*", r"/v1/programs", RoutePolicy(Credential.platform, 64 * KB)),
        ("POST", r"/v1/events", RoutePolicy(Credential.api_key, 5 * MB)),  # up to 1000 events
        ("POST", r"/v1/simulate", RoutePolicy(Credential.api_key, 6 * MB)),  # events + YAML
        ("PUT", r"/v1/programs/current/rules", RoutePolicy(Credential.api_key, 1 * MB)),
        ("PUT", r"/v1/challenges", RoutePolicy(Credential.api_key, 1 * MB)),
        ("POST", r"/v1/challenges:validate", RoutePolicy(Credential.api_key, 1 * MB)),
        ("POST", r"/v1/users:(bulk|sync)", RoutePolicy(Credential.api_key, 10 * MB)),
        ("POST", r"/v1/webhooks/.+", RoutePolicy(Credential.none, 64 * KB, screen=False)),
        ("POST", r"/v1/sources/slack/.+", RoutePolicy(Credential.none, 256 * KB, screen=False)),
        ("GET", r"/v1/sources/xapi/about", RoutePolicy(Credential.none, 64 * KB)),
        ("*", r"/v1/sources/xapi/.+", RoutePolicy(Credential.api_key, 5 * MB, basic=True)),
        ("POST", r"/v1/sources/crm/.+", RoutePolicy(Credential.api_key, 1 * MB)),
        ("*", r"/v1/.*", RoutePolicy(Credential.api_key, 256 * KB)),
        ("GET", r"/app/static/.*", RoutePolicy(Credential.none, 64 * KB)),
        ("*", r"/app(/.*)?", RoutePolicy(Credential.page, 64 * KB)),  # form posts: a few KB
        ("*", r".*", RoutePolicy(Credential.none, 64 * KB)),  # /healthz, /metrics
    )
)


@lru_cache(maxsize=4096)  # /healthz and /v1/events otherwise try most of the table each time
def policy_for(method: str, path: str) -> RoutePolicy:
    for wanted, pattern, policy in ROUTES:
        if wanted in ("*", method) and pattern.fullmatch(path):
            return policy
    raise AssertionError("the last row matches every path")


def describe(size: int) -> str:
    """``5 MB``, ``64 KB``: the limit as a person reads it."""
    if size % MB == 0:
        return f"{size // MB} MB"
    return f"{size // KB} KB" if size % KB == 0 else f"{size} bytes"
