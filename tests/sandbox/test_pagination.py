import pytest

from sandbox.errors import BadRequestError
from sandbox.pagination import headers, link_pages, paginate, parse_params

ITEMS = list(range(45))


@pytest.mark.parametrize(
    ("page", "limit", "expected"),
    [
        (None, None, (1, 10)),
        ("2", "5", (2, 5)),
        ("1", "100", (1, 20)),  # clamped to the maximum
        ("", "", (1, 10)),
    ],
)
def test_parse_params(page: str | None, limit: str | None, expected: tuple[int, int]) -> None:
    assert parse_params(page, limit) == expected


@pytest.mark.parametrize(
    ("page", "limit", "message"),
    [
        ("0", None, "Pagination error: expected :page >= 1; got 0"),
        ("x", None, "Pagination error: expected :page >= 1; got x"),
        (None, "-1", "Pagination error: expected :limit >= 1; got -1"),
    ],
)
def test_parse_params_rejects_bad_values(page: str | None, limit: str | None, message: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        parse_params(page, limit)
    assert caught.value.message == message


@pytest.mark.parametrize(
    ("page", "limit", "items", "pages"),
    [
        (1, 10, list(range(10)), 5),
        (5, 10, list(range(40, 45)), 5),
        (3, 20, list(range(40, 45)), 3),
    ],
)
def test_paginate(page: int, limit: int, items: list[int], pages: int) -> None:
    result = paginate(ITEMS, page=page, limit=limit)
    assert list(result.items) == items
    assert (result.total_count, result.total_pages) == (45, pages)


def test_page_out_of_range_has_gifqs_message() -> None:
    with pytest.raises(BadRequestError) as caught:
        paginate(ITEMS, page=999, limit=10)
    assert caught.value.message == "Pagination error: expected :page in 1..5; got 999"


def test_an_empty_list_has_one_page() -> None:
    result = paginate([], page=1, limit=10)
    assert (result.total_pages, list(result.items)) == (1, [])


@pytest.mark.parametrize(
    ("page", "rels"),
    [
        (1, {"first": 1, "next": 2, "last": 5}),
        (3, {"first": 1, "prev": 2, "next": 4, "last": 5}),
        (5, {"first": 1, "prev": 4, "last": 5}),
    ],
)
def test_link_pages(page: int, rels: dict[str, int]) -> None:
    assert link_pages(paginate(ITEMS, page=page, limit=10)) == rels


def test_headers() -> None:
    result = paginate(ITEMS, page=2, limit=10)
    urls = {n: f"http://x/items?page={n}" for n in range(1, 6)}
    assert headers(result, url_for_page=urls) == {
        "current-page": "2",
        "page-items": "10",
        "total-count": "45",
        "total-pages": "5",
        "link": '<http://x/items?page=1>; rel="first", <http://x/items?page=1>; rel="prev", '
        '<http://x/items?page=3>; rel="next", <http://x/items?page=5>; rel="last"',
    }
