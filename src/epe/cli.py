"""The ``epe`` command: serve, backup, restore, user add, demo, env, and the client's
commands.

Errors are ``EpeError``s or click's own. ``EpeGroup`` turns an ``EpeError`` (and
an unreachable server) into click's own error, a one-line message and exit code
1, in one place for every command; ``main`` adds what click alone does not know
(a bad setting).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import uvicorn
from pydantic import ValidationError

from epe.client._cli import COMMANDS as CLIENT_COMMANDS
from epe.errors import EpeError, NotFound
from epe.settings import Settings

if TYPE_CHECKING:
    from epe.runner.local.forkserver import Launched

DATA_DIR = click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                        envvar="EPE_DATA_DIR", help="Folder holding everything epe keeps.")


def build_settings(**overrides: Any) -> Settings:
    """Settings from EPE_ variables, with the command line's options on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


class Failed(click.ClickException):
    """An epe error as the command's one message on stderr, exit code 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class EpeGroup(click.Group):
    """Maps epe's errors to click's, once for every subcommand (``CliRunner`` too)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EpeError as e:
            # Its code, and the function's traceback the client noted on it.
            lines = [f"{e.message} (errorCode {e.code})", *getattr(e, "__notes__", [])]
            raise Failed("\n".join(lines)) from None
        except ConnectionError as e:  # the client could not reach the server
            raise Failed(str(e)) from None


@click.group(cls=EpeGroup)
@click.version_option(package_name="epe")
def cli() -> None:
    """epe: Embedded Python Execution, an OML4Py-compatible server."""


# Seconds requests still open when a drain has ended get before they are cut: its grace
# was theirs too (docs/deploy.md, restarting without losing work).
CUT_AFTER = 2
BACKUP_TIMEOUT = 24 * 3600.0  # seconds epe backup waits for the server to write it


class _Server(uvicorn.Server):
    """A uvicorn server that announces itself once its sockets listen, and drains before
    it stops (``epe.app.drain``): on a first SIGTERM or SIGINT it keeps listening, turns
    unready and refuses new runs while what runs finishes; a second signal ends the
    grace at once; a third exits without cleaning up, as uvicorn alone would."""

    def __init__(self, config: uvicorn.Config, app: Any) -> None:
        super().__init__(config)
        self.app = app
        self.loop: asyncio.AbstractEventLoop | None = None
        self.signals = 0
        self.draining: asyncio.Task[None] | None = None

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if self.should_exit:
            return
        self.loop = asyncio.get_running_loop()
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        from epe.observe import logs

        logs.flush()  # what was logged while starting, before the line that says it serves
        sys.stderr.flush()
        click.echo(f"epe serving on http://{host}:{port}", err=False)
        click.echo(f"epe console on http://{host}:{port}/", err=False)
        sys.stdout.flush()

    def handle_exit(self, sig: int, frame: Any) -> None:
        # A signal handler: it runs between two bytecodes of the loop's thread, so it
        # only hands the work to the loop.
        self.signals += 1
        drain = getattr(self.app.state, "drain", None)  # set once the app has started
        if self.loop is None or drain is None or self.signals > 2:
            self.force_exit = self.signals > 2
            super().handle_exit(sig, frame)
            return
        self._captured_signals.append(sig)  # re-raised at exit, as uvicorn does
        if self.signals == 1:
            self.loop.call_soon_threadsafe(self._drain, drain)
        else:
            self.loop.call_soon_threadsafe(self.app.state.services.drain.hurry)

    def _drain(self, drain: Any) -> None:
        async def then_exit() -> None:
            try:
                await drain()
            finally:
                self.should_exit = True

        self.draining = asyncio.ensure_future(then_exit())


@cli.command()
@DATA_DIR
@click.option("--host", default=None, envvar="EPE_HOST", help="Address to listen on.")
@click.option("--port", type=int, default=None, envvar="EPE_PORT", help="Port to listen on.")
def serve(data_dir: Path | None, host: str | None, port: int | None) -> None:
    """Serve the API until SIGTERM or SIGINT."""
    keep_freed_memory()
    from epe.runner.local.forkserver import launch_default

    settings = build_settings(data_dir=data_dir, host=host, port=port)
    # The default fork server imports numpy, pandas and matplotlib while this process
    # imports the app, opens the store and checks the settings: they overlap, on
    # machines with two cores or more. The server adopts it when it starts.
    launched = launch_default(settings) if settings.executor == "local" else None
    try:
        _serve(settings, launched)
    finally:
        if launched is not None:
            launched.discard()  # stopped with the server, or never adopted


