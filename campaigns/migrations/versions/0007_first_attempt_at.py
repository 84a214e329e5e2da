"""deliveries.first_attempt_at: when a row was first tried; a row deferred for longer than
[sending] max_defer_s after it becomes `expired` (no constraint lists the statuses)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 21:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('first_attempt_at', sa.DateTime(timezone=True),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('first_attempt_at')
