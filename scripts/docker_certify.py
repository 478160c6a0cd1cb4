"""Certify demo models through a running docker-compose deployment, over the REST API v2 only.

Standard library only (runs with any host python3; the deployment has everything else). Used by
scripts/docker_smoke.sh; also usable by hand against a stack started as docs/docker.md shows:

    python3 scripts/docker_certify.py --base-url http://localhost:8080 \\
        --run german_credit.yaml:awaiting_signoff --run adult_income.yaml:rejected

For each ``SPEC:EXPECTED`` it triggers ``certify_model`` with ``conf {"spec": SPEC}`` (run id
``<model>_<version>__<UTC timestamp>`` when ``--run-id SPEC=ID`` names one, as the README asks), waits for the DAG
run to finish, and checks three things agree with EXPECTED: the modelcert run's status (``/modelcert/api/runs``),
that the verdict task named for it succeeded, and that the DAG run succeeded. It prints which Celery worker ran each
task (the task instances' hostnames) and, with ``--min-workers N``, fails unless at least N distinct ones did.
Exit 0 when every run ends as expected, 1 otherwise, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DAG_ID = "certify_model"
#: DAGs a certification needs unpaused (the compose file pauses new DAGs): the run, and its sign-off hand-off.
DAGS = ("certify_model", "signoff_model")
VERDICTS = ("awaiting_signoff", "rejected", "error")


class Api:
    def __init__(self, base_url: str, user: str, password: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.user, self.password = user, password
        self.token: str | None = None

    def call(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if auth:
            if self.token is None:
                self.login()
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def login(self) -> None:
        status, out = self.call("POST", "/auth/token", {"username": self.user, "password": self.password},
                                auth=False)
        if status not in (200, 201):
            raise SystemExit(f"login as {self.user} failed: {status} {out}")
        self.token = out["access_token"]


def wait(what: str, predicate: Any, timeout: float, interval: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--user", default="admin")
    p.add_argument("--password", default="admin")
    p.add_argument("--run", action="append", required=True, metavar="SPEC:EXPECTED",
                   help=f"a shipped spec and the verdict it must reach ({', '.join(VERDICTS)})")
    p.add_argument("--run-id", action="append", default=[], metavar="SPEC=ID", help="DAG run id for SPEC")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds for all runs to finish (default 900)")
    p.add_argument("--min-workers", type=int, default=0, help="fail unless this many distinct workers ran tasks")
    args = p.parse_args(argv)
    args.expected = {}
    for item in args.run:
        spec, sep, expected = item.rpartition(":")
        if not sep or not spec or expected not in VERDICTS:
            p.error(f"--run {item!r}: expected SPEC:VERDICT with VERDICT one of {', '.join(VERDICTS)}")
        args.expected[spec] = expected
    args.run_ids = {}
    for item in args.run_id:
        spec, sep, run_id = item.partition("=")
        if not sep or spec not in args.expected or not run_id:
            p.error(f"--run-id {item!r}: expected SPEC=ID for a SPEC given with --run")
        args.run_ids[spec] = run_id
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    api = Api(args.base_url, args.user, args.password)
    t0 = time.monotonic()
    wait("the api-server", lambda: api.call("GET", "/api/v2/version", auth=False)[0] == 200, 300)
    for dag in DAGS:
        wait(f"DAG {dag} to be parsed", lambda dag=dag: api.call("GET", f"/api/v2/dags/{dag}")[0] == 200, 300)
        status, out = api.call("PATCH", f"/api/v2/dags/{dag}?update_mask=is_paused", {"is_paused": False})
        if status != 200:
            print(f"unpausing {dag} failed: {status} {out}", file=sys.stderr)
            return 1
    runs: dict[str, str] = {}
    for spec in args.expected:
        body: dict[str, Any] = {"logical_date": None, "conf": {"spec": spec}}
        if spec in args.run_ids:
            body["dag_run_id"] = args.run_ids[spec]
        status, out = api.call("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", body)
        if status not in (200, 201):
            print(f"trigger {spec} failed: {status} {out}", file=sys.stderr)
            return 1
        runs[spec] = out["dag_run_id"]
        print(f"triggered {DAG_ID} {spec}: {runs[spec]}", flush=True)

    def dag_run(run_id: str) -> dict[str, Any]:
        status, out = api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}")
        return out if status == 200 else {}

    def finished() -> bool:
        return all(dag_run(r).get("state") in ("success", "failed") for r in runs.values())

    wait("the certification runs to finish", finished, args.timeout, interval=5)
    print(f"runs finished {time.monotonic() - t0:.0f}s after the api-server answered", flush=True)

    _, listed = api.call("GET", "/modelcert/api/runs?limit=500")
    by_airflow = {r["airflow_run_id"]: r for r in listed} if isinstance(listed, list) else {}
    ok = True
    hosts: set[str] = set()
    for spec, run_id in runs.items():
        expected = args.expected[spec]
        state = dag_run(run_id).get("state")
        status, out = api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}"
                                      f"/taskInstances?limit=100")
        tis = out.get("task_instances", []) if status == 200 else []
        states = {ti["task_id"]: ti["state"] for ti in tis}
        ran = {ti["task_id"]: ti.get("hostname") for ti in tis if ti.get("hostname")}
        hosts.update(ran.values())
        mc = by_airflow.get(run_id, {})
        verdict_task = [t for t in VERDICTS if states.get(t) == "success"]
        good = mc.get("status") == expected and verdict_task == [expected] and state == "success"
        ok = ok and good
        print(f"{'ok  ' if good else 'FAIL'} {spec}: modelcert status {mc.get('status')!r} (expected {expected!r}), "
              f"verdict task {verdict_task}, DAG run {state}")
        for reason in (mc.get("reasons") or [])[:4]:
            print(f"       - {reason}")
        if not good:
            print(f"       task states: {json.dumps(states, sort_keys=True)}")
        print(f"       tasks per worker: {json.dumps(_count(ran.values()), sort_keys=True)}")
    print(f"distinct worker hostnames over all tasks: {len(hosts)}")
    if len(hosts) < args.min_workers:
        print(f"FAIL: tasks ran on {len(hosts)} worker(s), at least {args.min_workers} expected")
        ok = False
    return 0 if ok else 1


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
