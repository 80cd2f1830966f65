// The exercise page: statement, editor or answer widget, "Exécuter" in the run worker,
// "Soumettre" through the student socket's outbox, hints.
import { api, get } from "./api.js";
import { add, clear, h, toast, uuid } from "./dom.js";
import { markdown } from "./markdown.js";
import { onLeave } from "./main.js";
import { Runner } from "./runner.js";
import { editor } from "./editor.js";
import { mark, typeLabel } from "./student.js";

const OUTPUT_LIMIT = 4096;

const main = () => document.getElementById("main");

/// The answer the server grades (CONTRACTS.md "Submit body").
export function submitBody(answer, startedAt) {
  return {
    attempt_id: uuid(),
    duration_ms: Math.min(Math.max(0, Math.round(performance.now() - startedAt)), 86_400_000),
    answer,
  };
}

function truncate(s) {
  if (!s) return "";
  const bytes = new TextEncoder().encode(s);
  if (bytes.length <= OUTPUT_LIMIT) return s;
  return new TextDecoder().decode(bytes.slice(0, OUTPUT_LIMIT - 3)).replace(/\uFFFD$/, "") + "…";
}

function table(t, caption) {
  return h("table", { class: "grid result" },
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, t.columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, t.rows.map((r) => h("tr", {}, r.map((v) => h("td", {}, v === null ? "NULL" : String(v)))))),
  );
}

