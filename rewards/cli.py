"""The ``rewards`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from rewards.settings import Environment, Settings

app = typer.Typer(help="Gamified rewards engine.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
programs_app = typer.Typer(help="Programs.", no_args_is_help=True)
rules_app = typer.Typer(help="Rule sets.", no_args_is_help=True)
ledger_app = typer.Typer(help="The points ledger.", no_args_is_help=True)
challenges_app = typer.Typer(help="Challenges.", no_args_is_help=True)
leaderboards_app = typer.Typer(help="Leaderboards (Redis).", no_args_is_help=True)
secrets_app = typer.Typer(help="Secrets at rest (REWARDS_SECRET_KEY).", no_args_is_help=True)
tokens_app = typer.Typer(help="Employee tokens.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(programs_app, name="programs")
app.add_typer(rules_app, name="rules")
app.add_typer(ledger_app, name="ledger")
app.add_typer(challenges_app, name="challenges")
app.add_typer(leaderboards_app, name="leaderboards")
app.add_typer(secrets_app, name="secrets")
app.add_typer(tokens_app, name="tokens")


def migrate(settings: Settings) -> None:
    from rewards import secrets
    from rewards.db.migrate import upgrade

    upgrade(settings.effective_database_url)
    # Secrets stored before encryption existed are encrypted now.
    asyncio.run(
        secrets.rotate(
            settings.effective_database_url,
            only_plain=True,
            keys=lambda: secrets.configure(settings),
        )
    )


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
        bool,
        typer.Option(
            "--with-sandbox",
            help="Run the local GIFQ sandbox beside the API; programs without GIFQ settings pay through it.",
        ),
    ] = False,
    sandbox_port: Annotated[
        int, typer.Option(help="Port of the GIFQ sandbox (with --with-sandbox).")
    ] = 8099,
) -> None:
    """Run the HTTP API (migrating the database first). SIGTERM or Ctrl-C stops it cleanly."""
    import uvicorn

    from rewards.exposition import multiprocess_dir
    from rewards.runtime import resolve_redis_url
    from rewards.settings import public_url_for

    if with_sandbox and workers > 1:
        raise typer.BadParameter(
            "--with-sandbox runs in a single process; run `rewards sandbox` beside"
        )
    # A busy port is found before anything starts: one line, naming the flag that moves it.
    api_socket = listening_socket(host, port, flag="--port")
    if with_sandbox:
        listening_socket(host, sandbox_port, flag="--sandbox-port").close()
    settings = Settings()
    if settings.public_url is None:
        settings = settings.model_copy(update={"public_url": public_url_for(host, port)})
    migrate(settings)
    redis_url, embedded = resolve_redis_url(settings)
    if embedded is not None:
        typer.echo(f"embedded redis-server on {embedded.socket_path} (data in {embedded.data_dir})")
    typer.echo(f"database: {settings.effective_database_url.split('@')[-1]}")
    if settings.env is Environment.development:  # production's key is the operator's: never shown
        typer.echo(f"platform key: {settings.resolved_platform_key()}")
    typer.echo(f"public URL: {settings.public_url} (REWARDS_PUBLIC_URL)")
    try:
        if workers > 1:
            api_socket.close()
            # Worker processes inherit these, so they share the embedded server and the URL.
            os.environ["REWARDS_REDIS_URL"] = redis_url
            os.environ["REWARDS_PUBLIC_URL"] = str(settings.public_url)
            # Their metrics go to files there, and any one's /metrics sums them all.
            with multiprocess_dir():
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
                        api_socket,
                        with_worker=with_worker,
                        sandbox=(host, sandbox_port) if with_sandbox else None,
                    )
                )
    except PortBusy as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        api_socket.close()
        if embedded is not None:
            embedded.stop()


class PortBusy(Exception):
    pass


def listening_socket(host: str, port: int, *, flag: str) -> socket.socket:
    """A socket bound to ``host:port`` (as uvicorn binds it), or a one-line error naming
    the port and ``flag``, the option that changes it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = (
            "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
        )
        typer.echo(f"error: port {port} on {host} {reason}; choose another with {flag}", err=True)
        raise typer.Exit(1) from None
    return sock


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when it is installed (it is, with uvicorn[standard]), as uvicorn itself picks."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


