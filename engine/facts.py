"""What the core knows about an event and a user: plain frozen data, no ORM."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class EventFacts:
    id: str
    type: str
    user_id: str
    occurred_at: datetime
    source: str | None = None
    actor_id: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def activation(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "user_id": self.user_id,
            "occurred_at": self.occurred_at,
            "source": self.source,
            "actor_id": self.actor_id,
            "attributes": dict(self.attributes),
        }


@dataclass(frozen=True, slots=True)
class UserFacts:
    id: str
    email: str | None = None
    name: str | None = None
    department: str | None = None
    role: str | None = None
    hire_date: date | None = None
    tier: str | None = None
    country: str | None = None
    timezone: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    tenure_band: str | None = None
    active: bool = True  # False: deactivated by an HRIS sync, earns nothing

    def activation(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "department": self.department,
            "role": self.role,
            "hire_date": self.hire_date.isoformat() if self.hire_date else None,
            "tier": self.tier,
            "country": self.country,
            "timezone": self.timezone,
            "attributes": dict(self.attributes),
            "tenure_band": self.tenure_band,
        }
