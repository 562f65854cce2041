"""docs/operations.md names every metric epe exposes, and the Grafana dashboard in docs/
queries only metrics that exist, with a panel for each thing an operator watches."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from epe.observe import metrics

DOCS = Path(__file__).resolve().parents[2] / "docs"
SUFFIXES = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}


def families() -> dict[str, str]:
    """Each metric of epe.observe.metrics: its name, as documented, and its type."""
    found = {}
    for made in vars(metrics).values():
        if isinstance(made, MetricWrapperBase):
            for family in made.describe():
                shown = family.name + ("_total" if family.type == "counter" else "")
                found[shown] = family.type
    return found


def exposed() -> set[str]:
    return {name.removesuffix("_total") + suffix for name, kind in families().items()
            for suffix in SUFFIXES[kind]}


def test_every_metric_is_documented() -> None:
    text = (DOCS / "operations.md").read_text()
    assert sorted(name for name in families() if f"`{name}`" not in text) == []


def test_nothing_documented_is_missing() -> None:
    text = (DOCS / "operations.md").read_text()
    named = set(re.findall(r"`(epe_[a-z_]+)`", text))
    assert sorted(named - set(families())) == []


def dashboard_queries() -> dict[str, list[str]]:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    return {p["title"]: [t["expr"] for t in p.get("targets", [])]
            for p in dashboard["panels"] if p["type"] != "row"}


def test_the_dashboard_queries_only_metrics_that_exist() -> None:
    queried = {name for exprs in dashboard_queries().values() for e in exprs
               for name in re.findall(r"\bepe_[a-z_]+", e)}
    assert queried and sorted(queried - exposed()) == []


def test_the_dashboard_shows_requests_runs_queue_workers_and_jobs() -> None:
    panels = dashboard_queries()
    text = json.dumps(panels)
    for needed in ("epe_http_requests_total", "epe_run_duration_seconds_bucket",
                   "epe_workers", "epe_tasks_waiting", "epe_jobs", "epe_jobs_ended_total"):
        assert needed in text, needed
    assert any("status=~\"5..\"" in e for exprs in panels.values() for e in exprs)
    assert any("by (le, operation" in e for exprs in panels.values() for e in exprs)
