// Scripts: own, global and granted ones; source, create, edit, delete, make
// global, grant and revoke.
import { useState } from "preact/hooks";
import { api, seg } from "../api.js";
import { CodeEditor } from "../components/CodeEditor.jsx";
import { ConfirmButton, ErrorBox, Loading } from "../components/common.jsx";
import { Grants } from "../components/Grants.jsx";
import { go, href, useAction, useResource } from "../hooks.js";

const GLOBAL = "PYQSYS";
const TEMPLATE = "def f(dat):\n    import pandas as pd\n    return dat.describe()\n";

export const kindOf = (s, me) => (s.isGlobal ? "global" : s.owner === me ? "own" : "granted");

export function ScriptsPage({ args, session }) {
  const me = session.user;
  const list = useResource(() => api.get("/scripts").then((b) => b.result), []);
  const [name, owner, mode] = args;
  const entry = list.data?.find((s) => s.name === name && s.owner === owner);
  let side;
  if (name === "new" && args.length === 1) side = <ScriptForm me={me} onSaved={list.reload} />;
  else if (name && owner && mode === "edit")
    side = <EditScript name={name} owner={owner} me={me} onSaved={list.reload} />;
  else if (name && owner)
    side = (
      <ScriptDetail key={`${owner}/${name}`} name={name} owner={owner} entry={entry} me={me} onChange={list.reload} />
    );
  else side = <p class="muted">Choose a script to see its source, or create one.</p>;
  return (
    <div class="split">
      <section aria-labelledby="scripts-title">
        <div class="title-row">
          <h2 id="scripts-title">Scripts</h2>
          <a href={href("scripts", "new")} role="button">
            New script
          </a>
        </div>
        <Loading resource={list} what="scripts" />
        {list.data && <ScriptList scripts={list.data} me={me} selected={entry} />}
      </section>
      <section class="detail">{side}</section>
    </div>
  );
}

