"""OML Services under ``/omlmod/v1`` (docs/models.md): models, their endpoints and
score calls, and batch scoring jobs on a schedule. Thin routes over
``epe.service.models`` and ``epe.service.schedules``.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import Response

from epe.api.deps import CallerDep, ModelsDep, ScoringJobsDep, ServicesDep
from epe.api.responses import json_response
from epe.core import models as core
from epe.core.requests import DeployRequest, GrantRequest, JobAction, ScoringJobCreate
from epe.errors import InvalidRequest
from epe.service import models as service
from epe.service import schedules

ROOT = "/omlmod/v1"
router = APIRouter(prefix=ROOT, tags=["models"])

ModelId = Annotated[str, Path(pattern=f"^{core.MODEL_ID.pattern}$",
                              description="The model's id (a UUID).")]
Uri = Annotated[str, Path(pattern=f"^{core.URI.pattern}$", description="The endpoint's URI.")]
JobId = Annotated[str, Path(pattern=f"^{core.SCORING_JOB_ID.pattern}$",
                            description="The scoring job's id.")]


def base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _json(text: str | None, field: str) -> Any:
    if text is None or not text.strip():
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidRequest(f"{field} must be JSON: a list of column names, or an object of "
                             "column name -> type") from None


def _flag(text: str | None) -> bool:
    """Oracle's ``shared``: true when given, unless it is the string ``false``."""
    return text is not None and text.strip().lower() != "false"


# -- models ---------------------------------------------------------------------------------


@router.post("/models", status_code=201)
async def store_model(
        request: Request, caller: CallerDep, models: ModelsDep,
        modelName: Annotated[str, Form(description="The model's name.")],
        modelType: Annotated[str, Form(description="ONNX (Oracle's zip) or PYTHON (a "
                                                   "datastore's object).")],
        version: Annotated[str, Form(description="The model's version, e.g. 1.0.")],
        modelData: Annotated[UploadFile | None, File(description="ONNX: Oracle's zip.")] = None,
        namespace: Annotated[str, Form()] = "",
        description: Annotated[str, Form()] = "",
        shared: Annotated[str | None, Form(description="true to let every user score it.")]
        = None,
        datastore: Annotated[str | None, Form(description="PYTHON: the datastore.")] = None,
        object: Annotated[str | None, Form(description="PYTHON: the object's name.")] = None,
        script: Annotated[str | None, Form(description="PYTHON: a scoring script's name.")]
        = None,
        inputColumns: Annotated[str | None, Form(description="JSON: the input columns, when "
                                                             "the model does not say.")] = None,
        function: Annotated[str | None, Form(description="regression, classification or "
                                                         "clustering, when the model does not "
                                                         "say.")] = None) -> Response:
    """Store a model: an ONNX zip (modelData), or a PYTHON model from a datastore."""
    upload = service.Upload(modelName, modelType, version, namespace, description,
                            _flag(shared), _json(inputColumns, "inputColumns"), function)
    upload.checked()
    if modelType == "ONNX":
        if modelData is None:
            raise InvalidRequest("an ONNX model needs modelData: Oracle's zip of the .onnx "
                                 "file and metadata.json")
        model = await models.store_onnx(caller, upload, await modelData.read())
    else:
        if datastore is None or object is None:
            raise InvalidRequest("a PYTHON model names the datastore and the object holding "
                                 "it: give datastore and object")
        model = await models.store_python(caller, upload, datastore, object, script)
    return json_response(service.describe(model, base(request)), 201)


@router.get("/models")
def list_models(request: Request, caller: CallerDep, models: ModelsDep,
                modelName: Annotated[str | None, Query()] = None,
                version: Annotated[str | None, Query()] = None,
                namespace: Annotated[str | None, Query()] = None) -> Response:
    """The models the caller may see: their own, shared ones, and those granted to them."""
    found = models.visible(caller, modelName, version, namespace)
    return json_response({"items": [service.describe(m, base(request)) for m in found]})


@router.get("/models/{modelId}")
def get_model(modelId: ModelId, request: Request, caller: CallerDep,
              models: ModelsDep) -> Response:
    return json_response(service.describe(models.get(caller, modelId), base(request)))


@router.delete("/models/{modelId}")
def delete_model(modelId: ModelId, caller: CallerDep, models: ModelsDep) -> Response:
    """Delete one of the caller's models (409 while deployed or scheduled)."""
    models.delete(caller, modelId)
    return json_response({"result": f"model {modelId} deleted"})


# -- grants ---------------------------------------------------------------------------------


@router.get("/models/{modelId}/grants")
def list_grants(modelId: ModelId, caller: CallerDep, services: ServicesDep) -> Response:
    """Whom one of the caller's models is granted to: users (PUBLIC: everyone), groups."""
    users, groups = services.grants.grantees(caller.name, "model", modelId)
    return json_response({"result": {"modelId": modelId, "users": users, "groups": groups}})


