// Run: an operation, a script, its input query and options; now, or as a job.
import { useEffect, useMemo, useState } from "preact/hooks";
import { API, ApiError, api, exchange, seg } from "../api.js";
import { CodeEditor } from "../components/CodeEditor.jsx";
import { ErrorBox, Loading } from "../components/common.jsx";
import { ResultView } from "../components/ResultView.jsx";
import { go, useResource } from "../hooks.js";

const OPERATIONS = {
  "do-eval": { input: false, parallel: false, help: "f(**parameters), once" },
  "table-apply": { input: true, parallel: false, help: "f(data, **parameters), once on the whole query result" },
  "row-apply": { input: true, parallel: true, help: "f(chunk, **parameters) for each chunk of rows" },
  "group-apply": { input: true, parallel: true, help: "f(group, **parameters) once per group" },
  "index-apply": { input: false, parallel: true, help: "f(i, **parameters) for i = 1..times" },
};

const DEFAULTS = {
  op: "do-eval",
  script: "",
  input: "SELECT * FROM IRIS",
  groupBy: "",
  orderBy: "",
  rows: "10",
  times: "3",
  paramsMode: "form",
  params: [{ key: "", value: "" }],
  paramsJson: "{}",
  graphicsFlag: false,
  parallelFlag: false,
  parallel: "",
  service: "LOW",
  envName: "",
  timeout: "",
};

let kept = null; // the form as it was left, for when the page is opened again

// A key/value row's value is read as JSON when it parses (10, true, [1, 2], "x"), as text otherwise.
function readValue(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export function parameters(f) {
  if (f.paramsMode === "json") {
    const parsed = JSON.parse(f.paramsJson || "{}");
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed))
      throw new Error("parameters must be a JSON object");
    return parsed;
  }
  return Object.fromEntries(f.params.filter((p) => p.key.trim()).map((p) => [p.key.trim(), readValue(p.value)]));
}

const int = (text) => (/^\s*\d+\s*$/.test(text) ? Number(text) : text);

export function requestBody(f) {
  const op = OPERATIONS[f.op];
  const body = { service: f.service };
  if (op.input) body.input = f.input;
  if (f.op === "group-apply") {
    body.groupBy = f.groupBy;
    if (f.orderBy.trim()) body.orderBy = f.orderBy;
  }
  if (f.op === "row-apply") body.rows = int(f.rows);
  if (f.op === "index-apply") body.times = int(f.times);
  const params = parameters(f);
  if (Object.keys(params).length) body.parameters = JSON.stringify(params);
  if (f.graphicsFlag) body.graphicsFlag = true;
  if (op.parallel && f.parallelFlag) body.parallelFlag = true;
  if (op.parallel && f.parallel.trim()) body.parallel = int(f.parallel);
  if (f.envName) body.envName = f.envName;
  if (f.timeout.trim()) body.timeout = int(f.timeout);
  return body;
}

