"""imports: one row per contacts import, with the file's identity and the last line of the
last committed batch, so an interrupted import continues where it stopped

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 04:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'imports',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('list_name', sa.String(length=200), nullable=False),
        sa.Column('path', sa.Text(), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('line', sa.Integer(), nullable=False),
        sa.Column('rows', sa.Integer(), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index('ix_imports_file', 'imports', ['sha256', 'list_name'])


def downgrade() -> None:
    op.drop_index('ix_imports_file', table_name='imports')
    op.drop_table('imports')
