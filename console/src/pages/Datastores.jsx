// Datastores (saved from functions with oml.ds.save): list, objects, grants, delete.
import { useState } from "preact/hooks";
import { api, seg } from "../api.js";
import { ConfirmButton, DataTable, ErrorBox, Loading, Notice } from "../components/common.jsx";
import { go, href, useAction, useResource } from "../hooks.js";

export function DatastoresPage({ args, session }) {
  const list = useResource(() => api.get("/datastores").then((b) => b.result), []);
  const [name, owner] = args;
  return (
    <div class="split">
      <section aria-labelledby="ds-title">
        <h2 id="ds-title">Datastores</h2>
        <p class="muted small">
          Functions save Python objects here with <code>oml.ds.save</code> and read them back with{" "}
          <code>oml.ds.load</code>.
        </p>
        <Loading resource={list} what="datastores" />
        {list.data?.length === 0 && <p class="muted">No datastores yet.</p>}
        {list.data?.length > 0 && (
          <table class="list striped" aria-label="datastores">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Owner</th>
                <th scope="col">Objects</th>
                <th scope="col">Size</th>
                <th scope="col">Updated</th>
                <th scope="col">Description</th>
              </tr>
            </thead>
            <tbody>
              {list.data.map((d) => (
                <tr class={d.name === name && d.owner === owner ? "selected" : ""}>
                  <td>
                    <a href={href("datastores", d.name, d.owner)}>{d.name}</a>
                  </td>
                  <td>{d.owner}</td>
                  <td>{d.objectCount}</td>
                  <td>{d.size}</td>
                  <td>{d.date}</td>
                  <td class="wrap">{d.description}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
      <section class="detail">
        {name && owner ? (
          <Datastore
            key={`${owner}/${name}`}
            name={name}
            owner={owner}
            own={owner === session.user}
            onChange={list.reload}
          />
        ) : (
          <p class="muted">Choose a datastore to see its objects.</p>
        )}
      </section>
    </div>
  );
}

function Datastore({ name, owner, own, onChange }) {
  const path = own ? `/datastores${seg(name)}` : `/datastores${seg(name, owner)}`;
  const ds = useResource(() => api.get(path).then((b) => b.result), [path]);
  const action = useAction();
  const remove = () =>
    action.run(async () => {
      await api.del(`/datastores${seg(name)}`);
      onChange();
      go("datastores");
    });
  const d = ds.data;
  if (!d) return <Loading resource={ds} what={`datastore ${name}`} />;
  const rows = d.objects.map((o) => [o.name, o.class, o.size, o.length, o.rowCount, o.colCount]);
  return (
    <article aria-label={`datastore ${name}`}>
      <header class="title-row">
        <h3>{d.name}</h3>
        {own && (
          <ConfirmButton label="Delete" question={`Delete datastore ${d.name} and its objects?`} onConfirm={remove} />
        )}
      </header>
      <p class="muted">
        owner {d.owner} · {d.objectCount} objects · {d.size} bytes · updated {d.date}
        {d.grantable ? " · grantable" : ""}
      </p>
      {d.description && <p>{d.description}</p>}
      <ErrorBox error={action.error} />
      <DataTable columns={["object", "class", "size", "length", "rows", "columns"]} rows={rows} label="objects" />
      {own && <DatastoreGrants name={d.name} grantable={d.grantable} />}
    </article>
  );
}

function DatastoreGrants({ name, grantable }) {
  const [user, setUser] = useState("");
  const action = useAction();
  const base = `/datastores${seg(name)}/grants`;
  const grant = (who) =>
    action.run(async () => {
      await api.post(base, { user: who });
      return `Granted to ${who || "everyone"}.`;
    });
  const revoke = () =>
    action.run(async () => {
      await api.del(`${base}${seg(user.trim() || "PUBLIC")}`);
      return `Revoked from ${user.trim() || "everyone"}.`;
    });
  const grantGroup = () =>
    action.run(async () => {
      const answer = await api.post(base, { group: user.trim() });
      return `Granted to group ${answer.result.group}.`;
    });
  const revokeGroup = () =>
    action.run(async () => {
      const answer = await api.del(`${base}${seg("group", user.trim())}`);
      return `Revoked from group ${answer.result.group}.`;
    });
  return (
    <section aria-label="grants">
      <h4>Grants</h4>
      {!grantable && (
        <p class="muted small">This datastore was saved without grantable=True, so the server refuses grants.</p>
      )}
      <form
        class="inline"
        onSubmit={(e) => {
          e.preventDefault();
          grant(user.trim() || null);
        }}
      >
        <input
          aria-label="User to grant to or revoke from"
          placeholder="User or group name (empty: everyone)"
          value={user}
          onInput={(e) => setUser(e.currentTarget.value)}
        />
        <button type="submit">Grant read</button>
        <button type="button" class="secondary" onClick={revoke}>
          Revoke
        </button>
        <button type="button" class="secondary" disabled={!user.trim()} onClick={grantGroup}>
          Grant to group
        </button>
        <button type="button" class="secondary outline" disabled={!user.trim()} onClick={revokeGroup}>
          Revoke from group
        </button>
      </form>
      <Notice>{action.done}</Notice>
      <ErrorBox error={action.error} />
    </section>
  );
}
