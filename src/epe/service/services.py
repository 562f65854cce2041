"""Everything a request may need, built once from settings when the server starts.

The application picks each backend here from settings: the metadata store from
``EPE_METADATA_URL``, the table catalog from ``EPE_DATA_URL``, and where users'
code runs (``EPE_EXECUTOR``: this machine, ``runner.local.host``, or a Ray
cluster, ``runner.ray.host``), in pools kept per user and environment
(``runner.pools``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
from dataclasses import dataclass, field

from epe.auth.directory import Directory
from epe.auth.provider import Provider
from epe.auth.throttle import LoginThrottle
from epe.auth.tokens import TokenService, load_or_create_key, new_key
from epe.data import Catalog, open_catalog
from epe.errors import InvalidSetting
from epe.runner.environments import EnvironmentPools
from epe.runner.executor import Tenant
from epe.runner.limits import choose as choose_limits
from epe.runner.local.forkserver import Launched
from epe.runner.local.host import LocalHost
from epe.runner.pools import Backend
from epe.runner.worker import sandbox
from epe.service.audit import AuditTrail
from epe.service.datastores import Datastores
from epe.service.drain import Drain
from epe.service.grants import Grants
from epe.service.limits import UserLimits
from epe.service.usage import UsageLedger
from epe.settings import Settings
from epe.store import Store, open_store

log = logging.getLogger("epe.runner")


@dataclass
class Services:
    settings: Settings
    store: Store
    tokens: TokenService
    catalog: Catalog
    environments: EnvironmentPools  # users' pools, in the server's and named environments
    limits: UserLimits  # how much each user may hold: the one place that decides it
    audit: AuditTrail = field(init=False)
    grants: Grants = field(init=False)
    datastores: Datastores = field(init=False)
    logins: LoginThrottle = field(init=False)
    usage: UsageLedger = field(init=False)  # what each run used
    drain: Drain = field(init=False)  # whether the server is stopping (docs/deploy.md)
    directory: Directory | None = field(init=False)  # EPE_LDAP_URL (docs/sign-in.md)
    provider: Provider | None = field(init=False)  # EPE_OIDC_ISSUER

    def __post_init__(self) -> None:
        self.audit = AuditTrail(self.store.audit, self.settings.audit_retention)
        self.usage = UsageLedger(self.store.usage, self.settings.usage_retention)
        self.grants = Grants(self.store, self.audit)
        self.datastores = Datastores(self.store, self.limits)
        self.logins = LoginThrottle(self.settings.login_window)
        self.drain = Drain(self.settings.shutdown_grace, self.settings.retry_after)
        self.directory, self.provider = sign_in_backends(self.settings)

    @property
    def isolated(self) -> bool:
        """Whether users' workers are isolated from each other (``/health`` says)."""
        return self.environments.backend.isolated

    @property
    def resource_limits(self) -> str:
        """How users' workers are limited (``/health`` says): ``cgroup2``, ``cgroup1`` or
        ``rlimit``."""
        return self.environments.backend.resource_limits

    def known_tenant(self, user: str) -> Tenant | None:
        """``tenant`` when it needs no store access (the user's limits at hand, and, with
        isolation, their uid known)."""
        limits = self.limits.cached(user)
        uid = self.store.uids.known(user) if self.isolated else None
        if limits is None or (self.isolated and uid is None):
            return None
        return Tenant(user, uid, limits.memory or None)

    def tenant(self, user: str) -> Tenant:
        """Who a user's workers are, and how much memory they may hold together on a
        node (``None``: the node's share); with isolation, a host uid of the user's own
        (given on first use). Blocking."""
        memory = self.limits.for_user(user).memory or None
        if not self.isolated:
            return Tenant(user, memory_limit=memory)
        uid = self.store.uids.uid_of(user, self.settings.worker_uid_base,
                                     self.settings.worker_uid_count)
        return Tenant(user, uid, memory)

    async def signed_in(self, user: str) -> None:
        """``user`` has just signed in, or refreshed their token: what their first run on
        this machine needs is made now (their worker uid, their groups:
        ``Backend.expect``), not on that run's path.
        Run after the sign-in's answer is sent; what fails here, their first run does
        again and reports."""
        try:
            tenant = self.known_tenant(user)
            if tenant is None:
                tenant = await asyncio.to_thread(self.tenant, user)
            await self.environments.backend.expect(tenant)
        except Exception:  # a background task's: nobody else would see it
            log.exception("could not make ready for %s's first run", user)

    def close(self) -> None:
        if self.provider is not None:
            self.provider.close()
        self.audit.close()
        self.usage.close()
        self.catalog.close()
        self.store.close()


