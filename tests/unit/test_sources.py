"""Pure parts of the sources: kudos text, signatures, the YAML section's errors."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from rewards.sources.signatures import hubspot_v3, verify
from rewards.sources.slack import Kudos, parse_kudos
from rewards.sources.slack import verify as slack_verify
from rules import RulesInvalid, load_rules
from rules.sources import Verification


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<@U024BE7LH|maria> 10 for the launch demo", Kudos(("U024BE7LH",), 10, "the launch demo")),
        ("<@U024BE7LH> +5 pairing", Kudos(("U024BE7LH",), 5, "pairing")),
        ("<@U1AAA> <@U2BBB|joe> 3pts", Kudos(("U1AAA", "U2BBB"), 3, "")),
        ("<@U1AAA> <@U1AAA> thanks", Kudos(("U1AAA",), None, "thanks")),
        ("<@U1AAA> for fixing 2 bugs", Kudos(("U1AAA",), None, "fixing 2 bugs")),
        ("thanks everyone", Kudos((), None, "thanks everyone")),
        ("", Kudos((), None, "")),
        # Points come before any word: here "10" is part of the reason.
        ("<!subteam^S123|eng> 10", Kudos((), None, "<!subteam^S123|eng> 10")),
    ],
)
def test_kudos_text(text: str, expected: Kudos) -> None:
    assert parse_kudos(text) == expected


def test_slack_verification_never_raises() -> None:
    body = b"token=x&text=hi"
    timestamp = "1772618400"
    good = (
        "v0="
        + hmac.new(
            b"secret-1234", b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256
        ).hexdigest()
    )
    headers = {"x-slack-request-timestamp": timestamp, "x-slack-signature": good}
    assert slack_verify(secret="secret-1234", body=body, headers=headers, now=1772618400 + 299)
    assert not slack_verify(secret="secret-1234", body=body, headers=headers, now=1772618400 + 301)
    assert not slack_verify(secret=None, body=body, headers=headers, now=1772618400)
    assert not slack_verify(secret="  ", body=body, headers=headers, now=1772618400)
    for timestamp_value in ("", "-5", "1e9", "9" * 40):
        odd = {**headers, "x-slack-request-timestamp": timestamp_value}
        assert not slack_verify(secret="secret-1234", body=body, headers=odd, now=1772618400)
    assert not slack_verify(secret="secret-1234", body=b"\xff", headers=headers, now=1772618400)


def test_hubspot_v3_signs_method_uri_body_and_timestamp() -> None:
    body = b'[{"objectId":1}]'
    expected = base64.b64encode(
        hmac.new(
            b"client-secret",
            b"POSThttps://example.com/v1/sources/crm/deals?a=b:c" + body + b"1772618400000",
            hashlib.sha256,
        ).digest()
    ).decode()
    uri = "https://example.com/v1/sources/crm/deals?a=b%3Ac"  # HubSpot decodes %3A
    assert (
        hubspot_v3(
            secret="client-secret", method="post", uri=uri, body=body, timestamp="1772618400000"
        )
        == expected
    )
    config = Verification(preset="hubspot_v3")
    headers = {"x-hubspot-signature-v3": expected, "x-hubspot-request-timestamp": "1772618400000"}
    ok = {"secret": "client-secret", "method": "POST", "uri": uri, "body": body, "headers": headers}
    assert verify(config, now_ms=1772618400000 + 300_000, **ok)  # type: ignore[arg-type]
    assert not verify(config, now_ms=1772618400000 + 300_001, **ok)  # type: ignore[arg-type]
    assert not verify(config, now_ms=1772618400000, **{**ok, "method": "PUT"})  # type: ignore[arg-type]
    assert not verify(config, now_ms=1772618400000, **{**ok, "secret": ""})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("yaml", "pointer", "line"),
    [
        (
            "sources:\n  slack:\n    commands:\n      - {command: kudos, event: slack.kudos}\n",
            "/sources/slack/commands/0/command",
            4,
        ),
        (
            "sources:\n  slack:\n    reactions:\n      - {emoji: ':taco:', event: slack.kudos}\n",
            "/sources/slack/reactions/0/emoji",
            4,
        ),
        ("sources:\n  xapi:\n    statements: []\n", "/sources/xapi/statements", 3),
        (
            "sources:\n  xapi:\n    statements:\n      - {verb: completed, event: lms.done}\n",
            "/sources/xapi/statements/0/verb",
            4,
        ),
        ("sources:\n  crm:\n    Deals:\n      id: a\n      event: e\n", "/sources/crm/Deals", 3),
        ("sources:\n  crm:\n    deals:\n      id: a\n", "/sources/crm/deals", 4),
        (
            "sources:\n  crm:\n    deals:\n      id: a\n      event: e\n      user_match: phone\n",
            "/sources/crm/deals/user_match",
            6,
        ),
        (
            "sources:\n  crm:\n    deals:\n      id: a\n      event: e\n      verify: {algorithm: md5, header: X}\n",
            "/sources/crm/deals/verify/algorithm",
            6,
        ),
        ("sources:\n  hris: {birthdays: yes}\n", "/sources/hris/birthdays", 2),
    ],
)
def test_sources_errors_are_located(yaml: str, pointer: str, line: int) -> None:
    with pytest.raises(RulesInvalid) as caught:
        load_rules("version: 1\n" + yaml)
    found = [(error.path, error.line) for error in caught.value.errors]
    assert (pointer, line + 1) in found, found
