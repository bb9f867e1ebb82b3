"""Who is looking at a page: the credential in its cookie, and the forms' CSRF tokens.

The pages sign in with the credentials the API already knows, kept in a cookie instead of
an ``Authorization`` header:

* ``/app/me`` with an employee token (a JWT): ``/app/me?token=<jwt>`` once, exchanged for
  the ``rewards_me`` cookie (path ``/app/me``) that lives as long as the token;
* ``/app/admin`` with an admin API key typed into a form: the ``rewards_admin`` cookie
  (path ``/app/admin``), for the browser session.

Both cookies are ``HttpOnly`` (no script reads them), ``SameSite=Strict`` (no other site's
page sends them) and ``Secure`` when the page was served over HTTPS. The cookie holds the
credential itself, so nothing is kept on the server and a revoked key or token stops
working here exactly as in the API: ``api.gate`` identifies it with ``api.deps.identify``
on every request.

Every form carries a CSRF token (a synchroniser token, checked on the server): an HMAC of
the session's credential, or before signing in of a random ``rewards_csrf`` cookie. A
page of another site can neither read the cookie nor compute the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request
from fastapi.responses import Response

ME_COOKIE = "rewards_me"
ADMIN_COOKIE = "rewards_admin"
NONCE_COOKIE = "rewards_csrf"  # before signing in: the secret the sign-in form's token is made of
ME_PATH = "/app/me"
ADMIN_PATH = "/app/admin"
ADMIN_SESSION_SECONDS = 8 * 3600
MAX_CREDENTIAL_CHARS = 8192


def credential(request: Request) -> str | None:
    """The credential a page request carries, from its path's cookie (or, on ``GET
    /app/me``, the ``token`` of the link an HR platform hands out); None if it has none."""
    path = request.url.path
    if path == ME_PATH and request.method == "GET" and "token" in request.query_params:
        found: str | None = request.query_params["token"]
    elif path == ME_PATH or path.startswith(ME_PATH + "/"):
        found = request.cookies.get(ME_COOKIE)
    elif path == ADMIN_PATH or path.startswith(ADMIN_PATH + "/"):
        found = request.cookies.get(ADMIN_COOKIE)
    else:
        return None
    found = (found or "").strip()
    return found if 0 < len(found) <= MAX_CREDENTIAL_CHARS else None


def csrf_token(secret: str) -> str:
    """The forms' token for a session whose credential (or pre-sign-in nonce) is ``secret``."""
    key = hashlib.sha256(secret.encode()).digest()
    return hmac.new(key, b"rewards-pages-csrf", hashlib.sha256).hexdigest()


def csrf_ok(secret: str | None, sent: object) -> bool:
    return (
        secret is not None
        and isinstance(sent, str)
        and hmac.compare_digest(csrf_token(secret).encode(), sent.encode())
    )


def secure(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def set_cookie(
    response: Response, request: Request, *, name: str, value: str, path: str, max_age: int | None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        secure=secure(request),
        samesite="strict",
    )


def clear_cookie(response: Response, request: Request, *, name: str, path: str) -> None:
    response.delete_cookie(
        name, path=path, httponly=True, secure=secure(request), samesite="strict"
    )


def nonce(request: Request) -> tuple[str, bool]:
    """The pre-sign-in secret of this browser, and whether it is new (to be set)."""
    found = request.cookies.get(NONCE_COOKIE, "")
    if 20 <= len(found) <= 100:
        return found, False
    return secrets.token_urlsafe(32), True
