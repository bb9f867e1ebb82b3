"""GIFQ-style pagination (it behaves like Ruby's pagy): ``page`` from 1, ``limit`` up to 20.

Response headers: ``current-page``, ``page-items`` (the page size in force, as pagy sends),
``total-count``, ``total-pages`` and an RFC 5988 ``Link`` with first / prev / next / last
(prev and next only when such a page exists). A page past the end is a 400.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from sandbox.errors import BadRequestError

DEFAULT_LIMIT: Final = 10
MAX_LIMIT: Final = 20

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    page: int
    limit: int
    total_count: int

    @property
    def total_pages(self) -> int:
        return max(1, math.ceil(self.total_count / self.limit))


def parse_params(page: str | None, limit: str | None) -> tuple[int, int]:
    """Validate raw query values; ``limit`` above the maximum is clamped, as GIFQ does."""
    page_number = _positive_int("page", page, default=1)
    page_size = min(_positive_int("limit", limit, default=DEFAULT_LIMIT), MAX_LIMIT)
    return page_number, page_size


def _positive_int(name: str, raw: str | None, *, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise BadRequestError(f"Pagination error: expected :{name} >= 1; got {raw}")
    return value


def paginate(items: Sequence[T], *, page: int, limit: int) -> Page[T]:
    result: Page[T] = Page(items=(), page=page, limit=limit, total_count=len(items))
    if page > result.total_pages:
        raise BadRequestError(
            f"Pagination error: expected :page in 1..{result.total_pages}; got {page}"
        )
    start = (page - 1) * limit
    return Page(items=items[start : start + limit], page=page, limit=limit, total_count=len(items))


def headers(page: Page[T], *, url_for_page: dict[int, str]) -> dict[str, str]:
    """Pagination headers; ``url_for_page`` maps page numbers to absolute URLs."""
    return {
        "current-page": str(page.page),
        "page-items": str(page.limit),
        "total-count": str(page.total_count),
        "total-pages": str(page.total_pages),
        "link": link_header(page, url_for_page=url_for_page),
    }


def link_pages(page: Page[T]) -> dict[str, int]:
    """The rel → page number pairs the Link header carries."""
    rels = {"first": 1}
    if page.page > 1:
        rels["prev"] = page.page - 1
    if page.page < page.total_pages:
        rels["next"] = page.page + 1
    rels["last"] = page.total_pages
    return rels


def link_header(page: Page[T], *, url_for_page: dict[int, str]) -> str:
    return ", ".join(
        f'<{url_for_page[number]}>; rel="{rel}"' for rel, number in link_pages(page).items()
    )
