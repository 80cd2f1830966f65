// Starts the real server (the binary cargo built) on a free port with a fresh SQLite file, and
// Debian's Chromium through playwright-core (never a downloaded browser).
import { spawn } from "node:child_process";
import { mkdtempSync, existsSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const outputDir = path.join(repo, "web/e2e/output");

// The flags this closed network needs (no background requests to Google's hosts).
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

export async function startServer() {
  const bin = process.env.NSI_E2E_SERVER || path.join(process.env.CARGO_TARGET_DIR || path.join(repo, "target"), "debug/nsi-live");
  if (!existsSync(bin)) {
    throw new Error(`server binary not found at ${bin}: run \`cargo build\` first or set NSI_E2E_SERVER (./scripts/test does both)`);
  }
  if (!existsSync(path.join(repo, "static/index.html"))) {
    throw new Error("static/ is not built: run scripts/build-web (./scripts/test does)");
  }
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), "nsi-e2e-"));
  const env = {
    ...process.env,
    PORT: String(port),
    NSI__DATABASE__SQLITE_PATH: path.join(dir, "e2e.db"),
    NSI__CONTENT__DIR: path.join(repo, "content"),
    NSI__SERVER__STATIC_DIR: path.join(repo, "static"),
    RUST_LOG: process.env.E2E_LOG ? "info" : "warn",
  };
  delete env.DATABASE_URL;
  delete env.REDIS_URL;
  const child = spawn(bin, [], { cwd: repo, env, stdio: ["ignore", "inherit", "inherit"] });
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`);
    try {
      const r = await fetch(`${base}/healthz`);
      if (r.ok) break;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error("server did not answer /healthz within 60 s");
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    base,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
        child.on("exit", () => {
          clearTimeout(timer);
          resolve();
        });
        child.kill("SIGTERM");
      }),
  };
}

export async function launchBrowser() {
  const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
  if (!existsSync(executablePath)) {
    throw new Error(`Chromium not found at ${executablePath}: apt-get install chromium (./scripts/test does)`);
  }
  return chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS });
}

/// A new browser context that records console errors and CSP violations, and fails on dialogs.
export async function newPage(browser, base, options = {}) {
  const context = await browser.newContext({ baseURL: base, acceptDownloads: true, viewport: { width: 1366, height: 768 }, ...options });
  const page = await context.newPage();
  page.problems = [];
  page.dialogs = [];
  page.on("dialog", async (d) => {
    page.dialogs.push(`${d.type()}: ${d.message()}`);
    await d.dismiss();
  });
  // Chromium logs every 4xx/5xx response as a console error without its address: failed
  // responses are checked here instead, by address. The only expected one is the app asking
  // who is signed in (GET /api/v1/me) on a page opened before signing in.
  page.on("response", (r) => {
    if (r.status() >= 400 && !(r.status() === 401 && new URL(r.url()).pathname === "/api/v1/me")) {
      page.problems.push(`${r.status()} ${r.request().method()} ${r.url()}`);
    }
  });
  page.on("console", (m) => {
    const text = m.text();
    if (m.type() !== "error" || /^Failed to load resource: the server responded with a status of/.test(text)) return;
    if (!/ERR_INTERNET_DISCONNECTED|ERR_NAME_NOT_RESOLVED|WebSocket connection|net::ERR/.test(text)) {
      page.problems.push(text);
    }
  });
  page.on("pageerror", (e) => page.problems.push(String(e)));
  return { context, page };
}