function ScriptList({ scripts, me, selected }) {
  const [filter, setFilter] = useState("");
  const [kind, setKind] = useState("all");
  const needle = filter.trim().toLowerCase();
  const shown = scripts.filter(
    (s) =>
      (kind === "all" || kindOf(s, me) === kind) &&
      (!needle || `${s.name} ${s.owner} ${s.description}`.toLowerCase().includes(needle)),
  );
  return (
    <>
      <div class="filters" role="search">
        <input
          type="search"
          aria-label="Filter scripts"
          placeholder="Filter by name, owner or description"
          value={filter}
          onInput={(e) => setFilter(e.currentTarget.value)}
        />
        <select aria-label="Kind of script" value={kind} onChange={(e) => setKind(e.currentTarget.value)}>
          <option value="all">All</option>
          <option value="own">Own</option>
          <option value="global">Global</option>
          <option value="granted">Granted to me</option>
        </select>
      </div>
      <table class="list striped" aria-label="scripts">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Owner</th>
            <th scope="col">Description</th>
            <th scope="col">Kind</th>
          </tr>
        </thead>
        <tbody>
          {shown.map((s) => (
            <tr class={s === selected ? "selected" : ""}>
              <td>
                <a href={href("scripts", s.name, s.owner)}>{s.name}</a>
              </td>
              <td>{s.owner}</td>
              <td class="wrap">{s.description}</td>
              <td>
                <span class={`badge ${kindOf(s, me)}`}>{kindOf(s, me)}</span>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {shown.length === 0 && <p class="muted">No script matches.</p>}
    </>
  );
}

function ScriptDetail({ name, owner, entry, me, onChange }) {
  const script = useResource(() => api.get(`/scripts${seg(name, owner)}`).then((b) => b.result), [name, owner]);
  const action = useAction();
  const s = script.data;
  if (!s) return <Loading resource={script} what={`script ${name}`} />;
  const kind = kindOf(s, me);
  const remove = () =>
    action.run(async () => {
      await api.del(`/scripts${seg(name)}${s.isGlobal ? "?isGlobal=true" : ""}`);
      onChange();
      go("scripts");
    });
  const makeGlobal = () =>
    action.run(async () => {
      await api.post("/scripts", { name: s.name, script: s.script, description: s.description, isGlobal: true });
      onChange();
      go("scripts", s.name, GLOBAL);
    });
  return (
    <article class="script">
      <header>
        <h3>{s.name}</h3>
        <p class="muted">
          {kind} · owner {s.owner} · updated {s.date}
        </p>
        {s.description && <p>{s.description}</p>}
      </header>
      <div class="actions">
        <a role="button" href={`#/run?${new URLSearchParams({ script: s.name, owner: s.owner })}`}>
          Run…
        </a>
        {kind !== "granted" && (
          <a role="button" class="secondary" href={href("scripts", s.name, s.owner, "edit")}>
            Edit
          </a>
        )}
        {kind === "own" && (
          <button
            type="button"
            class="secondary outline"
            title="Store a global copy under PYQSYS, which anyone may run"
            onClick={makeGlobal}
          >
            Make global
          </button>
        )}
        {kind !== "granted" && (
          <ConfirmButton label="Delete" question={`Delete script ${s.name}?`} onConfirm={remove} />
        )}
      </div>
      <ErrorBox error={action.error} />
      <CodeEditor value={s.script} revision={s.script} readOnly label={`source of ${s.name}`} />
      {kind === "own" && (
        <Grants
          client={api}
          base={`/scripts${seg(s.name)}/grants`}
          revokePath={(who, isGroup) => `/scripts${seg(s.name)}/grants${isGroup ? seg("group", who) : seg(who)}`}
          grantees={entry?.grantees || []}
          groups={entry?.groupGrantees || []}
          verb="run"
          onChange={onChange}
        />
      )}
    </article>
  );
}

function EditScript({ name, owner, me, onSaved }) {
  const script = useResource(() => api.get(`/scripts${seg(name, owner)}`).then((b) => b.result), [name, owner]);
  if (!script.data) return <Loading resource={script} what={`script ${name}`} />;
  return <ScriptForm initial={script.data} me={me} onSaved={onSaved} />;
}

function ScriptForm({ initial, onSaved }) {
  const editing = Boolean(initial);
  const [name, setName] = useState(initial?.name || "");
  const [description, setDescription] = useState(initial?.description || "");
  const [isGlobal, setGlobal] = useState(initial?.isGlobal || false);
  const [source, setSource] = useState(initial?.script || TEMPLATE);
  const action = useAction();
  const save = (e) => {
    e.preventDefault();
    action.run(async () => {
      const body = { name: name.trim(), script: source, description, isGlobal, overwrite: editing };
      const saved = (await api.post("/scripts", body)).result;
      onSaved();
      go("scripts", saved.name, saved.owner);
    });
  };
  return (
    <article>
      <h3>{editing ? `Edit ${initial.name}` : "New script"}</h3>
      <form onSubmit={save} class="script-form">
        <div class="grid">
          <label>
            Name
            <input
              name="name"
              required
              pattern="[A-Za-z0-9_.$#\-]{1,128}"
              readOnly={editing}
              value={name}
              onInput={(e) => setName(e.currentTarget.value)}
            />
          </label>
          <label>
            Description
            <input name="description" value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
          </label>
        </div>
        {!editing && (
          <label>
            <input
              type="checkbox"
              role="switch"
              checked={isGlobal}
              onChange={(e) => setGlobal(e.currentTarget.checked)}
            />{" "}
            Global: anyone may run it (stored under PYQSYS)
          </label>
        )}
        <p class="muted small">Its entry point is the last function defined at top level.</p>
        <CodeEditor value={source} onChange={setSource} label="script source" minLines={14} />
        <div class="actions">
          <button type="submit" aria-busy={action.busy ? "true" : undefined} disabled={action.busy}>
            Save
          </button>
          <a
            role="button"
            class="secondary"
            href={editing ? href("scripts", initial.name, initial.owner) : href("scripts")}
          >
            Cancel
          </a>
        </div>
      </form>
      <ErrorBox error={action.error} title="Could not save" />
    </article>
  );
}
