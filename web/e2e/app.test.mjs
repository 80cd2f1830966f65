// End-to-end tests of the browser app in headless Chromium against the real server: the
// issue's "Done means" list. Run by ./scripts/test (after cargo test), or alone:
//   cargo build && scripts/build-web && node --test web/e2e/
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { launchBrowser, newPage, outputDir, repo, startServer } from "./harness.mjs";

const PY_CHAPTER = "nsi-1-python-bases";
const SQL_CHAPTER = "nsi-t-bases-de-donnees";
const RIGHT_ABS = "def valeur_absolue(x):\n    if x < 0:\n        return -x\n    return x\n";
const FACTORIAL = [
  ["def factorielle(n):", 0],
  ["resultat = 1", 1],
  ["for k in range(2, n + 1):", 1],
  ["resultat = resultat * k", 2],
  ["return resultat", 1],
];

let server;
let browser;
let teacher; // { context, page }
let classId;
let joinCode;
const exercises = {}; // slug -> id
const bench = {};

async function chapterExercises(slug) {
  const r = await fetch(`${server.base}/api/v1/chapters/${slug}`);
  const ch = await r.json();
  for (const e of ch.exercises) exercises[e.slug] = e.id;
}

async function setCode(page, code) {
  await page.locator(".cm-content").click();
  await page.keyboard.press("Control+A");
  await page.keyboard.press("Delete");
  await page.keyboard.insertText(code);
}

async function joinAsStudent(pseudonym) {
  const s = await newPage(browser, server.base);
  await s.page.goto("/join/");
  await s.page.getByLabel("Code de la classe").fill(joinCode);
  await s.page.getByLabel("Pseudonyme").fill(pseudonym);
  await s.page.getByRole("button", { name: "Rejoindre" }).click();
  await s.page.locator("#recovery-code").waitFor();
  s.recovery = await s.page.locator("#recovery-code").textContent();
  s.id = await s.page.evaluate(async () => (await (await fetch("/api/v1/me")).json()).id);
  await s.page.getByRole("link", { name: "C'est noté, continuer" }).click();
  await s.page.getByRole("heading", { name: "Cours", exact: true }).waitFor();
  return s;
}

async function myAttempts(page, exerciseId) {
  return page.evaluate(async (id) => (await (await fetch(`/api/v1/me/attempts?exercise_id=${id}`)).json()).attempts, exerciseId);
}

async function openPython(page, id) {
  await page.goto(`/exercises/${id}/`);
  await page.locator("#status", { hasText: "Python prêt" }).waitFor({ timeout: 150_000 });
}

before(async () => {
  mkdirSync(outputDir, { recursive: true });
  server = await startServer();
  browser = await launchBrowser();
  await chapterExercises(PY_CHAPTER);
  await chapterExercises(SQL_CHAPTER);
});

after(async () => {
  writeFileSync(path.join(outputDir, "bench.json"), JSON.stringify(bench, null, 2));
  await browser?.close();
  await server?.stop();
});

