"""OML's SQL table functions: ``pyqEval`` and its kin, ``pyqJobStatus``, ``pyqJobResult``
(docs/sql.md).

A call's arguments become the request body its REST endpoint takes (``par_lst`` is
``parameters``, ``inp_nam`` the input, ``row_num`` ``rows``...), and the run goes the
REST way: ``runs.prepare`` (the script the caller may run, parameters, limits, the
environment) then ``runs.run`` (the same workers), or a job when ``par_lst`` holds
``"oml_async_flag": true``. An error is the error REST would answer. The result is
shaped by ``OUT_FMT`` (``core.tablefunctions``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

import orjson
import pyarrow as pa
from pydantic import ValidationError

from epe import errors
from epe.core import tablefunctions
from epe.core.operations import API_ROOT, OPERATIONS, Operation
from epe.core.sql import Call
from epe.data.names import check_table_name, quote
from epe.errors import InvalidRequest, NotFound
from epe.service import runs
from epe.service.answers import Answer
from epe.service.services import Services
from epe.service.sessions import Caller
from epe.store.jobs import JobRecord

OPERATION_OF = {"PYQEVAL": "do_eval", "PYQTABLEEVAL": "table_apply",
                "PYQROWEVAL": "row_apply", "PYQGROUPEVAL": "group_apply",
                "PYQINDEXEVAL": "index_apply"}

# OML's argument -> the REST body's field, for the arguments that are body fields.
_BODY = {"par_lst": "parameters", "row_num": "rows", "grp_col": "groupBy",
         "ord_col": "orderBy", "times_num": "times", "env_name": "envName"}
_NUMBERS = ("row_num", "times_num")


class Jobs(Protocol):
    """What of ``epe.service.jobs.JobManager`` the table functions use."""

    async def submit(self, job: runs.Prepared, idempotency_key: str | None) -> JobRecord: ...

    def get(self, job_id: str, owner: str) -> JobRecord: ...

    def answer(self, job: JobRecord) -> Answer | None: ...


def default_job_url(job_id: str) -> str:
    return f"{API_ROOT}/v2/jobs/{job_id}"


class TableFunctions:
    """The table functions as one caller calls them (``epe.service.sql.Functions``).

    ``jobs`` is where async calls go and job functions look (the server's job manager;
    without one, those are refused); ``job_url`` makes a job's URL as the caller's API
    version spells it."""

    def __init__(self, services: Services, caller: Caller, jobs: Jobs | None = None,
                 job_url: Callable[[str], str] = default_job_url) -> None:
        self.services = services
        self.caller = caller
        self.jobs = jobs
        self.job_url = job_url

    async def __call__(self, call: Call) -> pa.Table:
        if call.function == "PYQJOBSTATUS":
            return await asyncio.to_thread(self.job_status, call)
        if call.function == "PYQJOBRESULT":
            return await asyncio.to_thread(self.job_result, call)
        return await self.evaluate(call)

    # -- the five functions ------------------------------------------------------------

    async def evaluate(self, call: Call) -> pa.Table:
        op = OPERATIONS[OPERATION_OF[call.function]]
        out = tablefunctions.kind_of(_text(call, "out_fmt"))
        body = request_body(call, op, out)
        name = _text(call, "scr_name")
        if not name:
            raise InvalidRequest(f"{call.name} needs scr_name, the name of a script you may "
                                 "run")
        prepared = await asyncio.to_thread(runs.prepare, self.services, self.caller, op, body,
                                           name=name, owner=_text(call, "scr_owner"))
        if prepared.asynchronous:
            if self.jobs is None:
                raise InvalidRequest(f"{call.name} with oml_async_flag cannot run here: no "
                                     "job manager")
            job = await self.jobs.submit(prepared, None)
            return tablefunctions.one_value(None, self.job_url(job.id))
        result = await runs.run(self.services, prepared, functions=self)
        return await asyncio.to_thread(shape, out, _text(call, "out_fmt"), result)

    # -- jobs --------------------------------------------------------------------------

    def _job(self, call: Call) -> tuple[Jobs, JobRecord]:
        if self.jobs is None:
            raise InvalidRequest(f"{call.name} cannot run here: no job manager")
        job_id = _text(call, "job_id")
        if not job_id:
            raise InvalidRequest(f"{call.name} needs job_id")
        # The id, or the job's URL (or its result's) as the async call or pyqJobStatus gave it.
        parts = [p for p in job_id.strip().split("/") if p]
        if len(parts) > 1 and parts[-1] == "result":
            parts.pop()
        return self.jobs, self.jobs.get(parts[-1] if parts else job_id, self.caller.name)

    def job_status(self, call: Call) -> pa.Table:
        """'job is still running', or where the result is, as OML's pyqJobStatus."""
        _jobs, job = self._job(call)
        if not job.status.ended:
            return tablefunctions.one_value(None, "job is still running")
        return tablefunctions.one_value(None, self.job_url(job.id) + "/result")

    def job_result(self, call: Call) -> pa.Table:
        """The finished job's result in ``out_fmt``; its error if it failed."""
        jobs, job = self._job(call)
        answer = jobs.answer(job)
        if answer is None:
            raise NotFound(f"job {job.id} has not finished yet; ask pyqJobStatus")
        body = orjson.loads(answer.body)
        if answer.status != 200 or not isinstance(body, dict) or "result" not in body:
            raise _error(body, answer.status)
        out_fmt = _text(call, "out_fmt")
        return shape(tablefunctions.kind_of(out_fmt), out_fmt, orjson.dumps(body["result"]))


def shape(kind: str, out_fmt: str | None, result: bytes) -> pa.Table:
    if kind == "PNG":
        return tablefunctions.images(result)
    if kind == "relational":
        assert out_fmt is not None
        return tablefunctions.relational(out_fmt, result)
    return tablefunctions.as_json(result)


def _error(body: Any, status: int) -> errors.EpeError:
    if not isinstance(body, dict) or not isinstance(body.get("errorCode"), int):
        return errors.InternalError("the job's answer is not readable")
    cls = errors.error_for_code(int(body["errorCode"]))
    extra = {k: v for k, v in body.items() if k not in ("errorCode", "errorMessage")}
    return cls(str(body.get("errorMessage", "")), **extra)


def _text(call: Call, key: str) -> str | None:
    value = call.arg(key)
    return None if value is None else str(value)


def request_body(call: Call, op: Operation, out: str) -> runs.RunRequest:
    """The REST body the call stands for, checked by the operation's own model."""
    fields: dict[str, Any] = {}
    for key, value in call.args:
        if value is None or key not in _BODY:
            continue
        if key in _NUMBERS and isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        fields[_BODY[key]] = value
    if "inp_nam" in dict(call.args):
        table = _text(call, "inp_nam")
        if not table:
            raise InvalidRequest(f"{call.name} needs inp_nam, the name of a table")
        fields["input"] = f"SELECT * FROM {quote(check_table_name(table))}"
    if out == "PNG":
        fields["graphicsFlag"] = True
    try:
        return op.request.model_validate(fields)
    except ValidationError as e:
        first = e.errors()[0]
        where = {v: k for k, v in _BODY.items()}.get(str(first["loc"][0]), first["loc"][0]) \
            if first["loc"] else ""
        if where == "input":
            where = "inp_nam"
        raise InvalidRequest(f"{call.name}: argument {where}: {first['msg']}") from None
