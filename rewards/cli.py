"""The ``rewards`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from rewards.settings import Settings

app = typer.Typer(help="Gamified rewards engine.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
programs_app = typer.Typer(help="Programs.", no_args_is_help=True)
rules_app = typer.Typer(help="Rule sets.", no_args_is_help=True)
ledger_app = typer.Typer(help="The points ledger.", no_args_is_help=True)
challenges_app = typer.Typer(help="Challenges.", no_args_is_help=True)
leaderboards_app = typer.Typer(help="Leaderboards (Redis).", no_args_is_help=True)
tokens_app = typer.Typer(help="Employee tokens.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(programs_app, name="programs")
app.add_typer(rules_app, name="rules")
app.add_typer(ledger_app, name="ledger")
app.add_typer(challenges_app, name="challenges")
app.add_typer(leaderboards_app, name="leaderboards")
app.add_typer(tokens_app, name="tokens")


def migrate(settings: Settings) -> None:
    from rewards.db.migrate import upgrade

    upgrade(settings.effective_database_url)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    settings = Settings()
    migrate(settings)
    typer.echo(f"database at {settings.effective_database_url.split('@')[-1]} is up to date")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    with_worker: Annotated[
        bool, typer.Option("--with-worker", help="Run the background worker in this process too.")
    ] = False,
    workers: Annotated[
        int, typer.Option(help="API processes (each opens its own connections).")
    ] = 1,
    with_sandbox: Annotated[
        bool, typer.Option("--with-sandbox", help="Run the local GIFQ sandbox beside the API.")
    ] = False,
    sandbox_port: Annotated[int, typer.Option(help="Port of the GIFQ sandbox.")] = 8099,
) -> None:
    """Run the HTTP API (migrating the database first)."""
    import uvicorn

    from rewards.runtime import resolve_redis_url

    settings = Settings()
    migrate(settings)
    redis_url, embedded = resolve_redis_url(settings)
    if embedded is not None:
        typer.echo(f"embedded redis-server on {embedded.socket_path}")
    typer.echo(f"database: {settings.effective_database_url.split('@')[-1]}")
    typer.echo(f"platform key: {settings.resolved_platform_key()}")
    if with_sandbox and workers > 1:
        raise typer.BadParameter(
            "--with-sandbox runs in a single process; run `rewards sandbox` beside"
        )
    try:
        if workers > 1:
            # Worker processes inherit the Redis URL, so they share the embedded server.
            os.environ["REWARDS_REDIS_URL"] = redis_url
            uvicorn.run(
                "api.app:app_factory",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_level="warning",
            )
        else:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                runner.run(
                    _serve_one(
                        settings,
                        redis_url,
                        host,
                        port,
                        with_worker=with_worker,
                        sandbox_port=sandbox_port if with_sandbox else None,
                    )
                )
    finally:
        if embedded is not None:
            embedded.stop()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when it is installed (it is, with uvicorn[standard]), as uvicorn itself picks."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _serve_one(
    settings: Settings,
    redis_url: str,
    host: str,
    port: int,
    *,
    with_worker: bool,
    sandbox_port: int | None,
) -> None:
    import uvicorn

    from api.app import create_app
    from rewards.runtime import open_runtime
    from workers.worker import build_worker

    async with contextlib.AsyncExitStack() as stack:
        if sandbox_port is not None:
            from sandbox.server import running_sandbox

            sb = await stack.enter_async_context(running_sandbox(host=host, port=sandbox_port))
            typer.echo(
                f"GIFQ sandbox: {sb.base_url} (X-Api-Token: {sb.api_token}; control API under /sandbox)"
            )
        rt = await open_runtime(settings, redis_url=redis_url)
        stack.push_async_callback(rt.close)
        if with_worker:
            worker = build_worker(rt, handle_signals=False)
            task = asyncio.create_task(worker.async_run())
            stack.push_async_callback(worker.close)
            stack.push_async_callback(_cancel, task)
        app = create_app(settings, runtime=rt)
        await uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info")).serve()


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@app.command()
def worker() -> None:
    """Run the background worker (arq)."""
    from rewards.runtime import resolve_redis_url
    from workers.worker import run_standalone

    settings = Settings()
    migrate(settings)
    redis_url, embedded = resolve_redis_url(settings)
    try:
        asyncio.run(run_standalone(settings.model_copy(update={"redis_url": redis_url})))
    finally:
        if embedded is not None:
            embedded.stop()


@app.command()
def sandbox(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8099,
    seed: Annotated[
        Path | None, typer.Option(help="Seed file (YAML or JSON); default: the bundled seed.")
    ] = None,
) -> None:
    """Run the local GIFQ sandbox: GIFQ's payout API, in memory, with fault injection."""
    from sandbox.server import run

    run(host=host, port=port, seed=seed)


