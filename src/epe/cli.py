"""The ``epe`` command (CONTRACT C): serve, user add, demo.

Errors are ``EpeError``s or click's own; ``main`` turns an ``EpeError`` into a
one-line message and exit code 1, in one place.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import click
import uvicorn
from pydantic import ValidationError

from epe.errors import EpeError
from epe.settings import Settings

DATA_DIR = click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                        envvar="EPE_DATA_DIR", help="Folder holding everything epe keeps.")


def build_settings(**overrides: Any) -> Settings:
    """Settings from EPE_ variables, with the command line's options on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


@click.group()
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
        click.echo(f"epe serving on http://{host}:{port}", err=False)
        sys.stdout.flush()


@cli.command()
@DATA_DIR
@click.option("--host", default=None, envvar="EPE_HOST", help="Address to listen on.")
@click.option("--port", type=int, default=None, envvar="EPE_PORT", help="Port to listen on.")
def serve(data_dir: Path | None, host: str | None, port: int | None) -> None:
    """Serve the API until SIGTERM or SIGINT."""
    from epe.app import create_app

    settings = build_settings(data_dir=data_dir, host=host, port=port)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    config = uvicorn.Config(create_app(settings), host=settings.host, port=settings.port,
                            log_level="warning", access_log=False, lifespan="on")
    _Server(config).run()


@cli.group()
def user() -> None:
    """Manage users (works while the server runs)."""


@user.command("add")
@click.argument("name")
@DATA_DIR
@click.option("--password-stdin", is_flag=True, required=True,
              help="Read the password from standard input.")
@click.option("--admin", is_flag=True, help="Give the user the admin role.")
def user_add(name: str, data_dir: Path | None, password_stdin: bool, admin: bool) -> None:
    """Create user NAME."""
    from epe.app import prepare_data_dir
    from epe.store import Store
    from epe.users import create_user

    settings = build_settings(data_dir=data_dir)
    password = sys.stdin.readline().rstrip("\r\n")
    prepare_data_dir(settings)
    store = Store.open_sqlite(settings.metadata_path)
    try:
        created = create_user(store, name, password, admin)
    finally:
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


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except EpeError as e:
        click.echo(f"error: {e.message}", err=True)
        sys.exit(1)
    except ValidationError as e:  # a bad EPE_ variable or option
        problems = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in e.errors())
        click.echo(f"error: invalid setting: {problems}", err=True)
        sys.exit(2)
