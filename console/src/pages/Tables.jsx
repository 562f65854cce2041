// Tables: the caller's tables, their columns and first rows, upload and drop.
import { useState } from "preact/hooks";
import { API, api, call, seg } from "../api.js";
import { ConfirmButton, DataTable, ErrorBox, Loading, Notice } from "../components/common.jsx";
import { go, href, useAction, useResource } from "../hooks.js";
import { asRecords } from "../shapes.js";

const PREVIEW_ROWS = 20;
const TYPES = {
  csv: "text/csv",
  parquet: "application/vnd.apache.parquet",
  json: "application/json",
};

const quoted = (name) => `"${name.replaceAll('"', '""')}"`;
const extension = (file) => file.name.split(".").pop().toLowerCase();

// A table name from a file name: letters, digits and _, starting with a letter or _.
export function tableName(fileName) {
  const stem = fileName.replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9_]/g, "_");
  return (/^[A-Za-z_]/.test(stem) ? stem : `T_${stem}`).toUpperCase();
}

export function TablesPage({ args }) {
  const tables = useResource(() => api.get("/tables").then((b) => b.result), []);
  const [name] = args;
  return (
    <div class="split">
      <section aria-labelledby="tables-title">
        <h2 id="tables-title">Tables</h2>
        <Loading resource={tables} what="tables" />
        {tables.data?.length === 0 && <p class="muted">No tables yet.</p>}
        {tables.data?.length > 0 && (
          <table class="list striped" aria-label="tables">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Rows</th>
                <th scope="col">Columns</th>
              </tr>
            </thead>
            <tbody>
              {tables.data.map((t) => (
                <tr class={t.name === name ? "selected" : ""}>
                  <td>
                    <a href={href("tables", t.name)}>{t.name}</a>
                  </td>
                  <td>{t.rows}</td>
                  <td>{t.columns.length}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        <Upload onDone={tables.reload} />
      </section>
      <section class="detail">
        {name ? (
          <TableDetail key={name} name={name} onDropped={tables.reload} />
        ) : (
          <p class="muted">Choose a table to see its columns and first rows.</p>
        )}
      </section>
    </div>
  );
}

function TableDetail({ name, onDropped }) {
  const info = useResource(() => api.get(`/tables${seg(name)}`).then((b) => b.result), [name]);
  const rows = useResource(
    () => api.post("/query", { input: `SELECT * FROM ${quoted(name)} LIMIT ${PREVIEW_ROWS}` }).then((b) => b.result),
    [name],
  );
  const action = useAction();
  const drop = () =>
    action.run(async () => {
      await api.del(`/tables${seg(name)}`);
      onDropped();
      go("tables");
    });
  const t = info.data;
  if (!t) return <Loading resource={info} what={`table ${name}`} />;
  const preview = asRecords(rows.data);
  return (
    <article aria-label={`table ${name}`}>
      <header class="title-row">
        <h3>{t.name}</h3>
        <ConfirmButton label="Drop table" question={`Drop table ${t.name}?`} confirmLabel="Drop" onConfirm={drop} />
      </header>
      <ErrorBox error={action.error} />
      <p class="muted">
        {t.rows} rows · {t.columns.length} columns
      </p>
      <h4>First rows</h4>
      <Loading resource={rows} what="rows" />
      {preview && <DataTable columns={preview.columns} rows={preview.rows} label="first rows" />}
      {rows.data?.length === 0 && <p class="muted">The table is empty.</p>}
      <h4>Columns</h4>
      <DataTable columns={["column", "type"]} rows={t.columns.map((c) => [c.name, c.type])} label="columns" />
    </article>
  );
}

function Upload({ onDone }) {
  const [file, setFile] = useState(null);
  const [name, setName] = useState("");
  const [overwrite, setOverwrite] = useState(false);
  const action = useAction();
  const choose = (e) => {
    const f = e.currentTarget.files[0] || null;
    setFile(f);
    if (f) setName(tableName(f.name));
  };
  const upload = (e) => {
    e.preventDefault();
    action.run(async () => {
      const type = TYPES[extension(file)];
      if (!type) throw new Error("choose a .csv, .parquet or .json file");
      const query = overwrite ? "?overwrite=true" : "";
      const body = await call("PUT", `${API}/tables${seg(name)}${query}`, {
        body: file,
        headers: { "Content-Type": type },
      });
      onDone();
      go("tables", body.result.name);
      return `Table ${body.result.name} loaded: ${body.result.rows} rows.`;
    });
  };
  return (
    <form class="upload" onSubmit={upload} aria-label="upload a table">
      <h3>Upload a table</h3>
      <label>
        File (CSV, Parquet, or JSON records)
        <input type="file" name="file" accept=".csv,.parquet,.json" required onChange={choose} />
      </label>
      <div class="grid">
        <label>
          Table name
          <input
            name="table"
            required
            pattern="[A-Za-z_][A-Za-z0-9_]*"
            value={name}
            onInput={(e) => setName(e.currentTarget.value)}
          />
        </label>
        <label class="inline-check">
          <input
            type="checkbox"
            role="switch"
            checked={overwrite}
            onChange={(e) => setOverwrite(e.currentTarget.checked)}
          />{" "}
          Replace if it exists
        </label>
      </div>
      <button type="submit" aria-busy={action.busy ? "true" : undefined} disabled={action.busy}>
        Upload
      </button>
      <Notice>{action.done}</Notice>
      <ErrorBox error={action.error} title="Could not upload" />
    </form>
  );
}
