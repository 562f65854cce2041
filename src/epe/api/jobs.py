"""Async jobs (docs/api.md#async-jobs): status, result, log, delete, list."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from epe.api.deps import CallerDep
from epe.api.responses import json_response
from epe.core.jobs import created_date, elapsed
from epe.errors import NotFound
from epe.jobs import JobManager
from epe.store.jobs import JobRecord

router = APIRouter(prefix="/jobs", tags=["jobs"])
API_ROOT = "/oml/api/py-scripts/"


async def get_jobs(request: Request) -> JobManager:
    return request.app.state.jobs


JobsDep = Annotated[JobManager, Depends(get_jobs)]


def job_url(request: Request, job_id: str) -> str:
    """The job's absolute URL in the API version the request used, ending in its id."""
    version = request.url.path[len(API_ROOT):].split("/", 1)[0]
    return f"{str(request.base_url).rstrip('/')}{API_ROOT}{version}/jobs/{job_id}"


def _elapsed(job: JobRecord) -> str:
    return elapsed(job.created, job.finished or time.time())


@router.get("")
def list_jobs(caller: CallerDep, jobs: JobsDep) -> Response:
    """The caller's jobs, newest first."""
    return json_response({"result": [
        {"job_id": j.id, "status": j.status.value, "createdDate": created_date(j.created),
         "elapsedTime": _elapsed(j), "operation": j.kind.replace("_", "-"),
         "progress": {"done": j.progress_done, "total": j.progress_total}}
        for j in jobs.jobs_of(caller.name)]})


@router.get("/{jobId}")
def job_status(jobId: str, request: Request, caller: CallerDep,
               jobs: JobsDep) -> Response:
    """202 while the job waits or runs; 302 to its result once it has ended."""
    job = jobs.get(jobId, caller.name)
    if job.status.ended:
        # No Location header: clients that follow redirects must see the 302 (OML).
        return Response(status_code=302,
                        headers={"Content-Location": job_url(request, job.id) + "/result"})
    body: dict[str, Any] = {"createdDate": created_date(job.created),
                            "status": "job is still running", "elapsedTime": _elapsed(job),
                            "jobStatus": job.status.value,  # ours: PENDING or RUNNING
                            "progress": {"done": job.progress_done, "total": job.progress_total}}
    return json_response(body, 202)


@router.get("/{jobId}/result")
def job_result(jobId: str, caller: CallerDep, jobs: JobsDep) -> Response:
    """What the sync call would have answered, error status included."""
    answer = jobs.answer(jobs.get(jobId, caller.name))
    if answer is None:
        raise NotFound(f"job {jobId} has not finished yet; poll its status")
    return Response(answer.body, status_code=answer.status, media_type="application/json")


@router.get("/{jobId}/log")
def job_log(jobId: str, caller: CallerDep, jobs: JobsDep) -> Response:
    """What the function wrote to stdout and stderr."""
    return json_response({"result": jobs.log_text(jobs.get(jobId, caller.name))})


@router.delete("/{jobId}")
async def delete_job(jobId: str, caller: CallerDep, jobs: JobsDep) -> Response:
    """Stop the job if it is running, and delete it."""
    await jobs.delete(jobId, caller.name)
    return json_response({"result": "job deleted successfully"})
