"""The migrations and the models describe the same schema."""

import asyncio
import os
import sys
import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import make_url, text

from rewards.db.engine import create_engine
from rewards.db.migrate import alembic_config
from rewards.db.schema import Base
from rewards.runtime import Runtime
from rewards.settings import Settings


# Expression indexes (users' lower(email)) cannot be reflected or compared; they are
# created by the migration and named in the model, and skipped here.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping")
async def test_migrations_match_the_models(runtime: Runtime) -> None:
    def diff(connection):  # type: ignore[no-untyped-def]
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with runtime.engine.connect() as connection:
        differences = await connection.run_sync(diff)
    assert differences == []


@pytest.mark.postgres
@pytest.mark.skipif(
    not os.environ.get("REWARDS_DATABASE_URL", "").startswith("postgresql"),
    reason="concurrent migrations are serialised by a PostgreSQL advisory lock",
)
async def test_processes_starting_together_migrate_one_after_the_other(
    settings: Settings,
) -> None:
    """``serve`` and ``worker`` both migrate at start: on an empty database, three
    processes at once all succeed, and the schema ends at head once."""
    url = make_url(settings.effective_database_url)
    name = f"rewards_migrate_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url.set(database="postgres").render_as_string(hide_password=False))
    try:
        async with admin.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        fresh = url.set(database=name).render_as_string(hide_password=False)
        env = {**os.environ, "REWARDS_DATABASE_URL": fresh}
        command = [sys.executable, "-m", "rewards.cli", "db", "upgrade"]
        migrating = [
            await asyncio.create_subprocess_exec(*command, env=env, stderr=asyncio.subprocess.PIPE)
            for _ in range(3)
        ]
        for process in migrating:
            _, err = await asyncio.wait_for(process.communicate(), timeout=120)
            assert process.returncode == 0, err.decode()
        engine = create_engine(fresh)
        try:
            async with engine.connect() as connection:
                versions = (
                    await connection.execute(text("SELECT version_num FROM alembic_version"))
                ).all()
        finally:
            await engine.dispose()
        head = ScriptDirectory.from_config(alembic_config(fresh)).get_current_head()
        assert [version for (version,) in versions] == [head]
    finally:
        async with admin.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
