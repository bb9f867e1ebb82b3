"""The pages: ``/app/me`` for an employee, ``/app/admin`` for an admin key holder.

Server-rendered HTML (Jinja2, autoescaped), one stylesheet and one small script, all
served from this package. Who may see what is decided as in the API: ``api.gate``
identifies the page's cookie (``api.pages.auth``) with ``api.deps.identify`` and rates
it; here an employee page needs an employee token and sees only its own person, an admin
page needs a key with the ``admin`` scope. Every form posts a CSRF token. None of these
routes is in the OpenAPI document.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Annotated, Any

import jwt
import orjson
from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from api.deps import RuntimeDep, SessionDep, identify
from api.errors import status_for
from api.gate import failure_key
from api.pages import auth, stream, views
from rewards.errors import RewardsError, Unauthenticated
from rewards.services import audit, ratelimit
from rewards.services import rewards as reward_service
from rewards.services.keys import Principal, Scope
from rewards.services.rewards import MAX_REWARD_ID, DecisionIn

router = APIRouter(prefix="/app", include_in_schema=False)

TEMPLATES = Environment(
    loader=PackageLoader("api.pages", "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.globals["when"] = views.when
TEMPLATES.globals["seconds"] = lambda value: "—" if value is None else _duration(float(value))
STATIC = {
    name: (resources.files("api.pages").joinpath("static", name).read_bytes(), media_type)
    for name, media_type in (
        ("pages.css", "text/css; charset=utf-8"),
        ("highlight.css", "text/css; charset=utf-8"),
        ("me.js", "text/javascript; charset=utf-8"),
    )
}
MAX_FORM_FIELD = 60_000
RewardId = Annotated[int, Path(ge=1, le=MAX_REWARD_ID)]


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def page(name: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(TEMPLATES.get_template(name).render(**context), status_code=status)


def message(
    heading: str, text: str, *, status: int, back: str | None = None, **extra: Any
) -> HTMLResponse:
    return page("message.html", status=status, heading=heading, message=text, back=back, **extra)


def principal_of(request: Request) -> Principal | None:
    found = request.scope.get("state", {}).get("principal")
    return found if isinstance(found, Principal) else None


def refusal(request: Request) -> str | None:
    found = request.scope.get("state", {}).get("page_refusal")
    return str(found) if found else None


async def form(request: Request) -> dict[str, str]:
    """The posted form's text fields (each at most ``MAX_FORM_FIELD`` characters)."""
    async with request.form(max_files=0, max_fields=20) as data:
        return {
            name: value[:MAX_FORM_FIELD] for name, value in data.items() if isinstance(value, str)
        }


# --- static files ---------------------------------------------------------------------


@router.get("/static/{name}")
async def static(name: str) -> Response:
    found = STATIC.get(name)
    if found is None:
        return message("Not found", "There is no such file.", status=404)
    content, media_type = found
    return Response(content, media_type=media_type, headers={"Cache-Control": "max-age=300"})


# --- /app/me ----------------------------------------------------------------------------


def employee(request: Request) -> Principal | HTMLResponse:
    """The employee signed in on this request, or the page saying why nobody is."""
    principal = principal_of(request)
    if principal is None:
        reason = refusal(request)
        text = (
            f"Your sign-in link no longer works ({reason}). Open the link your HR platform "
            "gives you again."
            if reason
            else "Open the rewards link your HR platform gives you to see your points, "
            "boards and rewards."
        )
        response = message("Sign in with your link", text, status=401)
        if request.cookies.get(auth.ME_COOKIE):
            auth.clear_cookie(response, request, name=auth.ME_COOKIE, path=auth.ME_PATH)
        return response
    if principal.user_id is None:
        return message(
            "This page is for employees",
            "Sign in here with your own link (an employee token), not with an API key. "
            "Admins have /app/admin.",
            status=403,
            back="/app/admin",
        )
    return principal


@router.get("/me")
async def me(request: Request, rt: RuntimeDep, session: SessionDep) -> Response:
    who = employee(request)
    if isinstance(who, Response):
        return who
    if "token" in request.query_params:  # the HR platform's link: to a cookie, off the URL
        token = auth.credential(request)
        assert token is not None  # the gate signed ``who`` in with it
        claims = jwt.decode(token, options={"verify_signature": False})  # the gate verified it
        lifetime = max(int(claims["exp"]) - int(time.time()), 1)
        response: Response = RedirectResponse(auth.ME_PATH, status_code=303)
        auth.set_cookie(
            response, request, name=auth.ME_COOKIE, value=token, path=auth.ME_PATH, max_age=lifetime
        )
        return response
    assert who.user_id is not None
    try:
        data = await views.me_page(rt, session, who.program_id, who.user_id)
    except RewardsError as exc:
        return message("Not available", exc.message, status=status_for(exc))
    return page("me.html", csrf=auth.csrf_token(request.cookies.get(auth.ME_COOKIE, "")), **data)


