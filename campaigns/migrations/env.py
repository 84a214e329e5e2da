from __future__ import annotations

from alembic import context

from campaigns.models import Base

config = context.config
engine = config.attributes.get("connection_engine")
if engine is None:  # `alembic upgrade head` from the command line
    from campaigns.db import make_engine
    from campaigns.settings import load_settings
    engine = make_engine(load_settings().database_url)

with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