export function RunPage({ query }) {
  const [form, setForm] = useState(() => {
    const start = { ...(kept || DEFAULTS) };
    if (query.get("script")) start.script = `${query.get("owner") || ""}/${query.get("script")}`;
    return start;
  });
  useEffect(() => {
    kept = form;
  }, [form]);
  const set = (key) => (e) => {
    const t = e.currentTarget;
    setForm((f) => ({ ...f, [key]: t.type === "checkbox" ? t.checked : t.value }));
  };
  const scripts = useResource(() => api.get("/scripts").then((b) => b.result), []);
  const tables = useResource(() => api.get("/tables").then((b) => b.result), []);
  const envs = useResource(() => api.get("/envs").then((b) => b.result.envs), []);
  const [outcome, setOutcome] = useState(null);
  const [inputRevision, setInputRevision] = useState(0);
  const op = OPERATIONS[form.op];
  const schema = useMemo(
    () => Object.fromEntries((tables.data || []).map((t) => [t.name, t.columns.map((c) => c.name)])),
    [tables.data],
  );

  const submit = async (asJob) => {
    const slash = form.script.indexOf("/");
    const owner = form.script.slice(0, slash);
    const name = form.script.slice(slash + 1);
    let body;
    try {
      if (!name) throw new Error("choose a script to run");
      body = requestBody(form);
    } catch (error) {
      setOutcome({ error });
      return;
    }
    if (asJob) body.asyncFlag = true;
    setOutcome({ busy: true });
    const started = performance.now();
    try {
      const r = await exchange("POST", `${API}/${form.op}${seg(name, owner)}`, { json: body });
      const seconds = (performance.now() - started) / 1000;
      if (asJob && r.status === 201) {
        const location = r.headers.get("Location") || "";
        go("jobs", location.slice(location.lastIndexOf("/") + 1));
      } else if (r.status === 200) setOutcome({ value: r.data.result, seconds });
      else setOutcome({ error: new ApiError(r.status, r.data), seconds });
    } catch (error) {
      setOutcome({ error });
    }
  };

  const onSubmit = (e) => {
    e.preventDefault();
    submit(e.submitter?.value === "job");
  };

  return (
    <div class="run">
      <h2>Run</h2>
      <div class="split wide-left">
        <form onSubmit={onSubmit} aria-label="run">
          <div class="grid">
            <label>
              Operation
              <select name="operation" value={form.op} onChange={set("op")}>
                {Object.keys(OPERATIONS).map((o) => (
                  <option value={o}>{o}</option>
                ))}
              </select>
              <small>{op.help}</small>
            </label>
            <label>
              Script
              <select name="script" value={form.script} onChange={set("script")} required>
                <option value="">Choose a script…</option>
                {(scripts.data || []).map((s) => (
                  <option value={`${s.owner}/${s.name}`}>
                    {s.name} ({s.owner})
                  </option>
                ))}
              </select>
              {scripts.error && <small class="error-text">could not list scripts: {scripts.error.message}</small>}
            </label>
          </div>
          {op.input && (
            <div class="field">
              <span class="label" id="input-label">
                Input query (<code>input</code>)
              </span>
              <CodeEditor
                value={form.input}
                revision={inputRevision}
                onChange={(v) => setForm((f) => ({ ...f, input: v }))}
                lang="sql"
                schema={schema}
                label="input query"
                minLines={3}
                onSubmit={() => submit(false)}
              />
            </div>
          )}
          <div class="grid">
            {form.op === "group-apply" && (
              <>
                <label>
                  Group by (<code>groupBy</code>)
                  <input name="groupBy" required value={form.groupBy} onInput={set("groupBy")} placeholder="SPECIES" />
                </label>
                <label>
                  Order by (<code>orderBy</code>)
                  <input name="orderBy" value={form.orderBy} onInput={set("orderBy")} placeholder="optional" />
                </label>
              </>
            )}
            {form.op === "row-apply" && (
              <label>
                Rows per chunk (<code>rows</code>)
                <input name="rows" type="number" min="1" required value={form.rows} onInput={set("rows")} />
              </label>
            )}
            {form.op === "index-apply" && (
              <label>
                Invocations (<code>times</code>)
                <input name="times" type="number" min="1" required value={form.times} onInput={set("times")} />
              </label>
            )}
          </div>
          <Parameters form={form} setForm={setForm} />
          <details class="options">
            <summary>Options</summary>
            <div class="grid">
              <label>
                Service level
                <select name="service" value={form.service} onChange={set("service")}>
                  <option>LOW</option>
                  <option>MEDIUM</option>
                  <option>HIGH</option>
                </select>
              </label>
              <label>
                Environment (<code>envName</code>)
                <select name="envName" value={form.envName} onChange={set("envName")}>
                  <option value="">default</option>
                  {(envs.data || []).map((e) => (
                    <option value={e.name}>{e.name}</option>
                  ))}
                </select>
              </label>
              <label>
                Time limit, seconds (<code>timeout</code>)
                <input
                  name="timeout"
                  type="number"
                  min="1"
                  value={form.timeout}
                  onInput={set("timeout")}
                  placeholder="server default"
                />
              </label>
            </div>
            {op.parallel && (
              <div class="grid">
                <label>
                  <input
                    type="checkbox"
                    name="parallelFlag"
                    role="switch"
                    checked={form.parallelFlag}
                    onChange={set("parallelFlag")}
                  />{" "}
                  Run invocations in parallel (<code>parallelFlag</code>)
                </label>
                <label>
                  Degree of parallelism (<code>parallel</code>)
                  <input
                    name="parallel"
                    type="number"
                    min="1"
                    value={form.parallel}
                    onInput={set("parallel")}
                    placeholder="capped by the service level"
                  />
                </label>
              </div>
            )}
          </details>
          <label>
            <input
              type="checkbox"
              name="graphicsFlag"
              role="switch"
              checked={form.graphicsFlag}
              onChange={set("graphicsFlag")}
            />{" "}
            Capture figures (<code>graphicsFlag</code>)
          </label>
          <div class="actions">
            <button type="submit" value="now" aria-busy={outcome?.busy ? "true" : undefined} disabled={outcome?.busy}>
              Run now
            </button>
            <button type="submit" value="job" class="secondary" disabled={outcome?.busy}>
              Submit as job
            </button>
          </div>
        </form>
        <aside aria-label="your tables">
          <h3>Your tables</h3>
          <Loading resource={tables} what="tables" />
          {tables.data?.length === 0 && <p class="muted">None yet: upload one on the Tables page.</p>}
          {(tables.data || []).map((t) => (
            <details class="table-columns">
              <summary>
                {t.name} <span class="muted">({t.rows} rows)</span>
              </summary>
              <button
                type="button"
                class="outline small"
                onClick={() => {
                  setForm((f) => ({ ...f, input: `SELECT * FROM ${t.name}` }));
                  setInputRevision((r) => r + 1);
                }}
              >
                Use as input
              </button>
              <ul>
                {t.columns.map((c) => (
                  <li>
                    <code>{c.name}</code> <span class="muted">{c.type}</span>
                  </li>
                ))}
              </ul>
            </details>
          ))}
        </aside>
      </div>
      <Outcome outcome={outcome} />
    </div>
  );
}

