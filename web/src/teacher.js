// Teacher pages: sign-up / sign-in, classes, a class (live dashboard, roster, assignments,
// CSV export) and a student's attempts.
import { api, get } from "./api.js";
import { clear, formatDate, formatDateTime, h } from "./dom.js";
import { go, onLeave, refreshMe, sessionEnded } from "./main.js";
import { field } from "./student.js";
import { Dashboard } from "./dashboard.js";

const main = () => document.getElementById("main");

function authForm(title, fields, submitText, send, extra) {
  const err = h("p", { class: "error", role: "alert", hidden: true });
  const form = h("form", { class: "form" }, fields.map(([label, input]) => field(label, input)), err, h("button", { type: "submit" }, submitText));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.hidden = true;
    try {
      await send();
      await refreshMe();
      go("/teacher/");
    } catch (e) {
      err.hidden = false;
      err.textContent = e.message;
    }
  });
  clear(main(), h("h1", {}, title), form, extra);
}

export function loginPage() {
  const login = h("input", { name: "login", required: true, autocomplete: "username" });
  const pw = h("input", { name: "password", type: "password", required: true, autocomplete: "current-password" });
  authForm("Espace enseignant", [["Identifiant", login], ["Mot de passe", pw]], "Se connecter",
    () => api("POST", "/auth/login", { login: login.value, password: pw.value }),
    h("p", {}, "Pas encore de compte ? ", h("a", { href: "/teacher/signup/", "data-link": true }, "Créer un compte enseignant")));
}

export function signupPage() {
  const login = h("input", { name: "login", required: true, autocomplete: "username" });
  const name = h("input", { name: "display_name", required: true, autocomplete: "name" });
  const pw = h("input", { name: "password", type: "password", required: true, minlength: 8, autocomplete: "new-password" });
  const invite = h("input", { name: "invite_code", autocomplete: "off" });
  authForm("Créer un compte enseignant",
    [["Identifiant", login], ["Nom affiché aux élèves", name], ["Mot de passe (8 caractères au moins)", pw], ["Code d'invitation (si demandé)", invite]],
    "Créer le compte",
    () => api("POST", "/auth/signup", { login: login.value, display_name: name.value, password: pw.value, ...(invite.value ? { invite_code: invite.value } : {}) }),
    h("p", {}, h("a", { href: "/teacher/login/", "data-link": true }, "J'ai déjà un compte")));
}

export async function classesPage() {
  const classes = await get("/classrooms");
  const name = h("input", { name: "name", required: true, maxlength: 80 });
  const school = h("input", { name: "school", maxlength: 120 });
  const err = h("p", { class: "error", role: "alert", hidden: true });
  const created = h("div", { id: "created" });
  const form = h("form", { class: "form inline" }, field("Nom de la classe", name), field("Établissement", school), err, h("button", { type: "submit" }, "Créer la classe"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.hidden = true;
    try {
      const c = await api("POST", "/classrooms", { name: name.value, ...(school.value ? { school: school.value } : {}) });
      clear(created, h("div", { class: "joincode-box" },
        h("p", {}, "Classe créée. Code à donner aux élèves :"),
        h("p", { class: "joincode", id: "joincode" }, c.join_code),
        h("p", {}, "Ils le saisissent sur ", h("strong", {}, `${location.host}/join/`)),
        h("a", { href: `/teacher/classes/${c.id}/`, "data-link": true, class: "button" }, "Ouvrir le tableau de bord")));
      list.prepend(classItem(c));
    } catch (e) {
      err.hidden = false;
      err.textContent = e.message;
    }
  });
  const list = h("ul", { class: "list" }, classes.map(classItem));
  clear(main(), h("h1", {}, "Mes classes"), list, classes.length ? null : h("p", {}, "Aucune classe pour l'instant."), h("h2", {}, "Nouvelle classe"), form, created);
}

function classItem(c) {
  return h("li", {},
    h("a", { href: `/teacher/classes/${c.id}/`, "data-link": true }, c.name),
    ` — ${c.school || ""} · ${c.student_count} élève(s) · code `, h("code", {}, c.join_code),
    c.archived_at ? " (archivée)" : "");
}

export async function classPage(ctx, id) {
  const cls = await get(`/classrooms/${id}`);
  const dashBox = h("section", { id: "dashboard" });
  const rosterBox = h("section", { id: "roster" });
  const assignBox = h("section", { id: "assignments" });
  clear(main(),
    h("p", { class: "crumbs" }, h("a", { href: "/teacher/", "data-link": true }, "Mes classes")),
    h("h1", {}, cls.name, " ", h("small", {}, "code "), h("span", { class: "joincode small", title: "Code à donner aux élèves" }, cls.join_code)),
    h("p", { class: "actions" },
      h("a", { href: `/api/v1/classrooms/${id}/export.csv`, download: "", class: "button", id: "export" }, "Exporter en CSV"), " ",
      h("button", { type: "button", onclick: async () => {
        const big = h("div", { class: "projector", tabindex: 0, onclick: () => big.remove(), onkeydown: () => big.remove() },
          h("p", {}, "Code de la classe"), h("p", { class: "joincode huge" }, cls.join_code), h("p", {}, `${location.host}/join/`));
        document.body.append(big);
        big.focus();
      } }, "Afficher le code en grand")),
    dashBox, assignBox, rosterBox,
  );
  const assignments = await get(`/classrooms/${id}/assignments`);
  const dash = new Dashboard(dashBox, id, assignments, { onSessionEnded: sessionEnded });
  onLeave(() => dash.close());
  await Promise.all([roster(rosterBox, id), assignmentsEditor(assignBox, id, assignments, () => dash.setAssignments())]);
  dash.start();
}

