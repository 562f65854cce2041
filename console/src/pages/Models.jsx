// Models (docs/models.md): the models one may see, with whom each of one's own is
// granted to; endpoints with a form to score a record; batch scoring jobs with their
// runs.
import { useState } from "preact/hooks";
import { oml, seg } from "../api.js";
import { ConfirmButton, DataTable, ErrorBox, Json, Loading } from "../components/common.jsx";
import { Grants } from "../components/Grants.jsx";
import { href, useAction, useResource } from "../hooks.js";

const modelHref = (id) => `${href("models")}?${new URLSearchParams({ model: id })}`;

export function ModelsPage({ args, query, session }) {
  const models = useResource(() => oml.get("/models").then((b) => b.items), []);
  const endpoints = useResource(() => oml.get("/deployment").then((b) => b.items), []);
  const jobs = useResource(() => oml.get("/jobs").then((b) => b.items), [], 5000);
  const [chosen] = args;
  const chosenModel = query?.get("model");
  const model = models.data?.find((m) => m.modelId === chosenModel);
  return (
    <div class="split">
      <section aria-labelledby="models-title">
        <h2 id="models-title">Models</h2>
        <p class="muted small">
          Yours, shared ones and those granted to you. Store one with <code>epe model upload</code> or{" "}
          <code>oml.models.deploy</code>.
        </p>
        <Loading resource={models} what="models" />
        {models.data?.length === 0 && <p class="muted">No models yet.</p>}
        {models.data?.length > 0 && (
          <table class="list striped" aria-label="models">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Version</th>
                <th scope="col">Type</th>
                <th scope="col">Function</th>
                <th scope="col">Owner</th>
                <th scope="col">Shared</th>
              </tr>
            </thead>
            <tbody>
              {models.data.map((m) => (
                <tr class={m === model ? "selected" : ""}>
                  <td>
                    <a href={modelHref(m.modelId)} title={m.modelId}>
                      {m.modelName}
                    </a>
                  </td>
                  <td>{m.version}</td>
                  <td>{m.modelType}</td>
                  <td>{m.function}</td>
                  <td>{m.createdBy}</td>
                  <td>{m.shared ? "yes" : "no"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        <h2 id="endpoints-title">Endpoints</h2>
        <Loading resource={endpoints} what="endpoints" />
        {endpoints.data?.length === 0 && <p class="muted">No endpoints yet.</p>}
        {endpoints.data?.length > 0 && (
          <table class="list striped" aria-label="endpoints">
            <thead>
              <tr>
                <th scope="col">URI</th>
                <th scope="col">Model</th>
                <th scope="col">Function</th>
                <th scope="col">Owner</th>
              </tr>
            </thead>
            <tbody>
              {endpoints.data.map((e) => (
                <tr class={e.uri === chosen ? "selected" : ""}>
                  <td>
                    <a href={href("models", e.uri)}>{e.uri}</a>
                  </td>
                  <td>
                    {e.modelName} {e.version}
                  </td>
                  <td>{e.function}</td>
                  <td>{e.createdBy}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        <h2 id="scoring-jobs-title">Scoring jobs</h2>
        <Loading resource={jobs} what="scoring jobs" />
        {jobs.data?.length === 0 && <p class="muted">No scoring jobs yet.</p>}
        {jobs.data?.map((j) => (
          <ScoringJob key={j.jobId} job={j} onChange={jobs.reload} />
        ))}
      </section>
      <section class="detail">
        {model ? (
          <Model key={model.modelId} model={model} session={session} />
        ) : chosen ? (
          <Endpoint key={chosen} uri={chosen} />
        ) : (
          <p class="muted">Choose a model to see it, or an endpoint to score a record with it.</p>
        )}
      </section>
    </div>
  );
}

// A model's description; for its owner (or an admin), whom it is granted to.
function Model({ model, session }) {
  const mayGrant = model.createdBy === session.user || session.admin;
  const base = `/models${seg(model.modelId)}/grants`;
  const grants = useResource(
    () => (mayGrant ? oml.get(base).then((b) => b.result) : Promise.resolve(null)),
    [model.modelId, mayGrant],
  );
  return (
    <article aria-label={`model ${model.modelName}`}>
      <header>
        <h3>
          {model.modelName} {model.version}
        </h3>
        <p class="muted">
          {model.modelType} · {model.function} · owner {model.createdBy} · {model.shared ? "shared" : "not shared"}
        </p>
        {model.description && <p>{model.description}</p>}
        <p class="small">
          Model id <code>{model.modelId}</code>
        </p>
      </header>
      <DataTable
        label={`input columns of ${model.modelName}`}
        columns={["Column", "Type"]}
        rows={model.inputColumns.map((c) => [c.name, c.type])}
      />
      {mayGrant && <Loading resource={grants} what="grants" />}
      {mayGrant && grants.data && (
        <Grants
          client={oml}
          base={base}
          revokePath={(who, isGroup) => `${base}${seg(isGroup ? "group" : "user", who)}`}
          grantees={grants.data.users}
          groups={grants.data.groups}
          verb="score"
          onChange={grants.reload}
        />
      )}
    </article>
  );
}

function Endpoint({ uri }) {
  const doc = useResource(() => oml.get(`/deployment${seg(uri)}/api`), [uri]);
  const columns = doc.data
    ? Object.entries(doc.data.components.schemas.ScoreRequest.properties.inputRecords.items.properties)
    : [];
  const [values, setValues] = useState({});
  const action = useAction();
  const score = (e) => {
    e.preventDefault();
    const record = Object.fromEntries(
      columns.map(([name, schema]) => {
        const raw = values[name] ?? "";
        const kind = schema.type;
        const value = kind === "number" || kind === "integer" ? Number(raw) : kind === "boolean" ? raw === "true" : raw;
        return [name, raw === "" ? null : value];
      }),
    );
    return action.run(() =>
      oml.post(`/deployment${seg(uri)}/score`, { inputRecords: [record] }).then((b) => b.scoringResults[0]),
    );
  };
  return (
    <article aria-label={`endpoint ${uri}`}>
      <h3>{uri}</h3>
      <Loading resource={doc} what={`endpoint ${uri}`} />
      {doc.data && (
        <form onSubmit={score} aria-label="score a record">
          {columns.map(([name, schema]) => (
            <label>
              {name} <span class="muted small">({schema.type})</span>
              <input
                name={name}
                value={values[name] ?? ""}
                onInput={(e) => setValues({ ...values, [name]: e.currentTarget.value })}
              />
            </label>
          ))}
          <button type="submit" aria-busy={action.busy} disabled={action.busy}>
            Score
          </button>
        </form>
      )}
      <ErrorBox error={action.error} title="Scoring failed" />
      {action.done && (
        <section aria-label="scoring result">
          <Json value={action.done} />
        </section>
      )}
    </article>
  );
}

function ScoringJob({ job, onChange }) {
  const action = useAction();
  const [open, setOpen] = useState(false);
  // Polled while shown: a run's status changes without the job's listing changing.
  const detail = useResource(
    () => (open ? oml.get(`/jobs${seg(job.jobId)}`) : Promise.resolve(null)),
    [open],
    open ? 2000 : 0,
  );
  const act = (name) =>
    action.run(async () => {
      await oml.post(`/jobs${seg(job.jobId)}/action`, { action: name });
      onChange();
      detail.reload();
    });
  const remove = () =>
    action.run(async () => {
      await oml.del(`/jobs${seg(job.jobId)}`);
      onChange();
    });
  const runs = detail.data?.runs || [];
  return (
    <article aria-label={`scoring job ${job.jobName}`}>
      <header>
        <strong>{job.jobName}</strong> <span class="muted small">{job.jobStatus}</span>{" "}
        <span class="muted small">
          {job.jobSchedule.repeatInterval}, next {job.nextRunDate || "none"}, {job.runCount} runs
        </span>
      </header>
      <p class="small">
        {job.jobProperties.inputData} → {job.jobProperties.outputData}
      </p>
      <div role="group">
        <button type="button" class="secondary" onClick={() => act("RUN")}>
          Run now
        </button>
        {job.jobStatus === "ENABLED" && (
          <button type="button" class="secondary" onClick={() => act("DISABLE")}>
            Disable
          </button>
        )}
        {job.jobStatus === "DISABLED" && (
          <button type="button" class="secondary" onClick={() => act("ENABLE")}>
            Enable
          </button>
        )}
        <button type="button" class="secondary outline" onClick={() => setOpen(!open)}>
          {open ? "Hide runs" : "Runs"}
        </button>
        <ConfirmButton
          label="Delete"
          question={`Delete scoring job ${job.jobName} and its runs' history?`}
          confirmLabel="Delete"
          onConfirm={remove}
        />
      </div>
      <ErrorBox error={action.error} />
      {open && (
        <DataTable
          label={`runs of ${job.jobName}`}
          columns={["Run", "Slot", "Status", "Started", "Finished", "Rows", "Error"]}
          rows={runs.map((r) => [
            r.runId,
            r.scheduledDate || "run now",
            r.status,
            r.startedDate,
            r.finishedDate || "",
            r.rows ?? "",
            r.errorMessage || "",
          ])}
        />
      )}
    </article>
  );
}