class _Stop:
    """SIGINT and SIGTERM ask the server to stop (a second one: at once), and nothing
    else: no exception is raised into the running code, so shutdown runs in order."""

    def __init__(self) -> None:
        self.server: Any = None
        self.requested = False

    def __call__(self) -> None:
        if self.server is None:
            self.requested = True
        elif self.server.should_exit:
            self.server.force_exit = True
        else:
            self.server.should_exit = True

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self)

    def uninstall(self, loop: asyncio.AbstractEventLoop) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _serve_one(
    settings: Settings,
    redis_url: str,
    api_socket: socket.socket,
    *,
    with_worker: bool,
    sandbox: tuple[str, int] | None,
) -> None:
    import uvicorn

    from api.app import create_app
    from rewards.assembly import open_app_runtime
    from workers.worker import build_worker

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # ours (``_Stop``): uvicorn's would re-raise the signal after shutdown

    loop = asyncio.get_running_loop()
    stop = _Stop()
    stop.install(loop)
    try:
        async with contextlib.AsyncExitStack() as stack:
            rt = await open_app_runtime(settings, redis_url=redis_url)
            stack.push_async_callback(rt.close)
            if sandbox is not None:
                await _start_sandbox(stack, rt, *sandbox)
            if with_worker:
                worker = build_worker(rt, handle_signals=False)
                task = asyncio.create_task(worker.async_run())
                # Closed before the runtime (and its Redis) it uses: last in, first out.
                stack.push_async_callback(_stop_worker, worker, task)
            app = create_app(settings, runtime=rt)
            bound = api_socket.getsockname()
            server = Server(uvicorn.Config(app, host=bound[0], port=bound[1], log_level="info"))
            typer.echo(f"API on http://{bound[0]}:{bound[1]}")
            stop.server = server
            server.should_exit = stop.requested
            await server.serve(sockets=[api_socket])
    finally:
        stop.uninstall(loop)


async def _start_sandbox(stack: contextlib.AsyncExitStack, rt: Any, host: str, port: int) -> None:
    from rewards.services.sandbox_link import SandboxGifq, wire_programs
    from sandbox.server import running_sandbox

    try:
        sb = await stack.enter_async_context(running_sandbox(host=host, port=port))
    except RuntimeError:
        raise PortBusy(
            f"port {port} on {host} is in use; choose another with --sandbox-port"
        ) from None
    typer.echo(
        f"GIFQ sandbox: {sb.base_url} (X-Api-Token: {sb.api_token}; control API under /sandbox)"
    )
    account = sb.config.accounts[0]
    rt.sandbox = SandboxGifq(
        base_url=sb.base_url,
        api_token=sb.api_token,
        webhook_secret=sb.webhook_secret,
        ledger_account_id=sb.ledger_account_id,
        currencies=tuple(account.balances),
    )
    wired = await wire_programs(rt.sessions, rt.sandbox)
    typer.echo(
        "programs without GIFQ settings pay through the sandbox"
        + (f" (wired now: {', '.join(wired)})" if wired else "")
    )


