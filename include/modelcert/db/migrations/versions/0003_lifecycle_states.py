"""lifecycle states: the database refuses a run, certificate or model version status the lifecycle does not know

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 02:00:00

``modelcert.lifecycle`` is the only code that changes a status; these CHECK constraints make the database say
the same, so a hand-written UPDATE cannot put a row into a state no transition leads to. A run's status set
depends on its kind (a certification ends certified, declined, signoff_timeout or superseded; a recertification
passed, failed or error). ``superseded`` is new: a certification run replaced by a newer run of the same model
version that reached sign-off, and a certificate replaced by a newer certificate.

The constraint texts are written out here (not imported from the models) so this revision stays what it was
when later revisions change the models.
"""
from __future__ import annotations

from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

_RUN = "'running', 'error', 'rejected', 'awaiting_signoff', 'certified', 'declined', 'signoff_timeout', 'superseded'"
_RECERT = "'running', 'passed', 'failed', 'error'"
CHECKS = {
    ('model_versions', 'ck_model_versions_status'):
        "status IN ('registered', 'certified', 'suspended', 'expired', 'revoked')",
    ('certification_runs', 'ck_certification_runs_kind'): "kind IN ('certification', 'recertification')",
    ('certification_runs', 'ck_certification_runs_status'):
        f"(kind = 'certification' AND status IN ({_RUN})) OR (kind = 'recertification' AND status IN ({_RECERT}))",
    ('certificates', 'ck_certificates_status'):
        "status IN ('valid', 'expired', 'suspended', 'revoked', 'superseded')",
}


def upgrade() -> None:
    for (table, name), condition in CHECKS.items():
        op.create_check_constraint(op.f(name), table, condition)


def downgrade() -> None:
    # Rows in a state 0002 did not know would break the old code's assumptions: name them instead of
    # silently keeping them (a superseded run/certificate is history; downgrading past it is a decision).
    conn = op.get_bind()
    found = conn.exec_driver_sql(
        "SELECT (SELECT count(*) FROM certification_runs WHERE status = 'superseded') + "
        "(SELECT count(*) FROM certificates WHERE status = 'superseded')").scalar()
    if found:
        raise RuntimeError(f"downgrade 0003: {found} run(s)/certificate(s) are 'superseded', a status revision "
                           "0002 does not have; they are audited history, so they are not rewritten silently")
    for (table, name), _ in reversed(list(CHECKS.items())):
        op.drop_constraint(op.f(name), table, type_='check')