# How long Arrow's allocator (mimalloc) keeps memory a request freed before handing it
# back to the system. Its own default, 10 ms, hands back an input's tens of megabytes
# between one request and the next.
ARROW_PURGE_DELAY_MS = "1000"
# The same for the C heap (glibc), where DuckDB builds a query's Arrow result: blocks up
# to this size come from the heap rather than from mmap (glibc's own threshold starts at
# 128 KiB and rises only as large blocks are freed), and this much free memory at a heap's
# top stays there rather than being trimmed away after every query.
MMAP_THRESHOLD = 32 * 1024**2
TRIM_THRESHOLD = 128 * 1024**2
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)


def keep_freed_memory() -> None:
    """Have this process reuse the memory one request freed for the next, rather than
    give it back and fault it in again: with both allocators' defaults, a table-apply
    of a million rows faulted 20 to 30 MB in anew every time (5,000 to 7,500 faults).

    mimalloc's delay is set unless the operator set one, and only before pyarrow is
    loaded (``epe serve`` loads it later), which is when mimalloc reads it.
    """
    if "pyarrow" not in sys.modules:
        os.environ.setdefault("MIMALLOC_PURGE_DELAY", ARROW_PURGE_DELAY_MS)
    if _is_glibc():
        libc = ctypes.CDLL(None)
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def _is_glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError, AttributeError):  # another C library (musl), or no confstr
        return False


def _serve(settings: Settings, launched: Launched | None) -> None:
    from epe.app import create_app, load_plugins
    from epe.observe import logs
    from epe.service.services import check_settings, open_store_of

    logs.configure(settings.log_format, settings.log_level)
    load_plugins(settings)  # a module that cannot be imported: one line, before anything
    store = open_store_of(settings)  # before uvicorn: a bad URL is one line, no traceback
    check_settings(settings)  # what else would stop the server: one line and exit 1
    # uvicorn's own lines go through the same handler (log_config=None), so that in
    # JSON mode every line is JSON; epe writes its own access lines (api/middleware.py).
    app = create_app(settings, store=store, launched=launched)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                            access_log=False, lifespan="on", log_config=None,
                            timeout_graceful_shutdown=CUT_AFTER)
    try:
        _Server(config, app).run()
    finally:
        logs.stop()


@cli.command()
@DATA_DIR
@click.option("--to", type=click.Path(path_type=Path), required=True,
              help="The folder to write the backup to: a new one.")
def backup(data_dir: Path | None, to: Path) -> None:
    """Back up the data folder into a new folder TO, while its server runs or not."""
    from epe.service import backup as backups
    from epe.service import control
    from epe.service.services import open_catalog_of

    settings = build_settings(data_dir=data_dir)
    if not settings.data_dir.is_dir():
        raise Failed(f"there is no data folder at {settings.data_dir}")
    # The server running on the folder holds its tables: it writes the backup.
    reply = control.ask(settings.data_dir, {"op": "backup", "to": str(to.absolute())},
                        timeout=BACKUP_TIMEOUT)
    if reply is None:  # no server: this process may open every file itself
        catalog = open_catalog_of(settings)
        try:
            manifest = backups.take(settings, catalog, to)
        finally:
            catalog.close()
    elif not reply.get("ok"):
        raise Failed(str(reply.get("error")))
    else:
        manifest = backups.Manifest(reply["manifest"])
    click.echo(f"backup of {settings.data_dir} written to {to}: {manifest.summary()}")
    if manifest.values["metadata"] != "sqlite":
        click.echo("the metadata is in PostgreSQL, not in this backup: back it up with pg_dump "
                   "(docs/deploy.md#backups)")


