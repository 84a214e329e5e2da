"""The SMTP gateway's credentials (campaigns.gateway.users)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 08:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'gateway_users',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('name', sa.String(100), nullable=False, unique=True),
        sa.Column('password_hash', sa.String(300), nullable=False),
        sa.Column('from_domains', sa.String(2000), nullable=False),
        sa.Column('stream', sa.String(100), nullable=False),
        sa.Column('relay', sa.String(100), nullable=True),
        sa.Column('rate_per_s', sa.Float(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('password_changed_at', sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table('gateway_users')
