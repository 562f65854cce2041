"""The client commands of ``epe``: ``script``, ``run``, ``job``, ``table`` (docs/client.md),
``model`` (docs/models.md) and ``audit`` (docs/operations.md).

They talk to a running server over its REST API through the Python client
(``epe.client``), logged in from ``EPE_URL``, ``EPE_USER`` and ``EPE_PASSWORD``.
Results print as JSON; a server error raises, and ``epe``'s command group
(``epe.cli``) prints its message (and the function's traceback) and exits 1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from epe.core.operations import OPERATIONS, Operation
from epe.core.requests import SERVICE_LEVELS

if TYPE_CHECKING:
    from epe.client._connection import Connection
    from epe.client._functions import Shipped

# The client modules (httpx, pandas, pyarrow, rich) are imported by the commands that
# use them, so that ``epe serve`` and ``epe user add`` start as fast as before.

CONTENT_TYPES = {".csv": "text/csv", ".parquet": "application/vnd.apache.parquet",
                 ".pq": "application/vnd.apache.parquet", ".json": "application/json"}


def _connect() -> Connection:
    from epe.client._connection import connect_from

    try:
        return connect_from(None, None, None)
    except ValueError as e:
        raise click.UsageError(str(e)) from None


def _echo_json(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def _table(rows: list[list[str]], header: list[str]) -> None:
    """Rows as aligned columns under a header."""
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=False)]
    for row in [header, *rows]:
        click.echo("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=False)).rstrip())


# -- epe script ----------------------------------------------------------------------------


@click.group("script")
def script_group() -> None:
    """Stored scripts on the server (connects with EPE_URL, EPE_USER, EPE_PASSWORD)."""


@script_group.command("push")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="The script's name.")
@click.option("--global", "is_global", is_flag=True, help="Store it as a global script.")
@click.option("--description", default="", help="What the script does.")
@click.option("--overwrite/--no-overwrite", default=True, show_default=True,
              help="Replace a script of that name.")
def script_push(file: Path, name: str, is_global: bool, description: str,
                overwrite: bool) -> None:
    """Store the Python source in FILE as script NAME."""
    from epe.client._scripts import post_script

    info = post_script(_connect(), name, file.read_text(), is_global, overwrite, description)
    click.echo(f"script {info['name']} stored (owner {info['owner']})")


@script_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print GET /scripts's answer.")
def script_list(as_json: bool) -> None:
    """List the scripts you may run: yours, global ones, and those granted to you."""
    from epe.client._scripts import listing

    scripts = listing(_connect())
    if as_json:
        _echo_json(scripts)
        return
    _table([[s["name"], s["owner"], "yes" if s.get("isGlobal") else "no", s.get("date", ""),
             s.get("description", "")] for s in scripts],
           ["NAME", "OWNER", "GLOBAL", "DATE", "DESCRIPTION"])


@script_group.command("show")
@click.argument("name")
@click.option("--owner", default=None, help="The script's owner (PYQSYS: a global one).")
def script_show(name: str, owner: str | None) -> None:
    """Print the source of script NAME."""
    from epe.client._scripts import fetch

    click.echo(fetch(_connect(), name, owner)["script"], nl=False)


@script_group.command("drop")
@click.argument("name")
@click.option("--global", "is_global", is_flag=True, help="Drop the global script NAME.")
def script_drop(name: str, is_global: bool) -> None:
    """Delete script NAME."""
    from epe.client._connection import segment

    _connect().delete(f"/scripts/{segment(name)}",
                      params={"isGlobal": "true"} if is_global else None)
    click.echo(f"script {name} dropped")


# -- epe run -------------------------------------------------------------------------------


@click.group("run")
def run_group() -> None:
    """Run a stored script (or a local .py file) on the server and print its result."""


def _param(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r} is not KEY=VALUE", param_hint="--param")
    try:
        return key, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return key, raw  # a plain string


def _input_sql(text: str) -> str:
    """A query, or a bare table name meaning all its rows."""
    from epe.client._proxy import TABLE_NAME, quote

    return f"SELECT * FROM {quote(text)}" if TABLE_NAME.fullmatch(text) else text


def _shipped(name: str) -> Shipped:
    from epe.client._functions import SCRIPT_NAME, Shipped

    path = Path(name)
    if name.endswith(".py") and path.is_file():
        return Shipped(source=path.read_text())
    if not SCRIPT_NAME.fullmatch(name):
        raise click.BadParameter(f"{name!r} is neither a script name nor a .py file",
                                 param_hint="NAME")
    return Shipped(name=name)


# The option of the CLI that carries each required body field.
_OPTION_OF = {"input": "--input", "rows": "--rows", "groupBy": "--group-by", "times": "--times"}


def _run_command(op: Operation) -> click.Command:
    def command(name: str, owner: str | None, input_: str | None, params: tuple[str, ...],
                async_: bool, rows: int | None, group_by: str | None, order_by: str | None,
                times: int | None, parallel: int | None, service: str | None,
                env: str | None, timeout: int | None) -> None:
        from epe.client._embed import parallel_fields, run_body, run_path
        from epe.client._functions import Shipped

        given = {"input": input_, "rows": rows, "groupBy": group_by, "times": times}
        missing = [_OPTION_OF[n] for n in op.required if given[n] is None]
        if missing:
            raise click.UsageError(f"{op.path} needs {' and '.join(missing)}")
        shipped = _shipped(name)
        if owner is not None:
            shipped = Shipped(name=shipped.name, owner=owner)
        fields: dict[str, Any] = {
            "input": _input_sql(input_) if input_ else None, "rows": rows, "groupBy": group_by,
            "orderBy": order_by, "times": times, "service": service, "envName": env,
            "timeout": timeout, "asyncFlag": True if async_ else None,
            **(parallel_fields(parallel) if op.parallel else {})}
        body = run_body(shipped, fields, dict(map(_param, params)))
        r = _connect().request("POST", run_path(op.kind, shipped), json=body)
        if r.status_code == 201:
            click.echo(r.headers["location"].rstrip("/").rsplit("/", 1)[-1])
            return
        _echo_json(r.json()["result"])

    options = [
        click.argument("name"),
        click.option("--owner", default=None, help="The owner of the stored script."),
        click.option("--input", "input_", metavar="Q",
                     help="The input: a SQL query, or a table name."),
        click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
                     help="A keyword argument; VALUE is JSON if it parses, else a string."),
        click.option("--async", "async_", is_flag=True, help="Run as a job; print its id."),
        click.option("--rows", type=int, help="Rows per chunk (row-apply)."),
        click.option("--group-by", help="Grouping column(s), comma-separated (group-apply)."),
        click.option("--order-by", help="Ordering column(s) in a group (group-apply)."),
        click.option("--times", type=int, help="Number of invocations (index-apply)."),
        click.option("--parallel", type=int, help="Degree of parallelism."),
        click.option("--service", type=click.Choice(SERVICE_LEVELS),
                     help="Service level."),
        click.option("--env", help="Run in this named environment."),
        click.option("--timeout", type=int, help="Time limit, seconds."),
    ]
    for option in reversed(options):
        command = option(command)
    what = {"none": "with no input", "whole": "once on all the rows of --input",
            "chunks": "on each chunk of --rows rows of --input",
            "groups": "once per group of --group-by of --input",
            "index": "--times times"}[op.input.name]
    command.__doc__ = (f"Run NAME (a stored script, or a local .py file) {what}, and print "
                       "its result as JSON.")
    return click.command(op.path)(command)


for _op in OPERATIONS.values():
    run_group.add_command(_run_command(_op))


# -- epe job -------------------------------------------------------------------------------


@click.group("job")
def job_group() -> None:
    """Async jobs: list, watch, result, log, cancel."""


@job_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print GET /jobs's answer.")
def job_list(as_json: bool) -> None:
    """List your jobs, newest first."""
    from epe.client._jobs import list_jobs

    jobs = list_jobs(_connect())
    if as_json:
        _echo_json(jobs)
        return

    def progress(job: dict[str, Any]) -> str:
        p = job.get("progress") or {}
        return f"{p.get('done', 0)}/{p.get('total', 0)}" if p.get("total") else ""

    _table([[j["job_id"], j["status"], j.get("operation", ""), j["createdDate"],
             j["elapsedTime"], progress(j)] for j in jobs],
           ["JOB_ID", "STATUS", "OPERATION", "CREATED", "ELAPSED", "PROGRESS"])


@job_group.command("watch")
@click.argument("job_id")
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds.")
def job_watch(job_id: str, timeout: float | None) -> None:
    """Show JOB_ID's progress until it ends; exit 1 unless it finished."""
    from epe.client._jobs import Job

    status = Job(job_id, _connect()).wait(progress=True, timeout=timeout)
    click.echo(f"job {job_id} {status}")
    if status != "FINISH":
        sys.exit(1)