@cli.command()
@click.option("--from", "source", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The backup, a folder written by epe backup.")
@click.option("--data-dir", type=click.Path(path_type=Path), required=True,
              help="The data folder to make: a new or empty one.")
def restore(source: Path, data_dir: Path) -> None:
    """Rebuild a data folder from a backup, into a new folder."""
    from epe.service import backup as backups

    settings = build_settings(data_dir=data_dir)
    manifest, failed = backups.restore(source, settings, click.echo)
    summary = manifest.summary()
    if failed:
        raise Failed(f"restored into {data_dir} ({summary}), but environments "
                     f"{', '.join(failed)} could not be built again: build them with "
                     "epe env create")
    click.echo(f"restored {source} into {data_dir}: {summary}")


@cli.group()
def user() -> None:
    """Manage users (works while the server runs)."""


@user.command("add")
@click.argument("name")
@DATA_DIR
@click.option("--password-stdin", is_flag=True, required=True,
              help="Read the password from standard input.")
@click.option("--admin", is_flag=True, help="Give the user the admin role.")
@click.option("--db-role", metavar="ROLE",
              help="Bind the user to this existing PostgreSQL role (tables in PostgreSQL "
                   "only): their queries read what it may read.")
def user_add(name: str, data_dir: Path | None, password_stdin: bool, admin: bool,
             db_role: str | None) -> None:
    """Create user NAME."""
    from epe.service.audit import AuditTrail
    from epe.service.services import open_catalog_of, open_store_of
    from epe.service.users import create_user

    settings = build_settings(data_dir=data_dir)
    password = sys.stdin.readline().rstrip("\r\n")
    store = open_store_of(settings)
    audit = AuditTrail(store.audit)
    catalog = open_catalog_of(settings)
    try:
        created = create_user(store, audit, catalog, name=name, password=password, admin=admin,
                              db_role=db_role)
    finally:
        catalog.close()
        audit.close()
        store.close()
    click.echo(f"user {created.name} created" + (" (admin)" if admin else ""))


class LimitValue(click.ParamType):
    """A limit's value on the command line: a whole number, or ``default``."""

    name = "N|default"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int | str:
        if str(value).lower() == DEFAULT:
            return DEFAULT
        try:
            return int(value)
        except ValueError:
            self.fail(f"{value!r} is not a whole number or '{DEFAULT}'", param, ctx)


LIMIT = LimitValue()
DEFAULT = "default"


@user.command("limits")
@click.argument("name")
@DATA_DIR
@click.option("--running-jobs", type=LIMIT,
              help="Jobs running at once (or 'default': EPE_USER_RUNNING_JOBS).")
@click.option("--waiting-jobs", type=LIMIT,
              help="Jobs waiting to run (or 'default': EPE_USER_WAITING_JOBS).")
@click.option("--memory", type=LIMIT, metavar="BYTES",
              help="Memory of all the user's workers on a node (or 'default': "
                   "EPE_USER_MEMORY_LIMIT).")
@click.option("--storage", type=LIMIT, metavar="BYTES",
              help="Bytes stored: tables, datastores, models and job results (or "
                   "'default': EPE_USER_STORAGE_QUOTA).")
def user_limits(name: str, data_dir: Path | None, **given: Any) -> None:
    """Show user NAME's limits and what they hold now; with options, change them first."""
    from epe.core.limits import API_NAMES, check_value
    from epe.core.names import normalize_user
    from epe.service.audit import entry
    from epe.service.limits import UserLimits
    from epe.service.services import open_store_of

    changes = {k: None if v == DEFAULT else check_value(k, v) for k, v in given.items()
               if v is not None}
    settings = build_settings(data_dir=data_dir)
    store = open_store_of(settings)
    try:
        upper = normalize_user(name, check=False)
        if store.get_user(upper) is None:
            raise NotFound(f"no such user {upper}")
        limits = UserLimits(settings, store)
        if changes:
            limits.change(upper, changes)
            store.audit.append([entry("user", "limits", None, name=upper, via="command line",
                                      limits={API_NAMES[k]: v for k, v in changes.items()})])
        shown = limits.shown(upper)
    finally:
        store.close()
    for key, value in shown["limits"].items():
        click.echo(f"{key:<12} {value:>14}  {'' if key in shown['limitsSet'] else '(default)'}"
                   .rstrip())
    held = shown["usage"]
    click.echo(f"now: {held['runningJobs']} running, {held['waitingJobs']} waiting, "
               f"{held['storage']} bytes stored")


@cli.command()
@DATA_DIR
def demo(data_dir: Path | None) -> None:
    """Create user OMLUSER and load the demo data and scripts."""
    from epe.demo import load_demo

    settings = build_settings(data_dir=data_dir)
    password = os.environ.get("EPE_DEMO_PASSWORD") or secrets.token_urlsafe(12)
    for line in load_demo(settings, password):
        click.echo(line)
    if "EPE_DEMO_PASSWORD" not in os.environ:
        click.echo(f"OMLUSER's password: {password}")


@cli.group()
def env() -> None:
    """Manage named environments (works while the server runs)."""


def _local(entry: str) -> str:
    """A package given as a path of this machine, made absolute; a requirement unchanged."""
    return str(Path(entry).absolute()) if Path(entry).is_file() else entry


@env.command("create")
@click.argument("name")
@click.argument("more", nargs=-1, metavar="[PACKAGE]...")
@click.option("--packages", "-p", multiple=True, metavar="P",
              help="A package: a requirement ('name>=1.0') or a wheel's path. Repeat it, or "
                   "list more packages after it.")
@click.option("--requirements", "-r", type=click.Path(exists=True, dir_okay=False,
                                                      path_type=Path),
              help="A requirements file for pip.")
@click.option("--description", default="", help="What the environment is for.")
@click.option("--find-links", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A folder of wheels; packages come from it alone unless --index is given.")
@click.option("--no-index/--index", default=None,
              help="Whether to leave out the package index (default: only with --find-links).")
@DATA_DIR
def env_create(name: str, more: tuple[str, ...], packages: tuple[str, ...],
               requirements: Path | None, description: str, find_links: Path | None,
               no_index: bool | None, data_dir: Path | None) -> None:
    """Create environment NAME: a venv on the server's, with PACKAGEs installed by pip."""
    import asyncio

    from epe.envs import Base, Spec, build, prepare_root, sweep
    from epe.runner.environments import run_as
    from epe.runner.worker.sandbox import probe
    from epe.service.services import prepare_data_dir

    settings = build_settings(data_dir=data_dir)
    prepare_data_dir(settings)
    root = prepare_root(settings.data_dir)
    sweep(root)
    spec = Spec(name, tuple(_local(p) for p in (*packages, *more)),
                requirements.read_text() if requirements else None, description,
                str(find_links.absolute()) if find_links else None, no_index)
    checked_as = run_as(settings, isolated=probe() is None)
    created = asyncio.run(build(spec, root, Base.current(), run_as=checked_as,
                                timeout=settings.env_build_timeout,
                                log=lambda text: click.echo(text, nl=False, err=True)))
    record_change(settings, "env", "create", created.name)
    click.echo(f"environment {created.name} created")


@env.command("list")
@DATA_DIR
@click.option("--json", "as_json", is_flag=True, help="Print GET /envs's answer instead.")
def env_list(data_dir: Path | None, as_json: bool) -> None:
    """List the named environments."""
    import orjson

    from epe.envs import Base, describe, envs_root, listing

    settings = build_settings(data_dir=data_dir)
    sites = list(Base.current().sites)
    envs = [describe(e, sites) for e in listing(envs_root(settings.data_dir))]
    if as_json:
        click.echo(orjson.dumps({"result": {"envs": envs}}, option=orjson.OPT_INDENT_2))
        return
    for e in envs:
        click.echo(f"{e['name']}\tpython {e['tags']['python']}\t{e['size']}\t"
                   f"{e['number_of_installed_packages']} packages\t{e['description']}")


@env.command("delete")
@click.argument("name")
@DATA_DIR
def env_delete(name: str, data_dir: Path | None) -> None:
    """Delete environment NAME (refused while runs or jobs of the server use it)."""
    from epe.envs import envs_root, remove

    settings = build_settings(data_dir=data_dir)
    remove(envs_root(settings.data_dir), name)
    record_change(settings, "env", "delete", name)
    click.echo(f"environment {name} deleted")


def record_change(settings: Settings, kind: str, action: str, name: str) -> None:
    """A change made from this command line, in the audit trail (no user made it)."""
    from epe.service.audit import entry
    from epe.service.services import open_store_of

    store = open_store_of(settings)
    try:
        store.audit.append([entry(kind, action, None, name=name, via="command line")])
    finally:
        store.close()


for _command in CLIENT_COMMANDS:  # script, run, job, table: the client's (docs/client.md)
    cli.add_command(_command)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except ValidationError as e:  # a bad EPE_ variable or option
        problems = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in e.errors())
        click.echo(f"error: invalid setting: {problems}", err=True)
        sys.exit(2)