@router.post("/models/{modelId}/grants")
def grant(modelId: ModelId, body: GrantRequest, caller: CallerDep,
          services: ServicesDep) -> Response:
    """Let a user (``null``: everyone), or the members of a group, see and score one of
    the caller's models."""
    if body.group is not None:
        group = services.grants.grant_group(caller.name, "model", modelId, body.group)
        return json_response({"result": {"modelId": modelId, "group": group}})
    user = services.grants.grant(caller.name, "model", modelId, body.user)
    return json_response({"result": {"modelId": modelId, "user": user}})


@router.delete("/models/{modelId}/grants/user/{user}")
def revoke(modelId: ModelId, user: str, caller: CallerDep, services: ServicesDep) -> Response:
    shown = services.grants.revoke(caller.name, "model", modelId, user)
    return json_response({"result": {"modelId": modelId, "user": shown, "revoked": True}})


@router.delete("/models/{modelId}/grants/group/{group}")
def revoke_group(modelId: ModelId, group: str, caller: CallerDep,
                 services: ServicesDep) -> Response:
    shown = services.grants.revoke_group(caller.name, "model", modelId, group)
    return json_response({"result": {"modelId": modelId, "group": shown, "revoked": True}})


# -- endpoints ------------------------------------------------------------------------------


@router.post("/deployment", status_code=201)
def deploy(body: DeployRequest, request: Request, caller: CallerDep,
           models: ModelsDep) -> Response:
    """Deploy one of the caller's models at a URI of its own."""
    deployment = models.deploy(caller, body.model_id, body.uri)
    _, model = models.endpoint(caller, deployment.uri)
    return json_response(service.describe_endpoint(deployment, model, base(request)), 201)


@router.get("/deployment")
def list_endpoints(request: Request, caller: CallerDep, models: ModelsDep) -> Response:
    """The endpoints the caller may score: of their own models, shared ones, and those
    granted to them."""
    return json_response({"items": [service.describe_endpoint(d, m, base(request))
                                    for d, m in models.endpoints(caller)]})


@router.get("/deployment/{uri}")
def get_endpoint(uri: Uri, request: Request, caller: CallerDep, models: ModelsDep) -> Response:
    return json_response(service.describe_endpoint(*models.endpoint(caller, uri),
                                                   base=base(request)))


@router.delete("/deployment/{uri}")
def undeploy(uri: Uri, caller: CallerDep, models: ModelsDep) -> Response:
    models.undeploy(caller, uri)
    return json_response({"result": f"endpoint {uri} deleted"})


@router.get("/deployment/{uri}/api")
def endpoint_api(uri: Uri, caller: CallerDep, models: ModelsDep) -> Response:
    """The endpoint's own OpenAPI document: its input columns and result shape."""
    return json_response(models.document(caller, uri))


SCORE_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["inputRecords"], "properties": {
        "inputRecords": {"type": "array", "items": {"type": "object"}, "minItems": 1},
        "topN": {"type": "integer", "minimum": 1}}}}}}}


@router.post("/deployment/{uri}/score", openapi_extra=SCORE_BODY)
async def score(uri: Uri, request: Request, caller: CallerDep, models: ModelsDep,
                services: ServicesDep) -> Response:
    """Score records: ``{"inputRecords": [{column: value}], "topN"?}`` ->
    ``{"scoringResults": [...]}``, one result per record (docs/models.md); 503 once the
    server is stopping."""
    services.drain.admit()
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise InvalidRequest("the request body is not valid JSON") from None
    results = await services.drain.guard(models.score(caller, uri, body))
    return Response(b'{"scoringResults":' + results + b"}", media_type="application/json")


# -- batch scoring jobs -------------------------------------------------------------------------


@router.post("/jobs", status_code=201)
def create_job(body: ScoringJobCreate, caller: CallerDep, jobs: ScoringJobsDep) -> Response:
    """A batch scoring job: score a table into another on a schedule."""
    return json_response(schedules.describe(jobs.create(caller, body), []), 201)


@router.get("/jobs")
def list_jobs(caller: CallerDep, jobs: ScoringJobsDep) -> Response:
    return json_response({"items": [schedules.describe(j) for j in jobs.listing(caller)]})


@router.get("/jobs/{jobId}")
def get_job(jobId: JobId, caller: CallerDep, jobs: ScoringJobsDep) -> Response:
    """A scoring job with its runs, the newest first."""
    job = jobs.get(caller, jobId)
    return json_response(schedules.describe(job, jobs.runs(job)))


@router.post("/jobs/{jobId}/action")
async def act(jobId: JobId, body: JobAction, caller: CallerDep,
              jobs: ScoringJobsDep) -> Response:
    """ENABLE, DISABLE, or RUN once now."""
    return json_response(await jobs.act(caller, jobId, body.action))


@router.delete("/jobs/{jobId}")
def delete_job(jobId: JobId, caller: CallerDep, jobs: ScoringJobsDep) -> Response:
    jobs.delete(caller, jobId)
    return json_response({"result": f"scoring job {jobId} deleted"})
