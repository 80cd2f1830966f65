// Student pages: join, sign in again, classes, catalogue, chapter, progress, leaderboard.
import { api, get } from "./api.js";
import { clear, formatDate, h } from "./dom.js";
import { markdown } from "./markdown.js";
import { currentClass, go, logout, refreshChrome, refreshMe, setClass } from "./main.js";

const main = () => document.getElementById("main");

export function field(label, input, help) {
  const id = input.id || `f-${Math.random().toString(36).slice(2)}`;
  input.id = id;
  return h("p", { class: "field" }, h("label", { for: id }, label), input, help ? h("small", {}, help) : null);
}

function errorBox() {
  return h("p", { class: "error", role: "alert", hidden: true });
}

function showError(box, e) {
  box.hidden = false;
  box.textContent = e.message || String(e);
}

export function joinPage(ctx) {
  const code = h("input", { name: "join_code", required: true, autocomplete: "off", maxlength: 12, class: "code-input" });
  const pseudo = h("input", { name: "pseudonym", required: true, maxlength: 32, autocomplete: "nickname" });
  const err = errorBox();
  const asCurrent = ctx.me?.role === "student";
  const form = h("form", { class: "form" },
    field("Code de la classe", code, "6 caractères, donnés par votre enseignant"),
    field("Pseudonyme", pseudo, "Pas votre vrai nom : 2 à 32 caractères"),
    err,
    h("button", { type: "submit" }, asCurrent ? "Rejoindre cette classe aussi" : "Rejoindre"),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.hidden = true;
    try {
      const res = await api("POST", "/auth/join", {
        join_code: code.value,
        pseudonym: pseudo.value,
        as_current_user: asCurrent,
      });
      setClass(res.classroom.id);
      await refreshMe();
      if (res.recovery_code) showRecovery(res);
      else go("/courses/");
    } catch (e) {
      showError(err, e);
    }
  });
  clear(main(), h("h1", {}, asCurrent ? "Rejoindre une autre classe" : "Rejoindre une classe"), form);
  code.focus();
}

function showRecovery(res) {
  const codeText = h("strong", { class: "recovery", id: "recovery-code" }, res.recovery_code);
  clear(
    main(),
    h("h1", {}, `Bienvenue, ${res.pseudonym} !`),
    h("p", {}, "Vous avez rejoint la classe ", h("strong", {}, res.classroom.name), "."),
    h("div", { class: "notice" },
      h("p", {}, "Votre code de récupération (affiché une seule fois) :"),
      codeText,
      h("p", {}, h("strong", {}, "Notez-le"), " : avec le code de la classe et votre pseudonyme, il permet de vous reconnecter sur un autre appareil."),
      h("p", { class: "actions" },
        h("button", {
          type: "button",
          onclick: async (ev) => {
            try {
              await navigator.clipboard.writeText(res.recovery_code);
              ev.target.textContent = "Copié !";
            } catch {
              ev.target.textContent = "Copie impossible : recopiez-le à la main";
            }
          },
        }, "Copier"),
        h("button", { type: "button", onclick: () => window.print() }, "Imprimer"),
      ),
    ),
    h("p", {}, h("a", { href: "/courses/", "data-link": true, class: "button" }, "C'est noté, continuer")),
  );
  // The header (and the socket) must show the new session.
  refreshChrome();
}

export function recoverPage() {
  const code = h("input", { name: "join_code", required: true, autocomplete: "off", class: "code-input" });
  const pseudo = h("input", { name: "pseudonym", required: true });
  const rec = h("input", { name: "recovery_code", required: true, autocomplete: "off" });
  const err = errorBox();
  const form = h("form", { class: "form" },
    field("Code de la classe", code),
    field("Pseudonyme", pseudo),
    field("Code de récupération", rec, "10 caractères, par exemple ABCDE-FGH23"),
    err,
    h("button", { type: "submit" }, "Se reconnecter"),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.hidden = true;
    try {
      await api("POST", "/auth/recover", { join_code: code.value, pseudonym: pseudo.value, recovery_code: rec.value });
      await refreshMe();
      go("/courses/");
    } catch (e) {
      showError(err, e);
    }
  });
  clear(main(), h("h1", {}, "Se reconnecter"), form);
}

export function classesPage(ctx) {
  const cur = currentClass();
  const list = h("ul", { class: "list" });
  for (const c of ctx.me.classes || []) {
    list.append(h("li", {},
      h("strong", {}, c.name), ` — ${c.teacher_name} — pseudonyme : `, h("span", {}, c.pseudonym), " ",
      c.id === cur?.id
        ? h("em", {}, "(classe actuelle)")
        : h("button", { type: "button", onclick: () => { setClass(c.id); go("/courses/"); } }, "Choisir cette classe"),
    ));
  }
  clear(main(),
    h("h1", {}, "Mes classes"),
    list,
    h("p", {}, h("a", { href: "/join/", "data-link": true }, "Rejoindre une autre classe")),
    h("p", {}, h("button", { type: "button", onclick: logout }, "Se déconnecter")),
  );
}

function dueDates() {
  const map = new Map();
  for (const a of currentClass()?.assignments || []) map.set(a.chapter_slug, a.due_at);
  return map;
}

