"""suppressions.scope: what a suppression stops (all, bulk, stream:NAME, list:NAME); one
address may have several, so the unique key is (address, scope)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 21:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

#: how SQLite's batch mode names the unnamed unique constraint of 0001 once reflected
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _address_unique() -> str:
    """The name of the unique constraint on suppressions.address alone (PostgreSQL calls it
    suppressions_address_key; SQLite leaves it unnamed, so the naming convention's)."""
    for unique in sa.inspect(op.get_bind()).get_unique_constraints('suppressions'):
        if unique['column_names'] == ['address'] and unique.get('name'):
            return str(unique['name'])
    return 'uq_suppressions_address'


def upgrade() -> None:
    old = _address_unique()
    with op.batch_alter_table('suppressions', naming_convention=_NAMING) as batch_op:
        batch_op.add_column(sa.Column('scope', sa.String(length=220), nullable=False,
                                      server_default='all'))
        batch_op.drop_constraint(old, type_='unique')
        batch_op.create_unique_constraint('uq_suppression_address_scope', ['address', 'scope'])


def downgrade() -> None:
    # one row per address again: keep the widest scope's (all, then the oldest)
    op.execute("DELETE FROM suppressions WHERE id NOT IN (SELECT MIN(id) FROM suppressions s "
               "WHERE s.scope = 'all' GROUP BY s.address) AND address IN (SELECT address FROM "
               "suppressions WHERE scope = 'all')")
    op.execute("DELETE FROM suppressions WHERE id NOT IN (SELECT MIN(id) FROM suppressions "
               "GROUP BY address)")
    with op.batch_alter_table('suppressions', naming_convention=_NAMING) as batch_op:
        batch_op.drop_constraint('uq_suppression_address_scope', type_='unique')
        batch_op.drop_column('scope')
        batch_op.create_unique_constraint('uq_suppressions_address', ['address'])
