"""Request bodies of the run endpoints (docs/api.md#run-requests).

Unknown keys are ignored (OML's own examples send ``parameter`` and
``parallelFlag`` where they don't belong); known keys of the wrong type are a
400, so the types are strict: ``"true"`` is not a boolean here.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    model_validator,
)

# The service levels a run may ask for (docs/api.md#run-requests), lowest first: each
# has its own job concurrency and parallelism cap (settings).
ServiceLevel = Literal["LOW", "MEDIUM", "HIGH"]
SERVICE_LEVELS: tuple[ServiceLevel, ...] = get_args(ServiceLevel)
# How ``input`` is read: Oracle's SQL translated, the backend's own, or either (docs/sql.md).
Dialect = Literal["auto", "oracle", "native"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=False)


class RunRequest(_Body):
    """What every run endpoint accepts."""

    parameters: StrictStr | None = None
    graphics_flag: StrictBool = Field(False, alias="graphicsFlag")
    async_flag: StrictBool = Field(False, alias="asyncFlag")
    timeout: StrictInt | None = Field(None, gt=0)
    service: ServiceLevel = "LOW"
    env_name: StrictStr | None = Field(None, alias="envName", min_length=1)
    script: StrictStr | None = Field(None, min_length=1)  # inline source
    pickled_parameters: StrictStr | None = Field(None, alias="pickledParameters")
    result_format: Literal["json", "pickle"] = Field("json", alias="resultFormat")


class DoEvalRequest(RunRequest):
    pass


class ParallelRequest(RunRequest):
    """A run of several units, which may run in parallel."""

    parallel_flag: StrictBool = Field(False, alias="parallelFlag")
    parallel: StrictInt | None = Field(None, gt=0)


class InputRequest(RunRequest):
    """A run over the rows of an input query."""

    input: StrictStr = Field(min_length=1)
    dialect: Dialect | None = None


class TableApplyRequest(InputRequest):
    pass


class RowApplyRequest(InputRequest, ParallelRequest):
    rows: StrictInt = Field(gt=0)


class GroupApplyRequest(InputRequest, ParallelRequest):
    group_by: StrictStr = Field(alias="groupBy", min_length=1)
    order_by: StrictStr | None = Field(None, alias="orderBy")


# Index-apply's invocations are planned in the server's memory (about 100 bytes each)
# before any runs: an unbounded count let one request exhaust it.
MAX_TIMES = 1_000_000


class IndexApplyRequest(ParallelRequest):
    times: StrictInt = Field(gt=0, le=MAX_TIMES)


class QueryRequest(_Body):
    input: StrictStr = Field(min_length=1)
    dialect: Dialect | None = None


class ScriptCreate(_Body):
    name: StrictStr = Field(min_length=1, max_length=128)
    script: StrictStr = Field(min_length=1)
    description: StrictStr = ""
    is_global: StrictBool = Field(False, alias="isGlobal")
    overwrite: StrictBool = False


class GrantRequest(_Body):
    """``{"user": U}`` (``null``: everyone) or ``{"group": G}``."""

    user: StrictStr | None = Field(None, min_length=1)
    group: StrictStr | None = Field(None, min_length=1, max_length=128)

    @model_validator(mode="after")
    def _one_grantee(self) -> GrantRequest:
        named = self.model_fields_set & {"user", "group"}
        if len(named) != 1 or ("group" in named and self.group is None):
            raise ValueError("send {\"user\": name}, {\"user\": null} for everyone, or "
                             "{\"group\": name}")
        return self


class ApiTokenCreate(_Body):
    name: StrictStr = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.@-]+$")
    expires_in: StrictInt | None = Field(None, alias="expiresIn", gt=0)
    scope: Literal["run", "read"] = "run"


class GroupMembers(_Body):
    """Local users added to or removed from a group."""

    users: list[StrictStr] = Field(min_length=1, max_length=1000)


class UserCreate(_Body):
    username: StrictStr = Field(min_length=1, max_length=128)
    password: StrictStr = Field(min_length=1)
    admin: StrictBool = False


class TokenRequest(_Body):
    grant_type: Literal["password", "refresh_token"]
    username: StrictStr | None = None
    password: StrictStr | None = None
    refresh_token: StrictStr | None = None
    token: StrictStr | None = None  # dbt-oracle sends the refresh token under this key


# -- OML Services (docs/models.md) ------------------------------------------------------------

class DeployRequest(_Body):
    model_id: StrictStr = Field(alias="modelId", min_length=1, max_length=64)
    uri: StrictStr = Field(min_length=1, max_length=128)


class JobSchedule(_Body):
    job_start_date: StrictStr = Field(alias="jobStartDate", min_length=1)
    repeat_interval: StrictStr = Field(alias="repeatInterval", min_length=1, max_length=1000)
    job_end_date: StrictStr | None = Field(None, alias="jobEndDate")
    max_runs: StrictInt | None = Field(None, alias="maxRuns", ge=1)


class JobProperties(_Body):
    model_id: StrictStr = Field(alias="modelId", min_length=1, max_length=64)
    input_data: StrictStr = Field(alias="inputData", min_length=1, max_length=128)
    output_data: StrictStr = Field(alias="outputData", min_length=1, max_length=128)
    supplemental_column_names: list[StrictStr] = Field(
        default_factory=list, alias="supplementalColumnNames", max_length=1000)


class ScoringJobCreate(_Body):
    job_name: StrictStr = Field(alias="jobName", min_length=1, max_length=128)
    job_type: Literal["MODEL_SCORING"] = Field(alias="jobType")
    job_schedule: JobSchedule = Field(alias="jobSchedule")
    job_properties: JobProperties = Field(alias="jobProperties")


class JobAction(_Body):
    action: Literal["ENABLE", "DISABLE", "RUN"]
