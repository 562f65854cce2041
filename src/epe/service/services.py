"""Everything a request may need, built once from settings when the server starts.

The application picks each backend here from settings: the metadata store from
``EPE_METADATA_URL``, the table catalog from ``EPE_DATA_URL``, the executor
(the local pool) for the default environment and, through a factory, for each
named one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from epe.auth.tokens import TokenService, load_or_create_key, new_key
from epe.data import Catalog, open_catalog
from epe.runner.environments import EnvironmentPools
from epe.runner.executor import Executor
from epe.runner.local.pool import LocalPool
from epe.service.datastores import Datastores
from epe.service.grants import Grants
from epe.settings import Settings
from epe.store import Store, open_store


@dataclass
class Services:
    settings: Settings
    store: Store
    tokens: TokenService
    executor: Executor
    catalog: Catalog
    environments: EnvironmentPools  # named environments; ``executor`` runs the default one
    grants: Grants = field(init=False)
    datastores: Datastores = field(init=False)

    def __post_init__(self) -> None:
        self.grants = Grants(self.store)
        self.datastores = Datastores(self.store)

    def close(self) -> None:
        self.catalog.close()
        self.store.close()


def prepare_data_dir(settings: Settings) -> None:
    """Create the data folder: others may pass through it (workers run named
    environments from ``envs/``) but not list it; what is private is 0600/0700."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.data_dir, 0o711)
    for private in ("tables", "jobs"):
        (settings.data_dir / private).mkdir(exist_ok=True)
        os.chmod(settings.data_dir / private, 0o700)


def open_store_of(settings: Settings) -> Store:
    """The metadata store the settings name, the data folder made first."""
    prepare_data_dir(settings)
    return open_store(settings.metadata_store_url, settings.metadata_pool_size)


def signing_key(settings: Settings, store: Store) -> bytes:
    """The token signing key: in the data folder, or in the database servers share (a
    token from one is good on all)."""
    if store.shared:
        return store.secret("token-signing-key", new_key)
    return load_or_create_key(settings.key_path)


def open_catalog_of(settings: Settings) -> Catalog:
    return open_catalog(settings.tables_url, settings.query_timeout)


def local_executor(settings: Settings) -> Executor:
    return LocalPool(settings)


def open_services(settings: Settings, executor: Executor | None = None,
                  store: Store | None = None) -> Services:
    """The backends the settings name; ``store`` if the caller opened it already."""
    store = store or open_store_of(settings)
    tokens = TokenService(signing_key(settings, store), settings.token_lifetime,
                          settings.token_chain_lifetime)
    executor = executor or local_executor(settings)

    def environment_executor(python: str, size: int) -> Executor:
        return LocalPool(settings, size=size, python=python)

    return Services(settings, store, tokens, executor, open_catalog_of(settings),
                    EnvironmentPools(settings, executor, environment_executor))
