"""Alembic environment for `bflsync db …` (Connection given), pytest-alembic (Engine given) and the alembic CLI (URL from alembic.ini)."""

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from bflsync.store.schema import POSTGRES_ONLY_COLUMNS, POSTGRES_ONLY_INDEXES, SQLModel, UTCDateTime

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = SQLModel.metadata


def include_object(obj, name, type_, reflected, compare_to):
    """Objects the models do not describe but migrations own are not drift: SQLite's FTS5 shadow
    tables, PostgreSQL's search columns and their indexes."""
    if not reflected or compare_to is not None:
        return True
    if type_ == "table":
        return not name.startswith("finetune_fts")
    if type_ == "column":
        return (obj.table.name, name) not in POSTGRES_ONLY_COLUMNS
    if type_ == "index":
        return name not in POSTGRES_ONLY_INDEXES
    return True


def render_item(type_, obj, autogen_context):
    """Render the UTC wrapper as the plain column type it stores, so revisions need no bflsync import."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations(connection) -> None:
    if connection.dialect.name == "sqlite":
        # Batch mode renames a rebuilt copy into place; SQLite would then re-check every view
        # (0012_views) while the table is momentarily gone. The legacy rename skips that, and the
        # views stay right: the copy takes the table's name.
        connection.exec_driver_sql("PRAGMA legacy_alter_table = ON")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        include_object=include_object,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_on_engine(engine: Engine) -> None:
    """Migrate through a connection of our own, committed at the end (alembic CLI, pytest-alembic)."""
    with engine.connect() as connection:
        run_migrations(connection)
        connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
elif isinstance(connectable := config.attributes.get("connection"), Engine):
    # pytest-alembic's documented recipe (and alembic's cookbook) hands over an Engine.
    run_migrations_on_engine(connectable)
elif connectable is not None:
    # `bflsync db …` passes the Connection it opened, with its own transaction handling.
    run_migrations(connectable)
else:
    # `alembic -x url=sqlite:///path.db …` targets another database than alembic.ini's.
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    engine = create_engine(url)
    try:
        run_migrations_on_engine(engine)
    finally:
        engine.dispose()
