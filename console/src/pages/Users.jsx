// Users: admins add and delete accounts (the API has no list of users).
import { useState } from "preact/hooks";
import { USERS, call, seg } from "../api.js";
import { ConfirmButton, ErrorBox, Notice } from "../components/common.jsx";
import { useAction } from "../hooks.js";

export function UsersPage({ session }) {
  return (
    <>
      <h2>Users</h2>
      <p class="muted small">Only admins may add and delete users; the server refuses everyone else.</p>
      <div class="split even">
        <AddUser />
        <DeleteUser me={session.user} />
      </div>
    </>
  );
}

function AddUser() {
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

function DeleteUser({ me }) {
  const [name, setName] = useState("");
  const action = useAction();
  const remove = () =>
    action.run(async () => {
      const body = await call("DELETE", `${USERS}${seg(name.trim())}`);
      setName("");
      return body.result;
    });
  return (
    <section aria-labelledby="delete-user-title">
      <h3 id="delete-user-title">Delete a user</h3>
      <p class="muted small">
        Deleting a user stops and deletes their jobs and deletes their tables, datastores, scripts and grants.
      </p>
      <form onSubmit={(e) => e.preventDefault()} aria-label="delete a user">
        <label>
          User name
          <input
            name="deleteUsername"
            required
            autocomplete="off"
            value={name}
            onInput={(e) => setName(e.currentTarget.value)}
          />
        </label>
        <ConfirmButton
          label="Delete user"
          question={`Delete ${name.trim().toUpperCase() || "?"} and everything they own?`}
          disabled={!name.trim() || name.trim().toUpperCase() === me}
          onConfirm={remove}
        />
      </form>
      <Notice>{action.done}</Notice>
      <ErrorBox error={action.error} title="Could not delete the user" />
    </section>
  );
}
