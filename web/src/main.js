// The app's router: one page shell for every route; the path picks the view.
import { api, ApiError } from "./api.js";
import { clear, h, toast } from "./dom.js";
import { StudentSocket } from "./live.js";
import * as student from "./student.js";
import { exercisePage } from "./exercise.js";
import * as teacher from "./teacher.js";

const ctx = { me: null, socket: null, classId: null };

export function currentClass() {
  const classes = ctx.me?.classes || [];
  const saved = Number(localStorage.getItem("nsi.class"));
  return classes.find((c) => c.id === saved) || classes[0] || null;
}

export function setClass(id) {
  localStorage.setItem("nsi.class", String(id));
}

export function go(path) {
  history.pushState(null, "", path);
  route();
}

export async function refreshMe() {
  try {
    ctx.me = await api("GET", "/me");
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) ctx.me = null;
    else throw e;
  }
  return ctx.me;
}

let loggingOut = false;
export async function logout() {
  // The server closes this session's sockets with 4010: not news to us, close them first.
  loggingOut = true;
  ctx.socket?.close();
  ctx.socket = null;
  await api("POST", "/auth/logout").catch(() => {});
  ctx.me = null;
  go("/");
  loggingOut = false;
}

/// A socket was closed with 4010: the session it was opened with has ended. If this browser holds
/// a new session (a password change made here), the page reopens with it; otherwise the user is
/// sent to sign in again — never a reconnect loop (a second 4010 within a minute signs out).
let lastSessionEnd = 0;
export async function sessionEnded() {
  if (loggingOut) return;
  const role = ctx.me?.role;
  ctx.socket?.close();
  ctx.socket = null;
  const again = Date.now() - lastSessionEnd < 60_000;
  lastSessionEnd = Date.now();
  const me = again ? null : await refreshMe().catch(() => null);
  if (me) {
    route();
    return;
  }
  ctx.me = null;
  toast("Votre session est terminée : reconnectez-vous.", "error");
  go(role === "student" ? "/recover/" : "/teacher/login/");
}

function header() {
  const top = document.getElementById("top");
  const me = ctx.me;
  const nav = h("nav", { "aria-label": "Navigation principale" });
  const link = (href, text) => h("a", { href, "data-link": true }, text);
  if (me?.role === "student") {
    const cls = currentClass();
    const xp = h("span", { class: "xp", id: "xp" }, "");
    const pending = h("span", { class: "pending", id: "pending", hidden: true }, "");
    const status = h("span", { class: "conn", id: "conn" }, "");
    nav.append(
      link("/courses/", "Cours"),
      link("/progress/", "Ma progression"),
      link("/leaderboard/", "Classement"),
      link("/classes/", cls ? `${cls.pseudonym} · ${cls.name}` : "Mes classes"),
      xp,
      pending,
      status,
      h("button", { class: "link", onclick: logout }, "Se déconnecter"),
    );
  } else if (me) {
    nav.append(
      link("/teacher/", "Mes classes"),
      h("span", { class: "who" }, me.display_name),
      h("button", { class: "link", onclick: logout }, "Se déconnecter"),
    );
  } else {
    nav.append(
      link("/join/", "Rejoindre une classe"),
      link("/recover/", "Se reconnecter"),
      link("/teacher/login/", "Espace enseignant"),
    );
  }
  clear(top, h("a", { class: "brand", href: "/", "data-link": true }, "nsi-live"), nav);
}

const chrome = { xp: null, pending: 0, status: "connecting" };

/// Paints the XP bar, the "envoi en attente" counter and the connection state into the header.
function paintChrome() {
  const xpEl = document.getElementById("xp");
  if (xpEl && chrome.xp) {
    const { xp, level } = chrome.xp;
    clear(
      xpEl,
      `Niveau ${level} · ${xp} XP `,
      h("progress", { max: 100, value: xp % 100, "aria-label": "XP vers le niveau suivant" }),
    );
  }
  const pending = document.getElementById("pending");
  if (pending) {
    pending.hidden = chrome.pending === 0;
    pending.textContent = chrome.pending ? `envoi en attente (${chrome.pending})` : "";
  }
  const conn = document.getElementById("conn");
  if (conn) {
    conn.textContent = chrome.status === "closed" ? "hors ligne…" : "";
    conn.dataset.status = chrome.status;
  }
}