@job_group.command("result")
@click.argument("job_id")
def job_result(job_id: str) -> None:
    """Print JOB_ID's result as JSON (waiting for it to end); its error if it failed."""
    from epe.client._jobs import Job

    _echo_json(Job(job_id, _connect()).raw_result())


@job_group.command("log")
@click.argument("job_id")
def job_log(job_id: str) -> None:
    """Print what JOB_ID's function printed."""
    from epe.client._jobs import Job

    click.echo(Job(job_id, _connect()).log(), nl=False)


@job_group.command("cancel")
@click.argument("job_id")
def job_cancel(job_id: str) -> None:
    """Stop JOB_ID if it is running, and delete it."""
    from epe.client._jobs import Job

    Job(job_id, _connect()).cancel()
    click.echo(f"job {job_id} cancelled and deleted")


# -- epe table -----------------------------------------------------------------------------


@click.group("table")
def table_group() -> None:
    """Your tables on the server: load, list, drop."""


@table_group.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="The table's name.")
@click.option("--overwrite", is_flag=True, help="Replace a table of that name.")
def table_load(file: Path, name: str, overwrite: bool) -> None:
    """Upload FILE (.csv, .parquet or .json records) as table NAME."""
    from epe.client._proxy import upload

    content_type = CONTENT_TYPES.get(file.suffix.lower())
    if content_type is None:
        raise click.BadParameter(f"{file.name}: use a .csv, .parquet or .json file",
                                 param_hint="FILE")
    info = upload(_connect(), name, file.read_bytes(), content_type, overwrite)
    click.echo(f"table {info['name']} loaded: {info['rows']} rows, "
               f"{len(info['columns'])} columns")


