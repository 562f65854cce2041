"""Models and their endpoints (docs/models.md): stored, listed, deployed, scored.

Nothing here loads a model. Storing one sends its bytes to a worker of the owner,
which reads its function and input columns (``runner.worker.models``); scoring
sends the records, checked here against those columns, to the owner's warm workers,
which keep the model loaded between calls. A model may be seen and scored by its
owner, by everyone when it is shared, and by the users and groups it is granted to
(``epe.service.grants``); to anyone else it looks missing (404). Only the owner
deploys, undeploys or deletes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import orjson

from epe.core import models as core
from epe.core.names import iso_instant
from epe.errors import Conflict, InvalidRequest, NotFound, PayloadTooLarge
from epe.observe import metrics
from epe.runner.executor import (
    MODEL_CALLING,
    MODEL_TASK,
    CallHandler,
    Task,
    TaskFailed,
    TaskResult,
    Tenant,
)
from epe.service import scripts
from epe.service.services import Services
from epe.service.sessions import Caller
from epe.store.models import DeploymentRecord, ModelRecord, filters, new_model

LOAD_CALL = "model.load"


@dataclass(frozen=True)
class Upload:
    """What a model upload's form says, besides the model itself."""

    name: str
    model_type: str
    version: str
    namespace: str = ""
    description: str = ""
    shared: bool = False
    input_columns: Any = None  # parsed JSON, or None: the model says
    function: str | None = None  # PYTHON: None, the model says

    def checked(self) -> Upload:
        core.check_text(self.name, core.MODEL_NAME, "modelName")
        core.check_text(self.version, core.VERSION, "version")
        core.check_text(self.namespace, core.NAMESPACE, "namespace")
        if self.model_type not in core.MODEL_TYPES:
            raise InvalidRequest(f"modelType must be one of {', '.join(core.MODEL_TYPES)}")
        if len(self.description) > core.MAX_DESCRIPTION:
            raise InvalidRequest(f"description is over {core.MAX_DESCRIPTION} characters")
        if self.function is not None and self.function not in core.FUNCTIONS:
            raise InvalidRequest(f"function must be one of {', '.join(core.FUNCTIONS)}")
        if self.input_columns is not None:
            core.parse_columns(self.input_columns, "inputColumns")
        return self


@lru_cache(maxsize=1024)
def columns_of(signature: str) -> tuple[core.Column, ...]:
    """A stored signature's input columns (parsed once per model version)."""
    return tuple(core.parse_columns(orjson.loads(signature)["columns"], "signature"))


def describe(model: ModelRecord, base: str = "") -> dict[str, Any]:
    """A model as Oracle lists it, with its input columns."""
    return {"modelId": model.id, "modelName": model.name, "version": model.version,
            "namespace": model.namespace or None, "modelType": model.model_type,
            "function": model.function, "description": model.description,
            "shared": model.shared, "createdBy": model.owner,
            "createdDate": iso_instant(model.created), "size": model.size,
            "inputColumns": [c.as_json() for c in columns_of(model.signature)],
            "links": [{"rel": "self", "href": f"{base}/omlmod/v1/models/{model.id}"}]}


def describe_endpoint(deployment: DeploymentRecord, model: ModelRecord,
                      base: str = "") -> dict[str, Any]:
    root = f"{base}/omlmod/v1/deployment/{deployment.uri}"
    return {"uri": deployment.uri, "modelId": model.id, "modelName": model.name,
            "version": model.version, "modelType": model.model_type,
            "function": model.function, "createdBy": deployment.owner,
            "createdDate": iso_instant(deployment.created), "shared": model.shared,
            "links": [{"rel": "self", "href": root}, {"rel": "score", "href": root + "/score"},
                      {"rel": "api", "href": root + "/api"}]}


