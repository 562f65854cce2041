// Bundles the console into ../src/epe/console/static/ (committed): one ES module,
// one style sheet, and the licences of the third-party code inside them.
import { mkdirSync, readFileSync, writeFileSync, existsSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "src", "epe", "console", "static");
mkdirSync(out, { recursive: true });

const common = {
  bundle: true,
  minify: process.env.MINIFY !== "0",
  metafile: true,
  legalComments: "none",
  logLevel: "info",
  charset: "utf8",
};
const js = await esbuild.build({
  ...common,
  entryPoints: [join(here, "src", "main.jsx")],
  outfile: join(out, "console.js"),
  format: "esm",
  target: ["es2020"],
  jsx: "automatic",
  jsxImportSource: "preact",
});
const css = await esbuild.build({
  ...common,
  entryPoints: [join(here, "src", "console.css")],
  outfile: join(out, "console.css"),
});

// Every package whose code is in the bundle, with its licence text.
const packages = new Set();
for (const input of [...Object.keys(js.metafile.inputs), ...Object.keys(css.metafile.inputs)]) {
  const m = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (m) packages.add(m[1]);
}
const notices = [...packages].sort().map((name) => {
  const folder = join(here, "node_modules", name);
  const meta = JSON.parse(readFileSync(join(folder, "package.json"), "utf8"));
  const file = readdirSync(folder).find((f) => /^licen[cs]e/i.test(f));
  const text =
    file && existsSync(join(folder, file))
      ? readFileSync(join(folder, file), "utf8").trim()
      : `License: ${meta.license}`;
  return `${name} ${meta.version} (${meta.license})\n\n${text}\n`;
});
writeFileSync(
  join(out, "THIRD-PARTY-LICENSES.txt"),
  `Third-party code bundled into console.js and console.css\n\n${notices.join(`\n${"-".repeat(72)}\n\n`)}`,
);
