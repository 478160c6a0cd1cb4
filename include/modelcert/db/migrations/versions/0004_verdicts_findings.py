"""verdicts and findings: a check's three-way verdict, and the findings register

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 17:00:00

``check_results.verdict`` stores pass / fail / inconclusive (NULL for an informational check): an inconclusive
check has ``passed`` NULL, so ``passed`` alone cannot tell it from an informational one. Existing rows are filled
from ``passed`` (True → pass, False → fail; NULL stays NULL: before this revision nothing was inconclusive).

``findings`` is the register of failed, inconclusive and waived checks of decided runs (``modelcert.findings``).

The constraint texts are written out here (not imported from the models) so this revision stays what it was
when later revisions change the models.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('check_results', sa.Column('verdict', sa.String(length=16), nullable=True))
    op.execute("UPDATE check_results SET verdict = CASE WHEN passed THEN 'pass' ELSE 'fail' END "
               "WHERE passed IS NOT NULL")
    op.create_check_constraint(op.f('ck_check_results_verdict'), 'check_results',
                               "verdict IS NULL OR verdict IN ('pass', 'fail', 'inconclusive')")
    op.create_table(
        'findings',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('run_id', sa.String(length=36), nullable=False),
        sa.Column('key', sa.String(length=512), nullable=False),
        sa.Column('model_name', sa.String(length=128), nullable=False),
        sa.Column('severity', sa.String(length=8), nullable=False),
        sa.Column('verdict', sa.String(length=16), nullable=False),
        sa.Column('required', sa.Boolean(), nullable=False),
        sa.Column('message', sa.Text(), nullable=False),
        sa.Column('meaning', sa.Text(), nullable=False),
        sa.Column('owner', sa.String(length=128), nullable=False),
        sa.Column('remediation', sa.Text(), nullable=False),
        sa.Column('blocking', sa.Boolean(), nullable=False),
        sa.Column('accept_role', sa.String(length=64), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('accepted_by', sa.String(length=128), nullable=True),
        sa.Column('accepted_role', sa.String(length=64), nullable=True),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('evidence_digest', sa.String(length=64), nullable=True),
        sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('carried_from', sa.BigInteger(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.CheckConstraint("severity IN ('high', 'medium', 'low')", name=op.f('ck_findings_severity')),
        sa.CheckConstraint("status IN ('open', 'accepted', 'closed')", name=op.f('ck_findings_status')),
        sa.CheckConstraint("verdict IN ('fail', 'inconclusive')", name=op.f('ck_findings_verdict')),
        sa.ForeignKeyConstraint(['carried_from'], ['findings.id'], name=op.f('fk_findings_carried_from_findings'),
                                ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['run_id'], ['certification_runs.id'],
                                name=op.f('fk_findings_run_id_certification_runs'), ondelete='RESTRICT'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_findings')),
        sa.UniqueConstraint('run_id', 'key', name=op.f('uq_findings_run_id_key')),
    )
    op.create_index(op.f('ix_findings_run_id'), 'findings', ['run_id'], unique=False)
    op.create_index(op.f('ix_findings_model_name'), 'findings', ['model_name'], unique=False)
    op.create_index(op.f('ix_findings_carried_from'), 'findings', ['carried_from'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_findings_carried_from'), table_name='findings')
    op.drop_index(op.f('ix_findings_model_name'), table_name='findings')
    op.drop_index(op.f('ix_findings_run_id'), table_name='findings')
    op.drop_table('findings')
    op.drop_constraint(op.f('ck_check_results_verdict'), 'check_results', type_='check')
    op.drop_column('check_results', 'verdict')