export async function coursesPage() {
  const courses = await get("/courses");
  const due = dueDates();
  const assigned = currentClass()?.assignments || [];
  const root = clear(main(), h("h1", {}, "Cours"));
  if (assigned.length) {
    root.append(h("section", { class: "assigned" },
      h("h2", {}, "À faire pour la classe"),
      h("ul", {}, assigned.map((a) => h("li", {},
        h("a", { href: `/courses/chapter/${encodeURIComponent(a.chapter_slug)}/`, "data-link": true }, a.chapter_title),
        a.due_at ? ` — pour le ${formatDate(a.due_at)}` : "",
      ))),
    ));
  }
  for (const c of courses) {
    root.append(h("section", { class: "course" },
      h("h2", {}, c.title, " ", h("small", {}, c.level || "")),
      c.description ? h("p", {}, c.description) : null,
      h("ul", { class: "chapters" }, c.chapters.map((ch) => h("li", {},
        h("a", { href: `/courses/chapter/${encodeURIComponent(ch.slug)}/`, "data-link": true }, ch.title),
        ` (${ch.exercise_count} exercices)`,
        due.has(ch.slug) ? h("span", { class: "due" }, due.get(ch.slug) ? ` à rendre le ${formatDate(due.get(ch.slug))}` : " assigné") : null,
      ))),
    ));
  }
}

export function mark(p) {
  if (!p) return h("span", { class: "mark mark-todo", title: "Pas commencé" }, "○ pas commencé");
  if (p.passed) return h("span", { class: "mark mark-ok", title: "Réussi" }, `✓ réussi (${p.best_score} %)`);
  return h("span", { class: "mark mark-ko", title: "Pas encore réussi" }, `✗ ${p.failed_attempts} échec(s)`);
}

export async function chapterPage(ctx, slug) {
  const [ch, progress] = await Promise.all([get(`/chapters/${encodeURIComponent(slug)}`), get("/me/progress")]);
  const byEx = new Map(progress.exercises.map((e) => [e.exercise_id, e]));
  const due = dueDates().get(slug);
  const blocks = ch.blocks.map((b) => {
    if (b.kind === "code") return h("pre", { class: "code" }, h("code", {}, b.body));
    const box = markdown(b.body);
    if (b.kind === "tip" || b.kind === "warning") box.classList.add(`block-${b.kind}`);
    return box;
  });
  clear(main(),
    h("p", { class: "crumbs" }, h("a", { href: "/courses/", "data-link": true }, ch.course.title)),
    h("h1", {}, ch.title),
    due ? h("p", { class: "due" }, `À rendre le ${formatDate(due)}`) : null,
    h("article", { class: "lesson" }, blocks),
    h("h2", {}, "Exercices"),
    h("ol", { class: "exercises" }, ch.exercises.map((e) => h("li", {},
      h("a", { href: `/exercises/${e.id}/`, "data-link": true }, e.title),
      ` · ${typeLabel(e.type)} · ${e.xp_reward} XP `,
      mark(byEx.get(e.id)),
    ))),
  );
}

export function typeLabel(t) {
  return { python: "Python", sql: "SQL", mcq: "QCM", parsons: "Remise en ordre" }[t] || t;
}

export async function progressPage() {
  const [p, badges] = await Promise.all([get("/me/progress"), get("/me/badges")]);
  clear(main(),
    h("h1", {}, "Ma progression"),
    h("p", { class: "big" }, `Niveau ${p.level} · ${p.xp} XP · ${p.passed_count} exercice(s) réussi(s) · série : ${p.streak.current} jour(s) (record ${p.streak.longest})`),
    h("h2", {}, "Badges"),
    h("ul", { class: "badges" }, badges.badges.map((b) => h("li", { class: b.earned ? "earned" : "locked" }, `${b.earned ? "🏅" : "🔒"} ${b.title} (${b.xp_required} XP)`))),
    h("h2", {}, "Succès"),
    h("ul", { class: "badges" }, badges.achievements.map((a) => h("li", { class: a.earned ? "earned" : "locked" }, `${a.earned ? "⭐" : "🔒"} ${a.title} (+${a.xp_bonus} XP)`))),
    h("h2", {}, "Exercices tentés"),
    p.exercises.length
      ? h("table", { class: "grid" },
          h("thead", {}, h("tr", {}, h("th", {}, "Exercice"), h("th", {}, "Tentatives"), h("th", {}, "Meilleur score"), h("th", {}, "État"))),
          h("tbody", {}, p.exercises.map((e) => h("tr", {},
            h("td", {}, h("a", { href: `/exercises/${e.exercise_id}/`, "data-link": true }, `Exercice ${e.exercise_id}`)),
            h("td", {}, String(e.attempts)),
            h("td", {}, `${e.best_score} %`),
            h("td", {}, mark(e)),
          ))))
      : h("p", {}, "Aucun exercice tenté pour l'instant."),
  );
}

export async function leaderboardPage() {
  const cls = currentClass();
  if (!cls) return go("/join/");
  const lb = await get(`/classrooms/${cls.id}/leaderboard`);
  clear(main(),
    h("h1", {}, `Classement — ${cls.name}`),
    h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, h("th", {}, "Rang"), h("th", {}, "Pseudonyme"), h("th", {}, "XP"), h("th", {}, "Niveau"))),
      h("tbody", {}, lb.entries.map((e) => h("tr", { class: e.student_id === cls.student_id ? "me" : "" },
        h("td", {}, String(e.rank)), h("td", {}, e.pseudonym), h("td", {}, String(e.xp)), h("td", {}, String(e.level)),
      ))),
    ),
  );
}