@router.get("/me/stream")
async def me_stream(request: Request, rt: RuntimeDep, session: SessionDep) -> Response:
    who = employee(request)
    if isinstance(who, Response):
        return who
    assert who.user_id is not None
    try:
        found = await views.my_boards(rt, session, who.program_id, who.user_id)
    except RewardsError as exc:
        return message("Not available", exc.message, status=status_for(exc))
    slots: stream.Slots = getattr(request.app.state, "page_streams", None) or stream.Slots()
    request.app.state.page_streams = slots
    person = (who.program_id, who.user_id)
    if slots.full():
        busy = message(
            "Busy",
            "This server has as many live pages open as it takes; the page tries again.",
            status=503,
        )
        busy.headers["Retry-After"] = "30"
        return busy
    if not slots.take(person):
        return message(
            "Too many live pages",
            f"At most {slots.limit} live pages at once; close one and reload.",
            status=429,
        )
    cookie = auth.credential(request)
    assert cookie is not None  # the gate signed ``who`` in with it
    claims = jwt.decode(cookie, options={"verify_signature": False})
    left = min(float(claims["exp"]) - time.time(), stream.MAX_SECONDS)
    return stream.EventStream(
        stream.board_events(
            rt,
            program_id=who.program_id,
            user_id=who.user_id,
            boards=[board["board"] for board in found],
            until=time.monotonic() + left,
            gone=request.is_disconnected,
        ),
        slots=slots,
        who=person,
    )


@router.post("/me/sign-out")
async def me_sign_out(request: Request) -> Response:
    fields = await form(request)
    if not auth.csrf_ok(request.cookies.get(auth.ME_COOKIE), fields.get("csrf")):
        return stale_form()
    response = message("Signed out", "You are signed out of your rewards page.", status=200)
    auth.clear_cookie(response, request, name=auth.ME_COOKIE, path=auth.ME_PATH)
    return response


def stale_form() -> HTMLResponse:
    return message(
        "This form has expired",
        "The form's security token is missing or out of date. Go back, reload the page and "
        "try again.",
        status=403,
    )


# --- /app/admin -------------------------------------------------------------------------


def sign_in_form(request: Request, *, status: int, error: str | None = None) -> Response:
    secret, new = auth.nonce(request)
    response = page("signin.html", status=status, csrf=auth.csrf_token(secret), error=error)
    if new:
        auth.set_cookie(
            response,
            request,
            name=auth.NONCE_COOKIE,
            value=secret,
            path=auth.ADMIN_PATH,
            max_age=None,
        )
    return response


def admin(request: Request) -> Principal | Response:
    """The admin signed in on this request, or the page saying why nobody is."""
    principal = principal_of(request)
    if principal is None:
        reason = refusal(request)
        response = sign_in_form(
            request, status=401, error=reason and f"Signed out: {reason}. Sign in again."
        )
        if request.cookies.get(auth.ADMIN_COOKIE):
            auth.clear_cookie(response, request, name=auth.ADMIN_COOKIE, path=auth.ADMIN_PATH)
        return response
    if principal.user_id is not None or not principal.allows(Scope.admin):
        return message(
            "An admin key is needed",
            "This key may not run the programme: sign out and sign in with a key that has "
            "the 'admin' scope.",
            status=403,
            sign_out="/app/admin/sign-out",
            csrf=auth.csrf_token(request.cookies.get(auth.ADMIN_COOKIE, "")),
        )
    audit.bind(principal.key_id, request.scope.get("state", {}).get("request_id"))
    return principal


async def admin_view(
    request: Request,
    rt: RuntimeDep,
    session: SessionDep,
    who: Principal,
    status: int = 200,
    **extra: Any,
) -> Response:
    try:
        data = await views.admin_page(rt, session, who.program_id)
    except RewardsError as exc:
        return message("Not available", exc.message, status=status_for(exc))
    csrf = auth.csrf_token(request.cookies.get(auth.ADMIN_COOKIE, ""))
    context = {
        "dry_input": "",
        "dry_result": None,
        "dry_error": None,
        "notice": None,
        "error": None,
    }
    return page("admin.html", status=status, csrf=csrf, **{**context, **data, **extra})


NOTICES = {"approved": "Reward #{} approved: it is on its way.", "rejected": "Reward #{} rejected."}


