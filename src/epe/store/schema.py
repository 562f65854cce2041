"""The metadata schema, as SQLAlchemy Core tables.

Migrations under ``migrations/versions`` build exactly this schema; a test
compares the two. Times are UNIX seconds (REAL): simple to compare, and the
API formats them.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("name", String(128), primary_key=True),  # upper-case (docs/api.md#names)
    Column("password_hash", Text, nullable=False),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("created", Float, nullable=False),
    # Who vouches for the password (docs/sign-in.md): local (the hash above), ldap, oidc.
    Column("source", String(16), nullable=False, server_default="local"),
    # The name the directory knows the user by (the name typed at sign-in), or the
    # provider's subject: what a refresh checks again.
    Column("external_id", String(512), nullable=True),
)

# Members of groups, besides admins (is_admin: the group ADMIN). For directory and
# provider users the set is replaced at each sign-in and refresh; for local users it is
# kept by admins.
user_groups = Table(
    "user_groups",
    metadata,
    Column("user_name", String(128), primary_key=True),
    Column("group_name", String(128), primary_key=True),
    Index("ix_user_groups_group", "group_name"),
)

# Automation tokens: the secret is shown once and kept only as its SHA-256.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("name", String(128), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("scope", String(8), nullable=False),  # run | read
    Column("created", Float, nullable=False),
    Column("expires", Float, nullable=True),
    UniqueConstraint("owner", "name", name="uq_api_tokens_owner_name"),
)

revoked_tokens = Table(
    "revoked_tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    # Kept until the token would have expired anyway, then purged.
    Column("expires", Float, nullable=False, index=True),
)

scripts = Table(
    "scripts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # The owner is the user, or PYQSYS for a global script (OML).
    Column("owner", String(128), nullable=False),
    Column("name", String(128), nullable=False),
    Column("source", Text, nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("is_global", Boolean, nullable=False, default=False),
    Column("created_by", String(128), nullable=False),
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
    UniqueConstraint("owner", "name", name="uq_scripts_owner_name"),
)

grants = Table(
    "grants",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("object_type", String(16), nullable=False),  # pyqscript | datastore | model
    Column("owner", String(128), nullable=False),
    Column("name", String(128), nullable=False),  # a model's: its id
    Column("grantee", String(128), nullable=False),  # a user name, or PUBLIC for everyone
    Column("grantee_type", String(8), nullable=False, server_default="user"),  # user | group
    UniqueConstraint("object_type", "owner", "name", "grantee_type", "grantee",
                     name="uq_grants"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("request", Text, nullable=False),
    Column("created", Float, nullable=False),
    Column("started", Float, nullable=True),
    Column("finished", Float, nullable=True),
    Column("http_status", Integer, nullable=True),
    Column("result_path", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("progress_done", Integer, nullable=False, default=0),
    Column("progress_total", Integer, nullable=False, default=0),
    Column("idempotency_key", String(256), nullable=True),
    # The queue (docs/deploy.md): a job is held by the server that accepted it, then
    # by the one that claimed it to run it, for as long as that server renews its lease.
    Column("service", String(8), nullable=True),  # LOW | MEDIUM | HIGH; None: not a run
    Column("source", Text, nullable=True),  # the script as found at submission
    Column("pinned", Boolean, nullable=False, server_default=false()),  # runs where accepted
    Column("server", String(64), nullable=True),
    Column("lease_expires", Float, nullable=True),
    # Bytes of its kept answer and log, counted in its owner's storage (docs/operations.md).
    Column("result_bytes", BigInteger, nullable=True),
    Column("script", String(300), nullable=True),  # OWNER.NAME of its stored script, if one
    Index("ix_jobs_owner_created", "owner", "created"),
    Index("ix_jobs_owner_idempotency", "owner", "idempotency_key", unique=True),
    # The queue by fair share: each user's oldest waiting job of a level, from the index.
    Index("ix_jobs_queue", "status", "service", "owner", "created"),
    Index("ix_jobs_server", "server", "status"),
    # A user's jobs running and waiting, and the bytes of their kept results, from the index.
    Index("ix_jobs_owner_status", "owner", "status", "result_bytes"),
)

# A finished job's answer where every server can read it: used when several servers
# share the database (on SQLite the answers are files in the data folder).
job_answers = Table(
    "job_answers",
    metadata,
    Column("job_id", String(64), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("http_status", Integer, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("log", Text, nullable=False),
)

# Secrets every server sharing the database must agree on (the token signing key).
server_secrets = Table(
    "server_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", LargeBinary, nullable=False),
)

datastores = Table(
    "datastores",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("owner", String(128), nullable=False),
    Column("name", String(128), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("grantable", Boolean, nullable=False, default=False),
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
    UniqueConstraint("owner", "name", name="uq_datastores_owner_name"),
)

# One row per object: its description, and the pickle the worker made of it. The
# server stores the bytes and never unpickles them.
datastore_objects = Table(
    "datastore_objects",
    metadata,
    Column("datastore_id", Integer, ForeignKey("datastores.id", ondelete="CASCADE"),
           primary_key=True),
    Column("name", String(256), primary_key=True),
    Column("class_name", String(256), nullable=False),
    Column("size", Integer, nullable=False),
    Column("length", Integer, nullable=True),
    Column("row_count", Integer, nullable=True),
    Column("col_count", Integer, nullable=True),
    Column("versions", Text, nullable=False),  # JSON: Python and library versions
    Column("data", LargeBinary, nullable=False),
)

# The host uid each epe user's sandboxed workers run as (docs/security.md). A uid is
# never given twice: when its user is deleted the row stays, without an owner.
worker_uids = Table(
    "worker_uids",
    metadata,
    Column("uid", Integer, primary_key=True, autoincrement=False),
    Column("owner", String(128), nullable=True),
    Column("assigned", Float, nullable=False),
    UniqueConstraint("owner", name="uq_worker_uids_owner"),
)

# Who did what, when (docs/operations.md): runs, logins, and changes to scripts,
# grants, users and environments. Written in batches, read by admins, purged after
# EPE_AUDIT_RETENTION; never deleted with a user.
audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False),
    Column("kind", String(16), nullable=False),  # run, login, script, datastore, user, env, model
    Column("action", String(32), nullable=False),  # the operation, or create, grant, ...
    Column("user_name", String(128), nullable=True),  # who; the name tried, for a login
    Column("status", String(16), nullable=False),  # ok, failed, cancelled
    Column("error_code", Integer, nullable=True),
    Column("owner", String(128), nullable=True),  # the object's owner and name
    Column("name", String(256), nullable=True),
    Column("client", String(64), nullable=True),  # the client's address, for a login
    Column("request_id", String(128), nullable=True),
    Column("details", Text, nullable=False),  # JSON: what else the kind records
    Index("ix_audit_time", "time"),
    Index("ix_audit_user_time", "user_name", "time"),
    Index("ix_audit_kind_time", "kind", "time"),
)

# What an admin set for one user in place of the defaults of EPE_USER_* (docs/operations.md,
# limits); a missing row or a NULL is the default. Deleted with the user.
user_limits = Table(
    "user_limits",
    metadata,
    Column("user_name", String(128), primary_key=True),
    Column("running_jobs", Integer, nullable=True),
    Column("waiting_jobs", Integer, nullable=True),
    Column("memory", BigInteger, nullable=True),
    Column("storage", BigInteger, nullable=True),
)

# The bytes of each of a user's tables, as stored through epe (their Arrow size), counted
# in the user's storage beside datastores, models and job results: kept here, in the database
# that holds the others, so that one transaction checks a write against the quota.
table_sizes = Table(
    "table_sizes",
    metadata,
    Column("owner", String(128), primary_key=True),
    Column("name", String(128), primary_key=True),  # lower case: names match ignoring case
    Column("bytes", BigInteger, nullable=False),
)

# One row per run, sync or job (docs/operations.md#usage): who ran what, for how long, with
# how much CPU and memory (what the kernel counted for its workers) and how many bytes in
# and out. Written in batches off the request path; purged after EPE_USAGE_RETENTION.
run_usage = Table(
    "run_usage",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_name", String(128), nullable=False),
    Column("operation", String(32), nullable=False),
    Column("script", String(300), nullable=True),  # OWNER.NAME; None: an inline function
    Column("service", String(8), nullable=False),
    Column("mode", String(8), nullable=False),  # sync | async
    Column("job_id", String(64), nullable=True),
    Column("started", Float, nullable=False),
    Column("wall_seconds", Float, nullable=False),
    Column("cpu_seconds", Float, nullable=False),
    Column("peak_memory", BigInteger, nullable=False),
    Column("input_rows", BigInteger, nullable=False),
    Column("input_bytes", BigInteger, nullable=False),
    Column("output_bytes", BigInteger, nullable=False),
    Column("outcome", String(64), nullable=False),  # ok, cancelled, or the error's class
    Index("ix_run_usage_started", "started"),
    Index("ix_run_usage_user_started", "user_name", "started"),
)

# OML Services (docs/models.md). A model is a snapshot: its bytes (Oracle's ONNX zip, or
# the pickle a datastore held) and the scoring script as they were when it was stored,
# so a version never changes under its endpoint. The server stores the bytes and never
# loads them; ``signature`` is what a worker of the owner read from the model.
models = Table(
    "models",
    metadata,
    Column("id", String(36), primary_key=True),  # a UUID, as Oracle's modelId
    Column("owner", String(128), nullable=False),
    Column("name", String(256), nullable=False),
    Column("version", String(64), nullable=False),
    Column("namespace", String(128), nullable=False, default=""),
    Column("model_type", String(16), nullable=False),  # ONNX | PYTHON
    Column("function", String(16), nullable=False),  # regression, classification, clustering
    Column("description", Text, nullable=False, default=""),
    Column("shared", Boolean, nullable=False, default=False),
    Column("created", Float, nullable=False),
    Column("signature", Text, nullable=False),  # JSON: input columns and their types
    Column("spec", Text, nullable=False),  # JSON: how a worker loads it (type's own fields)
    Column("script", Text, nullable=True),  # a PYTHON model's scoring script, as stored
    Column("size", Integer, nullable=False),
    Column("digest", String(64), nullable=False),  # sha256 of data, spec and script
    Column("data", LargeBinary, nullable=False),
    UniqueConstraint("owner", "namespace", "name", "version", name="uq_models_name"),
)

# A model's endpoint: one per model, its URI unique on the server.
deployments = Table(
    "deployments",
    metadata,
    Column("uri", String(128), primary_key=True),
    Column("model_id", String(36), ForeignKey("models.id"), nullable=False),
    Column("owner", String(128), nullable=False),
    Column("created", Float, nullable=False),
    UniqueConstraint("model_id", name="uq_deployments_model"),
)

# Batch scoring jobs on a schedule: the schedule is this row; replicas claim a due run
# by locking it (``FOR UPDATE SKIP LOCKED``) and moving ``next_run`` on in the same
# transaction, so each slot runs once. ``server``: the one server that may run it, when
# users' tables are that server's own.
scoring_jobs = Table(
    "scoring_jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("name", String(128), nullable=False),
    Column("model_id", String(36), ForeignKey("models.id"), nullable=False),
    Column("input_table", String(128), nullable=False),
    Column("output_table", String(128), nullable=False),
    Column("supplemental", Text, nullable=False),  # JSON list of column names
    Column("start_at", Float, nullable=False),
    Column("end_at", Float, nullable=True),
    Column("repeat", Text, nullable=False),  # the repeat rule (RFC 5545 RRULE)
    Column("max_runs", Integer, nullable=True),
    Column("enabled", Boolean, nullable=False),
    Column("next_run", Float, nullable=True),  # None: nothing left to run
    Column("run_count", Integer, nullable=False, default=0),  # scheduled runs begun
    Column("server", String(64), nullable=True),
    Column("created", Float, nullable=False),
    UniqueConstraint("owner", "name", name="uq_scoring_jobs_name"),
    Index("ix_scoring_jobs_due", "enabled", "next_run"),
)

# Each run of a scoring job: its slot, who ran it, how it ended. It runs as an async
# job of the owner (``job_id``); a run whose server stopped under it is failed by the
# next scheduler pass.
scoring_runs = Table(
    "scoring_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scoring_job", String(32), ForeignKey("scoring_jobs.id", ondelete="CASCADE"),
           nullable=False),
    Column("scheduled", Float, nullable=True),  # the slot run; None: run at once by hand
    Column("status", String(16), nullable=False),  # RUNNING, FINISH, FAILED
    Column("started", Float, nullable=False),
    Column("finished", Float, nullable=True),
    Column("server", String(64), nullable=False),
    Column("job_id", String(64), nullable=True),
    Column("rows", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Index("ix_scoring_runs_job", "scoring_job", "started"),
    Index("ix_scoring_runs_status", "status"),
)