class Models:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.store = services.store.models

    # -- storing ---------------------------------------------------------------------------

    async def store_onnx(self, caller: Caller, upload: Upload, data: bytes) -> ModelRecord:
        if not data:
            raise InvalidRequest("modelData is empty: send the model's zip")
        self._check_size(len(data))
        spec: dict[str, Any] = {}
        return await self._store(caller, upload, data, spec, None)

    async def store_python(self, caller: Caller, upload: Upload, datastore: str, name: str,
                           script: str | None) -> ModelRecord:
        """A model saved in one of the caller's datastores (or one granted to them),
        with a scoring script the caller may run; both copied as they are now."""
        (found,) = await asyncio.to_thread(self.services.datastores.load, caller.name,
                                           datastore, [name], None)
        self._check_size(len(found.data))
        versions = orjson.loads(found.versions)
        spec = {"datastore": datastore, "object": name, "className": found.class_name,
                "versions": {k: v for k, v in versions.items() if k != "compressed"},
                "compressed": bool(versions.get("compressed"))}
        source = None
        if script is not None:
            source = scripts.find(self.services.store, caller.name, script, None).source
        return await self._store(caller, upload, found.data, spec, source)

    def _check_size(self, size: int) -> None:
        limit = self.services.settings.max_model_size
        if size > limit:
            raise PayloadTooLarge(f"the model is {size} bytes, over this server's limit of "
                                  f"{limit} (EPE_MAX_MODEL_SIZE)")

    async def _store(self, caller: Caller, upload: Upload, data: bytes, spec: dict[str, Any],
                     source: str | None) -> ModelRecord:
        upload.checked()
        digest = hashlib.sha256(data + orjson.dumps(spec) + (source or "").encode()).hexdigest()
        model = new_model(id=str(uuid.uuid4()), owner=caller.name, name=upload.name,
                          version=upload.version, namespace=upload.namespace,
                          model_type=upload.model_type, function=upload.function or "",
                          description=upload.description, shared=upload.shared,
                          signature="{}", spec=orjson.dumps(spec).decode(), script=source,
                          size=len(data), digest=digest)
        inspected = await self.run(model, {"action": "inspect",
                                           "inputColumns": upload.input_columns,
                                           "function": upload.function},
                                   lambda: data, self.services.settings.default_timeout)
        found = orjson.loads(inspected.fragments[0].json)
        model = replace(model, function=found["function"], created=time.time(),
                        signature=orjson.dumps({"columns": found["columns"]}).decode())
        await asyncio.to_thread(self.store.add, model, data)
        self.services.audit.record("model", "create", caller.name, owner=caller.name,
                                   name=model.id, modelName=model.name, version=model.version,
                                   modelType=model.model_type)
        return model

    # -- reading and deleting --------------------------------------------------------------

    def visible(self, caller: Caller, name: str | None, version: str | None,
                namespace: str | None) -> list[ModelRecord]:
        return self.store.visible(caller.name, filters(name, version, namespace))

    def get(self, caller: Caller, model_id: str) -> ModelRecord:
        model = self.store.get(model_id) if core.MODEL_ID.fullmatch(model_id) else None
        if model is None or not self.store.open_to(model, caller.name):
            raise NotFound(f"no model {model_id} that you may see")
        return model

    def own(self, caller: Caller, model_id: str) -> ModelRecord:
        model = self.get(caller, model_id)
        if model.owner != caller.name:
            raise NotFound(f"no model {model_id} of yours")
        return model

    def delete(self, caller: Caller, model_id: str) -> None:
        """Delete one of the caller's models; 409 while it is deployed or scheduled."""
        model = self.own(caller, model_id)
        endpoint = self.store.endpoint_of(model.id)
        if endpoint is not None:
            raise Conflict(f"model {model_id} is deployed at {endpoint.uri}: delete the "
                           "endpoint first")
        jobs = self.services.store.schedules.naming_model(model.id)
        if jobs:
            raise Conflict(f"model {model_id} is scored by the scoring job(s) "
                           f"{', '.join(jobs)}: delete them first")
        self.store.delete(model)
        self.services.audit.record("model", "delete", caller.name, owner=caller.name,
                                   name=model.id)

    # -- endpoints ---------------------------------------------------------------------------

    def deploy(self, caller: Caller, model_id: str, uri: str) -> DeploymentRecord:
        model = self.own(caller, model_id)
        record = DeploymentRecord(core.check_uri(uri), model.id, caller.name, time.time())
        self.store.deploy(record)
        self.services.audit.record("model", "deploy", caller.name, owner=caller.name,
                                   name=uri, modelId=model.id)
        return record

    def endpoint(self, caller: Caller, uri: str) -> tuple[DeploymentRecord, ModelRecord]:
        """An endpoint the caller may score, and its model."""
        deployment = self.store.endpoint(uri) if core.URI.fullmatch(uri) else None
        model = None if deployment is None else self.store.get(deployment.model_id)
        if deployment is None or model is None or not self.store.open_to(model, caller.name):
            raise NotFound(f"no endpoint {uri} that you may score")
        return deployment, model

    def endpoints(self, caller: Caller) -> list[tuple[DeploymentRecord, ModelRecord]]:
        return self.store.endpoints(caller.name)

    def undeploy(self, caller: Caller, uri: str) -> None:
        deployment, _model = self.endpoint(caller, uri)
        if deployment.owner != caller.name:
            raise NotFound(f"no endpoint {uri} of yours")
        self.store.undeploy(uri)
        self.services.audit.record("model", "undeploy", caller.name, owner=caller.name,
                                   name=uri)

    def document(self, caller: Caller, uri: str) -> dict[str, Any]:
        _deployment, model = self.endpoint(caller, uri)
        return core.endpoint_document(uri=uri, model_name=model.name, version=model.version,
                                      function=model.function,
                                      columns=columns_of(model.signature),
                                      description=model.description)

    # -- scoring -----------------------------------------------------------------------------

    async def score(self, caller: Caller, uri: str, body: Any) -> bytes:
        """The JSON of ``scoringResults`` for a score call's body."""
        start, error = time.perf_counter(), None
        try:
            _deployment, model = self.endpoint(caller, uri)
            if not isinstance(body, dict):
                raise InvalidRequest("the body must be a JSON object with \"inputRecords\"")
            rows = core.check_records(body.get("inputRecords"), columns_of(model.signature),
                                      self.services.settings.score_max_records)
            task = {"action": "score", "rows": rows, "topN": core.check_top_n(body.get("topN"))}
            result = await self.run(model, task, None, self.services.settings.score_timeout)
            return result.fragments[0].json
        except BaseException as e:
            error = e
            raise
        finally:
            outcome = "ok" if error is None else type(error).__name__
            metrics.series(metrics.SCORES, outcome).inc()
            metrics.SCORE_SECONDS.observe(time.perf_counter() - start)
            self.services.audit.record("model", "score", caller.name, error=_shown(error),
                                       name=uri)

    async def run(self, model: ModelRecord, task: dict[str, Any],
                  data: Callable[[], bytes] | None, timeout: float | None = None) -> TaskResult:
        """A model task in the owner's workers; ``data`` gives the model's bytes when a
        worker asks (by default: read from the store)."""
        payload = {**load_fields(model), **task}
        job = Task(kind=MODEL_TASK, calling=MODEL_CALLING, source=model.script or "",
                   script_key=model.digest,
                   kwargs=payload, calls=loader(self.services, model, data))
        async with self.services.environments.executor(None, await tenant(
                self.services, model.owner)) as executor:
            try:
                return await executor.run(job, timeout or self.services.settings.score_timeout)
            except TaskFailed as failed:  # the worker's error, as the caller's answer
                raise failed.error from None


def _shown(error: BaseException | None) -> BaseException | None:
    return None if isinstance(error, asyncio.CancelledError) else error


def load_fields(model: ModelRecord) -> dict[str, Any]:
    """What a worker needs, besides the bytes, to load ``model``."""
    signature = orjson.loads(model.signature)
    return {"type": model.model_type, "function": model.function or None,
            "inputColumns": signature.get("columns"), "spec": orjson.loads(model.spec)}


def loader(services: Services, model: ModelRecord,
           data: Callable[[], bytes] | None) -> CallHandler:
    """The one call a model task may make: its own model's bytes."""
    async def handle(call: dict[str, Any], _payload: bytes) -> tuple[dict[str, Any], bytes]:
        if call.get("call") != LOAD_CALL:
            raise InvalidRequest("a model task may only load its own model")
        if data is not None:
            return {}, data()
        blob = await asyncio.to_thread(services.store.models.data, model.id)
        if blob is None:
            raise NotFound(f"model {model.id} was deleted")
        return {}, blob

    return handle


async def tenant(services: Services, user: str) -> Tenant:
    known = services.known_tenant(user)
    return known if known is not None else await asyncio.to_thread(services.tenant, user)