async function roster(box, id) {
  const students = await get(`/classrooms/${id}/students`);
  const out = h("div", { role: "status", "aria-live": "polite" });
  clear(box, h("h2", {}, `Élèves (${students.length})`), out,
    h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, h("th", {}, "Pseudonyme"), h("th", {}, "Arrivée"), h("th", {}, "Actions"))),
      h("tbody", {}, students.map((s) => h("tr", {},
        h("td", {}, h("a", { href: `/teacher/classes/${id}/students/${s.student_id}/`, "data-link": true }, s.pseudonym)),
        h("td", {}, formatDate(s.joined_at)),
        h("td", {},
          h("button", { type: "button", onclick: async () => {
            try {
              const r = await api("POST", `/classrooms/${id}/students/${s.student_id}/recovery-code`);
              clear(out, h("p", { class: "notice" }, "Nouveau code de récupération pour ", h("strong", {}, s.pseudonym), " : ", h("strong", { class: "recovery" }, r.recovery_code)));
            } catch (e) { clear(out, h("p", { class: "error" }, e.message)); }
          } }, "Nouveau code de récupération"), " ",
          h("button", { type: "button", class: "danger", onclick: async (ev) => {
            const btn = ev.target;
            if (btn.dataset.confirm !== "1") { btn.dataset.confirm = "1"; btn.textContent = `Confirmer le retrait de ${s.pseudonym}`; return; }
            try {
              await api("DELETE", `/classrooms/${id}/students/${s.student_id}`);
              await roster(box, id);
            } catch (e) { clear(out, h("p", { class: "error" }, e.message)); }
          } }, "Retirer"),
        ),
      ))),
    ));
}

async function assignmentsEditor(box, id, assignments, changed) {
  const courses = await get("/courses");
  const assigned = new Map(assignments.map((a) => [a.chapter_slug, a]));
  const rows = [];
  for (const c of courses) {
    for (const ch of c.chapters) {
      const a = assigned.get(ch.slug);
      const date = h("input", { type: "date", "aria-label": `Date limite pour ${ch.title}`, value: a?.due_at ? new Date(a.due_at).toISOString().slice(0, 10) : "" });
      const check = h("input", { type: "checkbox", checked: !!a, "aria-label": `Assigner ${ch.title}` });
      const save = async () => {
        try {
          if (check.checked) {
            const due = date.value ? Date.parse(`${date.value}T23:59:00`) : null;
            await api("PUT", `/classrooms/${id}/assignments/${encodeURIComponent(ch.slug)}`, { due_at: due });
          } else {
            await api("DELETE", `/classrooms/${id}/assignments/${encodeURIComponent(ch.slug)}`).catch(() => {});
          }
          changed();
        } catch (e) {
          alertBox.textContent = e.message;
        }
      };
      check.addEventListener("change", save);
      date.addEventListener("change", () => { if (!check.checked) check.checked = true; save(); });
      rows.push(h("tr", { "data-chapter": ch.slug }, h("td", {}, check), h("td", {}, `${c.title} — ${ch.title}`), h("td", {}, date)));
    }
  }
  const alertBox = h("p", { class: "error", role: "alert" });
  clear(box, h("details", {}, h("summary", {}, "Chapitres assignés et dates limites"), alertBox,
    h("table", { class: "grid" }, h("thead", {}, h("tr", {}, h("th", {}, "Assigné"), h("th", {}, "Chapitre"), h("th", {}, "À rendre le"))), h("tbody", {}, rows))));
}

export async function studentPage(ctx, classId, studentId) {
  const [students, attempts] = await Promise.all([
    get(`/classrooms/${classId}/students`),
    get(`/classrooms/${classId}/students/${studentId}/attempts`),
  ]);
  const s = students.find((x) => x.student_id === studentId);
  const byEx = new Map();
  for (const a of attempts.attempts) {
    if (!byEx.has(a.exercise_id)) byEx.set(a.exercise_id, { title: a.exercise_title, list: [] });
    byEx.get(a.exercise_id).list.push(a);
  }
  const wanted = Number(new URLSearchParams(location.search).get("exercise")) || null;
  clear(main(),
    h("p", { class: "crumbs" }, h("a", { href: `/teacher/classes/${classId}/`, "data-link": true }, "Tableau de bord")),
    h("h1", {}, `Tentatives de ${s ? s.pseudonym : "l'élève"}`),
    byEx.size ? null : h("p", {}, "Aucune tentative."),
    [...byEx.entries()].map(([exId, { title, list }]) => h("details", { open: !wanted || wanted === exId, id: `ex-${exId}` },
      h("summary", {}, `${title} — ${list.length} tentative(s), meilleur score ${Math.max(...list.map((a) => a.score))} %`),
      list.map((a) => h("div", { class: `attempt ${a.passed ? "ok" : "ko"}` },
        h("p", {}, `${formatDateTime(a.created_at)} · ${a.passed ? "réussi" : "échoué"} · ${a.score} %`,
          a.checked_by ? ` · vérifié par ${a.checked_by === "server" ? "le serveur" : "le navigateur"}` : ""),
        a.code ? h("pre", { class: "code" }, h("code", {}, a.code)) : null,
      )),
    )),
  );
}
