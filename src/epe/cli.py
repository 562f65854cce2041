"""The ``epe`` command: serve, user add, demo, env, and the client's commands.

Errors are ``EpeError``s or click's own. ``EpeGroup`` turns an ``EpeError`` (and
an unreachable server) into click's own error, a one-line message and exit code
1, in one place for every command; ``main`` adds what click alone does not know
(a bad setting).
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Any

import click
import uvicorn
from pydantic import ValidationError

from epe.client._cli import COMMANDS as CLIENT_COMMANDS
from epe.errors import EpeError
from epe.settings import Settings

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


class _Server(uvicorn.Server):
    """A uvicorn server that announces itself once its sockets listen."""

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if self.should_exit:
            return
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        from epe.observe import logs

        logs.flush()  # what was logged while starting, before the line that says it serves
        sys.stderr.flush()
        click.echo(f"epe serving on http://{host}:{port}", err=False)
        click.echo(f"epe console on http://{host}:{port}/", err=False)
        sys.stdout.flush()


@cli.command()
@DATA_DIR
@click.option("--host", default=None, envvar="EPE_HOST", help="Address to listen on.")
@click.option("--port", type=int, default=None, envvar="EPE_PORT", help="Port to listen on.")
def serve(data_dir: Path | None, host: str | None, port: int | None) -> None:
    """Serve the API until SIGTERM or SIGINT."""
    from epe.app import create_app, load_plugins
    from epe.observe import logs
    from epe.service.services import check_settings, open_store_of

    settings = build_settings(data_dir=data_dir, host=host, port=port)
    logs.configure(settings.log_format, settings.log_level)
    load_plugins(settings)  # a module that cannot be imported: one line, before anything
    store = open_store_of(settings)  # before uvicorn: a bad URL is one line, no traceback
    check_settings(settings)  # what else would stop the server: one line and exit 1
    # uvicorn's own lines go through the same handler (log_config=None), so that in
    # JSON mode every line is JSON; epe writes its own access lines (api/middleware.py).
    config = uvicorn.Config(create_app(settings, store=store), host=settings.host,
                            port=settings.port, log_level="warning", access_log=False,
                            lifespan="on", log_config=None)
    try:
        _Server(config).run()
    finally:
        logs.stop()


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
