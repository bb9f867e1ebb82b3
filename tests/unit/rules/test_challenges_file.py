"""The challenges file: every shipped example loads, and mistakes name their line and column."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from rules import IsoDuration, RulesInvalid
from rules.challenges import ChallengeSet, load_challenges, load_challenges_file

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "challenges"

SPRINT = """\
challenges:
  - id: security_sprint
    name: Security Training Sprint
    starts: 2026-03-25
    ends: 2026-03-31
    timezone: Europe/London
    event: lms.course_completed
    when: '"security" in event.attributes.tags'
    multiplier: 2
    first: 20
    per_user: 1
    cohort: {department: [engineering, security]}
"""


def check_security_sprint(found: ChallengeSet) -> None:
    [sprint] = found.challenges
    assert (sprint.starts, sprint.ends) == (date(2026, 3, 25), date(2026, 3, 31))
    assert (sprint.multiplier, sprint.first, sprint.per_user) == (Decimal(2), 20, 1)
    assert sprint.cohort == {"department": ("engineering", "security")}
    assert found.for_event("lms.course_completed") == (sprint,)


def check_monthly_kickoff(found: ChallengeSet) -> None:
    [kickoff] = found.challenges
    assert kickoff.recurrence is not None
    assert (kickoff.recurrence.cron, kickoff.recurrence.duration) == (
        "0 0 1 * *",
        IsoDuration(days=7),
    )
    assert (kickoff.bonus, kickoff.multiplier) == (20, None)


def check_stacking(found: ChallengeSet) -> None:
    assert found.max_multiplier == Decimal("2.5")
    double, gold, friday = found.challenges
    assert (double.multiplier, gold.multiplier) == (Decimal(2), Decimal("1.5"))
    assert gold.cohort == {"tier": ("gold",), "attributes.region": ("emea", "amer")}
    assert friday.bonus == 10 and friday.per_user == 1
    assert found.event_types == frozenset({"lms.course_completed"})


CHECKS: dict[str, Callable[[ChallengeSet], None]] = {
    "security_sprint.yaml": check_security_sprint,
    "monthly_kickoff.yaml": check_monthly_kickoff,
    "stacking.yaml": check_stacking,
}


def test_every_example_has_a_check() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(CHECKS)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_loads(path: Path) -> None:
    assert path.read_text(encoding="utf-8").startswith("#"), "each example begins with comments"
    CHECKS[path.name](load_challenges_file(str(path)))


def test_multipliers_read_as_written() -> None:
    text = SPRINT.replace("multiplier: 2", "multiplier: 1.1")
    assert load_challenges(text).challenges[0].multiplier == Decimal("1.1")
    quoted = SPRINT.replace("multiplier: 2", 'multiplier: "1.25"')
    assert load_challenges(quoted).challenges[0].multiplier == Decimal("1.25")


def test_an_empty_list_clears_the_challenges() -> None:
    assert load_challenges("challenges: []\n").challenges == ()


@pytest.mark.parametrize(
    ("old", "new", "line", "column", "pointer", "words"),
    [
        ("ends: 2026-03-31", "ends: 2026-03-20", 5, 11, "/challenges/0/ends", "before starts"),
        ("multiplier: 2", "multiplier: 0", 9, 17, "/challenges/0/multiplier", "more than 0"),
        (
            "multiplier: 2",
            "multiplier: yes",
            9,
            17,
            "/challenges/0/multiplier",
            "multiplier such as",
        ),
        ("first: 20", "first: -1", 10, 12, "/challenges/0/first", "greater than 0"),
        ("per_user: 1", "per_user: 1.5", 11, 15, "/challenges/0/per_user", "integer"),
        (
            "department:",
            "departmnt:",
            12,
            14,
            "/challenges/0/cohort/departmnt",
            "did you mean 'department'",
        ),
        (
            "[engineering, security]",
            "[engineering, {x: 1}]",
            12,
            40,
            "/challenges/0/cohort/department/1",
            "a name or a number",
        ),
        (
            "starts: 2026-03-25",
            "starts: 2026-03-25T09:00:00Z",
            4,
            13,
            "/challenges/0/starts",
            "expected a date",
        ),
        (
            "starts: 2026-03-25",
            "starts: March 25",
            4,
            13,
            "/challenges/0/starts",
            "expected a date",
        ),
        (
            "timezone: Europe/London",
            "timezone: Europe/Londn",
            6,
            15,
            "/challenges/0/timezone",
            "did you mean 'Europe/London'",
        ),
        (
            "event.attributes.tags'",
            "event.attributes.tags +'",
            8,
            49,
            "/challenges/0/when",
            "invalid CEL",
        ),
        (
            "    per_user: 1\n",
            "    per_user: 1\n    on: x\n",
            12,
            5,
            "/challenges/0/on",
            "did you mean 'event'",
        ),
        ("    ends: 2026-03-31\n", "", 2, 5, "/challenges/0", "missing required key 'ends'"),
        ("    multiplier: 2\n", "", 2, 5, "/challenges/0", "needs an effect"),
        (
            "    starts: 2026-03-25\n    ends: 2026-03-31\n",
            "",
            2,
            5,
            "/challenges/0",
            "starts and ends",
        ),
        (
            "    timezone:",
            '    recurrence: {cron: "0 0 1 * *", duration: P7D}\n    timezone:',
            6,
            17,
            "/challenges/0/recurrence",
            "not both",
        ),
    ],
)
def test_mistakes_name_line_and_column(
    old: str, new: str, line: int, column: int, pointer: str, words: str
) -> None:
    assert old in SPRINT
    with pytest.raises(RulesInvalid) as info:
        load_challenges(SPRINT.replace(old, new), source="c.yaml")
    [error] = info.value.errors
    assert (error.line, error.column, error.path) == (line, column, pointer), error
    assert words in error.message


@pytest.mark.parametrize(
    ("recurrence", "pointer", "words"),
    [
        ('{cron: "0 0 32 * *", duration: P7D}', "/challenges/0/recurrence/cron", "out of range"),
        ('{cron: "0 0 1 * * *", duration: P7D}', "/challenges/0/recurrence/cron", "five fields"),
        ("{cron: 5, duration: P7D}", "/challenges/0/recurrence/cron", "in quotes"),
        (
            '{cron: "@monthly", duration: P0D}',
            "/challenges/0/recurrence/duration",
            "longer than zero",
        ),
        ('{cron: "@monthly", duration: 7 days}', "/challenges/0/recurrence/duration", "ISO 8601"),
        ('{cron: "@monthly"}', "/challenges/0/recurrence/duration", "missing required key"),
    ],
)
def test_recurrence_mistakes(recurrence: str, pointer: str, words: str) -> None:
    text = f"""\
challenges:
  - id: kickoff
    name: Kick-off
    recurrence: {recurrence}
    event: crm.deal_closed
    bonus: 20
"""
    with pytest.raises(RulesInvalid) as info:
        load_challenges(text)
    [error] = info.value.errors
    assert (error.line, error.path) == (4, pointer), error
    assert words in error.message


def test_duplicate_ids_and_a_missing_list() -> None:
    twice = SPRINT + SPRINT.removeprefix("challenges:\n")
    with pytest.raises(RulesInvalid) as info:
        load_challenges(twice)
    assert [(e.line, e.code) for e in info.value.errors] == [(13, "duplicate_id")]
    with pytest.raises(RulesInvalid) as info:
        load_challenges("max_multiplier: 3\n")
    assert info.value.errors[0].message == "missing required key 'challenges'"