@programs_app.command("create")
def programs_create(
    id: Annotated[str, typer.Option(help="Program id (slug).")],
    name: Annotated[str, typer.Option(help="Display name.")],
    timezone: Annotated[str, typer.Option(help="IANA timezone.")] = "UTC",
    currency: Annotated[str, typer.Option(help="ISO 4217 currency.")] = "USD",
) -> None:
    """Create a program and print its first admin API key (shown once)."""
    from pydantic import ValidationError

    from rewards.errors import RewardsError
    from rewards.services.programs import ProgramIn, create_program

    settings = Settings()
    migrate(settings)
    try:
        data = ProgramIn(id=id, name=name, timezone=timezone, currency=currency)
    except ValidationError as exc:
        for error in exc.errors():
            typer.echo(f"error: {'.'.join(map(str, error['loc']))}: {error['msg']}", err=True)
        raise typer.Exit(2) from None

    async def run() -> str:
        from rewards.db.engine import create_engine, create_sessionmaker
        from rewards.runtime import utc_now

        engine = create_engine(settings.effective_database_url)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                _, _, secret = await create_program(session, data, now=utc_now())
            return secret
        finally:
            await engine.dispose()

    try:
        secret = asyncio.run(run())
    except RewardsError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"program '{id}' created; admin API key (shown once):\n{secret}")


@rules_app.command("check")
def rules_check(files: Annotated[list[Path], typer.Argument(help="Rule files to check.")]) -> None:
    """Validate rule files; print file:line:column for every problem; exit 1 if any."""
    from rules import RulesInvalid, load_rules_file

    failed = False
    for path in files:
        try:
            ruleset = load_rules_file(path)
        except RulesInvalid as exc:
            failed = True
            typer.echo(str(exc), err=True)
            continue
        typer.echo(
            f"{path}: ok ({len(ruleset.rules)} rules, {len(ruleset.streaks)} streaks, {len(ruleset.thresholds)} thresholds)"
        )
    if failed:
        raise typer.Exit(1)


@challenges_app.command("check")
def challenges_check(
    files: Annotated[list[Path], typer.Argument(help="Challenges files to check.")],
) -> None:
    """Validate challenges files; print file:line:column for every problem; exit 1 if any."""
    from rules import RulesInvalid
    from rules.challenges import load_challenges_file

    failed = False
    for path in files:
        try:
            found = load_challenges_file(str(path))
        except RulesInvalid as exc:
            failed = True
            typer.echo(str(exc), err=True)
            continue
        typer.echo(f"{path}: ok ({len(found.challenges)} challenges)")
    if failed:
        raise typer.Exit(1)


@challenges_app.command("apply")
def challenges_apply(
    file: Annotated[Path, typer.Argument(help="The challenges file (YAML).")],
    program: Annotated[str, typer.Option(help="The program to apply it to.")],
) -> None:
    """Validate a challenges file and put it in force for a program (a new version).

    Works on the database directly, like ``programs create``; running API processes
    pick the change up within their program cache time (a second by default).
    """
    from rewards.errors import RewardsError
    from rules import RulesInvalid
    from rules.challenges import load_challenges_file

    try:
        load_challenges_file(str(file))
    except RulesInvalid as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    source = file.read_text(encoding="utf-8")
    settings = Settings()
    migrate(settings)

    async def run() -> tuple[int, bool]:
        from rewards.db.engine import create_engine, create_sessionmaker
        from rewards.runtime import utc_now
        from rewards.services import audit
        from rewards.services.challenges import put_challenges

        audit.bind("cli")
        engine = create_engine(settings.effective_database_url)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                row, changed = await put_challenges(
                    None,
                    session,
                    program_id=program,
                    source=source,
                    author_key_id=None,
                    via="cli",
                    now=utc_now(),
                )
                return row.version, changed
        finally:
            await engine.dispose()

    try:
        version, changed = asyncio.run(run())
    except RewardsError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    if changed:
        typer.echo(f"challenges version {version} is in force for program '{program}'")
    else:
        typer.echo(f"unchanged: version {version} already has this text")


