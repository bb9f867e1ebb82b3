"""Leaderboards: pages of a board, the ranks around someone, someone's ranks, history.

The two hot reads (a board page and around-me) skip FastAPI's dependency and query
parsing machinery, which costs more CPU than the Redis read itself: they call the
same ``require(Scope.read)`` check directly, read their query parameters from the
request, and return pre-serialised JSON. The parameters and the response are still
described in the OpenAPI document (``openapi_extra`` and ``response_model``).
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from api.deps import RuntimeDep, SelfReader, SessionDep, require
from api.errors import error_responses
from rewards.errors import InvalidInput
from rewards.leaderboards import boards, snapshots
from rewards.services.keys import Scope

router = APIRouter(prefix="/v1", tags=["leaderboards"])
authorise_read = require(Scope.read, employees=True)

PERIOD = "`all`, `week` or `month` (the current one), or a period id: `2026-W12`, `2026-03`."


class Entry(BaseModel):
    rank: int
    user_id: str
    name: str | None
    points: int


class PeriodInfo(BaseModel):
    period: str  # "all", "2026-W12", "2026-03"
    period_kind: str  # all | week | month
    timezone: str
    start: str | None  # RFC 3339, local time with its offset; null for all time
    end: str | None
    next_reset: str | None  # when the board starts afresh; null for all time and closed periods
    closed: bool


REBUILDING = (
    "True while the program's boards may be incomplete: they are being rebuilt from the "
    "database (after Redis lost them), which the worker does within a minute."
)


class BoardPage(PeriodInfo):
    board: str
    size: int  # people on the board
    entries: list[Entry]
    next_cursor: str | None
    rebuilding: bool = Field(description=REBUILDING)


class AroundPage(PeriodInfo):
    board: str
    size: int
    user_id: str
    rank: int | None  # null: not on this board (no points here, another cohort, opted out)
    points: int | None
    entries: list[Entry]
    rebuilding: bool = Field(description=REBUILDING)


class History(PeriodInfo):  # from the database: never rebuilding
    board: str
    size: int
    entries: list[Entry]
    next_cursor: str | None
    taken_at: str


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


PERIOD_PARAM = _query("period", PERIOD, {"type": "string", "default": "all"})
PAGE_PARAMS = [
    PERIOD_PARAM,
    _query(
        "limit",
        "Entries per page, 1 to 500.",
        {"type": "integer", "default": 50, "minimum": 1, "maximum": 500},
    ),
    _query("cursor", "`next_cursor` of the previous page.", {"type": "string"}),
]


def _int(request: Request, name: str, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(
            f"{name} must be a whole number",
            code=f"invalid_{name}",
            details=[{"pointer": f"/{name}"}],
        ) from None


def _json(data: dict[str, Any]) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


@router.get(
    "/leaderboards/{board}",
    response_model=BoardPage,
    responses=error_responses(401, 403, 404, 422),
    openapi_extra={"parameters": PAGE_PARAMS},
)
async def board_page(board: str, request: Request) -> Response:
    """A board, best first: `{"rank", "user_id", "name", "points"}` per entry, with the
    period's `start`, `end` and `next_reset`. `board` is `global` or `<cohort>:<value>`
    (`department:sales`, `tenure:1-2y`). Equal points rank by who reached them first,
    then by user id."""
    rt = request.app.state.runtime
    principal = await authorise_read(request, rt)
    return _json(
        await boards.board_page(
            rt,
            principal.program_id,
            board=board,
            period=request.query_params.get("period", "all"),
            limit=_int(request, "limit", None),
            cursor=request.query_params.get("cursor"),
        )
    )


@router.get(
    "/leaderboards/{board}/around/{user_id}",
    response_model=AroundPage,
    responses=error_responses(401, 403, 404, 422),
    openapi_extra={
        "parameters": [
            PERIOD_PARAM,
            _query(
                "k",
                "Ranks either side, 0 to 50.",
                {"type": "integer", "default": 5, "minimum": 0, "maximum": 50},
            ),
        ]
    },
)
async def around(board: str, user_id: str, request: Request) -> Response:
    """The user and up to `k` ranks either side; `rank` is null when the user is not on
    the board (no points there, another cohort, or opted out)."""
    rt = request.app.state.runtime
    principal = await authorise_read(request, rt)
    k = _int(request, "k", boards.DEFAULT_AROUND)
    assert k is not None
    return _json(
        await boards.around(
            rt,
            principal.program_id,
            board=board,
            user_id=user_id,
            period=request.query_params.get("period", "all"),
            k=k,
            own_standing=principal.user_id == user_id,
        )
    )


@router.get(
    "/leaderboards/{board}/history",
    response_model=History,
    responses=error_responses(401, 403, 404, 422),
)
async def history(
    board: str,
    principal: SelfReader,
    rt: RuntimeDep,
    session: SessionDep,
    period: Annotated[str, Query(description="A closed week or month: `2026-W12`, `2026-03`.")],
    limit: Annotated[
        int | None, Query(ge=1, le=500, description="Entries per page, 1 to 500.")
    ] = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
) -> dict[str, Any]:
    """A closed week's or month's final standings, saved when it closed."""
    return await snapshots.history(
        rt,
        session,
        principal.program_id,
        board=board,
        period=period,
        limit=limit,
        cursor=cursor,
    )


class Rank(BaseModel):
    board: str
    period: str
    period_kind: str
    rank: int | None
    points: int
    size: int
    visible: bool = True  # false: opted out; rank is where they would stand, seen only by them


class Ranks(BaseModel):
    user_id: str
    leaderboard_opt_out: bool
    timezone: str
    ranks: list[Rank]
    rebuilding: bool = Field(description=REBUILDING)


@router.get(
    "/users/{user_id}/ranks", response_model=Ranks, responses=error_responses(401, 403, 404)
)
async def user_ranks(
    user_id: str, principal: SelfReader, rt: RuntimeDep, session: SessionDep
) -> dict[str, Any]:
    """The user's rank on each board they belong to now: all time, this week, this month."""
    return await boards.user_ranks(
        rt, session, principal.program_id, user_id, own_standing=principal.user_id == user_id
    )