def sign_in_backends(settings: Settings) -> tuple[Directory | None, Provider | None]:
    """The directory and the provider the settings name (docs/sign-in.md)."""
    retry = settings.retry_after
    if settings.ldap_url and importlib.util.find_spec("ldap3") is None:
        raise InvalidSetting("EPE_LDAP_URL is set, but ldap3 is not installed: install epe's "
                             "signin extra (pip install 'epe[signin]')")
    if settings.oidc_issuer and importlib.util.find_spec("cryptography") is None:
        raise InvalidSetting("EPE_OIDC_ISSUER is set, but cryptography is not installed: "
                             "install epe's signin extra (pip install 'epe[signin]')")
    return (Directory(settings, retry) if settings.ldap_url else None,
            Provider(settings, retry) if settings.oidc_issuer else None)


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
    return open_store(settings.metadata_store_url, settings.metadata_pool_size,
                      retry_after=settings.retry_after)


def signing_key(settings: Settings, store: Store) -> bytes:
    """The token signing key: in the data folder, or in the database servers share (a
    token from one is good on all)."""
    if store.shared:
        return store.secret("token-signing-key", new_key)
    return load_or_create_key(settings.key_path)


def open_catalog_of(settings: Settings) -> Catalog:
    return open_catalog(settings.tables_url, settings.query_timeout, settings.data_role_prefix)


def check_settings(settings: Settings) -> None:
    """Refuse, before serving, settings the server could not start with: a catalog it
    cannot open, isolation or cgroups required where they cannot be had (the store:
    ``open_store_of``)."""
    open_catalog_of(settings).close()
    _directory, provider = sign_in_backends(settings)
    if provider is not None:
        provider.close()
    if settings.executor == "ray":
        if importlib.util.find_spec("ray") is None:
            raise InvalidSetting("EPE_EXECUTOR=ray, but Ray is not installed: install epe's "
                                 "ray extra (pip install 'epe[ray]')")
        from epe.runner.ray.host import unreachable

        if refused := unreachable(settings.ray_address, settings.ray_connect_timeout):
            raise InvalidSetting(f"EPE_EXECUTOR=ray: {refused}")
        return  # isolation is the nodes' to say: the Ray backend checks it at start
    if settings.require_isolation and (refused := sandbox.probe()):
        raise InvalidSetting("EPE_REQUIRE_ISOLATION is set, but workers cannot be isolated "
                             f"here: {refused}")
    if settings.resource_limits == "cgroup":  # refuses, naming why, where none can be had
        choose_limits(settings).close()


def open_services(settings: Settings, store: Store | None = None,
                  launched: Launched | None = None) -> Services:
    """The backends the settings name; ``store`` if the caller opened it already, and
    ``launched``, the default fork server, if it launched it already."""
    store = store or open_store_of(settings)
    tokens = TokenService(signing_key(settings, store), settings.token_lifetime,
                          settings.token_chain_lifetime)
    # Made before the backend, which enforces what it decides (a user's memory).
    limits = UserLimits(settings, store)
    return Services(settings, store, tokens, open_catalog_of(settings),
                    EnvironmentPools(settings, backend_of(settings, launched)), limits)


def backend_of(settings: Settings, launched: Launched | None = None) -> Backend:
    """Where users' code runs: this machine, or the Ray cluster ``EPE_RAY_ADDRESS``."""
    if settings.executor == "ray":
        from epe.runner.ray.host import RayHost  # Ray itself: only in its bridge process

        return RayHost(settings)
    return LocalHost(settings, launched)