export async function exercisePage(ctx, id) {
  const [ex, progress] = await Promise.all([get(`/exercises/${id}`), get("/me/progress")]);
  const socket = ctx.socket;
  const startedAt = performance.now();
  const mine = progress.exercises.find((e) => e.exercise_id === id);
  const status = h("div", { class: "status", id: "status", role: "status", "aria-live": "polite" });
  const results = h("div", { class: "results", id: "results", "aria-live": "polite" });
  const verdict = h("div", { class: "verdict", id: "verdict", role: "status", "aria-live": "polite" });
  const markBox = h("span", { id: "mark" }, mark(mine));
  const root = clear(main(),
    h("p", { class: "crumbs" },
      h("a", { href: "/courses/", "data-link": true }, ex.course.title), " › ",
      h("a", { href: `/courses/chapter/${encodeURIComponent(ex.chapter.slug)}/`, "data-link": true }, ex.chapter.title)),
    h("h1", {}, ex.title, " ", h("small", {}, `${typeLabel(ex.type)} · ${ex.xp_reward} XP`), " ", markBox),
    h("section", { class: "statement" }, markdown(ex.statement)),
  );

  let runner = null;
  const cleanups = [];
  onLeave(() => {
    runner?.terminate();
    socket?.send({ type: "focus", exercise_id: null });
    cleanups.forEach((f) => f());
  });
  const focus = () => socket?.send({ type: "focus", exercise_id: id });
  focus();
  cleanups.push(socket?.on((m) => m.type === "_status" && m.status === "open" && focus()) || (() => {}));
  // A submission of this exercise from another tab updates the mark here too.
  cleanups.push(socket?.on((m) => {
    if (m.type === "progress") {
      const p = m.exercises?.find((e) => e.exercise_id === id);
      if (p) clear(markBox, mark(p));
    }
  }) || (() => {}));

  const submitButton = h("button", { type: "button", class: "primary", id: "submit" }, "Soumettre");
  const submit = async (answer) => {
    submitButton.disabled = true;
    clear(verdict, "Envoi…");
    const body = submitBody(answer, startedAt);
    try {
      const result = await new Promise((resolve, reject) => {
        socket.submit(id, body, {
          resolve,
          reject,
          pending: () => clear(verdict, h("span", { class: "pending" }, "envoi en attente : la réponse partira dès le retour du réseau")),
        });
      });
      showVerdict(result);
      socket.send({ type: "get_progress" });
    } catch (e) {
      clear(verdict, h("p", { class: "error", role: "alert" }, e.message || "Envoi refusé."));
    } finally {
      submitButton.disabled = false;
    }
  };
  const showVerdict = (r) => {
    clear(verdict,
      h("p", { class: r.passed ? "ok" : "ko" },
        r.passed ? `Réussi ! Score : ${r.score} %` : `Pas encore : score ${r.score} %`,
        r.xp_awarded ? ` · +${r.xp_awarded} XP` : "",
        r.checked_by ? ` · vérifié par ${r.checked_by === "server" ? "le serveur" : "le navigateur"}` : ""),
      r.feedback ? h("p", {}, r.feedback) : null,
    );
    if (r.passed) toast(`Exercice réussi (${r.score} %)`, "success");
  };

  if (ex.type === "python" || ex.type === "sql") {
    runner = new Runner((p) => {
      const bar = p.stage === "ready" ? null : h("progress", { "aria-label": "Chargement de Python" });
      clear(status, p.text, bar ? " " : "", bar);
      status.dataset.stage = p.stage;
    });
    const key = `nsi.code.${ctx.me.id}.${id}`;
    const saved = localStorage.getItem(key);
    const edBox = h("div", { class: "editor", id: "editor" });
    const runButton = h("button", { type: "button", id: "run" }, "Exécuter");
    add(
      root,
      ex.type === "sql" ? h("section", { class: "tables", id: "tables" }, "Chargement des tables…") : null,
      edBox,
      h("p", { class: "actions" }, runButton, " ", submitButton, " ",
        h("button", { type: "button", class: "link", onclick: () => { view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: ex.starter_code || "" } }); } }, "Revenir au code de départ")),
      status, results, verdict,
    );
    let lastRun = null; // { code, tests } of the last run
    // Code pasted from a web page often carries non-breaking spaces, which Python refuses.
    const currentCode = () => view.state.doc.toString().replace(/\u00a0/g, " ");
    const view = editor(edBox, {
      doc: saved ?? ex.starter_code ?? "",
      language: ex.type,
      onChange: (code) => localStorage.setItem(key, code),
      onRun: () => runButton.click(),
    });
    if (ex.type === "python") {
      runner.loadPython();
      const run = async () => {
        const code = currentCode();
        socket?.send({ type: "running_tests", exercise_id: id });
        clear(results, "Exécution des tests…");
        try {
          const tests = await runner.runPython(code, ex.tests);
          lastRun = { code, tests };
          const ok = tests.filter((t) => t.passed).length;
          clear(results,
            h("p", { class: ok === tests.length ? "ok" : "ko" }, `${ok} test(s) réussi(s) sur ${tests.length}`),
            h("ul", { class: "tests" }, tests.map((t) => h("li", { class: t.passed ? "ok" : "ko" },
              h("span", {}, `${t.passed ? "✓" : "✗"} ${t.name}`),
              t.output ? h("pre", { class: "output" }, t.output) : null,
            ))),
          );
          return lastRun;
        } catch (e) {
          clear(results, h("p", { class: "error", role: "alert" }, e.message));
          return null;
        }
      };
      runButton.addEventListener("click", run);
      submitButton.addEventListener("click", async () => {
        const code = currentCode();
        const r = lastRun && lastRun.code === code ? lastRun : await run();
        if (!r) return;
        submit({ code, tests: r.tests.map((t) => ({ name: t.name, passed: t.passed, output: truncate(t.output) })) });
      });
    } else {
      const tablesBox = root.querySelector("#tables");
      runner.runSql(ex.schema, ex.data, null).then((r) => {
        clear(tablesBox, h("h2", {}, "Les tables"), h("div", { class: "tables-list" }, r.tables.map((t) => table(t, t.name))));
      }).catch((e) => clear(tablesBox, h("p", { class: "error" }, e.message)));
      runButton.addEventListener("click", async () => {
        const query = currentCode();
        socket?.send({ type: "running_tests", exercise_id: id });
        try {
          const r = await runner.runSql(ex.schema, ex.data, query);
          if (r.error) return clear(results, h("p", { class: "error", role: "alert" }, `Erreur SQL : ${r.error}`));
          const expected = ex.expected;
          let check = null;
          if (expected) {
            const same = sameTable(r.result, expected, ex.order_matters);
            check = h("p", { class: same ? "ok" : "ko" }, same
              ? "Le résultat correspond à celui attendu."
              : `Résultat différent de celui attendu (${expected.rows.length} ligne(s) attendue(s), ${r.result.rows.length} obtenue(s)).`);
          }
          clear(results, check, h("h2", {}, "Résultat"), table(r.result));
        } catch (e) {
          clear(results, h("p", { class: "error", role: "alert" }, e.message));
        }
      });
      submitButton.addEventListener("click", () => submit({ query: currentCode() }));
    }
  } else if (ex.type === "mcq") {
    const name = `mcq-${id}`;
    const inputs = ex.choices.map((c, i) => {
      const cid = c.id ?? `c${c.index ?? i}`;
      return { cid, input: h("input", { type: ex.multiple ? "checkbox" : "radio", name, value: cid, id: `${name}-${cid}` }), text: c.text };
    });
    add(
      root,
      h("fieldset", { class: "mcq" },
        h("legend", {}, ex.multiple ? "Cochez toutes les bonnes réponses" : "Choisissez une réponse"),
        inputs.map(({ cid, input, text }) => h("p", {}, input, " ", h("label", { for: `${name}-${cid}` }, markdownInline(text))))),
      h("p", { class: "actions" }, submitButton),
      verdict,
    );
    submitButton.addEventListener("click", () => {
      const choices = inputs.filter((i) => i.input.checked).map((i) => i.cid);
      if (!choices.length) return clear(verdict, h("p", { class: "error" }, "Choisissez au moins une réponse."));
      submit({ choices });
    });
  } else if (ex.type === "parsons") {
    const parsons = parsonsWidget(ex);
    add(root, parsons.el, h("p", { class: "actions" }, submitButton), verdict);
    submitButton.addEventListener("click", () => submit({ lines: parsons.answer() }));
  }

  add(root, hintsSection(ex));
}