@table_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print GET /tables's answer.")
def table_list(as_json: bool) -> None:
    """List your tables with their row counts and columns."""
    from epe.client._proxy import list_tables

    tables = list_tables(_connect())
    if as_json:
        _echo_json(tables)
        return
    _table([[t["name"], str(t["rows"]), ", ".join(f"{c['name']} {c['type']}"
                                                  for c in t["columns"])] for t in tables],
           ["NAME", "ROWS", "COLUMNS"])


@table_group.command("drop")
@click.argument("name")
def table_drop(name: str) -> None:
    """Delete table NAME."""
    from epe.client._connection import segment

    _connect().delete(f"/tables/{segment(name)}")
    click.echo(f"table {name} dropped")


# -- epe model -----------------------------------------------------------------------------


@click.group("model")
def model_group() -> None:
    """Models as scoring endpoints, and batch scoring jobs (docs/models.md)."""


def _models_call(method: str, path: str, **kw: Any) -> Any:
    from epe.client._models import _call

    return _call(method, path, _connect(), **kw)


def _model_fields(name: str, version: str, shared: bool, description: str,
                  columns: str | None, function: str | None) -> dict[str, str]:
    return {"modelName": name, "version": version, "description": description,
            **({"shared": "true"} if shared else {}),
            **({"inputColumns": columns} if columns else {}),
            **({"function": function} if function else {})}