describe("nsi-live in Chromium", () => {
  it("a teacher signs up, creates a class with a big join code and assigns a chapter", async () => {
    teacher = await newPage(browser, server.base);
    const { page } = teacher;
    await page.goto("/teacher/signup/");
    await page.getByLabel("Identifiant").fill(`prof${Date.now()}`);
    await page.getByLabel("Nom affiché aux élèves").fill("Mme Lovelace");
    await page.getByLabel("Mot de passe (8 caractères au moins)").fill("un mot de passe long");
    await page.getByRole("button", { name: "Créer le compte" }).click();
    await page.getByRole("heading", { name: "Mes classes" }).waitFor();
    await page.getByLabel("Nom de la classe").fill("NSI 1re G2");
    await page.getByLabel("Établissement").fill("Lycée Hugo");
    await page.getByRole("button", { name: "Créer la classe" }).click();
    joinCode = (await page.locator("#joincode").textContent()).trim();
    assert.match(joinCode, /^[A-Z2-9]{6}$/);
    const size = await page.locator("#joincode").evaluate((el) => parseFloat(getComputedStyle(el).fontSize));
    assert.ok(size >= 48, `join code font size ${size}px is readable from the back of the room`);
    await page.getByRole("link", { name: "Ouvrir le tableau de bord" }).click();
    await page.locator("#grid").waitFor();
    classId = Number(page.url().match(/classes\/(\d+)/)[1]);
    await page.locator("#assignments summary").click();
    const row = page.locator(`tr[data-chapter="${PY_CHAPTER}"]`);
    await row.locator('input[type="date"]').fill("2030-06-15");
    await page.waitForFunction(async ([id, slug]) => {
      const a = await (await fetch(`/api/v1/classrooms/${id}/assignments`)).json();
      return a.some((x) => x.chapter_slug === slug && x.due_at);
    }, [classId, PY_CHAPTER]);
  });

  it("a pseudonym with HTML shows as text on the dashboard (no dialog)", async () => {
    const evil = "<img src=x onerror=alert(1)>";
    const s = await joinAsStudent(evil);
    const { page } = teacher;
    await page.locator(`tr[data-student="${s.id}"] .pseudo`).waitFor();
    assert.equal(await page.locator(`tr[data-student="${s.id}"] .pseudo`).textContent(), evil);
    await page.reload();
    await page.locator(`tr[data-student="${s.id}"] .pseudo`).waitFor();
    assert.equal(await page.locator("#roster").getByText(evil, { exact: true }).count(), 1);
    assert.equal(await page.locator("img").count(), 0, "no <img> element was made from a pseudonym");
    assert.deepEqual(teacher.page.dialogs, []);
    assert.deepEqual(s.page.dialogs, []);
    await s.context.close();
  });

  let ada;
  it("a student joins, wrong code fails, right code passes, submits, gets the toast; the dashboard cell turns green live", async () => {
    ada = await joinAsStudent("Ada");
    const { page } = ada;
    const id = exercises["nsi1-valeur-absolue"];
    const tpage = teacher.page;
    await tpage.evaluate(() => (window.__noReload = true));
    const cell = tpage.locator(`td[data-student="${ada.id}"][data-exercise="${id}"]`);
    await cell.waitFor();
    assert.equal(await cell.getAttribute("data-state"), "none");

    const t0 = Date.now();
    await openPython(page, id);
    bench.python_ready_ms_first_visit = Date.now() - t0;
    // The starter code is wrong: a failing test with its message.
    await page.getByRole("button", { name: "Exécuter" }).click();
    await page.locator("#results .tests").waitFor();
    assert.match(await page.locator("#results").textContent(), /✗ Nombre négatif/);
    assert.match(await page.locator("#results").textContent(), /valeur_absolue\(-3\) doit renvoyer 3/);
    // While the tests ran the teacher saw it; the right code passes every test.
    await setCode(page, RIGHT_ABS);
    await page.getByRole("button", { name: "Exécuter" }).click();
    await page.locator("#results p.ok", { hasText: "5 test(s) réussi(s) sur 5" }).waitFor();

    const submittedAt = await page.evaluate(() => Date.now());
    const cellUpdated = tpage.waitForFunction(
      ([sid, eid]) => document.querySelector(`td[data-student="${sid}"][data-exercise="${eid}"]`)?.dataset.state === "pass" && Date.now(),
      [ada.id, id],
      { timeout: 20_000, polling: "raf" },
    );
    await page.getByRole("button", { name: "Soumettre" }).click();
    await page.locator("#verdict .ok", { hasText: "Réussi" }).waitFor();
    await page.locator(".toast", { hasText: "Succès débloqué : Premier exercice réussi" }).waitFor();
    const greenAt = await (await cellUpdated).jsonValue();
    bench.submit_to_dashboard_ms = greenAt - submittedAt;
    assert.match(await cell.textContent(), /✓ 100/);
    assert.equal(await tpage.evaluate(() => window.__noReload), true, "the dashboard was not reloaded");
    await page.screenshot({ path: path.join(outputDir, "exercise.png"), fullPage: true });
    // The code is kept locally.
    await page.reload();
    await page.locator(".cm-content", { hasText: "return -x" }).waitFor();
    assert.deepEqual(page.problems, [], "no console errors or CSP violations");
  });

  it("an infinite loop is stopped, the page stays usable", async () => {
    const { page } = ada;
    const id = exercises["nsi1-somme-entiers"];
    await openPython(page, id);
    await setCode(page, "def somme_entiers(n):\n    while True:\n        pass\n");
    await page.getByRole("button", { name: "Exécuter" }).click();
    await page.locator("#results .error", { hasText: "Temps limite dépassé" }).waitFor({ timeout: 30_000 });
    // A new worker: the right code runs.
    await setCode(page, "def somme_entiers(n):\n    total = 0\n    for k in range(1, n + 1):\n        total = total + k\n    return total\n");
    await page.getByRole("button", { name: "Exécuter" }).click();
    await page.locator("#results p.ok").waitFor({ timeout: 60_000 });
  });

  it("an SQL exercise shows its tables and the result grid, and is solved", async () => {
    const { page } = ada;
    const id = exercises["nsit-sql-livres-periode"];
    await page.goto(`/exercises/${id}/`);
    await page.locator("#tables caption", { hasText: "livres" }).waitFor();
    await setCode(page, "SELECT titre, annee FROM livres WHERE annee BETWEEN 1850 AND 1899;");
    await page.getByRole("button", { name: "Exécuter" }).click();
    await page.locator("#results p.ok", { hasText: "correspond" }).waitFor();
    assert.ok((await page.locator("#results table tbody tr").count()) > 0);
    await page.getByRole("button", { name: "Soumettre" }).click();
    await page.locator("#verdict .ok", { hasText: "Réussi" }).waitFor();
  });

  it("an MCQ and a Parsons are answered", async () => {
    const { page } = ada;
    await page.goto(`/exercises/${exercises["nsi1-qcm-range"]}/`);
    await page.getByLabel("2, 5, 8", { exact: true }).check();
    await page.getByRole("button", { name: "Soumettre" }).click();
    await page.locator("#verdict .ok", { hasText: "Réussi" }).waitFor();

    await page.goto(`/exercises/${exercises["nsi1-parsons-factorielle"]}/`);
    await page.locator("#parsons li").first().waitFor();
    // Put each line in place with the keyboard (Alt+↑ / Alt+→) only.
    for (let i = 0; i < FACTORIAL.length; i++) {
      const [text, indent] = FACTORIAL[i];
      const items = await page.locator("#parsons li code").allTextContents();
      let at = items.findIndex((t, j) => j >= i && t.trim() === text);
      assert.ok(at >= 0, `line ${text} served`);
      let li = page.locator("#parsons li").nth(at);
      await li.focus();
      while (at > i) {
        await page.keyboard.press("Alt+ArrowUp");
        at--;
      }
      for (let k = 0; k < indent; k++) await page.keyboard.press("Alt+ArrowRight");
    }
    await page.getByRole("button", { name: "Soumettre" }).click();
    await page.locator("#verdict .ok", { hasText: "Réussi" }).waitFor();
  });

  it("a submission made offline waits, then arrives once when the network is back", async () => {
    const { page, context } = ada;
    const id = exercises["nsi1-annee-bissextile"];
    await openPython(page, id);
    await setCode(page, "def est_bissextile(annee):\n    return (annee % 4 == 0 and annee % 100 != 0) or annee % 400 == 0\n");
    await page.getByRole("button", { name: "Exécuter" }).click();
    await page.locator("#results p.ok").waitFor();
    await context.setOffline(true);
    await page.getByRole("button", { name: "Soumettre" }).click();
    await page.locator("#verdict", { hasText: "envoi en attente" }).waitFor();
    await page.locator("#pending", { hasText: "envoi en attente (1)" }).waitFor();
    await page.waitForTimeout(1500);
    await context.setOffline(false);
    await page.locator("#verdict .ok", { hasText: "Réussi" }).waitFor({ timeout: 30_000 });
    await page.locator("#pending").waitFor({ state: "hidden" });
    const attempts = await myAttempts(page, id);
    assert.equal(attempts.length, 1, "stored exactly once");
  });

  it("the teacher drills down into a student's attempts and exports the CSV", async () => {
    const { page } = teacher;
    await page.goto(`/teacher/classes/${classId}/`);
    await page.locator(`td[data-student="${ada.id}"][data-state="pass"]`).first().waitFor();
    await page.screenshot({ path: path.join(outputDir, "dashboard.png"), fullPage: true });
    const [download] = await Promise.all([page.waitForEvent("download"), page.locator("#export").click()]);
    const file = path.join(outputDir, "export.csv");
    await download.saveAs(file);
    const bytes = readFileSync(file);
    assert.deepEqual([...bytes.subarray(0, 3)], [0xef, 0xbb, 0xbf], "UTF-8 BOM");
    const lines = bytes.subarray(3).toString("utf8").split("\r\n").filter(Boolean);
    assert.equal(lines[0].split(";")[0], "pseudonyme");
    assert.deepEqual(lines[0].split(";").slice(-2), ["XP", "niveau"]);
    assert.ok(lines[0].includes("Valeur absolue"));
    assert.equal(lines.length, 3, "header + the two students");
    const adaRow = lines.find((l) => l.startsWith("Ada;"));
    assert.ok(adaRow, "Ada's row");
    const col = lines[0].split(";").indexOf("Valeur absolue");
    assert.equal(adaRow.split(";")[col], "100");

    await page.goto(`/teacher/classes/${classId}/students/${ada.id}/?exercise=${exercises["nsi1-valeur-absolue"]}`);
    await page.locator("details[open] pre", { hasText: "return -x" }).waitFor();
    assert.deepEqual(page.problems, []);
  });

  it("first load of the exercise page: bytes cold and warm, time to Python ready", async () => {
    const s = await newPage(browser, server.base);
    // Sign in again with the recovery code, on a fresh browser (cold cache).
    await s.page.goto("/recover/");
    await s.page.getByLabel("Code de la classe").fill(joinCode);
    await s.page.getByLabel("Pseudonyme").fill("Ada");
    await s.page.getByLabel("Code de récupération").fill(ada.recovery);
    await s.page.getByRole("button", { name: "Se reconnecter" }).click();
    await s.page.getByRole("heading", { name: "Cours", exact: true }).waitFor();
    // Bytes on the wire (headers and encoded bodies) of every request the page and its Web
    // Worker finish; a response served from the browser's cache transfers nothing.
    let bytes = 0;
    let requests = 0;
    s.context.on("requestfinished", async (req) => {
      requests += 1;
      const resp = await req.response();
      const sizes = await req.sizes().catch(() => null);
      if (sizes) bytes += sizes.responseHeadersSize + sizes.responseBodySize;
    });
    const measure = async (label) => {
      bytes = 0;
      requests = 0;
      const t0 = Date.now();
      await openPython(s.page, exercises["nsi1-valeur-absolue"]);
      const ready = Date.now() - t0;
      await s.page.waitForTimeout(300);
      bench[`${label}_page_bytes`] = bytes;
      bench[`${label}_requests`] = requests;
      requests = 0;
      bench[`${label}_python_ready_ms`] = ready;
    };
    await measure("cold");
    await measure("warm");
    assert.ok(bench.warm_page_bytes < bench.cold_page_bytes, `warm ${bench.warm_page_bytes} < cold ${bench.cold_page_bytes}`);
    console.log("bench", JSON.stringify(bench));
    await s.context.close();
  });
});
