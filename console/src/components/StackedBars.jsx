// A stacked bar chart drawn as SVG: one bar per category (a day), one stacked part per
// series (a user), with a legend and the numbers in a table for those who cannot see
// it. Colours come from the style sheet (.series-N), never from inline styles, which
// the console's Content-Security-Policy forbids.
import { DataTable } from "./common.jsx";

const WIDTH = 640;
const HEIGHT = 220;
const AXIS = 44; // room for the value axis' labels, left, and the categories', below
const PAD = 12; // room above the highest label
const TICKS = 4;

export function StackedBars({ title, categories, series, value, unit }) {
  const totals = categories.map((c) => series.reduce((sum, s) => sum + value(c, s), 0));
  const top = niceCeiling(Math.max(0, ...totals));
  const plotW = WIDTH - AXIS;
  const plotH = HEIGHT - AXIS - PAD;
  const step = plotW / Math.max(1, categories.length);
  const y = (v) => PAD + plotH - (top ? (v / top) * plotH : 0);
  return (
    <figure class="chart">
      <svg class="plot" viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label={title}>
        {[...Array(TICKS + 1).keys()].map((i) => {
          const v = (top * i) / TICKS;
          return (
            <g class="tick">
              <line x1={AXIS} x2={WIDTH} y1={y(v)} y2={y(v)} />
              <text x={AXIS - 6} y={y(v) + 4} text-anchor="end">
                {formatNumber(v)}
              </text>
            </g>
          );
        })}
        {categories.map((c, i) => {
          let base = 0;
          return (
            <g class="bar" data-category={c}>
              {series.map((s, k) => {
                const v = value(c, s);
                const part = (
                  <rect
                    class={`series-${k}`}
                    data-series={s}
                    x={AXIS + i * step + step * 0.15}
                    width={step * 0.7}
                    y={y(base + v)}
                    height={y(base) - y(base + v)}
                  >
                    <title>{`${s}, ${c}: ${formatNumber(v)} ${unit}`}</title>
                  </rect>
                );
                base += v;
                return part;
              })}
              <text x={AXIS + (i + 0.5) * step} y={PAD + plotH + 16} text-anchor="middle">
                {c.slice(5)}
              </text>
            </g>
          );
        })}
      </svg>
      <figcaption>
        <ul class="legend" aria-label="legend">
          {series.map((s, k) => (
            <li>
              <svg viewBox="0 0 10 10" class="swatch" aria-hidden="true">
                <rect class={`series-${k}`} width="10" height="10" />
              </svg>{" "}
              {s}
            </li>
          ))}
        </ul>
        <details>
          <summary>The numbers</summary>
          <DataTable
            label={`${title}: the numbers`}
            columns={["", ...series]}
            rows={categories.map((c) => [c, ...series.map((s) => round(value(c, s)))])}
          />
        </details>
      </figcaption>
    </figure>
  );
}

// The smallest of 1, 2, 2.5 or 5 times a power of ten at least ``v``.
function niceCeiling(v) {
  if (v <= 0) return 0;
  const power = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * power).find((n) => n >= v);
}

const round = (v) => Math.round(v * 1000) / 1000;
const formatNumber = (v) => new Intl.NumberFormat("en", { maximumFractionDigits: 2 }).format(v);
