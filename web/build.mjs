// Builds the UI into dist/ (index.html + ui/app.js, ui/app.css) with esbuild; with
// --tests, the unit tests into dist-tests/ for node's test runner.
import * as esbuild from "esbuild";
import { mkdirSync, copyFileSync, rmSync, readdirSync } from "node:fs";

const tests = process.argv.includes("--tests");
if (tests) {
  rmSync("dist-tests", { recursive: true, force: true });
  const entries = readdirSync("tests").filter((f) => f.endsWith(".test.ts")).map((f) => `tests/${f}`);
  await esbuild.build({
    entryPoints: entries,
    outdir: "dist-tests",
    bundle: true,
    platform: "node",
    format: "esm",
    outExtension: { ".js": ".mjs" },
    logLevel: "warning",
  });
} else {
  rmSync("dist", { recursive: true, force: true });
  mkdirSync("dist/ui", { recursive: true });
  await esbuild.build({
    entryPoints: { app: "src/main.tsx" },
    outdir: "dist/ui",
    bundle: true,
    minify: true,
    sourcemap: false,
    format: "esm",
    target: ["chrome110", "firefox110", "safari16"],
    jsx: "automatic",
    jsxImportSource: "preact",
    loader: { ".ttf": "file", ".woff": "file", ".woff2": "file" },
    legalComments: "linked",
    logLevel: "warning",
    metafile: true,
  });
  copyFileSync("src/index.html", "dist/index.html");
}
