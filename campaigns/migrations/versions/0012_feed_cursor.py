"""The queue fed from the ledger: campaigns.fed_until (the highest row id handed to the
broker by the feeder) and campaigns.expanded_at (when the launch finished writing its rows;
a campaign is never finished before), and the index the feeder reads rows in id order by,
which replaces the (campaign_id, status) index it extends

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 05:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('campaigns') as batch_op:
        batch_op.add_column(sa.Column('fed_until', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('expanded_at', sa.DateTime(timezone=True),
                                      nullable=True))
    # campaigns launched before: their rows were all written at launch
    op.execute("UPDATE campaigns SET expanded_at = launched_at WHERE launched_at IS NOT NULL")
    op.create_index('ix_delivery_feed', 'deliveries', ['campaign_id', 'status', 'id'])
    # the new index leads with the same columns: one index fewer to update per status change
    op.drop_index('ix_delivery_campaign_status', table_name='deliveries')


def downgrade() -> None:
    op.create_index('ix_delivery_campaign_status', 'deliveries', ['campaign_id', 'status'])
    op.drop_index('ix_delivery_feed', table_name='deliveries')
    with op.batch_alter_table('campaigns') as batch_op:
        batch_op.drop_column('expanded_at')
        batch_op.drop_column('fed_until')
