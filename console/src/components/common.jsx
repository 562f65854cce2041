// Pieces every page uses. User data only ever reaches the page as text children or
// attribute values, which Preact sets through the DOM (textContent, properties):
// nothing here parses HTML.
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError } from "../api.js";
import { cellText } from "../shapes.js";

export function ErrorBox({ error, title = "Error" }) {
  if (!error) return null;
  if (!(error instanceof ApiError)) {
    return (
      <article class="error" role="alert">
        <strong>{title}</strong>
        <p class="message">{String(error.message || error)}</p>
      </article>
    );
  }
  const b = error.body;
  const unit = ["chunk", "group", "index"].filter((k) => k in b);
  return (
    <article class="error" role="alert">
      <header>
        <strong>{title}</strong> <span class="muted">HTTP {error.status}</span>
        {b.errorCode !== undefined && <span class="muted"> · errorCode {b.errorCode}</span>}
      </header>
      <p class="message">{b.errorMessage || error.message}</p>
      {unit.map((k) => (
        <p key={k} class="muted">
          failing {k}: <code>{cellText(b[k])}</code>
        </p>
      ))}
      {b.traceback && (
        <details open>
          <summary>Traceback</summary>
          <pre class="traceback">{b.traceback}</pre>
        </details>
      )}
      {b.stdout && (
        <details open>
          <summary>Printed output</summary>
          <pre class="stdout">{b.stdout}</pre>
        </details>
      )}
    </article>
  );
}

const isNumber = (v) => typeof v === "number";

export function DataTable({ columns, rows, caption, label }) {
  // Numbers right-aligned, header included, where a column holds only numbers.
  const numeric = columns.map(
    (_, i) => rows.some((r) => isNumber(r[i])) && rows.every((r) => r[i] === null || isNumber(r[i])),
  );
  return (
    <div class="table-scroll">
      <table class="data striped" aria-label={label || caption}>
        {caption && <caption>{caption}</caption>}
        <thead>
          <tr>
            {columns.map((c, i) => (
              <th scope="col" class={numeric[i] ? "number" : undefined}>
                {c}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((row) => (
            <tr>
              {row.map((v) => (
                <td class={v === null || v === undefined ? "null" : typeof v}>{cellText(v)}</td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export const Json = ({ value }) => <pre class="json">{JSON.stringify(value, null, 2)}</pre>;

// A button that asks once more, inline, before a destructive action.
export function ConfirmButton({ label, question, confirmLabel, onConfirm, disabled }) {
  const [asking, setAsking] = useState(false);
  if (!asking) {
    return (
      <button type="button" class="secondary outline" disabled={disabled} onClick={() => setAsking(true)}>
        {label}
      </button>
    );
  }
  const confirm = () => {
    setAsking(false);
    onConfirm();
  };
  return (
    <ConfirmPrompt
      question={question}
      label={confirmLabel || label}
      onConfirm={confirm}
      onCancel={() => setAsking(false)}
    />
  );
}

function ConfirmPrompt({ question, label, onConfirm, onCancel }) {
  const button = useRef(null);
  useEffect(() => button.current?.focus(), []);
  return (
    <span class="confirm" role="group">
      <span>{question}</span>{" "}
      <button type="button" class="danger" ref={button} onClick={onConfirm}>
        {label}
      </button>{" "}
      <button type="button" class="secondary" onClick={onCancel}>
        Cancel
      </button>
    </span>
  );
}

export function Loading({ resource, what }) {
  if (resource.error) return <ErrorBox error={resource.error} title={`Could not load ${what}`} />;
  if (resource.data === undefined) return <p aria-busy="true">Loading {what}…</p>;
  return null;
}

export function Notice({ children }) {
  return children ? (
    <p class="notice" role="status">
      {children}
    </p>
  ) : null;
}