@ledger_app.command("verify")
def ledger_verify(
    program: Annotated[str | None, typer.Option(help="Only this program.")] = None,
) -> None:
    """Check that every cached balance equals its ledger sum; exit 1 on any difference."""
    from rewards.db.engine import create_engine, create_sessionmaker
    from rewards.services.ledger import verify_balances

    settings = Settings()

    async def run() -> list[dict[str, object]]:
        engine = create_engine(settings.effective_database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                return await verify_balances(session, program)
        finally:
            await engine.dispose()

    mismatches = asyncio.run(run())
    for row in mismatches:
        typer.echo(f"mismatch: {row}", err=True)
    if mismatches:
        raise typer.Exit(1)
    typer.echo("every balance equals its ledger sum")


@leaderboards_app.command("rebuild")
def leaderboards_rebuild(
    program: Annotated[str | None, typer.Option(help="Only this program.")] = None,
) -> None:
    """Rebuild every board exactly from the database (after a Redis loss or a bug)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
    )
    from sqlalchemy import select

    from rewards.db.models import Program
    from rewards.errors import RewardsError
    from rewards.leaderboards.rebuild import count_postings, rebuild
    from rewards.runtime import open_runtime, resolve_redis_url

    settings = Settings()
    migrate(settings)
    redis_url, embedded = resolve_redis_url(settings)

    async def run() -> None:
        rt = await open_runtime(settings, redis_url=redis_url)
        try:
            async with rt.sessions() as session:
                query = select(Program.id).order_by(Program.id)
                if program is not None:
                    query = query.where(Program.id == program)
                programs = list(await session.scalars(query))
            if program is not None and not programs:
                raise RewardsError(f"no program '{program}'")
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("postings"),
                TimeElapsedColumn(),
            )
            with Progress(*columns) as bar:
                for program_id in programs:
                    task = bar.add_task(program_id, total=await count_postings(rt, program_id))

                    def advance(read: int, task: TaskID = task) -> None:
                        bar.advance(task, read)

                    report = await rebuild(rt, program_id, progress=advance)
                    bar.update(task, completed=report.postings)
                    bar.console.print(
                        f"{program_id}: {report.postings:,} postings -> {report.boards:,} boards, "
                        f"{report.entries:,} entries in {report.seconds:.1f}s"
                    )
        finally:
            await rt.close()

    try:
        asyncio.run(run())
    except RewardsError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    finally:
        if embedded is not None:
            embedded.stop()


@tokens_app.command("mint")
def tokens_mint(
    program: Annotated[str, typer.Option(help="The program (the token's audience).")],
    user: Annotated[str, typer.Option(help="The user id (the token's subject).")],
    ttl: Annotated[str, typer.Option(help="Lifetime: 30s, 10m, 1h.")] = "10m",
) -> None:
    """Print an employee token signed with the program's employee_token_secret (development)."""
    from rewards.errors import RewardsError
    from rewards.services.tokens import mint_for, parse_ttl

    settings = Settings()
    migrate(settings)

    async def run() -> str:
        from rewards.db.engine import create_engine, create_sessionmaker
        from rewards.runtime import utc_now

        engine = create_engine(settings.effective_database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                return await mint_for(
                    session, program_id=program, user_id=user, ttl=parse_ttl(ttl), now=utc_now()
                )
        finally:
            await engine.dispose()

    try:
        typer.echo(asyncio.run(run()))
    except RewardsError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None


if __name__ == "__main__":
    app()
