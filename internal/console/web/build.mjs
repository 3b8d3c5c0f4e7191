// Bundles the console into ../dist (committed, so that `go build` needs no
// JavaScript toolchain). The Connect client comes from clients/ts, the
// repository's own TypeScript client, with its pinned packages.
import * as esbuild from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, resolve } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(here, process.argv[2] ?? "../dist");
mkdirSync(out, { recursive: true });
await esbuild.build({
  entryPoints: [resolve(here, "src/main.ts")],
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  outfile: resolve(out, "app.js"),
  nodePaths: [resolve(here, "../../../clients/ts/node_modules")],
  legalComments: "none",
  logLevel: "warning",
});
await esbuild.build({
  entryPoints: [resolve(here, "src/style.css")],
  bundle: true,
  minify: true,
  outfile: resolve(out, "app.css"),
  logLevel: "warning",
});
copyFileSync(resolve(here, "index.html"), resolve(out, "index.html"));
