"""A believable organisation and a month of its behaviour, made from a seed.

Pure: the same seed, size and dates give the same people and the same events, so a
second run of the demo sends what the first sent and the engine answers ``duplicate``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

FIRST = [
    "Ada",
    "Ben",
    "Chloe",
    "Dev",
    "Ema",
    "Femi",
    "Grace",
    "Hugo",
    "Ines",
    "Jon",
    "Kemi",
    "Lars",
    "Maria",
    "Nia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sam",
    "Tara",
    "Uma",
    "Viktor",
    "Wen",
    "Xavi",
    "Yara",
    "Zoe",
    "Ali",
    "Bea",
    "Cem",
    "Dana",
    "Eli",
    "Farah",
    "Gus",
    "Hana",
    "Ivo",
    "Jade",
    "Kofi",
    "Lena",
    "Milo",
    "Noor",
]
LAST = [
    "Adams",
    "Baker",
    "Chen",
    "Diaz",
    "Evans",
    "Fischer",
    "Garcia",
    "Haddad",
    "Ito",
    "Jones",
    "Khan",
    "Lopez",
    "Meyer",
    "Novak",
    "Okafor",
    "Patel",
    "Quist",
    "Rossi",
    "Silva",
    "Tanaka",
    "Umar",
    "Varga",
    "Weber",
    "Xu",
    "Young",
    "Zimmer",
]
DEPARTMENTS = (
    ("sales", 0.30),
    ("engineering", 0.30),
    ("support", 0.15),
    ("marketing", 0.12),
    ("people", 0.08),
    ("finance", 0.05),
)
ROLES = (("individual", 0.75), ("lead", 0.17), ("manager", 0.08))
TIERS = (("bronze", 0.5), ("silver", 0.35), ("gold", 0.15))
COUNTRIES = (
    ("GB", "Europe/London", 0.6),
    ("US", "America/New_York", 0.25),
    ("DE", "Europe/Berlin", 0.15),
)
COURSES = ("security-basics", "feedback-101", "data-privacy", "negotiation", "python-intro")


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    email: str
    department: str
    role: str
    tier: str
    country: str
    timezone: str
    hire_date: date
    slack_id: str
    learner: float  # chance of finishing a course on a working day
    closer: float  # chance of closing a deal on a working day (sales)

    def directory(self) -> dict[str, object]:
        """The person as ``PUT /v1/users`` and ``POST /v1/users:bulk`` take them."""
        return {
            "id": self.id,
            "name": self.name,
            "email": self.email,
            "department": self.department,
            "role": self.role,
            "tier": self.tier,
            "country": self.country,
            "timezone": self.timezone,
            "hire_date": self.hire_date.isoformat(),
            "slack_id": self.slack_id,
        }


@dataclass(frozen=True)
class Happening:
    """One thing a source reports: which source, when, and what."""

    source: str  # crm | xapi | slack_reaction | hris
    at: datetime
    person: Person
    other: Person | None = None  # the kudos giver
    detail: dict[str, Any] = field(default_factory=dict)


def _pick(rng: random.Random, table: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([name for name, _ in table], [weight for _, weight in table])[0]


STARS = 3  # people who earn most of what the thresholds ask in any month


def organisation(size: int, *, seed: int, today: date) -> list[Person]:
    rng = random.Random(seed)
    people = []
    for index in range(size):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        department = _pick(rng, DEPARTMENTS)
        country, timezone, _ = rng.choices(COUNTRIES, [c[2] for c in COUNTRIES])[0]
        # A few anniversaries fall in the month the demo plays.
        years = rng.randint(1, 8)
        hired = today - timedelta(days=365 * years + rng.randint(-20, 340))
        people.append(
            Person(
                id=f"emp-{index + 1:04d}",
                name=f"{first} {last}",
                email=f"{first}.{last}.{index + 1}@example.com".lower(),
                department=department,
                role=_pick(rng, ROLES),
                tier=_pick(rng, TIERS),
                country=country,
                timezone=timezone,
                hire_date=hired,
                slack_id=f"U{index + 1:07d}DEMO",
                learner=rng.uniform(0.05, 0.45),
                closer=rng.uniform(0.05, 0.25) if department == "sales" else 0.0,
            )
        )
    # Whatever the seed, size and date, a few stars cross a threshold in the month played
    # (a deal most working days, a course most weeks), so every demo shows money moving.
    for index in range(min(STARS, size)):
        people[index] = replace(people[index], department="sales", closer=0.9, learner=0.6)
    return people


def month(people: list[Person], *, seed: int, days: int, now: datetime) -> list[Happening]:
    """What the sources report over the ``days`` before ``now``'s date (UTC), oldest first:
    the same all day long, so a second run on the same day sends the same."""
    rng = random.Random(seed * 7919 + days)
    first_day = now.date() - timedelta(days=days)
    happenings: list[Happening] = []
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        working = day.weekday() < 5
        for person in people:
            at = datetime.combine(day, time(9), UTC) + timedelta(minutes=rng.randint(0, 480))
            if working and rng.random() < person.closer:
                amount = rng.choice((800, 1500, 4000, 9000, 12000, 25000))
                happenings.append(Happening("crm", at, person, detail={"amount": amount}))
            if working and rng.random() < person.learner:
                course = rng.choice(COURSES)
                happenings.append(Happening("xapi", at, person, detail={"course": course}))
                if rng.random() < 0.3:
                    score = round(rng.uniform(0.55, 1.0), 2)
                    detail = {"course": course, "score": score, "assessment": True}
                    happenings.append(
                        Happening("xapi", at + timedelta(minutes=30), person, detail=detail)
                    )
            if rng.random() < 0.03:
                giver = rng.choice(people)
                if giver.id != person.id:
                    happenings.append(
                        Happening("slack_reaction", at + timedelta(minutes=5), person, giver)
                    )
            anniversary = (
                person.hire_date.replace(year=day.year)
                if (
                    person.hire_date.month,
                    person.hire_date.day,
                )
                != (2, 29)
                else None
            )
            if anniversary == day and day.year > person.hire_date.year:
                detail = {"years": day.year - person.hire_date.year}
                happenings.append(Happening("hris", at, person, detail=detail))
    happenings.sort(key=lambda h: h.at)
    return happenings