_MODEL_OPTIONS = [
    click.option("--name", required=True, help="The model's name."),
    click.option("--version", default="1.0", show_default=True, help="Its version."),
    click.option("--shared", is_flag=True, help="Let every user score it."),
    click.option("--description", default="", help="What the model does."),
    click.option("--columns", default=None, metavar="JSON",
                 help="Its input columns, when the model does not say: a JSON list of "
                      "names, or an object of name -> type."),
    click.option("--function", type=click.Choice(["regression", "classification",
                                                  "clustering"]),
                 help="What it predicts, when the model does not say."),
]


def _with_model_options(command: Any) -> Any:
    for option in reversed(_MODEL_OPTIONS):
        command = option(command)
    return command


@model_group.command("upload")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_with_model_options
def model_upload(file: Path, name: str, version: str, shared: bool, description: str,
                 columns: str | None, function: str | None) -> None:
    """Store an ONNX model: FILE is Oracle's zip (the .onnx file, metadata.json)."""
    fields = {**_model_fields(name, version, shared, description, columns, function),
              "modelType": "ONNX"}
    answer = _models_call("POST", "/models", data=fields,
                          files={"modelData": (file.name, file.read_bytes())})
    click.echo(answer["modelId"])


@model_group.command("create")
@click.option("--datastore", required=True, help="The datastore holding the model.")
@click.option("--object", "object_", required=True, help="The model's object name there.")
@click.option("--script", default=None, help="A scoring script's name: f(model, data).")
@_with_model_options
def model_create(datastore: str, object_: str, script: str | None, name: str, version: str,
                 shared: bool, description: str, columns: str | None,
                 function: str | None) -> None:
    """Store a PYTHON model from one of your datastores; print its id."""
    fields = {**_model_fields(name, version, shared, description, columns, function),
              "modelType": "PYTHON", "datastore": datastore, "object": object_,
              **({"script": script} if script else {})}
    click.echo(_models_call("POST", "/models", data=fields)["modelId"])


@model_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print GET /omlmod/v1/models's answer.")
def model_list(as_json: bool) -> None:
    """List the models you may see: yours, shared ones, and those granted to you."""
    items = _models_call("GET", "/models")["items"]
    if as_json:
        _echo_json(items)
        return
    _table([[m["modelId"], m["modelName"], m["version"], m["modelType"], m["function"],
             m["createdBy"], "yes" if m["shared"] else "no"] for m in items],
           ["MODEL_ID", "NAME", "VERSION", "TYPE", "FUNCTION", "OWNER", "SHARED"])


@model_group.command("show")
@click.argument("model_id")
def model_show(model_id: str) -> None:
    """Print a model's description as JSON."""
    _echo_json(_models_call("GET", f"/models/{model_id}"))


@model_group.command("drop")
@click.argument("model_id")
def model_drop(model_id: str) -> None:
    """Delete one of your models (undeploy it first)."""
    _models_call("DELETE", f"/models/{model_id}")
    click.echo(f"model {model_id} deleted")


@model_group.command("deploy")
@click.argument("model_id")
@click.argument("uri")
def model_deploy(model_id: str, uri: str) -> None:
    """Deploy MODEL_ID at URI."""
    _models_call("POST", "/deployment", json={"modelId": model_id, "uri": uri})
    click.echo(f"model {model_id} deployed at {uri}")


@model_group.command("undeploy")
@click.argument("uri")
def model_undeploy(uri: str) -> None:
    """Delete the endpoint URI."""
    _models_call("DELETE", f"/deployment/{uri}")
    click.echo(f"endpoint {uri} deleted")


@model_group.command("endpoints")
def model_endpoints() -> None:
    """List the endpoints you may score."""
    items = _models_call("GET", "/deployment")["items"]
    _table([[e["uri"], e["modelName"], e["version"], e["function"], e["createdBy"]]
            for e in items], ["URI", "MODEL", "VERSION", "FUNCTION", "OWNER"])


@model_group.command("api")
@click.argument("uri")
def model_api(uri: str) -> None:
    """Print the endpoint's own OpenAPI document."""
    _echo_json(_models_call("GET", f"/deployment/{uri}/api"))


