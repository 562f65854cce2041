// How a result is shown: which JSON values are tables (row records, or pandas'
// column -> {row -> value} form), which are images, and which are neither.

export const isScalar = (v) => v === null || ["string", "number", "boolean"].includes(typeof v);
export const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const allScalar = (o) => Object.values(o).every(isScalar);

function union(keyLists) {
  const seen = new Set();
  for (const keys of keyLists) for (const k of keys) seen.add(k);
  return [...seen];
}

// [{col: v, ...}, ...] (a DataFrame in OML's records form) -> {columns, rows}
export function asRecords(v) {
  if (!Array.isArray(v) || v.length === 0) return null;
  if (!v.every((r) => isObject(r) && allScalar(r))) return null;
  const columns = union(v.map(Object.keys));
  return { columns, rows: v.map((r) => columns.map((c) => (c in r ? r[c] : null))) };
}

// {col: {row: v}} (pandas' to_dict() form, used inside group-apply results)
export function asColumns(v) {
  if (!isObject(v)) return null;
  const columns = Object.keys(v);
  if (columns.length === 0 || !columns.every((c) => isObject(v[c]) && allScalar(v[c]))) return null;
  const index = union(columns.map((c) => Object.keys(v[c])));
  if (index.length === 0) return null;
  return { columns, rows: index.map((i) => columns.map((c) => (i in v[c] ? v[c][i] : null))) };
}

export const asTable = (v) => asRecords(v) || asColumns(v);

// {key: table, ...} (group-apply of DataFrames) -> one table, the key first
export function asKeyedTables(v, keyName = "key") {
  if (!isObject(v) || Object.keys(v).length === 0) return null;
  const parts = Object.entries(v).map(([k, t]) => [k, asTable(t)]);
  if (!parts.every(([, t]) => t)) return null;
  const columns = union(parts.map(([, t]) => t.columns));
  const rows = [];
  for (const [k, t] of parts) {
    for (const row of t.rows) {
      const byName = Object.fromEntries(t.columns.map((c, i) => [c, row[i]]));
      rows.push([k, ...columns.map((c) => (c in byName ? byName[c] : null))]);
    }
  }
  return { columns: [keyName, ...columns], rows };
}

// An image entry: {IMAGE: base64 PNG | null, DATA: JSON text, TITLE, ID[, TIME]}
export const isImage = (v) => isObject(v) && "IMAGE" in v && "ID" in v;
const isImageList = (v) => Array.isArray(v) && v.length > 0 && v.every(isImage);

// A graphics result: a list of images, or {key: image | [image, ...]}
export function asGraphics(v) {
  if (isImageList(v)) return [{ key: null, images: v }];
  if (!isObject(v) || Object.keys(v).length === 0) return null;
  const entries = Object.entries(v);
  if (!entries.every(([, e]) => isImage(e) || isImageList(e))) return null;
  return entries.map(([key, e]) => ({ key, images: Array.isArray(e) ? e : [e] }));
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
export const pngSource = (image) =>
  typeof image === "string" && BASE64.test(image) ? `data:image/png;base64,${image}` : null;

// DATA is the function's value encoded as JSON text.
export function parseData(text) {
  if (typeof text !== "string") return text;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export function cellText(v) {
  if (v === null || v === undefined) return "null";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}
