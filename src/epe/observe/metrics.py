"""Every Prometheus metric epe exposes, and their exposition (docs/operations.md).

Metrics are module-level, as prometheus-client intends: the services and the
executor record into them where the work happens. When ``PROMETHEUS_MULTIPROC_DIR``
is set (read by prometheus-client when it is first imported), values live in files
there and the exposition sums every process's: several ``epe serve`` processes then
answer for one service. Gauges are summed over live processes only.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.metrics import MetricWrapperBase

# Seconds: from a bare request (well under a millisecond) to a long job.
_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
         60)
_SLOW = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
         300, 900, 1800, 3600)
_COUNTS = (1, 2, 5, 10, 20, 50, 100, 1000, 10_000, 100_000, 1_000_000)
_ROWS = (0, 10, 100, 1000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000)
_BYTES = (100, 1000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000)

# -- HTTP ------------------------------------------------------------------------------------

HTTP_REQUESTS = Counter("epe_http_requests", "HTTP requests answered, by route template and "
                        "status.", ["method", "route", "status"])
HTTP_SECONDS = Histogram("epe_http_request_duration_seconds", "Time to answer an HTTP request.",
                         ["method", "route"], buckets=_FAST)
UNMATCHED = "unmatched"  # the route of a path no route matches (a 404), kept to one series

# -- runs ------------------------------------------------------------------------------------

RUNS = Counter("epe_runs", "Runs ended, by operation, mode (sync or async) and outcome (ok, "
               "cancelled, or the error's class).", ["operation", "mode", "outcome"])
RUN_SECONDS = Histogram("epe_run_duration_seconds", "Time a run took, from its input query to "
                        "its result.", ["operation", "mode"], buckets=_SLOW)
RUN_INVOCATIONS = Histogram("epe_run_invocations", "Invocations of the function (units) per "
                            "run.", ["operation"], buckets=_COUNTS)
RUN_BATCHES = Histogram("epe_run_batches", "Batches (worker tasks) a run's units were cut "
                        "into.", ["operation"], buckets=_COUNTS)
INPUT_SECONDS = Histogram("epe_run_input_seconds", "Time to read a run's input query and hand "
                          "it to the workers.", ["operation"], buckets=_SLOW)
INPUT_ROWS = Histogram("epe_run_input_rows", "Rows of a run's input query.", ["operation"],
                       buckets=_ROWS)
OUTPUT_BYTES = Histogram("epe_run_output_bytes", "Bytes of JSON of a run's result.",
                         ["operation"], buckets=_BYTES)

# -- models (docs/models.md) ---------------------------------------------------------------

SCORES = Counter("epe_model_scores", "Score calls to model endpoints ended, by outcome (ok, or "
                 "the error's class).", ["outcome"])
SCORE_SECONDS = Histogram("epe_model_score_duration_seconds", "Time a score call took, from "
                          "its records checked to its results.", buckets=_FAST)
SCORING_RUNS = Counter("epe_scoring_runs", "Runs of batch scoring jobs ended, by status "
                       "(FINISH, FAILED).", ["status"])

# -- admission and jobs ------------------------------------------------------------------------

REFUSED = Counter("epe_admission_refusals", "Work refused with 503 because the server was "
                  "full, by reason.", ["reason"])
JOBS = Gauge("epe_jobs", "Async jobs admitted and not ended, by state (PENDING, RUNNING).",
             ["state"], multiprocess_mode="livesum")
JOBS_SUBMITTED = Counter("epe_jobs_submitted", "Async jobs admitted, by kind.", ["kind"])
JOBS_ENDED = Counter("epe_jobs_ended", "Async jobs ended, by final state.", ["state"])

# -- workers -----------------------------------------------------------------------------------

WORKERS = Gauge("epe_workers", "Live worker processes, by state (idle, busy).", ["state"],
                multiprocess_mode="livesum")
TASKS_WAITING = Gauge("epe_tasks_waiting", "Tasks waiting for a free worker.",
                      multiprocess_mode="livesum")
WORKERS_STARTED = Counter("epe_workers_started", "Worker processes started and ready.")
WORKERS_FROM_SPARES = Counter("epe_workers_from_spares", "Workers started from a spare, "
                              "a child the fork server forked ahead of need.")
WORKER_SPARES = Gauge("epe_worker_spares", "Spares waiting in the server's own "
                      "environment's fork server (EPE_WORKER_SPARES).")
WORKERS_RECYCLED = Counter("epe_workers_recycled", "Workers retired after their task limit.")
WORKERS_KILLED = Counter("epe_workers_killed", "Workers killed or found dead while running a "
                         "task, by reason (timeout, crash, memory, cancelled, error).",
                         ["reason"])
WORKER_START_SECONDS = Histogram("epe_worker_start_seconds", "Time from asking the fork "
                                 "server for a worker until it reports ready, its sandbox "
                                 "entered (the sandbox start latency).", buckets=_SLOW)
POOLS_WARM = Gauge("epe_pools_warm", "Users' worker pools warm, by kind (user: the server's "
                   "own environment; environment: a named one).", ["kind"],
                   multiprocess_mode="livesum")

# -- the audit trail ---------------------------------------------------------------------------

AUDIT_WRITTEN = Counter("epe_audit_entries_written", "Audit entries written to the store.")
AUDIT_DROPPED = Counter("epe_audit_entries_dropped", "Audit entries lost: the queue was full "
                        "or the store refused them.")

# -- usage accounting (docs/operations.md#usage) -------------------------------------------------

USAGE_WRITTEN = Counter("epe_usage_records_written", "Usage records of runs written to the "
                        "store.")
USAGE_DROPPED = Counter("epe_usage_records_dropped", "Usage records of runs lost: the queue "
                        "was full or the store refused them.")


@lru_cache(maxsize=4096)
def series(metric: MetricWrapperBase, *labels: str) -> Any:
    """``metric.labels(*labels)``, looked up once: ``labels`` takes a lock and checks its
    arguments, a cost paid per request otherwise. (Label values here come from small
    fixed sets, never from users, so the cache stays small.)"""
    return metric.labels(*labels)


def http_request(method: str, route: str, status: int, seconds: float) -> None:
    series(HTTP_REQUESTS, method, route, str(status)).inc()
    series(HTTP_SECONDS, method, route).observe(seconds)


# -- exposition ------------------------------------------------------------------------------


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


@lru_cache(maxsize=1)
def scrape_registry() -> CollectorRegistry:
    """What a scrape reads: this process's registry, or every process's files."""
    if multiprocess_dir() is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus' text format, and its content type."""
    return generate_latest(scrape_registry()), CONTENT_TYPE_LATEST


def serve(address: str) -> tuple[str, Callable[[], None]]:
    """Serve ``/metrics`` (no authentication) on ``HOST:PORT`` in a thread of its own.

    Returns the address it listens on (the port filled in) and how to stop it.
    """
    host, port = split_address(address)
    server, thread = start_http_server(port, host, registry=scrape_registry())

    def stop() -> None:
        _shutdown(server, thread)

    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{server.server_port}", stop


def _shutdown(server: WSGIServer, thread: threading.Thread) -> None:
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a host and a port number."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"{address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def process_exit() -> None:
    """In multiprocess mode, drop this process's live gauges from the sums."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(os.getpid())
