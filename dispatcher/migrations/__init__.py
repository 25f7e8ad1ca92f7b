"""The SQL store's schema history: Alembic revisions, run from code (no alembic.ini needed).

`upgrade(connection)` brings a database to `HEAD` inside the caller's transaction and
`current(connection)` reads where one is; `SqlStore.migrate()` and `current_revision()` call
them through `AsyncConnection.run_sync`. To add a revision, write `versions/NNNN_<what>.py` with
`down_revision` set to the last one (or run `alembic.command.revision(config(), "what")`, which
uses `script.py.mako`), and move `HEAD` to it: a test checks that it names the newest.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

#: the newest revision: what `upgrade` brings a database to
HEAD = "0002"

_HERE = Path(__file__).resolve().parent


def config(connection: Connection | None = None) -> Config:
    """An Alembic config for this package; `env.py` runs the revisions on `connection`."""
    alembic_config = Config()
    # the config is a ConfigParser: a "%" in the path would read as interpolation
    alembic_config.set_main_option("script_location", str(_HERE).replace("%", "%%"))
    if connection is not None:
        alembic_config.attributes["connection"] = connection
    return alembic_config


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Create or upgrade the schema to `HEAD` (or to an older `revision`, for tests of the
    upgrade path); a database already there is left as it is."""
    command.upgrade(config(connection), revision)


def current(connection: Connection) -> str | None:
    """The revision the database is at, or None before the first `upgrade`."""
    return MigrationContext.configure(connection).get_current_revision()