@model_group.command("score")
@click.argument("uri")
@click.argument("records", nargs=-1, metavar="RECORD...")
@click.option("--file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A JSON file holding a list of records.")
@click.option("--top-n", type=int, default=None, help="The most probable N per record.")
def model_score(uri: str, records: tuple[str, ...], file: Path | None,
                top_n: int | None) -> None:
    """Score RECORDs (each a JSON object) with the endpoint URI; print the results."""
    given = [orjson.loads(r) for r in records]
    if file is not None:
        given += orjson.loads(file.read_bytes())
    if not given:
        raise click.UsageError("give at least one RECORD, or --file")
    body: dict[str, Any] = {"inputRecords": given, **({"topN": top_n} if top_n else {})}
    _echo_json(_models_call("POST", f"/deployment/{uri}/score", json=body)["scoringResults"])


def _grantee_options(command: Any) -> Any:
    command = click.option("--group", default=None, help="A group (its members).")(command)
    return click.option("--user", default=None,
                        help="A user (PUBLIC: everyone).")(command)


def _change_grant(action: str, model_id: str, user: str | None, group: str | None) -> None:
    from epe.client._models import change_grant

    if (user is None) == (group is None):
        raise click.UsageError("give --user or --group (one of them)")
    answer = change_grant(action, model_id, user, group, _connect())["result"]
    who = f"group {answer['group']}" if "group" in answer else answer["user"]
    click.echo(f"model {model_id} {'granted to' if action == 'grant' else 'revoked from'} "
               f"{who}")


@model_group.command("grant")
@click.argument("model_id")
@_grantee_options
def model_grant(model_id: str, user: str | None, group: str | None) -> None:
    """Let --user, or the members of --group, see and score your model MODEL_ID."""
    _change_grant("grant", model_id, user, group)


@model_group.command("revoke")
@click.argument("model_id")
@_grantee_options
def model_revoke(model_id: str, user: str | None, group: str | None) -> None:
    """Take back a grant of your model MODEL_ID to --user or --group."""
    _change_grant("revoke", model_id, user, group)


@model_group.command("grants")
@click.argument("model_id")
def model_grants(model_id: str) -> None:
    """List whom your model MODEL_ID is granted to."""
    from epe.client._models import list_grants

    found = list_grants(model_id, _connect())
    _table([["user", u] for u in found["users"]] + [["group", g] for g in found["groups"]],
           ["KIND", "GRANTEE"])


@model_group.group("job")
def model_job_group() -> None:
    """Batch scoring jobs on a schedule."""


@model_job_group.command("create")
@click.argument("name")
@click.option("--model", "model_id", required=True, help="The model's id.")
@click.option("--input", "input_", required=True, help="The table to score.")
@click.option("--output", required=True, help="The table to write (replaced each run).")
@click.option("--repeat", default="FREQ=DAILY", show_default=True,
              help="The repeat rule (FREQ=HOURLY;INTERVAL=2, ...).")
@click.option("--start", default=None, help="First run, ISO-8601 (default: now).")
@click.option("--end", default=None, help="No run after this, ISO-8601.")
@click.option("--max-runs", type=int, default=None, help="At most this many runs.")
@click.option("--keep", multiple=True, help="An input column kept beside the predictions.")
def model_job_create(name: str, model_id: str, input_: str, output: str, repeat: str,
                     start: str | None, end: str | None, max_runs: int | None,
                     keep: tuple[str, ...]) -> None:
    """Score table --input into table --output with --model on a schedule; print its id."""
    import datetime as dt

    from epe.client._models import _instant

    when: dict[str, Any] = {"jobStartDate": start or _instant(dt.datetime.now(dt.UTC)),
                            "repeatInterval": repeat,
                            **({"jobEndDate": end} if end else {}),
                            **({"maxRuns": max_runs} if max_runs else {})}
    answer = _models_call("POST", "/jobs", json={
        "jobName": name, "jobType": "MODEL_SCORING", "jobSchedule": when,
        "jobProperties": {"modelId": model_id, "inputData": input_, "outputData": output,
                          "supplementalColumnNames": list(keep)}})
    click.echo(answer["jobId"])


