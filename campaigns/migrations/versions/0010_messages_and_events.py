"""Transactional messages (POST /api/v1/messages): a stream's campaign (`campaigns.stream`,
no list or template of its own), deliveries by origin (a list member's row stays unique per
campaign and address; a stream's messages may reach one address many times), each
message's content and attachments, the callers' idempotency keys, and the events of a
delivery (its timeline and the callbacks' outbox)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 04:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

_LIST_ONLY = sa.text("origin = 'list'")


def upgrade() -> None:
    with op.batch_alter_table('campaigns') as batch_op:
        batch_op.alter_column('list_id', existing_type=sa.Integer(), nullable=True)
        batch_op.alter_column('template_id', existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column('stream', sa.String(length=100), nullable=True))
        batch_op.create_unique_constraint('uq_campaigns_stream', ['stream'])
    with op.batch_alter_table('deliveries') as batch_op:
        batch_op.add_column(sa.Column('origin', sa.String(length=10), nullable=False,
                                      server_default='list'))
        batch_op.drop_constraint('uq_delivery_campaign_address', type_='unique')
    op.create_index('uq_delivery_campaign_address', 'deliveries', ['campaign_id', 'address'],
                    unique=True, sqlite_where=_LIST_ONLY, postgresql_where=_LIST_ONLY)
    op.create_table(
        'messages',
        sa.Column('delivery_id', sa.Integer(),
                  sa.ForeignKey('deliveries.id', ondelete='CASCADE'), primary_key=True),
        sa.Column('stream', sa.String(length=100), nullable=False),
        sa.Column('ref', sa.String(length=200), nullable=True, index=True),
        sa.Column('owner', sa.String(length=100), nullable=True),
        sa.Column('from_addr', sa.Text(), nullable=False),
        sa.Column('reply_to', sa.Text(), nullable=True),
        sa.Column('relay', sa.String(length=200), nullable=True),
        sa.Column('template', sa.String(length=200), nullable=True),
        sa.Column('data', sa.JSON(), nullable=True),
        sa.Column('subject', sa.Text(), nullable=True),
        sa.Column('html', sa.Text(), nullable=True),
        sa.Column('text', sa.Text(), nullable=True),
        sa.Column('raw', sa.LargeBinary(), nullable=True),
        sa.Column('attachments_from', sa.Integer(), nullable=True, index=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        'message_attachments',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('delivery_id', sa.Integer(),
                  sa.ForeignKey('deliveries.id', ondelete='CASCADE'), nullable=False,
                  index=True),
        sa.Column('filename', sa.String(length=255), nullable=False),
        sa.Column('content_type', sa.String(length=200), nullable=False),
        sa.Column('content', sa.LargeBinary(), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
    )
    op.create_table(
        'idempotency_keys',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('owner', sa.String(length=100), nullable=False),
        sa.Column('key', sa.String(length=200), nullable=False),
        sa.Column('body_hash', sa.String(length=64), nullable=False),
        sa.Column('response', sa.JSON(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False, index=True),
        sa.UniqueConstraint('owner', 'key', name='uq_idempotency_owner_key'),
    )
    op.create_table(
        'events',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('delivery_id', sa.Integer(), nullable=False, index=True),
        sa.Column('campaign_id', sa.Integer(), nullable=False),
        sa.Column('type', sa.String(length=20), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('code', sa.Integer(), nullable=True),
        sa.Column('category', sa.String(length=20), nullable=True),
        sa.Column('reason', sa.String(length=40), nullable=True),
        sa.Column('detail', sa.Text(), nullable=True),
        sa.Column('callback', sa.String(length=10), nullable=True),
        sa.Column('callback_attempts', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('callback_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('callback_error', sa.Text(), nullable=True),
    )
    op.create_index('ix_event_callback_due', 'events', ['callback', 'callback_at'])


def downgrade() -> None:
    op.drop_index('ix_event_callback_due', table_name='events')
    op.drop_table('events')
    op.drop_table('idempotency_keys')
    op.drop_table('message_attachments')
    op.drop_table('messages')
    op.drop_index('uq_delivery_campaign_address', table_name='deliveries')
    op.execute("DELETE FROM deliveries WHERE origin <> 'list'")
    with op.batch_alter_table('deliveries') as batch_op:
        batch_op.drop_column('origin')
        batch_op.create_unique_constraint('uq_delivery_campaign_address',
                                          ['campaign_id', 'address'])
    op.execute("DELETE FROM campaigns WHERE stream IS NOT NULL")
    with op.batch_alter_table('campaigns') as batch_op:
        batch_op.drop_constraint('uq_campaigns_stream', type_='unique')
        batch_op.drop_column('stream')
        batch_op.alter_column('template_id', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column('list_id', existing_type=sa.Integer(), nullable=False)
