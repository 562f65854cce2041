// The shell: sign-in, the navigation, and the page the URL's hash names.
import { useEffect, useState } from "preact/hooks";
import { currentNotice, signIn, signInWays, signOut } from "./api.js";
import { ErrorBox } from "./components/common.jsx";
import { href, useRoute, useSession } from "./hooks.js";
import { DatastoresPage } from "./pages/Datastores.jsx";
import { EnvironmentsPage } from "./pages/Environments.jsx";
import { JobsPage } from "./pages/Jobs.jsx";
import { ModelsPage } from "./pages/Models.jsx";
import { RunPage } from "./pages/Run.jsx";
import { ScriptsPage } from "./pages/Scripts.jsx";
import { TablesPage } from "./pages/Tables.jsx";
import { UsagePage } from "./pages/Usage.jsx";
import { UsersPage } from "./pages/Users.jsx";

// [route, title, page, for admins only]
const PAGES = [
  ["scripts", "Scripts", ScriptsPage, false],
  ["run", "Run", RunPage, false],
  ["jobs", "Jobs", JobsPage, false],
  ["tables", "Tables", TablesPage, false],
  ["datastores", "Datastores", DatastoresPage, false],
  ["models", "Models", ModelsPage, false],
  ["environments", "Environments", EnvironmentsPage, false],
  ["usage", "Usage", UsagePage, false],
  ["users", "Users", UsersPage, true],
];

export function App() {
  const session = useSession();
  const route = useRoute();
  if (!session) return <SignIn notice={currentNotice()} />;
  const pages = PAGES.filter(([, , , adminOnly]) => session.admin || !adminOnly);
  const [, , Page] = pages.find(([name]) => name === route.page) || pages[0];
  return (
    <>
      <header class="top container-fluid">
        <nav aria-label="main">
          <ul>
            <li>
              <strong class="brand">epe</strong>
            </li>
            {pages.map(([name, title]) => (
              <li>
                <a href={href(name)} aria-current={route.page === name ? "page" : undefined}>
                  {title}
                </a>
              </li>
            ))}
          </ul>
          <ul>
            <li class="who">
              Signed in as <strong data-testid="user">{session.user}</strong>
              {session.admin && <span class="muted small"> (admin)</span>}
            </li>
            <li>
              <button type="button" class="secondary outline" onClick={signOut}>
                Sign out
              </button>
            </li>
          </ul>
        </nav>
      </header>
      <main class="container-fluid">
        <Page args={route.args} query={route.query} session={session} />
      </main>
    </>
  );
}

function SignIn({ notice }) {
  const [user, setUser] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [sso, setSso] = useState(null);
  useEffect(() => {
    signInWays()
      .then((ways) => setSso(ways.oidc))
      .catch(() => setSso(null));
  }, []);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await signIn(user, password);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  return (
    <main class="container signin">
      <article>
        <header>
          <h1>epe console</h1>
          <p class="muted">Embedded Python Execution: scripts, runs, jobs and tables.</p>
        </header>
        {notice && (
          <p class="notice" role="status">
            {notice}
          </p>
        )}
        <form onSubmit={submit}>
          <label>
            User name
            <input
              name="username"
              autocomplete="username"
              required
              value={user}
              onInput={(e) => setUser(e.currentTarget.value)}
            />
          </label>
          <label>
            Password
            <input
              name="password"
              type="password"
              autocomplete="current-password"
              required
              value={password}
              onInput={(e) => setPassword(e.currentTarget.value)}
            />
          </label>
          <button type="submit" aria-busy={busy ? "true" : undefined} disabled={busy}>
            Sign in
          </button>
        </form>
        <ErrorBox error={error} title="Could not sign in" />
        {sso && (
          <footer>
            <a role="button" class="secondary" href={sso.url}>
              Sign in with {sso.name}
            </a>
          </footer>
        )}
      </article>
    </main>
  );
}