function Parameters({ form, setForm }) {
  const mode = (m) => () => setForm((f) => ({ ...f, paramsMode: m }));
  const setRow = (i, key) => (e) => {
    const value = e.currentTarget.value;
    setForm((f) => {
      const params = f.params.map((p, j) => (j === i ? { ...p, [key]: value } : p));
      if (params[params.length - 1].key) params.push({ key: "", value: "" });
      return { ...f, params };
    });
  };
  return (
    <fieldset class="parameters">
      <legend>
        Parameters <small class="muted">keyword arguments of the function</small>
        <span role="group" class="toggle">
          <button
            type="button"
            class={form.paramsMode === "form" ? "small" : "small outline"}
            aria-pressed={form.paramsMode === "form"}
            onClick={mode("form")}
          >
            Key / value
          </button>
          <button
            type="button"
            class={form.paramsMode === "json" ? "small" : "small outline"}
            aria-pressed={form.paramsMode === "json"}
            onClick={mode("json")}
          >
            JSON
          </button>
        </span>
      </legend>
      {form.paramsMode === "json" ? (
        <textarea
          name="parametersJson"
          aria-label="parameters as JSON"
          rows="3"
          value={form.paramsJson}
          onInput={(e) => {
            const paramsJson = e.currentTarget.value;
            setForm((f) => ({ ...f, paramsJson }));
          }}
        />
      ) : (
        <>
          {form.params.map((p, i) => (
            <div class="grid param">
              <input
                aria-label={`parameter ${i + 1} name`}
                placeholder="name"
                value={p.key}
                onInput={setRow(i, "key")}
              />
              <input
                aria-label={`parameter ${i + 1} value`}
                placeholder="value (JSON or text)"
                value={p.value}
                onInput={setRow(i, "value")}
              />
            </div>
          ))}
          <small>Values are read as JSON when they parse (10, true, [1, 2]), as text otherwise.</small>
        </>
      )}
    </fieldset>
  );
}

function Outcome({ outcome }) {
  if (!outcome || outcome.busy) return outcome?.busy ? <p aria-busy="true">Running…</p> : null;
  return (
    <section class="outcome" aria-label="outcome">
      <h3>{outcome.error ? "Failed" : "Result"}</h3>
      {outcome.seconds !== undefined && <p class="muted small">answered in {outcome.seconds.toFixed(2)} s</p>}
      {outcome.error ? <ErrorBox error={outcome.error} title="The run failed" /> : <ResultView value={outcome.value} />}
      {!outcome.error && (
        <p class="muted small">
          What a run prints is returned with its errors; run it as a job to read the log of a run that succeeds.
        </p>
      )}
    </section>
  );
}
