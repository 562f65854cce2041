"""Named environments: list (anyone), create and delete (admins) (docs/environments.md).

Creating one is a job: ``POST`` answers 201 with the job's ``Location``, polled like a
run's; its result is the new environment, or pip's error with pip's output.
"""

from __future__ import annotations

import asyncio

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from epe.api.deps import AdminDep, CallerDep, JobsDep, ServicesDep
from epe.api.jobs import job_url
from epe.api.responses import json_response
from epe.envs import Spec
from epe.errors import NotFound
from epe.observe.logs import JOB_ID
from epe.service.runs import Output

router = APIRouter(prefix="/envs", tags=["envs"])


class EnvCreate(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=False)

    name: StrictStr = Field(min_length=1)
    packages: list[StrictStr] = Field(default_factory=list)
    requirements: StrictStr | None = None  # the text of a requirements file
    description: StrictStr | None = None
    find_links: StrictStr | None = Field(None, alias="findLinks", min_length=1)
    no_index: StrictBool | None = Field(None, alias="noIndex")

    def spec(self) -> Spec:
        return Spec(name=self.name, packages=tuple(self.packages),
                    requirements=self.requirements, description=self.description or "",
                    find_links=self.find_links, no_index=self.no_index)


@router.get("")
async def list_envs(_caller: CallerDep, services: ServicesDep) -> Response:
    """Every named environment, in OML's shape (the default environment is not listed)."""
    pools = services.environments
    envs = await asyncio.to_thread(lambda: [pools.describe(e) for e in pools.all()])
    return json_response({"result": {"envs": envs}})


@router.get("/{name}")
async def get_env(name: str, _caller: CallerDep, services: ServicesDep) -> Response:
    env = services.environments.find(name)
    if env is None:
        raise NotFound(f"no environment {name!r}")
    return json_response({"result": services.environments.describe(env)})


@router.post("", status_code=201)
async def create_env(body: EnvCreate, request: Request, admin: AdminDep,
                     services: ServicesDep, jobs: JobsDep) -> Response:
    """Build an environment as a job; 201 with the job's ``Location``."""
    spec = body.spec()
    pools = services.environments
    pools.check_new(spec)

    async def work(output: Output) -> bytes:
        try:
            env = await pools.create(spec, output.parts)
        except Exception as e:
            services.audit.record("env", "create", admin.name, name=spec.name, error=e,
                                  jobId=JOB_ID.get())
            raise
        services.audit.record("env", "create", admin.name, name=spec.name, jobId=JOB_ID.get())
        return orjson.dumps(pools.describe(env))

    job = await jobs.submit_work(admin.name, "env_create", body.model_dump_json(by_alias=True),
                                 work)
    return Response(status_code=201, headers={"Location": job_url(request, job.id)})


@router.delete("/{name}")
async def delete_env(name: str, admin: AdminDep, services: ServicesDep) -> Response:
    """Delete an environment; 409 while runs or jobs use it (they are never stopped)."""
    await services.environments.delete(name)
    services.audit.record("env", "delete", admin.name, name=name)
    return json_response({"result": f"environment {name} deleted"})
