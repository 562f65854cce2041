"""Every setting epe has, in one typed object.

Each field reads the environment variable ``EPE_<FIELD NAME>``. The app factory
builds one ``Settings`` and hands it down; nothing reads the environment at
import time. ``docs/settings.md`` documents every field (a test checks it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# HOST:PORT, the host a name, an IPv4 address or a bracketed IPv6 one.
_ADDRESS = r"^$|^(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):[0-9]{1,5}$"


# What a Ray node is given (docs/security.md, Ray nodes): the limits and sandbox of the
# workers its agent starts, and where the server's data folder is, to hide it from them.
# Never a URL, a key or a password: a Ray cluster does not authenticate who reads it,
# and whatever reaches a node can be read there (tests/unit/test_node_settings.py keeps
# this the whole of what code running on a node reads).
NODE_SETTINGS = frozenset({
    "data_dir", "require_isolation", "worker_user", "worker_network", "worker_tmp_size",
    "worker_memory_limit", "worker_max_processes", "worker_max_open_files", "worker_max_tasks",
    "worker_start_timeout", "output_limit", "graphics_dpi", "graphics_width",
    "graphics_height", "resource_limits", "user_memory_limit", "worker_spares",
})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EPE_", extra="ignore")

    # Where and how to serve.
    data_dir: Path = Field(Path("./epe-data"), description="Folder holding everything epe keeps.")
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port to listen on.")

    # Where metadata and users' tables are kept (empty: embedded, in the data folder).
    metadata_url: str = Field("", description="Database URL of the metadata store.")
    data_url: str = Field("", description="Where users' tables are kept.")
    data_role_prefix: str = Field(
        "epe_", max_length=30,
        description="Prefix of the PostgreSQL role and schema made for each user (data URL "
                    "postgresql://).")
    metadata_pool_size: int = Field(
        10, ge=1, description="Connections each server keeps open to a PostgreSQL metadata store."
    )

    # Tokens (docs/api.md#authentication).
    token_lifetime: int = Field(3600, gt=0, description="Seconds an access token is valid.")
    token_chain_lifetime: int = Field(
        8 * 3600, gt=0, description="Seconds a refresh chain may last after the password grant."
    )

    # Logins (docs/security.md).
    login_max_failures: int = Field(
        10, ge=1, description="Failed logins for one user name before a 429."
    )
    login_max_failures_per_address: int = Field(
        100, ge=1, description="Failed logins from one client address before a 429."
    )
    login_window: float = Field(300.0, gt=0, description="Seconds failed logins are counted.")

    # Organisation sign-in (docs/sign-in.md): a directory behind the password grant.
    ldap_url: str = Field(
        "", pattern=r"^$|^ldaps?://", description="The directory (ldap:// or ldaps://); empty: "
        "passwords are epe's own.")
    ldap_start_tls: bool = Field(False, description="Upgrade an ldap:// connection with StartTLS.")
    ldap_ca_file: str = Field(
        "", description="CA certificates (PEM) the directory's certificate is checked against "
        "(empty: the system's).")
    ldap_user_dn: str = Field(
        "", description="DN template a user binds as, e.g. uid={username},ou=people,dc=example,"
        "dc=org (empty: search with the service account).")
    ldap_bind_dn: str = Field("", description="The service account's DN, to search for users.")
    ldap_bind_password: str = Field("", description="The service account's password.")
    ldap_user_base: str = Field("", description="Where users are searched for.")
    ldap_user_filter: str = Field(
        "(uid={username})", description="Filter that finds an active user by name ({username}: "
        "the name, escaped).")
    ldap_group_base: str = Field("", description="Where groups are searched for (empty: no "
                                                 "groups from the directory).")
    ldap_admin_group: str = Field("", description="The directory group (name or DN) whose "
                                                  "members are epe's admins.")
    ldap_timeout: float = Field(5.0, gt=0, description="Seconds to wait for the directory.")

    # Organisation sign-in: an OpenID Connect provider (docs/sign-in.md).
    oidc_issuer: str = Field("", description="The provider's issuer URL (empty: no single "
                                             "sign-on).")
    oidc_client_id: str = Field("", description="epe's client id at the provider (the "
                                                "console's sign-in).")
    oidc_client_secret: str = Field("", description="epe's client secret at the provider "
                                                    "(empty: a public client, PKCE only).")
    oidc_audience: str = Field("", description="Audience of the provider's access tokens "
                                               "accepted as bearer tokens (empty: none are).")
    oidc_username_claim: str = Field("preferred_username",
                                     description="Claim holding the user name.")
    oidc_groups_claim: str = Field("groups", description="Claim holding the user's groups.")
    oidc_admin_group: str = Field("", description="The provider's group whose members are "
                                                  "epe's admins.")
    oidc_name: str = Field("single sign-on", min_length=1,
                           description="The provider's name on the console's sign-in button.")
    oidc_timeout: float = Field(5.0, gt=0, description="Seconds to wait for the provider.")
    signin_cache_ttl: float = Field(
        60.0, ge=0, description="Seconds the provider's keys and the directory's answers for "
        "automation tokens are kept.")

    # Where users' code runs (docs/scale-out.md).
    executor: Literal["local", "ray"] = Field(
        "local", description="Where users' functions run: this machine, or a Ray cluster."
    )
    ray_address: str = Field(
        "auto", min_length=1,
        description="The Ray cluster (EPE_EXECUTOR=ray): auto, HOST:PORT, ray://HOST:PORT, "
        "or local to start one on this machine.",
    )
    ray_connect_timeout: float = Field(
        60.0, gt=0, description="Seconds to wait for the Ray cluster at start before giving up."
    )

    # Workers (the local executor; on Ray, each node's).
    workers: int = Field(2, ge=1, description="Worker processes a user's pool grows to.")
    worker_max_tasks: int = Field(500, ge=1, description="Tasks a worker runs before recycling.")
    worker_memory_limit: int = Field(
        4 * 1024**3, ge=64 * 1024**2,
        description="Address-space limit of a worker, in bytes, where no cgroup limits memory."
    )
    worker_max_processes: int = Field(
        256, ge=16, description="Process/thread limit of the unprivileged worker user."
    )
    worker_max_open_files: int = Field(1024, ge=64, description="Open-file limit of a worker.")
    worker_user: str = Field(
        "nobody", description="Unprivileged user workers run as when the server runs as root."
    )
    worker_start_timeout: float = Field(
        60.0, gt=0, description="Seconds a new worker may take to import its libraries."
    )

    # How a user's workers are held to their limits (docs/operations.md#resource-limits).
    resource_limits: Literal["auto", "cgroup", "rlimit"] = Field(
        "auto", description="How workers are limited: cgroups where they can be had (auto), "
                            "cgroups or refuse to start, or rlimits only."
    )

    # Tenants (docs/security.md): each user's workers are their own.
    worker_uid_base: int = Field(
        200_000, ge=1000, description="First host uid given to a user's sandboxed workers."
    )
    worker_uid_count: int = Field(
        1_000_000, ge=1, description="How many uids from the base may be given, ever."
    )
    worker_network: Literal["none", "allow"] = Field(
        "none", description="Whether sandboxed workers have a network beyond loopback."
    )
    worker_tmp_size: int = Field(
        1024**3, ge=1024**2, description="Size of a sandboxed worker's /tmp and /dev/shm."
    )
    require_isolation: bool = Field(
        False, description="Refuse to start when workers of users cannot be isolated."
    )
    worker_idle_timeout: float = Field(
        300.0, gt=0, description="Seconds a user's pool may stay unused before it stops."
    )
    max_workers: int = Field(0, ge=0, description="Workers warm at once, every pool together "
                                                  "(on Ray: on each node); 0: from the "
                                                  "machine's memory and cores.")
    worker_spares: int = Field(
        -1, ge=-1, description="Workers the fork server of the server's own environment keeps "
                               "forked ahead of need, for users' first runs; -1: half the "
                               "warm workers' bound, 8 to 64; 0: none.")
    max_pools: int = Field(0, ge=0, description="Users' pools warm at once; 0: as many as "
                                                "workers.")
    pool_queue_limit: int = Field(
        64, ge=0, description="Runs waiting for room in the pools before a 503."
    )

    # Time and size limits.
    default_timeout: int = Field(
        1800, gt=0, description="Seconds a run may take when the request gives no timeout."
    )
    max_timeout: int = Field(43200, gt=0, description="Largest timeout a request may ask for.")
    output_limit: int = Field(
        64 * 1024**2, gt=0, description="Largest result, in bytes of JSON (error 1024 beyond)."
    )
    max_body_size: int = Field(
        32 * 1024**2, gt=0, description="Largest request body, in bytes (413 beyond)."
    )
    max_upload_size: int = Field(
        2 * 1024**3, gt=0, description="Largest table upload (PUT /tables), in bytes (413 beyond)."
    )
    query_timeout: float = Field(
        300.0, gt=0, description="Seconds an input query may run before it is interrupted."
    )
    sql_dialect: Literal["auto", "oracle", "native"] = Field(
        "auto", description="How users' SQL is read when a request does not say (docs/sql.md)."
    )

    # Graphics (docs/graphics.md): the size and resolution of captured figures.
    graphics_dpi: int = Field(100, ge=10, le=600, description="Resolution of images, in DPI.")
    graphics_width: float = Field(6.4, gt=0, le=100, description="Default figure width, inches.")
    graphics_height: float = Field(4.8, gt=0, le=100, description="Default figure height, inches.")

    # Async jobs (docs/api.md#async-jobs).
    job_queue_limit: int = Field(
        200, ge=1, description="Jobs waiting or running at once; more are refused with 503."
    )
    job_concurrency_low: int = Field(2, ge=1, description="Jobs of service LOW run at once.")
    job_concurrency_medium: int = Field(
        2, ge=1, description="Jobs of service MEDIUM run at once."
    )
    job_concurrency_high: int = Field(1, ge=1, description="Jobs of service HIGH run at once.")
    job_retention: int = Field(
        180 * 24 * 3600, gt=0, description="Seconds a finished job and its result are kept."
    )
    retry_after: int = Field(5, ge=1, description="Seconds a 503 answer asks clients to wait.")
    job_lease: float = Field(
        15.0, gt=0, description="Seconds a server's hold on its jobs lasts without a heartbeat."
    )
    job_poll_interval: float = Field(
        0.5, gt=0, description="Seconds between looks for other servers' waiting jobs."
    )

    # What one user may hold (docs/operations.md#limits); an admin overrides them per user.
    user_running_jobs: int = Field(
        8, ge=1, description="Jobs of one user running at once, every service level together."
    )
    user_waiting_jobs: int = Field(
        100, ge=0, description="Jobs of one user waiting to run; more are refused with 429."
    )
    user_memory_limit: int = Field(
        0, ge=0, description="Bytes of memory all of one user's workers on a node may hold "
                             "together (0: three quarters of the node's memory)."
    )
    user_storage_quota: int = Field(
        10 * 1024**3, ge=0, description="Bytes one user may store: tables, datastores, "
                                        "models and kept job results together."
    )
    usage_retention: int = Field(
        365 * 24 * 3600, gt=0, description="Seconds a run's usage record is kept."
    )

    # Stopping (docs/deploy.md#restarting-without-losing-work).
    shutdown_grace: float = Field(
        25.0, ge=0, description="Seconds a stopping server lets runs, jobs and requests under "
                                "way finish before it stops them."
    )

    # Models and scoring (docs/models.md).
    max_model_size: int = Field(
        256 * 1024**2, gt=0, description="Largest model a user may store, in bytes (413 beyond)."
    )
    score_max_records: int = Field(
        1000, ge=1, description="Records one score call may send (400 beyond)."
    )
    score_timeout: float = Field(
        60.0, gt=0, description="Seconds a score call may take before it is stopped."
    )
    schedule_poll_interval: float = Field(
        5.0, gt=0, description="Most seconds between looks for due batch scoring runs."
    )

    # Service levels (docs/api.md#run-requests): the highest degree of parallelism each allows.
    service_low_parallel: int = Field(2, ge=1, description="Parallelism cap of service LOW.")
    service_medium_parallel: int = Field(4, ge=1, description="Parallelism cap of service MEDIUM.")
    service_high_parallel: int = Field(8, ge=1, description="Parallelism cap of service HIGH.")

    # Named environments (docs/environments.md).
    env_workers: int = Field(2, ge=1, description="Worker processes in each environment's pool.")
    env_idle_timeout: float = Field(
        600.0, gt=0, description="Seconds an environment's pool may stay unused before it stops."
    )
    env_build_timeout: float = Field(
        1800.0, gt=0, description="Seconds building an environment (pip included) may take."
    )

    # What operators see (docs/operations.md).
    log_format: Literal["plain", "json"] = Field(
        "plain", description="Log lines as plain text, or one JSON object a line."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="The least severe log lines written."
    )
    metrics_address: str = Field(
        "", pattern=_ADDRESS,
        description="HOST:PORT serving /metrics to anyone who can reach it (empty: none).",
    )
    audit_retention: int = Field(
        365 * 24 * 3600, gt=0, description="Seconds an audit entry is kept before it is purged."
    )

    # What the server is made of (docs/architecture.md#adding-an-operation).
    plugins: str = Field(
        "", description="Python modules the server imports when it starts, comma-separated: "
                        "each may register operations of its own."
    )

    @field_validator("user_memory_limit")
    @classmethod
    def _room_to_start(cls, value: int) -> int:
        if 0 < value < 64 * 1024**2:
            raise ValueError("give 0 (three quarters of the machine's memory) or at least "
                             "64 MiB (67108864): a worker needs that much to start")
        return value

    def for_nodes(self) -> dict[str, Any]:
        """The settings a Ray node is given (``NODE_SETTINGS``), as JSON values."""
        given = self.model_dump(mode="json", include=set(NODE_SETTINGS))
        given["data_dir"] = str(self.data_dir.absolute())
        return given

    # The service levels themselves are the core's (``core.requests.SERVICE_LEVELS``):
    # here they are only the fields' names.
    def job_concurrency(self, level: str) -> int:
        """Jobs of service ``level`` that run at once."""
        return int(getattr(self, f"job_concurrency_{level.lower()}"))

    def parallel_cap(self, level: str) -> int:
        """The highest degree of parallelism service ``level`` allows."""
        return int(getattr(self, f"service_{level.lower()}_parallel"))

    @property
    def metadata_path(self) -> Path:
        return self.data_dir / "metadata.sqlite"

    @property
    def metadata_store_url(self) -> str:
        """``metadata_url``, or the embedded SQLite file in the data folder."""
        return self.metadata_url or f"sqlite:///{self.metadata_path}"

    @property
    def tables_url(self) -> str:
        """``data_url``, or one embedded DuckDB file per user in the data folder."""
        return self.data_url or f"duckdb:///{self.data_dir / 'tables'}"

    @property
    def key_path(self) -> Path:
        return self.data_dir / "token-signing.key"
