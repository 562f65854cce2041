// Users (admins only; the navigation offers it to no one else): every account, adding
// one, and deleting one with everything it owns.
import { useState } from "preact/hooks";
import { USERS, call, seg } from "../api.js";
import { ConfirmButton, ErrorBox, Loading, Notice } from "../components/common.jsx";
import { useAction, useResource } from "../hooks.js";

export function UsersPage({ session }) {
  const users = useResource(() => call("GET", USERS).then((b) => b.result), []);
  return (
    <div class="split even">
      <UserList users={users} me={session.user} />
      <AddUser onAdded={users.reload} />
    </div>
  );
}

function UserList({ users, me }) {
  const action = useAction();
  const remove = (name) =>
    action.run(async () => {
      const body = await call("DELETE", `${USERS}${seg(name)}`);
      users.reload();
      return body.result;
    });
  return (
    <section aria-labelledby="users-title">
      <h2 id="users-title">Users</h2>
      <p class="muted small">
        Deleting a user stops and deletes their jobs and deletes their tables, datastores, scripts and grants.
      </p>
      <Loading resource={users} what="users" />
      {users.data && (
        <table class="list striped" aria-label="users">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Role</th>
              <th scope="col">Created</th>
              <th scope="col">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {users.data.map((u) => (
              <tr>
                <td>{u.username}</td>
                <td>{u.admin ? "admin" : "user"}</td>
                <td>{u.createdDate}</td>
                <td>
                  {u.username !== me && (
                    <ConfirmButton
                      label="Delete"
                      question={`Delete ${u.username} and everything they own?`}
                      onConfirm={() => remove(u.username)}
                    />
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <Notice>{action.done}</Notice>
      <ErrorBox error={action.error} title="Could not delete the user" />
    </section>
  );
}

function AddUser({ onAdded }) {
  const [form, setForm] = useState({ username: "", password: "", admin: false });
  const action = useAction();
  const set = (key) => (e) => {
    const t = e.currentTarget;
    setForm((f) => ({ ...f, [key]: t.type === "checkbox" ? t.checked : t.value }));
  };
  const add = (e) => {
    e.preventDefault();
    action.run(async () => {
      const body = await call("POST", USERS, {
        json: { username: form.username.trim(), password: form.password, admin: form.admin },
      });
      setForm({ username: "", password: "", admin: false });
      onAdded();
      const u = body.result;
      return `User ${u.username} created${u.admin ? " (admin)" : ""}.`;
    });
  };
  return (
    <section aria-labelledby="add-user-title">
      <h3 id="add-user-title">Add a user</h3>
      <form onSubmit={add} aria-label="add a user">
        <label>
          User name
          <input name="newUsername" required autocomplete="off" value={form.username} onInput={set("username")} />
          <small>A letter, then letters, digits, _ $ #; shown upper-case.</small>
        </label>
        <label>
          Password
          <input
            name="newPassword"
            type="password"
            required
            autocomplete="new-password"
            value={form.password}
            onInput={set("password")}
          />
        </label>
        <label>
          <input type="checkbox" role="switch" checked={form.admin} onChange={set("admin")} /> Admin: may add users and
          build environments
        </label>
        <button type="submit" disabled={action.busy}>
          Add user
        </button>
      </form>
      <Notice>{action.done}</Notice>
      <ErrorBox error={action.error} title="Could not add the user" />
    </section>
  );
}
