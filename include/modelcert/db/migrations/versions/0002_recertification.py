"""recertification: a recertification run names the certificate it checked

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 18:00:00

Recertification runs are rows of ``certification_runs`` with ``kind = 'recertification'`` (the column exists
since 0001); this revision links each of them to the certificate it re-checked on production data.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('certification_runs', sa.Column('certificate_id', sa.String(length=36), nullable=True))
    op.create_index(op.f('ix_certification_runs_certificate_id'), 'certification_runs', ['certificate_id'],
                    unique=False)
    op.create_foreign_key(op.f('fk_certification_runs_certificate_id_certificates'), 'certification_runs',
                          'certificates', ['certificate_id'], ['id'], ondelete='RESTRICT')


def downgrade() -> None:
    op.drop_constraint(op.f('fk_certification_runs_certificate_id_certificates'), 'certification_runs',
                       type_='foreignkey')
    op.drop_index(op.f('ix_certification_runs_certificate_id'), table_name='certification_runs')
    op.drop_column('certification_runs', 'certificate_id')
