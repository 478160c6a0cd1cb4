"""dossiers: the sha256 of every document generated from a run's evidence (report, model card, regulation dossier)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 17:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'dossiers',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('run_id', sa.String(length=36), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('format', sa.String(length=8), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('bytes', sa.BigInteger(), nullable=False),
        sa.Column('frozen', sa.Boolean(), nullable=False),
        sa.Column('certificate_id', sa.String(length=36), nullable=True),
        sa.Column('supersedes_id', sa.BigInteger(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.ForeignKeyConstraint(['run_id'], ['certification_runs.id'], name=op.f('fk_dossiers_run_id_certification_runs'),
                                ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['certificate_id'], ['certificates.id'],
                                name=op.f('fk_dossiers_certificate_id_certificates'), ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['supersedes_id'], ['dossiers.id'], name=op.f('fk_dossiers_supersedes_id_dossiers'),
                                ondelete='RESTRICT'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_dossiers')),
        sa.UniqueConstraint('run_id', 'kind', 'format', 'version', name=op.f('uq_dossiers_run_id_kind_format_version')),
    )
    op.create_index(op.f('ix_dossiers_run_id'), 'dossiers', ['run_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_dossiers_run_id'), table_name='dossiers')
    op.drop_table('dossiers')
