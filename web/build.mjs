// Builds the browser app into ../static (the folder the server serves):
//   static/index.html              the page shell (every page route answers it)
//   static/assets/*-<hash>.*       app bundle, styles, the run worker, sql.js's wasm (immutable)
//   static/pyodide/<version>/      Pyodide's core files from its npm package (immutable)
// with a precompressed .br and .gz beside every file worth it. Nothing is fetched from a CDN.
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { promises as fs, existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import zlib from "node:zlib";
import { promisify } from "node:util";

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(here, process.env.NSI_STATIC_DIR || "../static");
const assets = path.join(out, "assets");
const brotli = promisify(zlib.brotliCompress);
const gzip = promisify(zlib.gzip);

const pyodideVersion = JSON.parse(
  readFileSync(path.join(here, "node_modules/pyodide/package.json"), "utf8"),
).version;
// Core Python only: the runtime, the standard library and the lock file it reads at start.
const PYODIDE_FILES = [
  "pyodide.mjs",
  "pyodide.asm.mjs",
  "pyodide.asm.wasm",
  "python_stdlib.zip",
  "pyodide-lock.json",
];

const hash = (buf) => createHash("sha256").update(buf).digest("hex").slice(0, 12);

async function compress(file) {
  const buf = await fs.readFile(file);
  if (buf.length < 1024) return;
  const quality = buf.length > 1_000_000 ? 9 : 11;
  const br = await brotli(buf, {
    params: { [zlib.constants.BROTLI_PARAM_QUALITY]: quality },
  });
  const gz = await gzip(buf, { level: 9 });
  // Keep a copy only where it saves something (an already-compressed file stays as it is).
  if (br.length < buf.length * 0.9) await fs.writeFile(file + ".br", br);
  if (gz.length < buf.length * 0.9) await fs.writeFile(file + ".gz", gz);
}

async function hashedCopy(src, base, ext) {
  const buf = await fs.readFile(src);
  const name = `${base}-${hash(buf)}${ext}`;
  await fs.writeFile(path.join(assets, name), buf);
  return name;
}

async function bundle(entry, base, options = {}) {
  const result = await build({
    entryPoints: [path.join(here, entry)],
    bundle: true,
    minify: true,
    format: "esm",
    target: ["chrome110", "firefox115", "safari16"],
    write: false,
    outdir: assets,
    legalComments: "none",
    logLevel: "warning",
    ...options,
  });
  const names = {};
  for (const file of result.outputFiles) {
    const ext = path.extname(file.path);
    const name = `${base}-${hash(file.contents)}${ext}`;
    await fs.writeFile(path.join(assets, name), file.contents);
    names[ext] = name;
  }
  return names;
}

async function main() {
  await fs.rm(assets, { recursive: true, force: true });
  await fs.mkdir(assets, { recursive: true });

  // Pyodide: versioned folder, copied once per version.
  const pyDir = path.join(out, "pyodide", pyodideVersion);
  if (!existsSync(path.join(pyDir, ".complete"))) {
    await fs.rm(path.join(out, "pyodide"), { recursive: true, force: true });
    await fs.mkdir(pyDir, { recursive: true });
    for (const f of PYODIDE_FILES) {
      await fs.copyFile(path.join(here, "node_modules/pyodide", f), path.join(pyDir, f));
      await compress(path.join(pyDir, f));
    }
    await fs.writeFile(path.join(pyDir, ".complete"), "");
  }

  const sqlWasm = await hashedCopy(
    path.join(here, "node_modules/sql.js/dist/sql-wasm-browser.wasm"),
    "sql-wasm",
    ".wasm",
  );
  const worker = await bundle("src/worker.js", "worker", {
    define: {
      PYODIDE_BASE: JSON.stringify(`/pyodide/${pyodideVersion}/`),
      SQL_WASM_URL: JSON.stringify(`/assets/${sqlWasm}`),
    },
    // sql.js is CommonJS and mentions node modules it only loads under Node.
    external: ["fs", "path", "crypto", "/pyodide/*"],
    platform: "browser",
  });
  const app = await bundle("src/main.js", "app", {
    define: { WORKER_URL: JSON.stringify(`/assets/${worker[".js"]}`) },
  });
  const css = await bundle("src/style.css", "style");

  const html = `<!doctype html>
<html lang="fr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>nsi-live</title>
<link rel="stylesheet" href="/assets/${css[".css"]}">
<script type="module" src="/assets/${app[".js"]}"></script>
</head>
<body>
<a class="skip" href="#main">Aller au contenu</a>
<header id="top"></header>
<main id="main" tabindex="-1"><p>Chargement…</p></main>
<div id="toasts" role="status" aria-live="polite"></div>
<noscript>nsi-live a besoin de JavaScript.</noscript>
</body>
</html>
`;
  await fs.writeFile(path.join(out, "index.html"), html);
  for (const f of await fs.readdir(assets)) await compress(path.join(assets, f));
  await compress(path.join(out, "index.html"));
  console.log(`built ${path.relative(process.cwd(), out)}: ${app[".js"]}, ${worker[".js"]}, Pyodide ${pyodideVersion}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
