from datetime import UTC, datetime, timedelta

import pytest

from engine.lots import LedgerLine, allocate

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(days: int) -> datetime:
    return T0 + timedelta(days=days)


def earn(id: int, points: int, day: int, expires: int | None = None) -> LedgerLine:
    return LedgerLine(
        id, "earn", points, at(day), None, at(expires) if expires is not None else None
    )


def spend(
    id: int, points: int, day: int, kind: str = "redeem", lot: int | None = None
) -> LedgerLine:
    return LedgerLine(id, kind, -points, at(day), lot, None)


@pytest.mark.parametrize(
    ("lines", "remaining", "debt"),
    [
        pytest.param([earn(1, 100, 0, 365)], {1: 100}, 0, id="one lot untouched"),
        pytest.param(
            [earn(1, 100, 0, 365), earn(2, 50, 10, 375), spend(3, 120, 20)],
            {1: 0, 2: 30},
            0,
            id="spending takes the soonest-expiring lot first",
        ),
        pytest.param(
            [earn(1, 100, 0, 365), earn(2, 50, 10, 375), spend(3, 30, 20, "retract", lot=2)],
            {1: 100, 2: 20},
            0,
            id="a retraction takes from its own lot",
        ),
        pytest.param(
            [
                earn(1, 100, 0, 365),
                earn(2, 50, 10, 375),
                spend(3, 40, 20),
                spend(4, 100, 30, "retract", lot=1),
            ],
            {1: 0, 2: 10},
            0,
            id="retracting a half-spent lot spills over to the next lot",
        ),
        pytest.param(
            [earn(1, 10, 0), spend(2, 25, 5, "retract", lot=1), earn(3, 40, 6)],
            {1: 0, 3: 25},
            0,
            id="debt is paid off by the next earnings",
        ),
        pytest.param(
            [earn(1, 10, 0), spend(2, 25, 5)],
            {1: 0},
            15,
            id="spending more than there is leaves debt",
        ),
        pytest.param(
            [earn(1, 100, 0, 30), earn(2, 50, 10, 400), spend(3, 60, 40)],
            {1: 100, 2: 0},
            10,
            id="a lot past its expiry is not spent even before it is written off",
        ),
        pytest.param(
            [earn(1, 100, 0, 30), spend(2, 100, 31, "expire", lot=1)],
            {1: 0},
            0,
            id="an expiry entry writes the lot off",
        ),
        pytest.param(
            [earn(1, 100, 0, None), earn(2, 100, 1, 50), spend(3, 150, 2)],
            {1: 50, 2: 0},
            0,
            id="lots that never expire are spent last",
        ),
    ],
)
def test_allocate(lines: list[LedgerLine], remaining: dict[int, int], debt: int) -> None:
    book = allocate(lines)
    assert {lot.id: lot.remaining for lot in book.lots.values()} == remaining
    assert book.debt == debt


def test_due_and_upcoming() -> None:
    book = allocate([earn(1, 100, 0, 30), earn(2, 50, 1, 31), earn(3, 20, 2, 31), spend(4, 30, 3)])
    assert [(lot.id, lot.remaining) for lot in book.due(at(30))] == [(1, 70)]
    assert book.upcoming(at(30)) == [(70, at(31))]


def test_written_off_lots_are_not_due_again() -> None:
    book = allocate([earn(1, 100, 0, 30), spend(2, 100, 31, "expire", lot=1)])
    assert book.due(at(40)) == []
