// Usage: what the caller may hold and holds now, what their runs used (run by run and
// day by day), and for admins everyone's runs and the top users by CPU seconds per day.
import { USAGE, USERS, call } from "../api.js";
import { DataTable, Loading } from "../components/common.jsx";
import { StackedBars } from "../components/StackedBars.jsx";
import { useResource } from "../hooks.js";

const DAYS = 14;
const TOP_USERS = 5;
const DAY_MS = 86_400_000;

export function UsagePage({ session }) {
  const me = useResource(() => call("GET", `${USERS}/me`).then((b) => b.result), []);
  const runs = useResource(() => call("GET", `${USAGE}?by=run&limit=100`).then((b) => b.items), []);
  const days = useResource(
    () => call("GET", `${USAGE}?by=day&limit=10000&since=${lastDays()[0]}`).then((b) => b.items),
    [],
  );
  return (
    <div class="usage">
      <section aria-labelledby="usage-title">
        <h2 id="usage-title">Usage</h2>
        <Loading resource={me} what="your limits" />
        {me.data && <Holdings account={me.data} />}
      </section>
      {session.admin && (
        <section aria-labelledby="top-title">
          <h3 id="top-title">Top users by CPU seconds per day</h3>
          <Loading resource={days} what="usage by day" />
          {days.data && <TopUsers items={days.data} />}
        </section>
      )}
      <section aria-labelledby="runs-title">
        <h3 id="runs-title">{session.admin ? "Recent runs of every user" : "Your recent runs"}</h3>
        <Loading resource={runs} what="runs" />
        {runs.data && runs.data.length === 0 && <p class="muted">No runs yet.</p>}
        {runs.data && runs.data.length > 0 && <Runs items={runs.data} />}
      </section>
      <section aria-labelledby="days-title">
        <h3 id="days-title">By day, the last {DAYS} days</h3>
        <Loading resource={days} what="usage by day" />
        {days.data && days.data.length > 0 && <Days items={days.data} />}
      </section>
    </div>
  );
}

function Holdings({ account }) {
  const { limits, usage, limitsSet } = account;
  const set = (name) => (limitsSet.includes(name) ? " (set for you)" : "");
  return (
    <dl class="holdings" aria-label="your limits">
      <dt>Storage</dt>
      <dd>
        <progress value={usage.storage} max={limits.storage} aria-label="storage used" />{" "}
        <span data-testid="storage">
          {formatBytes(usage.storage)} of {formatBytes(limits.storage)}
        </span>
        {set("storage")}
        <br />
        <small class="muted">
          tables {formatBytes(usage.storageDetail.tables)}, datastores {formatBytes(usage.storageDetail.datastores)},
          job results {formatBytes(usage.storageDetail.jobResults)}
        </small>
      </dd>
      <dt>Jobs running</dt>
      <dd>
        {usage.runningJobs} of at most {limits.runningJobs}
        {set("runningJobs")}
      </dd>
      <dt>Jobs waiting</dt>
      <dd>
        {usage.waitingJobs} of at most {limits.waitingJobs}
        {set("waitingJobs")}
      </dd>
      <dt>Memory of your workers</dt>
      <dd>
        at most {formatBytes(limits.memory)} on each machine{set("memory")}
      </dd>
    </dl>
  );
}

function TopUsers({ items }) {
  const days = lastDays();
  const cpu = new Map(); // "USER day" -> CPU seconds
  const totals = new Map();
  for (const i of items) {
    cpu.set(`${i.user} ${i.day}`, i.cpuSeconds);
    totals.set(i.user, (totals.get(i.user) || 0) + i.cpuSeconds);
  }
  const users = [...totals.entries()]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .slice(0, TOP_USERS)
    .map(([user]) => user);
  if (users.length === 0) return <p class="muted">No runs in the last {DAYS} days.</p>;
  return (
    <StackedBars
      title="CPU seconds per day of the top users"
      categories={days}
      series={users}
      value={(day, user) => cpu.get(`${user} ${day}`) || 0}
      unit="CPU seconds"
    />
  );
}

function Runs({ items }) {
  return (
    <DataTable
      label="runs"
      columns={[
        "Started",
        "User",
        "Operation",
        "Script",
        "Service",
        "Mode",
        "Outcome",
        "Wall s",
        "CPU s",
        "Peak memory",
        "Rows in",
        "Bytes in",
        "Bytes out",
      ]}
      rows={items.map((r) => [
        r.started.replace("T", " ").slice(0, 19),
        r.user,
        r.operation,
        r.script ?? "(inline)",
        r.service,
        r.mode,
        r.outcome,
        r.wallSeconds,
        r.cpuSeconds,
        formatBytes(r.peakMemory),
        r.inputRows,
        formatBytes(r.inputBytes),
        formatBytes(r.outputBytes),
      ])}
    />
  );
}

function Days({ items }) {
  return (
    <DataTable
      label="usage by day"
      columns={["Day", "User", "Runs", "Failed", "Wall s", "CPU s", "Peak memory", "Rows in", "Bytes out"]}
      rows={items.map((d) => [
        d.day,
        d.user,
        d.runs,
        d.failed,
        d.wallSeconds,
        d.cpuSeconds,
        formatBytes(d.peakMemory),
        d.inputRows,
        formatBytes(d.outputBytes),
      ])}
    />
  );
}

// The last DAYS days (UTC, as the server groups them), oldest first: "2026-05-01", ...
function lastDays() {
  const today = Date.now();
  return [...Array(DAYS).keys()].reverse().map((i) => new Date(today - i * DAY_MS).toISOString().slice(0, 10));
}

const UNITS = ["bytes", "KiB", "MiB", "GiB", "TiB"];

export function formatBytes(n) {
  let v = n;
  let unit = 0;
  while (v >= 1024 && unit < UNITS.length - 1) {
    v /= 1024;
    unit += 1;
  }
  if (unit > 0) return `${v.toFixed(1)} ${UNITS[unit]}`;
  return n === 1 ? "1 byte" : `${n} bytes`;
}
