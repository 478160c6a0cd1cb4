"""Sign-off through the modelcert API that the Airflow plugin serves (``/modelcert/api``).

Used by ``modelcert approve|decline`` when ``MODELCERT_API_URL`` (the Airflow base URL) is set: the CLI logs in
to Airflow (``POST /auth/token``) or uses ``MODELCERT_TOKEN``, and the approver is whoever that token belongs
to — the server applies every sign-off rule (``governance.record_decision``). Only httpx here: the core
library never imports Airflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from modelcert.errors import ModelcertError, RunNotFound, SignoffError

API_URL_ENV = "MODELCERT_API_URL"
TOKEN_ENV = "MODELCERT_TOKEN"
USER_ENV = "MODELCERT_USER"
PASSWORD_ENV = "MODELCERT_PASSWORD"
API_PREFIX = "/modelcert/api"


@dataclass
class ApiClient:
    base_url: str
    token: str
    timeout: float = 60.0

    @staticmethod
    def login(base_url: str, username: str, password: str, *, timeout: float = 60.0) -> ApiClient:
        """Exchange Airflow credentials for a JWT at ``POST /auth/token`` (the auth manager's login)."""
        base = base_url.rstrip("/")
        try:
            r = httpx.post(f"{base}/auth/token", json={"username": username, "password": password}, timeout=timeout)
        except httpx.HTTPError as exc:
            raise ModelcertError(f"cannot reach Airflow at {base} ({exc}); check {API_URL_ENV}") from exc
        if r.status_code in (400, 401, 403):
            raise SignoffError(f"Airflow refused the login of {username!r} at {base}/auth/token: {_detail(r)}",
                               code="unauthenticated")
        if r.status_code >= 300:
            raise ModelcertError(f"login at {base}/auth/token failed: HTTP {r.status_code} {_detail(r)}")
        return ApiClient(base, str(r.json()["access_token"]), timeout)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{self.base_url}{API_PREFIX}{path}"
        try:
            r = httpx.request(method, url, headers={"Authorization": f"Bearer {self.token}"}, timeout=self.timeout,
                              **kwargs)
        except httpx.HTTPError as exc:
            raise ModelcertError(f"cannot reach the modelcert API at {url} ({exc})") from exc
        if r.status_code < 300:
            return r.json()
        detail, code = _detail(r), _code(r)
        if r.status_code == 404 and code == "not_found":
            raise RunNotFound(detail)
        if r.status_code == 404:
            raise ModelcertError(f"{url} not found: is the modelcert plugin installed in this Airflow? ({detail})")
        if r.status_code == 401:
            raise SignoffError(f"not authenticated: {detail}", code="unauthenticated")
        if code:
            raise SignoffError(detail, code=code)
        raise ModelcertError(f"{method} {url}: HTTP {r.status_code} {detail}")

    def me(self) -> dict[str, Any]:
        return dict(self._call("GET", "/me"))

    def run(self, run_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/runs/{run_id}"))

    def review(self, run_id: str) -> dict[str, Any]:
        """The approval summary the server shows approvers (``review`` of GET /runs/{id})."""
        return dict(self.run(run_id)["review"])

    def resolve_run(self, ref: str) -> str:
        """The full run id for ``ref`` (an id or the unique prefix ``modelcert status`` prints), matched by
        the same rule as on the direct path, among the latest runs the server lists."""
        from modelcert.refs import RUN_ID_LENGTH, normalize_ref, pick

        cleaned = normalize_ref(ref)
        if len(cleaned) == RUN_ID_LENGTH:
            return cleaned
        return pick(cleaned, [str(r["run_id"]) for r in self._call("GET", "/runs", params={"limit": 500})])

    def decide(self, run_id: str, decision: str, *, role: str, evidence_digest: str, text: str) -> dict[str, Any]:
        """Approve or decline ``evidence_digest``: the digest the approver reviewed. Required, and never read back
        from the server to fill it in (that would approve whatever the run holds now, seen or not)."""
        if not evidence_digest or not evidence_digest.strip():
            raise SignoffError("evidence_digest: required — the evidence digest you reviewed (`modelcert report RUN` "
                               "shows it)", code="invalid")
        body: dict[str, Any] = {"role": role, "evidence_digest": evidence_digest.strip()}
        body["comment" if decision == "approve" else "reason"] = text
        return dict(self._call("POST", f"/runs/{run_id}/{decision}", json=body))

    def findings(self, run_id: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/runs/{run_id}/findings"))

    def accept_findings(self, run_id: str, *, role: str, reason: str, evidence_digest: str,
                        finding_ids: list[int] | None) -> dict[str, Any]:
        """Accept findings (``finding_ids``, or None: every open one ``role`` accepts) for the digest reviewed."""
        if not evidence_digest or not evidence_digest.strip():
            raise SignoffError("evidence_digest: required — the evidence digest you reviewed (`modelcert report RUN` "
                               "shows it)", code="invalid")
        body: dict[str, Any] = {"role": role, "reason": reason, "evidence_digest": evidence_digest.strip()}
        if finding_ids is None:
            body["all"] = True
        else:
            body["finding_ids"] = finding_ids
        return dict(self._call("POST", f"/runs/{run_id}/findings/accept", json=body))


def _detail(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:300]
    if isinstance(body, dict) and body.get("detail"):
        return str(body["detail"])
    return str(body)[:300]


def _code(r: httpx.Response) -> str | None:
    try:
        body = r.json()
    except ValueError:
        return None
    return str(body["code"]) if isinstance(body, dict) and body.get("code") else None


def connect(base_url: str, *, token: str | None = None, user: str | None = None,
            password: str | None = None) -> ApiClient:
    """A client authenticated by ``token``, or by logging in as ``user``; one line when neither is given."""
    if token:
        return ApiClient(base_url.rstrip("/"), token)
    if user and password:
        return ApiClient.login(base_url, user, password)
    raise SignoffError(f"{API_URL_ENV} is set, so sign-off goes through Airflow: give --user and --password "
                       f"(or {USER_ENV}/{PASSWORD_ENV}), or a token in {TOKEN_ENV}", code="unauthenticated")


def check_approver(client: ApiClient, approver: str | None) -> str:
    """The authenticated user's name; ``approver``, when given, must be that user."""
    me = client.me()
    if approver and approver != me["user"]:
        raise SignoffError(f"--approver {approver} is not the authenticated Airflow user {me['user']}: through the API "
                           "the approver is whoever the token belongs to", code="identity_mismatch")
    return str(me["user"])