@model_job_group.command("list")
def model_job_list() -> None:
    """List your batch scoring jobs."""
    items = _models_call("GET", "/jobs")["items"]
    _table([[j["jobId"], j["jobName"], j["jobStatus"], j["jobSchedule"]["repeatInterval"],
             j["nextRunDate"] or "", str(j["runCount"])] for j in items],
           ["JOB_ID", "NAME", "STATUS", "REPEAT", "NEXT_RUN", "RUNS"])


@model_job_group.command("show")
@click.argument("job_id")
def model_job_show(job_id: str) -> None:
    """Print a job with its runs as JSON."""
    _echo_json(_models_call("GET", f"/jobs/{job_id}"))


def _job_action(action: str) -> click.Command:
    def command(job_id: str) -> None:
        _echo_json(_models_call("POST", f"/jobs/{job_id}/action", json={"action": action}))

    command.__doc__ = {"ENABLE": "Run JOB_ID on its schedule again, from its next slot.",
                       "DISABLE": "Stop running JOB_ID on its schedule.",
                       "RUN": "Run JOB_ID once now."}[action]
    return click.command(action.lower())(click.argument("job_id")(command))


for _action in ("ENABLE", "DISABLE", "RUN"):
    model_job_group.add_command(_job_action(_action))


@model_job_group.command("drop")
@click.argument("job_id")
def model_job_drop(job_id: str) -> None:
    """Delete JOB_ID and its runs' history."""
    _models_call("DELETE", f"/jobs/{job_id}")
    click.echo(f"scoring job {job_id} deleted")


# -- epe audit -----------------------------------------------------------------------------

AUDIT_PATH = "/omlusers/api/v1/audit"
AUDIT_PAGE = 1000  # the server's largest page


def audit_entries(connection: Connection, filters: dict[str, str], limit: int) -> list[Any]:
    """Up to ``limit`` entries matching ``filters``, oldest first, page after page."""
    entries: list[Any] = []
    while len(entries) < limit:
        page = min(AUDIT_PAGE, limit - len(entries))
        params = {**filters, "limit": str(page), "offset": str(len(entries))}
        answer = orjson.loads(connection.request("GET", AUDIT_PATH, api=False,
                                                 params=params).content)["result"]
        entries += answer["items"]
        if not answer["hasMore"]:
            break
    return entries


def _object(entry: dict[str, Any]) -> str:
    owner, name = entry.get("owner"), entry.get("name")
    return f"{owner}.{name}" if owner and name else name or ""


@click.command("audit")
@click.option("--user", help="Only what this user did (or, for logins, tried).")
@click.option("--since", help="From this time on: UNIX seconds or ISO-8601 (2026-01-31, "
                              "2026-01-31T12:00:00Z).")
@click.option("--until", help="Before this time.")
@click.option("--kind", help="Only one kind: run, login, script, datastore, user, env or "
                            "model.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True,
              help="At most this many entries.")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
def audit_command(user: str | None, since: str | None, until: str | None, kind: str | None,
                  limit: int, as_json: bool) -> None:
    """The audit trail, oldest first: runs, logins, and changes to scripts, grants, users
    and environments (an admin's EPE_USER and EPE_PASSWORD)."""
    filters = {k: v for k, v in (("user", user), ("since", since), ("until", until),
                                 ("kind", kind)) if v is not None}
    entries = audit_entries(_connect(), filters, limit)
    if as_json:
        _echo_json(entries)
        return
    _table([[e["time"], e["kind"], e["action"], e.get("user") or "", e["status"],
             str(e.get("errorCode") or ""), _object(e), e.get("client") or ""]
            for e in entries],
           ["TIME", "KIND", "ACTION", "USER", "STATUS", "CODE", "OBJECT", "CLIENT"])


COMMANDS = [script_group, run_group, job_group, table_group, model_group, audit_command]
