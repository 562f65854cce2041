// Jobs: the caller's jobs, polled while the page is open (no reload needed);
// one job's progress, log and result; cancel (stops and deletes) and delete.
import { API, ApiError, api, exchange, seg } from "../api.js";
import { ConfirmButton, ErrorBox, Loading } from "../components/common.jsx";
import { ResultView } from "../components/ResultView.jsx";
import { go, href, useAction, useResource } from "../hooks.js";

const POLL_MS = 1000;
export const ENDED = new Set(["FINISH", "FAILED", "CANCELLED", "TIMEOUT"]);

export function JobsPage({ args }) {
  const jobs = useResource(() => api.get("/jobs").then((b) => b.result), [], POLL_MS);
  const [id] = args;
  const job = jobs.data?.find((j) => j.job_id === id);
  return (
    <div class="split even">
      <section aria-labelledby="jobs-title">
        <h2 id="jobs-title">Jobs</h2>
        <Loading resource={jobs} what="jobs" />
        {jobs.data && jobs.data.length === 0 && <p class="muted">No jobs: submit one from the Run page.</p>}
        {jobs.data && jobs.data.length > 0 && <JobList jobs={jobs.data} selected={id} />}
      </section>
      <section class="detail">
        {id && job && <JobDetail key={id} job={job} onGone={jobs.reload} />}
        {id && jobs.data && !job && <p class="muted">There is no job {id} (any more).</p>}
        {!id && <p class="muted">Choose a job to see its log and result.</p>}
      </section>
    </div>
  );
}

function JobList({ jobs, selected }) {
  return (
    <div class="table-scroll">
      <table class="list striped" aria-label="jobs">
        <thead>
          <tr>
            <th scope="col">Job</th>
            <th scope="col">Operation</th>
            <th scope="col">Status</th>
            <th scope="col">Progress</th>
            <th scope="col">Created</th>
            <th scope="col">Elapsed</th>
          </tr>
        </thead>
        <tbody>
          {jobs.map((j) => (
            <tr class={j.job_id === selected ? "selected" : ""} data-job={j.job_id}>
              <td>
                <a href={href("jobs", j.job_id)} title={j.job_id}>
                  <code>{j.job_id.slice(0, 8)}</code>
                </a>
              </td>
              <td>{j.operation}</td>
              <td>
                <Status status={j.status} />
              </td>
              <td>
                <Progress progress={j.progress} status={j.status} />
              </td>
              <td title={j.createdDate}>{j.createdDate.slice(5, 16)}</td>
              <td>{j.elapsedTime}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export const Status = ({ status }) => (
  <span class={`badge status-${status.toLowerCase()}`} data-status={status}>
    {status}
  </span>
);

function Progress({ progress, status }) {
  const { done = 0, total = 0 } = progress || {};
  if (!total) return <progress aria-label="progress" value={ENDED.has(status) ? 1 : undefined} max="1" />;
  return (
    <span class="progress">
      <progress aria-label="progress" value={done} max={total} /> <small>{`${done}/${total}`}</small>
    </span>
  );
}

function JobDetail({ job, onGone }) {
  const ended = ENDED.has(job.status);
  const path = `/jobs${seg(job.job_id)}`;
  const result = useResource(async () => {
    if (!ended) return null;
    const r = await exchange("GET", `${API}${path}/result`);
    return r.status === 200 ? { value: r.data.result } : { error: new ApiError(r.status, r.data) };
  }, [job.job_id, ended]);
  const log = useResource(() => api.get(`${path}/log`).then((b) => b.result), [job.job_id, ended], ended ? 0 : POLL_MS);
  const action = useAction();
  const remove = () =>
    action.run(async () => {
      await api.del(path);
      onGone();
      go("jobs");
    });
  return (
    <article class="job" aria-label="job">
      <header>
        <h3>
          Job <code>{job.job_id}</code>
        </h3>
        <p>
          {job.operation} · <Status status={job.status} /> · created {job.createdDate} · elapsed {job.elapsedTime}
        </p>
        <Progress progress={job.progress} status={job.status} />
      </header>
      <div class="actions">
        {ended ? (
          <ConfirmButton label="Delete" question="Delete this job and its result?" onConfirm={remove} />
        ) : (
          <ConfirmButton
            label="Cancel job"
            question="Stop this job? It is deleted with whatever it did so far."
            confirmLabel="Stop and delete"
            onConfirm={remove}
          />
        )}
      </div>
      <ErrorBox error={action.error} />
      <h4>Log</h4>
      {log.data ? (
        <pre class="log">{log.data}</pre>
      ) : (
        <p class="muted">{ended ? "Nothing printed." : "Nothing printed yet."}</p>
      )}
      <h4>Result</h4>
      {!ended && <p aria-busy="true">Waiting for the job to end…</p>}
      {ended && <Loading resource={result} what="the result" />}
      {ended && result.data?.error && <ErrorBox error={result.data.error} title="The job failed" />}
      {ended && result.data && !result.data.error && <ResultView value={result.data.value} />}
    </article>
  );
}
