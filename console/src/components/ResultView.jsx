// A run's answer: images with their titles, tables where the value is
// DataFrame-shaped, pretty JSON otherwise; the raw JSON is always one click away.
import { asGraphics, asKeyedTables, asTable, parseData, pngSource } from "../shapes.js";
import { DataTable, Json } from "./common.jsx";

export function ResultView({ value, label = "result" }) {
  const graphics = asGraphics(value);
  if (graphics) return <Graphics groups={graphics} />;
  return <Value value={value} label={label} />;
}

function Value({ value, label }) {
  const table = asTable(value);
  const keyed = !table && asKeyedTables(value, "group");
  const shown = table || keyed;
  if (!shown) return <Json value={value} />;
  return (
    <div class="value">
      <DataTable columns={shown.columns} rows={shown.rows} label={label} />
      <p class="muted small">
        {shown.rows.length} {shown.rows.length === 1 ? "row" : "rows"}
        {keyed ? `, from ${Object.keys(value).length} keys` : ""}
      </p>
      <details>
        <summary>JSON</summary>
        <Json value={value} />
      </details>
    </div>
  );
}

function Graphics({ groups }) {
  return (
    <div class="graphics">
      {groups.map(({ key, images }) => (
        <section class="figures" key={key ?? ""}>
          {key !== null && <h4>{key}</h4>}
          <div class="figure-row">
            {images.map((img) => (
              <Figure image={img} />
            ))}
          </div>
          {"DATA" in images[0] && (
            <details open>
              <summary>Value</summary>
              <Value value={parseData(images[0].DATA)} label={`value ${key ?? ""}`.trim()} />
            </details>
          )}
        </section>
      ))}
    </div>
  );
}

function Figure({ image }) {
  const src = pngSource(image.IMAGE);
  const title = image.TITLE || `Figure ${image.ID}`;
  if (!src) return <p class="muted">No figure drawn.</p>;
  return (
    <figure>
      <img src={src} alt={title} />
      <figcaption>
        {title}
        {image.TIME !== undefined && <span class="muted"> · invocation {image.TIME}</span>}
      </figcaption>
    </figure>
  );
}