function studentSocket() {
  if (ctx.me?.role !== "student") {
    ctx.socket?.close();
    return null;
  }
  if (ctx.socket && ctx.socket.userId === ctx.me.id) return ctx.socket;
  ctx.socket?.close();
  const s = new StudentSocket(ctx.me.id, { onSessionEnded: sessionEnded });
  s.on((msg) => {
    if (msg.type === "progress") chrome.xp = { xp: msg.xp, level: msg.level };
    else if (msg.type === "result" && msg.total_xp !== undefined) chrome.xp = { xp: msg.total_xp, level: msg.level };
    else if (msg.type === "_pending") chrome.pending = msg.count;
    else if (msg.type === "_status") chrome.status = msg.status;
    else return;
    paintChrome();
  });
  ctx.socket = s;
  return s;
}

const ROUTES = [
  [/^\/$/, home],
  [/^\/join\/$/, () => student.joinPage(ctx)],
  [/^\/recover\/$/, () => student.recoverPage(ctx)],
  [/^\/classes\/$/, () => needStudent() && student.classesPage(ctx)],
  [/^\/courses\/$/, () => needStudent() && student.coursesPage(ctx)],
  [/^\/courses\/chapter\/([^/]+)\/$/, (m) => needStudent() && student.chapterPage(ctx, decodeURIComponent(m[1]))],
  [/^\/exercises\/(\d+)\/$/, (m) => needStudent() && exercisePage(ctx, Number(m[1]))],
  [/^\/progress\/$/, () => needStudent() && student.progressPage(ctx)],
  [/^\/leaderboard\/$/, () => needStudent() && student.leaderboardPage(ctx)],
  [/^\/teacher\/login\/$/, () => teacher.loginPage(ctx)],
  [/^\/teacher\/signup\/$/, () => teacher.signupPage(ctx)],
  [/^\/teacher\/$/, () => needTeacher() && teacher.classesPage(ctx)],
  [/^\/teacher\/classes\/(\d+)\/$/, (m) => needTeacher() && teacher.classPage(ctx, Number(m[1]))],
  [/^\/teacher\/classes\/(\d+)\/students\/(\d+)\/$/, (m) => needTeacher() && teacher.studentPage(ctx, Number(m[1]), Number(m[2]))],
];

function needStudent() {
  if (ctx.me?.role === "student") return true;
  go(ctx.me ? "/teacher/" : "/join/");
  return false;
}

function needTeacher() {
  if (ctx.me && ctx.me.role !== "student") return true;
  go(ctx.me ? "/courses/" : "/teacher/login/");
  return false;
}

function home() {
  if (ctx.me?.role === "student") return go("/courses/");
  if (ctx.me) return go("/teacher/");
  const main = document.getElementById("main");
  clear(
    main,
    h("h1", {}, "nsi-live"),
    h("p", { class: "lead" }, "Exercices de Python et de SQL, corrigés dans le navigateur, suivis en direct par l'enseignant."),
    h("div", { class: "cards" },
      h("a", { class: "card", href: "/join/", "data-link": true }, h("h2", {}, "Rejoindre une classe"), h("p", {}, "Avec le code donné par votre enseignant.")),
      h("a", { class: "card", href: "/recover/", "data-link": true }, h("h2", {}, "Se reconnecter"), h("p", {}, "Code de classe, pseudonyme et code de récupération.")),
      h("a", { class: "card", href: "/teacher/login/", "data-link": true }, h("h2", {}, "Espace enseignant"), h("p", {}, "Créer des classes et suivre les élèves en direct.")),
    ),
  );
}

export function refreshChrome() {
  header();
  ctx.socket = studentSocket();
  paintChrome();
}

let cleanup = null;
export function onLeave(fn) {
  cleanup = fn;
}

export async function route() {
  if (cleanup) {
    try {
      cleanup();
    } catch {
      /* the page is going anyway */
    }
    cleanup = null;
  }
  header();
  ctx.socket = studentSocket();
  paintChrome();
  const main = document.getElementById("main");
  const path = location.pathname;
  for (const [re, view] of ROUTES) {
    const m = path.match(re);
    if (m) {
      try {
        await view(m);
      } catch (e) {
        clear(main, h("h1", {}, "Erreur"), h("p", { class: "error", role: "alert" }, e.message || String(e)));
      }
      return;
    }
  }
  clear(main, h("h1", {}, "Page introuvable"), h("a", { href: "/", "data-link": true }, "Accueil"));
}

document.addEventListener("click", (ev) => {
  const a = ev.target.closest && ev.target.closest("a[data-link]");
  if (!a || ev.ctrlKey || ev.metaKey || ev.shiftKey || a.target) return;
  ev.preventDefault();
  go(a.getAttribute("href"));
});
window.addEventListener("popstate", route);

(async () => {
  try {
    await refreshMe();
  } catch {
    ctx.me = null;
  }
  await route();
})();

export { ctx };