@router.get("/admin")
async def admin_home(request: Request, rt: RuntimeDep, session: SessionDep) -> Response:
    who = admin(request)
    if isinstance(who, Response):
        return who
    done, reward = request.query_params.get("done"), request.query_params.get("reward", "")
    notice = NOTICES[done].format(int(reward)) if done in NOTICES and reward.isdigit() else None
    return await admin_view(request, rt, session, who, notice=notice)


@router.post("/admin/sign-in")
async def admin_sign_in(request: Request, rt: RuntimeDep) -> Response:
    fields = await form(request)
    if not auth.csrf_ok(request.cookies.get(auth.NONCE_COOKIE), fields.get("csrf")):
        return stale_form()
    source, limit = failure_key(rt, request), rt.settings.auth_failures_per_minute
    if not (await ratelimit.failures_exceeded(rt.redis, source, limit=limit)).allowed:
        return sign_in_form(request, status=429, error="Too many failed attempts: wait a minute.")
    key = fields.get("key", "").strip()
    try:
        principal = await identify(rt, key or None)
    except Unauthenticated:
        await ratelimit.count_failure(rt.redis, source, limit=limit, window_seconds=60)
        return sign_in_form(request, status=401, error="That key is unknown or revoked.")
    if principal.user_id is not None or not principal.allows(Scope.admin):
        return sign_in_form(request, status=403, error="That key lacks the 'admin' scope.")
    response = RedirectResponse(auth.ADMIN_PATH, status_code=303)
    auth.set_cookie(
        response,
        request,
        name=auth.ADMIN_COOKIE,
        value=key,
        path=auth.ADMIN_PATH,
        max_age=auth.ADMIN_SESSION_SECONDS,
    )
    auth.clear_cookie(response, request, name=auth.NONCE_COOKIE, path=auth.ADMIN_PATH)
    return response


@router.post("/admin/sign-out")
async def admin_sign_out(request: Request) -> Response:
    fields = await form(request)
    if not auth.csrf_ok(request.cookies.get(auth.ADMIN_COOKIE), fields.get("csrf")):
        return stale_form()
    response = sign_in_form(request, status=200)
    auth.clear_cookie(response, request, name=auth.ADMIN_COOKIE, path=auth.ADMIN_PATH)
    return response


async def checked_admin(request: Request) -> tuple[Principal | Response, dict[str, str]]:
    """The admin, once the form's CSRF token is right."""
    who = admin(request)
    if isinstance(who, Response):
        return who, {}
    fields = await form(request)
    if not auth.csrf_ok(request.cookies.get(auth.ADMIN_COOKIE), fields.get("csrf")):
        return stale_form(), fields
    return who, fields


@router.post("/admin/rewards/{reward_id}/approve")
async def admin_approve(reward_id: RewardId, request: Request, rt: RuntimeDep) -> Response:
    who, _ = await checked_admin(request)
    if isinstance(who, Response):
        return who
    try:
        await reward_service.approve(
            rt, program_id=who.program_id, reward_id=reward_id, key_id=who.key_id
        )
    except RewardsError as exc:
        return message("Not approved", exc.message, status=status_for(exc), back="/app/admin")
    return RedirectResponse(f"/app/admin?done=approved&reward={reward_id}", status_code=303)


@router.post("/admin/rewards/{reward_id}/reject")
async def admin_reject(reward_id: RewardId, request: Request, rt: RuntimeDep) -> Response:
    who, fields = await checked_admin(request)
    if isinstance(who, Response):
        return who
    try:
        await reward_service.reject(
            rt,
            program_id=who.program_id,
            reward_id=reward_id,
            key_id=who.key_id,
            data=DecisionIn(reason=fields.get("reason", "")[:500] or None),
        )
    except RewardsError as exc:
        return message("Not rejected", exc.message, status=status_for(exc), back="/app/admin")
    return RedirectResponse(f"/app/admin?done=rejected&reward={reward_id}", status_code=303)


@router.post("/admin/dry-run")
async def admin_dry_run(request: Request, rt: RuntimeDep, session: SessionDep) -> Response:
    who, fields = await checked_admin(request)
    if isinstance(who, Response):
        return who
    text = fields.get("event", "")
    try:
        payload = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return await admin_view(
            request,
            rt,
            session,
            who,
            status=422,
            dry_input=text,
            dry_error=f"That is not JSON: {exc}",
        )
    try:
        result = await views.dry_run(rt, session, who.program_id, payload)
    except RewardsError as exc:
        return await admin_view(
            request,
            rt,
            session,
            who,
            status=status_for(exc),
            dry_input=text,
            dry_error=exc.message,
        )
    shown = orjson.dumps(result, option=orjson.OPT_INDENT_2, default=str).decode()
    return await admin_view(request, rt, session, who, dry_input=text, dry_result=shown)
