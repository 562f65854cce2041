// Environments: the named Python environments runs may ask for with envName;
// admins build them (a job whose log is shown as pip writes it) and delete them; the
// controls for that are shown to admins only.
import { useState } from "preact/hooks";
import { API, ApiError, api, exchange, seg } from "../api.js";
import { ConfirmButton, ErrorBox, Loading, Notice } from "../components/common.jsx";
import { ResultView } from "../components/ResultView.jsx";
import { useAction, useResource } from "../hooks.js";
import { ENDED, Status } from "./Jobs.jsx";

const POLL_MS = 1000;

export function EnvironmentsPage({ session }) {
  const envs = useResource(() => api.get("/envs").then((b) => b.result.envs), []);
  const action = useAction();
  const remove = (name) =>
    action.run(async () => {
      await api.del(`/envs${seg(name)}`);
      envs.reload();
      return `Environment ${name} deleted.`;
    });
  return (
    <div class="stack">
      <section aria-labelledby="envs-title">
        <h2 id="envs-title">Environments</h2>
        <p class="muted small">
          Runs without an environment use the default one (numpy, pandas, scipy, scikit-learn, matplotlib, seaborn).
        </p>
        <Loading resource={envs} what="environments" />
        {envs.data?.length === 0 && <p class="muted">No named environments yet.</p>}
        {envs.data?.length > 0 && (
          <table class="list striped" aria-label="environments">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Description</th>
                <th scope="col">Packages asked for</th>
                <th scope="col">Installed</th>
                <th scope="col">Python</th>
                <th scope="col">Size</th>
                {session.admin && (
                  <th scope="col">
                    <span class="visually-hidden">Actions</span>
                  </th>
                )}
              </tr>
            </thead>
            <tbody>
              {envs.data.map((e) => (
                <tr>
                  <td>{e.name}</td>
                  <td class="wrap">{e.description}</td>
                  <td class="wrap">{(e.packages || []).join(", ")}</td>
                  <td>{e.number_of_installed_packages}</td>
                  <td>{e.tags?.python}</td>
                  <td>{e.size}</td>
                  {session.admin && (
                    <td>
                      <ConfirmButton label="Delete" question={`Delete ${e.name}?`} onConfirm={() => remove(e.name)} />
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        )}
        <Notice>{action.done}</Notice>
        <ErrorBox error={action.error} />
      </section>
      {session.admin && <CreateEnvironment onBuilt={envs.reload} />}
    </div>
  );
}

function CreateEnvironment({ onBuilt }) {
  const [form, setForm] = useState({ name: "", packages: "", description: "", findLinks: "", noIndex: false });
  const [jobId, setJobId] = useState(null);
  const action = useAction();
  const set = (key) => (e) => {
    const t = e.currentTarget;
    setForm((f) => ({ ...f, [key]: t.type === "checkbox" ? t.checked : t.value }));
  };
  const create = (e) => {
    e.preventDefault();
    action.run(async () => {
      const body = { name: form.name.trim(), packages: form.packages.split(/[\s,]+/).filter(Boolean) };
      if (form.description.trim()) body.description = form.description.trim();
      if (form.findLinks.trim()) body.findLinks = form.findLinks.trim();
      if (form.noIndex) body.noIndex = true;
      const r = await exchange("POST", `${API}/envs`, { json: body });
      if (r.status !== 201) throw new ApiError(r.status, r.data);
      const location = r.headers.get("Location") || "";
      setJobId(location.slice(location.lastIndexOf("/") + 1));
    });
  };
  return (
    <article class="create-env">
      <h3>Create an environment (admins)</h3>
      <form onSubmit={create} aria-label="create an environment">
        <div class="grid">
          <label>
            Name
            <input name="envName" required value={form.name} onInput={set("name")} />
          </label>
          <label>
            Description
            <input name="envDescription" value={form.description} onInput={set("description")} />
          </label>
        </div>
        <label>
          Packages (pip requirements, separated by spaces or new lines)
          <textarea
            name="packages"
            rows="3"
            required
            value={form.packages}
            onInput={set("packages")}
            placeholder="statsmodels==0.14.4"
          />
        </label>
        <details>
          <summary>Where pip looks</summary>
          <label>
            A folder of wheels on the server (<code>findLinks</code>)
            <input name="findLinks" value={form.findLinks} onInput={set("findLinks")} />
          </label>
          <label>
            <input type="checkbox" role="switch" checked={form.noIndex} onChange={set("noIndex")} /> Only there, not the
            package index (<code>noIndex</code>)
          </label>
        </details>
        <button type="submit" aria-busy={action.busy ? "true" : undefined} disabled={action.busy}>
          Create
        </button>
      </form>
      <ErrorBox error={action.error} title="Could not start the build" />
      {jobId && <Build key={jobId} jobId={jobId} onBuilt={onBuilt} />}
    </article>
  );
}

// The build job: its status and pip's output, polled until it ends.
function Build({ jobId, onBuilt }) {
  const path = `/jobs${seg(jobId)}`;
  const [ended, setEnded] = useState(false);
  const job = useResource(
    async () => {
      const found = (await api.get("/jobs")).result.find((j) => j.job_id === jobId);
      if (found && ENDED.has(found.status) && !ended) {
        setEnded(true);
        onBuilt();
      }
      return found;
    },
    [jobId, ended],
    ended ? 0 : POLL_MS,
  );
  const log = useResource(() => api.get(`${path}/log`).then((b) => b.result), [jobId, ended], ended ? 0 : POLL_MS);
  const result = useResource(async () => {
    if (!ended) return null;
    const r = await exchange("GET", `${API}${path}/result`);
    return r.status === 200 ? { value: r.data.result } : { error: new ApiError(r.status, r.data) };
  }, [jobId, ended]);
  return (
    <section class="build" aria-label="build">
      <h4>Build {job.data && <Status status={job.data.status} />}</h4>
      <pre class="log" aria-label="build log">
        {log.data || "waiting for pip…"}
      </pre>
      {result.data?.error && <ErrorBox error={result.data.error} title="The build failed" />}
      {result.data?.value && (
        <>
          <p>Built:</p>
          <ResultView value={result.data.value} />
        </>
      )}
    </section>
  );
}
