"""the relay that took each delivery and the provider's message id

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 16:50:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('relay', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('provider_message_id', sa.String(length=300), nullable=True))
        batch_op.create_index('ix_deliveries_provider_message_id', ['provider_message_id'])


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_provider_message_id')
        batch_op.drop_column('provider_message_id')
        batch_op.drop_column('relay')