async def _stop_worker(worker: Any, task: asyncio.Task[None]) -> None:
    """Stop a worker before the Redis it uses: its running jobs are cancelled (every job
    may run again, and each is idempotent), then its pool is closed. Only the
    cancellations this stop asks for are swallowed."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    worker.handle_sig(signal.SIGTERM)
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    worker.tasks.clear()  # settled above; ``close`` would re-raise their cancellations
    await worker.close()


@app.command()
def worker(
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Serve Prometheus metrics on this port (GET /metrics); default "
            "REWARDS_WORKER_METRICS_PORT, else none.",
        ),
    ] = None,
    metrics_host: Annotated[
        str | None,
        typer.Option(help="Interface for --metrics-port; default REWARDS_WORKER_METRICS_HOST."),
    ] = None,
) -> None:
    """Run the background worker (arq). SIGTERM or Ctrl-C stops it cleanly."""
    from rewards.runtime import resolve_redis_url

    settings = Settings()
    if metrics_port is not None:
        settings = settings.model_copy(update={"worker_metrics_port": metrics_port})
    if metrics_host is not None:
        settings = settings.model_copy(update={"worker_metrics_host": metrics_host})
    migrate(settings)
    redis_url, embedded = resolve_redis_url(settings)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_work(settings, redis_url))
    finally:
        if embedded is not None:
            embedded.stop()


async def _work(settings: Settings, redis_url: str) -> None:
    from rewards.assembly import open_app_runtime
    from rewards.exposition import installation_gauges, serve_metrics
    from rewards.queue import queue_name
    from workers.worker import build_worker

    loop = asyncio.get_running_loop()
    rt = await open_app_runtime(settings, redis_url=redis_url)
    metrics: asyncio.Server | None = None
    try:
        if (port := settings.worker_metrics_port) is not None:
            host = settings.worker_metrics_host
            listening_socket(host, port, flag="--metrics-port").close()
            metrics = await serve_metrics(
                host=host,
                port=port,
                gauges=functools.partial(installation_gauges, rt, queue=queue_name(settings)),
            )
            typer.echo(f"metrics on http://{host}:{port}/metrics")
        worker = build_worker(rt, handle_signals=False)
        task = asyncio.create_task(worker.async_run())
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            pass
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            await _stop_worker(worker, task)
    finally:
        if metrics is not None:
            metrics.close()
        await rt.close()


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


@app.command()
def demo(
    people: Annotated[
        int, typer.Option(min=10, max=5000, help="People in the organisation.")
    ] = 300,
    days: Annotated[int, typer.Option(min=1, max=60, help="Days of behaviour to play.")] = 30,
    seed: Annotated[int, typer.Option(help="The same seed plays the same month.")] = 7,
    host: Annotated[str, typer.Option(help="Interface the API listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the API.")] = 8000,
    sandbox_port: Annotated[int, typer.Option(help="Port of the GIFQ sandbox.")] = 8099,
    serve_after: Annotated[
        bool, typer.Option("--serve", help="Leave the API running after the report.")
    ] = False,
    reset: Annotated[
        bool, typer.Option("--reset", help="Start from an empty data folder.")
    ] = False,
) -> None:
    """Play a believable programme for a month through the real HTTP API, with the GIFQ
    sandbox paying out, then print a report (its data in <REWARDS_DATA_DIR>/demo)."""
    from rewards import demo as demo_module

    settings = Settings()
    for flag, value in (("--port", port), ("--sandbox-port", sandbox_port)):
        listening_socket(host, value, flag=flag).close()
    code = demo_module.run(
        data_dir=settings.data_dir / "demo",
        host=host,
        port=port,
        sandbox_port=sandbox_port,
        people=people,
        days=days,
        seed=seed,
        serve=serve_after,
        reset=reset,
    )
    raise typer.Exit(code)


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
    from engine.thresholds import overspending
    from rules import RulesInvalid, load_rules_file

    failed = False
    for path in files:
        try:
            ruleset = load_rules_file(path)
        except RulesInvalid as exc:
            failed = True
            typer.echo(str(exc), err=True)
            continue
        for warning in overspending(ruleset.thresholds):
            typer.echo(f"{path}: warning: {warning}", err=True)
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
    from rewards.runtime import resolve_redis_url

    settings = Settings()
    migrate(settings)
    redis_url, embedded = resolve_redis_url(settings)

    async def run() -> None:
        from rewards.assembly import open_app_runtime

        rt = await open_app_runtime(settings, redis_url=redis_url)
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


@secrets_app.command("rotate")
def secrets_rotate() -> None:
    """Re-encrypt every stored secret with the newest key of REWARDS_SECRET_KEY."""
    from rewards import secrets

    settings = Settings()
    migrate(settings)
    secrets.configure(settings)
    report = asyncio.run(secrets.rotate(settings.effective_database_url))
    typer.echo(
        f"{report.rotated} secrets re-encrypted and {report.encrypted} encrypted "
        f"in {report.programs} programs"
    )
    for where in report.unreadable:
        typer.echo(f"no key in REWARDS_SECRET_KEY opens {where}", err=True)
    if report.unreadable:
        raise typer.Exit(1)


@secrets_app.command("new-key")
def secrets_new_key() -> None:
    """Print a new random key for REWARDS_SECRET_KEY (put it first to make it the newest)."""
    from rewards import secrets

    typer.echo(secrets.new_key())


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
