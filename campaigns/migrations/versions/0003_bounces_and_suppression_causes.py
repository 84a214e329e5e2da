"""bounce events, bounce category on deliveries, suppression causes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 16:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('bounces',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('report_key', sa.String(length=100), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('delivery_id', sa.Integer(), nullable=True),
    sa.Column('campaign_id', sa.Integer(), nullable=True),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('category', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.String(length=40), nullable=False),
    sa.Column('permanent', sa.Boolean(), nullable=False),
    sa.Column('final', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=True),
    sa.Column('reply_code', sa.Integer(), nullable=True),
    sa.Column('diagnostic', sa.Text(), nullable=True),
    sa.Column('feedback_type', sa.String(length=40), nullable=True),
    sa.Column('action', sa.String(length=40), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('report_key')
    )
    op.create_index('ix_bounce_address_created', 'bounces', ['address', 'created_at'])
    op.create_index('ix_bounce_campaign', 'bounces', ['campaign_id'])
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bounce_category', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('bounce_reason', sa.String(length=40), nullable=True))
    with op.batch_alter_table('suppressions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=20), nullable=False,
                                      server_default='manual'))
        batch_op.add_column(sa.Column('category', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('delivery_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('bounce_id', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('suppressions', schema=None) as batch_op:
        batch_op.drop_column('bounce_id')
        batch_op.drop_column('delivery_id')
        batch_op.drop_column('category')
        batch_op.drop_column('source')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('bounce_reason')
        batch_op.drop_column('bounce_category')
    op.drop_index('ix_bounce_campaign', table_name='bounces')
    op.drop_index('ix_bounce_address_created', table_name='bounces')
    op.drop_table('bounces')
