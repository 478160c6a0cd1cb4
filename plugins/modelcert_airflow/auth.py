"""Who is calling the modelcert plugin app: the caller's own Airflow JWT, validated by Airflow.

Airflow 3 mounts plugin FastAPI apps *without* authentication, so every request here must prove itself:

- ``Authorization: Bearer <jwt>``: API clients and ``modelcert approve`` (token from ``POST /auth/token``);
- the ``_token`` cookie the Airflow UI sets at login (HttpOnly, SameSite=Lax): our pages, and the buttons
  on them (same-origin ``fetch`` sends the cookie; page JavaScript never sees the token).

The token is checked by the configured auth manager's ``get_user_from_token`` — the same call Airflow's own
REST API makes (``airflow.api_fastapi.core_api.security.resolve_user_from_token``): signature, expiry,
audience/issuer, revocation at logout, then the user. The user's *certification* roles come from
``modelcert.governance.load_roles`` (configuration), never from the token.

A cookie is ambient (the browser sends it by itself), so a state-changing request authenticated by the
cookie must also carry ``X-Modelcert-CSRF``: a value derived from the token, embedded in our pages, that
another site cannot compute or read.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from fastapi import Request

#: Airflow's UI cookie (``airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN``).
TOKEN_COOKIE = "_token"
CSRF_HEADER = "X-Modelcert-CSRF"
#: Stored with every sign-off made through this app (``signoffs.authenticated_via``).
AUTHENTICATED_VIA = "api:airflow-token"


class NotAuthenticated(Exception):
    """No token, or a token Airflow does not accept (HTTP 401)."""


class CsrfRefused(Exception):
    """A cookie-authenticated state change without the page's CSRF header (HTTP 403)."""


@dataclass(frozen=True)
class Caller:
    """An authenticated Airflow user and the certification roles configuration gives them."""

    name: str
    roles: frozenset[str]
    #: "bearer" or "cookie": how the token arrived.
    via: str
    token: str

    @property
    def csrf(self) -> str:
        return csrf_for(self.token)

    def identity(self) -> Any:
        from modelcert.governance import Identity

        return Identity(name=self.name, authenticated_via=AUTHENTICATED_VIA)


def csrf_for(token: str) -> str:
    """The CSRF value bound to one token: unforgeable without the token itself."""
    return hmac.new(token.encode(), b"modelcert-csrf", hashlib.sha256).hexdigest()[:40]


def token_from(request: Request) -> tuple[str | None, str]:
    """The caller's token and where it came from. An explicit Authorization header wins over the cookie,
    as in Airflow's own ``get_user``."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise NotAuthenticated("the Authorization header must be 'Bearer <Airflow token>'")
        return credentials.strip(), "bearer"
    return request.cookies.get(TOKEN_COOKIE) or None, "cookie"


def auth_manager() -> Any:
    """Airflow's auth manager: the api-server initialises it at start-up; in-process tests create it."""
    from airflow.api_fastapi.app import create_auth_manager, get_auth_manager

    try:
        return get_auth_manager()
    except RuntimeError:
        return create_auth_manager()


def login_url(next_url: str | None = None) -> str:
    """Airflow's login page (of whichever auth manager is configured), returning to ``next_url``."""
    try:
        return str(auth_manager().get_url_login(next_url=next_url))
    except Exception:  # noqa: BLE001 - a link on an error page must never fail the page
        return "/auth/login"


async def authenticate(request: Request) -> Caller:
    """The caller, or NotAuthenticated with a message saying what to do."""
    from jwt import ExpiredSignatureError, InvalidTokenError

    from modelcert.governance import load_roles, roles_of

    token, via = token_from(request)
    if not token:
        raise NotAuthenticated("not authenticated: send 'Authorization: Bearer <token>' (get one from "
                               "POST /auth/token) or log in to the Airflow UI")
    try:
        user = await auth_manager().get_user_from_token(token)
    except ExpiredSignatureError as exc:
        raise NotAuthenticated("your Airflow token has expired; log in again") from exc
    except InvalidTokenError as exc:
        raise NotAuthenticated(f"Airflow does not accept this token ({exc}); log in again") from exc
    name = str(user.get_name())
    return Caller(name=name, roles=frozenset(roles_of(name, load_roles())), via=via, token=token)


def check_csrf(request: Request, caller: Caller) -> None:
    """Cookie-authenticated state changes must carry the page's CSRF value (Bearer calls need not)."""
    if caller.via != "cookie":
        return
    sent = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(sent, caller.csrf):
        raise CsrfRefused(f"a request authenticated by the Airflow UI cookie must carry the {CSRF_HEADER} header "
                          "of the page it came from (reload the page), or use 'Authorization: Bearer <token>'")
