"""Which earned points are still unspent, and so which expire when (FIFO).

Every positive entry is a lot. Spending entries consume lots: a
retraction or an expiry names its lot and takes from it first; any other debit
takes from the lot that expires soonest (then the oldest), skipping lots already
past their expiry at that moment. A debit larger than everything left becomes
debt, which the next lots earned pay off first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from rewards.lifecycle import LedgerKind


@dataclass(frozen=True, slots=True)
class LedgerLine:
    id: int
    kind: str
    points: int
    created_at: datetime
    lot_id: int | None = None
    expires_at: datetime | None = None


@dataclass(slots=True)
class Lot:
    id: int
    points: int
    expires_at: datetime | None
    remaining: int
    expired: bool = False


@dataclass(slots=True)
class LotBook:
    lots: dict[int, Lot] = field(default_factory=dict)
    debt: int = 0

    def due(self, now: datetime) -> list[Lot]:
        """Lots past their expiry with points left and no expiry entry yet."""
        return [
            lot
            for lot in self.lots.values()
            if lot.expires_at is not None
            and lot.expires_at <= now
            and lot.remaining > 0
            and not lot.expired
        ]

    def upcoming(self, now: datetime) -> list[tuple[int, datetime]]:
        """(points, expires_at) still to expire, soonest first, same instants merged."""
        merged: dict[datetime, int] = {}
        for lot in self.lots.values():
            if lot.expires_at is not None and lot.expires_at > now and lot.remaining > 0:
                merged[lot.expires_at] = merged.get(lot.expires_at, 0) + lot.remaining
        return sorted(((points, at) for at, points in merged.items()), key=lambda item: item[1])


def _order(lot: Lot) -> tuple[bool, datetime | None, int]:
    return (lot.expires_at is None, lot.expires_at, lot.id)


def allocate(lines: Iterable[LedgerLine]) -> LotBook:
    """Replay ledger lines in id order and return what remains of each lot."""
    book = LotBook()
    for line in sorted(lines, key=lambda line: line.id):
        if line.points > 0:
            paid = min(book.debt, line.points)
            book.debt -= paid
            book.lots[line.id] = Lot(line.id, line.points, line.expires_at, line.points - paid)
            continue
        owed = -line.points
        named = book.lots.get(line.lot_id) if line.lot_id is not None else None
        if named is not None:
            taken = min(named.remaining, owed)
            named.remaining -= taken
            owed -= taken
            if line.kind == LedgerKind.EXPIRE:
                named.expired = True
        for lot in sorted(book.lots.values(), key=_order):
            if owed == 0:
                break
            if lot.remaining == 0 or lot.expired:
                continue
            if lot.expires_at is not None and lot.expires_at <= line.created_at:
                continue
            taken = min(lot.remaining, owed)
            lot.remaining -= taken
            owed -= taken
        book.debt += owed
    return book
