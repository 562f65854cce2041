// Who else may use one of the caller's objects (a script, a model): its grants to
// users, to everyone and to groups, with a form to grant and a button to revoke each.
// ``client`` is the API's (api or oml), ``base`` the object's grants path under it,
// ``revokePath(who, isGroup)`` a grant's own path, ``verb`` what a grantee may do.
import { useState } from "preact/hooks";
import { ErrorBox, Notice } from "./common.jsx";
import { useAction } from "../hooks.js";

export function Grants({ client, base, revokePath, grantees, groups, verb, onChange }) {
  const [user, setUser] = useState("");
  const action = useAction();
  const grant = (who) =>
    action.run(async () => {
      await client.post(base, { user: who });
      setUser("");
      onChange();
      return `Granted to ${who || "everyone"}.`;
    });
  const grantGroup = (group) =>
    action.run(async () => {
      const answer = await client.post(base, { group });
      setUser("");
      onChange();
      return `Granted to group ${answer.result.group}.`;
    });
  const revoke = (who, isGroup) =>
    action.run(async () => {
      await client.del(revokePath(who, isGroup));
      onChange();
      return `Revoked from ${isGroup ? "group " : ""}${who}.`;
    });
  const everyone = [...grantees.map((g) => [g, false]), ...groups.map((g) => [g, true])];
  return (
    <section class="grants" aria-label="grants">
      <h4>Who else may {verb} it</h4>
      {everyone.length === 0 ? (
        <p class="muted">Nobody: it is private.</p>
      ) : (
        <ul>
          {everyone.map(([g, isGroup]) => (
            <li>
              {isGroup ? `group ${g}` : g === "PUBLIC" ? "everyone (PUBLIC)" : g}{" "}
              <button type="button" class="secondary outline small" onClick={() => revoke(g, isGroup)}>
                Revoke
              </button>
            </li>
          ))}
        </ul>
      )}
      <form
        class="inline"
        onSubmit={(e) => {
          e.preventDefault();
          grant(user.trim());
        }}
      >
        <input
          aria-label="Grant to user"
          placeholder="User or group name"
          required
          value={user}
          onInput={(e) => setUser(e.currentTarget.value)}
        />
        <button type="submit">Grant</button>
        <button type="button" class="secondary" disabled={!user.trim()} onClick={() => grantGroup(user.trim())}>
          Grant to group
        </button>
        <button type="button" class="secondary" onClick={() => grant(null)}>
          Grant to everyone
        </button>
      </form>
      <Notice>{action.done}</Notice>
      <ErrorBox error={action.error} />
    </section>
  );
}