function markdownInline(text) {
  const el = markdown(text);
  el.classList.add("inline");
  return el;
}

export function sameTable(got, expected, orderMatters) {
  if (!got || got.columns.length !== expected.columns.length) return false;
  const norm = (rows) => rows.map((r) => JSON.stringify(r.map((v) => (typeof v === "number" ? Number(v) : v))));
  const a = norm(got.rows);
  const b = norm(expected.rows);
  if (!orderMatters) {
    a.sort();
    b.sort();
  }
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/// Parsons: reorder (drag and drop, or the buttons / Alt+arrows on a focused line) and, when
/// indentation is part of the answer, indent (buttons / Alt+←→).
function parsonsWidget(ex) {
  const withIndent = ex.indent !== false;
  const items = ex.lines.map((l, i) => (typeof l === "string"
    ? { id: `l${i}`, text: l.trim(), indent: 0 }
    : { id: l.id, text: l.text, indent: 0 }));
  const list = h("ol", { class: "parsons", id: "parsons", "aria-label": "Lignes à remettre dans l'ordre" });
  let dragged = null;
  const render = (focusId) => {
    clear(list, items.map((it, i) => {
      const li = h("li", {
        tabindex: 0,
        draggable: "true",
        "data-id": it.id,
        "data-indent": it.indent,
        class: `indent-${it.indent}`,
        "aria-label": `Ligne ${i + 1}, retrait ${it.indent} : ${it.text}`,
        ondragstart: (ev) => { dragged = it.id; ev.dataTransfer.effectAllowed = "move"; ev.dataTransfer.setData("text/plain", it.id); },
        ondragover: (ev) => ev.preventDefault(),
        ondrop: (ev) => {
          ev.preventDefault();
          const from = items.findIndex((x) => x.id === dragged);
          if (from < 0 || from === i) return;
          const [moved] = items.splice(from, 1);
          items.splice(i, 0, moved);
          render(moved.id);
        },
        onkeydown: (ev) => {
          if (!ev.altKey) return;
          const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
          const m = moves[ev.key];
          if (!m) return;
          ev.preventDefault();
          act(i, m[0], m[1]);
        },
      },
      h("code", {}, it.text),
      h("span", { class: "moves" },
        h("button", { type: "button", "aria-label": "Monter", onclick: () => act(i, -1, 0) }, "↑"),
        h("button", { type: "button", "aria-label": "Descendre", onclick: () => act(i, 1, 0) }, "↓"),
        withIndent ? h("button", { type: "button", "aria-label": "Retirer un retrait", onclick: () => act(i, 0, -1) }, "←") : null,
        withIndent ? h("button", { type: "button", "aria-label": "Ajouter un retrait", onclick: () => act(i, 0, 1) }, "→") : null,
      ));
      return li;
    }));
    if (focusId) list.querySelector(`li[data-id="${CSS.escape(focusId)}"]`)?.focus();
  };
  const act = (i, dy, dx) => {
    const it = items[i];
    if (dy) {
      const j = i + dy;
      if (j < 0 || j >= items.length) return;
      [items[i], items[j]] = [items[j], items[i]];
    }
    if (dx && withIndent) it.indent = Math.max(0, Math.min(4, it.indent + dx));
    render(it.id);
  };
  render();
  return {
    el: h("section", {},
      h("p", { class: "help" }, "Glissez les lignes, ou sélectionnez-en une et utilisez Alt + flèches (↑↓ pour déplacer", withIndent ? ", ←→ pour l'indentation" : "", ")."),
      list),
    answer: () => items.map((it) => ({ id: it.id, indent: it.indent })),
  };
}

function hintsSection(ex) {
  if (!ex.hints?.length) return null;
  return h("section", { class: "hints" },
    h("h2", {}, "Indices"),
    ex.hints.map((hint) => {
      const box = h("div", { class: "hint", "data-hint": hint.id });
      const ask = h("button", { type: "button" }, `Voir l'indice ${hint.position} (coûte ${hint.xp_cost} XP)`);
      ask.addEventListener("click", () => {
        clear(box,
          h("span", {}, `Cet indice vous coûtera ${hint.xp_cost} XP. Confirmer ?`), " ",
          h("button", { type: "button", class: "confirm", onclick: async () => {
            try {
              const r = await api("POST", `/hints/${hint.id}/reveal`);
              clear(box, markdown(r.text), h("small", {}, r.already_revealed ? "Déjà consulté." : `−${r.xp_spent} XP`));
            } catch (e) {
              clear(box, h("p", { class: "error" }, e.message), ask);
            }
          } }, "Oui, voir l'indice"), " ",
          h("button", { type: "button", onclick: () => clear(box, ask) }, "Annuler"),
        );
      });
      box.append(ask);
      return box;
    }),
  );
}
