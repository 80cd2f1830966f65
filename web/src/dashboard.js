// The live class dashboard on /ws/classrooms/{id}: a snapshot, then numbered deltas applied
// cell by cell; after a cut it resumes from (epoch, offset) and says "reconnexion…".
import { get } from "./api.js";
import { backoff, clear, formatDateTime, h } from "./dom.js";

const FEED_MAX = 50;

// 4010: the teacher's session ended (logout elsewhere, a password change): sign in again.
const SESSION_ENDED = 4010;

export class Dashboard {
  constructor(box, classId, assignments, { onSessionEnded = () => {} } = {}) {
    this.onSessionEnded = onSessionEnded;
    this.box = box;
    this.classId = classId;
    this.assignments = assignments;
    this.columns = []; // [{ id, title }]
    this.students = new Map();
    this.grid = new Map(); // "sid:eid" -> progress
    this.cells = new Map(); // "sid:eid" -> td
    this.rows = new Map(); // sid -> tr
    this.epoch = null;
    this.offset = null;
    this.ws = null;
    this.attempt = 0;
    this.closed = false;
    this.titles = new Map();
    this.banner = h("p", { class: "reconnecting", id: "reconnecting", role: "status", hidden: true }, "reconnexion…");
    this.table = h("table", { class: "grid dashboard", id: "grid" });
    this.feed = h("ol", { class: "feed", id: "feed", "aria-live": "polite" });
    clear(box,
      h("h2", {}, "Tableau de bord en direct"),
      this.banner,
      h("p", { class: "legend" },
        h("span", { class: "cell-none" }, "· pas commencé"), " ",
        h("span", { class: "cell-running" }, "… tests en cours"), " ",
        h("span", { class: "cell-fail" }, "✗ n échecs"), " ",
        h("span", { class: "cell-pass" }, "✓ réussi (score)"), " ",
        h("span", { class: "stuck" }, "bloqué")),
      h("div", { class: "scroll" }, this.table),
      h("h3", {}, "Événements"),
      this.feed,
    );
  }

  async setAssignments() {
    this.assignments = await get(`/classrooms/${this.classId}/assignments`);
    await this.loadColumns();
    this.render();
  }

  async loadColumns() {
    const cols = [];
    for (const a of this.assignments) {
      const ch = await get(`/chapters/${encodeURIComponent(a.chapter_slug)}`);
      for (const e of ch.exercises) {
        cols.push({ id: e.id, title: e.title });
        this.titles.set(e.id, e.title);
      }
    }
    this.columns = cols;
  }

  async start() {
    await this.loadColumns();
    this.connect();
  }

  connect() {
    if (this.closed) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const resume = this.epoch !== null ? `&epoch=${this.epoch}&offset=${this.offset}` : "";
    const ws = new WebSocket(`${proto}//${location.host}/ws/classrooms/${this.classId}?v=1${resume}`);
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.banner.hidden = true;
    };
    ws.onmessage = (ev) => {
      try {
        this.handle(JSON.parse(ev.data));
      } catch (e) {
        console.error(e);
      }
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws || this.closed) return;
      this.ws = null;
      if (ev.code === SESSION_ENDED) {
        // Not a reconnect loop: the session is gone, the page decides where to go.
        this.closed = true;
        this.onSessionEnded();
        return;
      }
      this.banner.hidden = false;
      setTimeout(() => this.connect(), backoff(this.attempt++));
    };
  }

  close() {
    this.closed = true;
    this.ws?.close();
  }

  handle(msg) {
    if (msg.type === "snapshot") {
      this.epoch = msg.epoch;
      this.offset = msg.offset;
      this.students = new Map(msg.students.map((s) => [s.student_id, { ...s, stuck_on: new Set(s.stuck_on || []) }]));
      this.grid = new Map(msg.grid.map((c) => [`${c.student_id}:${c.exercise_id}`, c]));
      this.ensureColumns([...this.grid.values()].map((c) => c.exercise_id)).then(() => this.render());
      this.render();
    } else if (msg.type === "resumed") {
      this.epoch = msg.epoch;
    } else if (msg.type === "delta") {
      if (msg.epoch !== this.epoch || msg.offset <= this.offset) return;
      this.offset = msg.offset;
      this.applyDelta(msg);
    }
  }

  async ensureColumns(ids) {
    const missing = [...new Set(ids)].filter((id) => !this.columns.some((c) => c.id === id));
    if (!missing.length) return;
    for (const id of missing) {
      if (!this.titles.has(id)) {
        try {
          this.titles.set(id, (await get(`/exercises/${id}`)).title);
        } catch {
          this.titles.set(id, `Exercice ${id}`);
        }
      }
      if (!this.columns.some((c) => c.id === id)) this.columns.push({ id, title: this.titles.get(id) });
    }
  }

  name(sid) {
    return this.students.get(sid)?.pseudonym ?? `élève ${sid}`;
  }

  event(text) {
    this.feed.prepend(h("li", {}, h("time", {}, formatDateTime(Date.now())), " ", text));
    while (this.feed.childElementCount > FEED_MAX) this.feed.lastChild.remove();
  }

  applyDelta(d) {
    const s = this.students.get(d.student_id);
    switch (d.kind) {
      case "attempt_recorded": {
        this.grid.set(`${d.student_id}:${d.exercise_id}`, { student_id: d.student_id, exercise_id: d.exercise_id, ...d.progress, checked_by: d.checked_by });
        if (s) {
          s.running_tests = false;
          s.xp = d.xp ?? s.xp;
          if (d.passed) s.stuck_on.delete(d.exercise_id);
        }
        const known = this.columns.some((c) => c.id === d.exercise_id);
        if (!known) this.ensureColumns([d.exercise_id]).then(() => this.render());
        else {
          this.updateCell(d.student_id, d.exercise_id);
          this.updateRow(d.student_id);
          this.updateRates();
        }
        this.event(`${this.name(d.student_id)} : ${d.passed ? "✓ réussi" : "✗ échoué"} « ${this.titles.get(d.exercise_id) || d.exercise_id} » (${d.score} %)`);
        break;
      }
      case "presence_changed":
        if (s) {
          const prev = s.current_exercise_id;
          s.online = d.online;
          s.running_tests = d.running_tests;
          s.current_exercise_id = d.exercise_id ?? s.current_exercise_id;
          this.updateRow(d.student_id);
          if (prev) this.updateCell(d.student_id, prev);
          if (d.exercise_id) this.updateCell(d.student_id, d.exercise_id);
        }
        break;
      case "student_stuck":
        if (s) {
          s.stuck_on.add(d.exercise_id);
          this.updateCell(d.student_id, d.exercise_id);
          this.updateRow(d.student_id);
        }
        this.event(`${this.name(d.student_id)} semble bloqué·e sur « ${this.titles.get(d.exercise_id) || d.exercise_id} »`);
        break;
      case "xp_changed":
        if (s) {
          s.xp = d.xp;
          this.updateRow(d.student_id);
        }
        break;
      case "badge_awarded":
        this.event(`${this.name(d.student_id)} obtient le badge ${d.badge}`);
        break;
      case "achievement_unlocked":
        this.event(`${this.name(d.student_id)} débloque ${d.achievement}`);
        break;
      case "student_joined":
        this.students.set(d.student_id, { student_id: d.student_id, pseudonym: d.pseudonym, xp: d.xp, online: false, stuck_on: new Set(), joined_at: d.joined_at });
        this.event(`${d.pseudonym} rejoint la classe`);
        this.render();
        break;
      case "student_left":
        this.event(`${this.name(d.student_id)} quitte la classe`);
        this.students.delete(d.student_id);
        this.render();
        break;
    }
  }

  render() {
    this.cells.clear();
    this.rows.clear();
    const head = h("tr", {}, h("th", { scope: "col" }, "Élève"), this.columns.map((c) => h("th", { scope: "col", title: c.title, "data-exercise": c.id }, h("span", {}, c.title))));
    const body = h("tbody");
    const students = [...this.students.values()].sort((a, b) => a.pseudonym.localeCompare(b.pseudonym, "fr"));
    for (const s of students) {
      const th = h("th", { scope: "row" });
      const tr = h("tr", { "data-student": s.student_id }, th);
      this.rows.set(s.student_id, tr);
      for (const c of this.columns) {
        const td = h("td", { "data-student": s.student_id, "data-exercise": c.id });
        this.cells.set(`${s.student_id}:${c.id}`, td);
        tr.append(td);
        this.fillCell(td, s, c.id);
      }
      this.fillRow(tr, s);
      body.append(tr);
    }
    this.rates = h("tr", { class: "rates" }, h("th", { scope: "row" }, "Réussite"), this.columns.map((c) => h("td", { "data-rate": c.id })));
    clear(this.table, h("thead", {}, head), body, h("tfoot", {}, this.rates));
    this.updateRates();
  }

  fillRow(tr, s) {
    const th = tr.firstChild;
    const current = s.current_exercise_id ? this.titles.get(s.current_exercise_id) || `exercice ${s.current_exercise_id}` : null;
    clear(th,
      h("span", { class: `dot ${s.online ? "online" : "offline"}`, title: s.online ? "en ligne" : "hors ligne", "aria-label": s.online ? "en ligne" : "hors ligne" }),
      " ",
      h("a", { href: `/teacher/classes/${this.classId}/students/${s.student_id}/`, "data-link": true, class: "pseudo" }, s.pseudonym),
      h("small", {}, ` ${s.xp ?? 0} XP`),
      s.online && current ? h("small", { class: "current" }, ` · sur « ${current} »`) : null,
      s.stuck_on.size ? h("span", { class: "stuck" }, " bloqué") : null,
    );
  }

  updateRow(sid) {
    const tr = this.rows.get(sid);
    const s = this.students.get(sid);
    if (tr && s) this.fillRow(tr, s);
  }

  fillCell(td, s, eid) {
    const c = this.grid.get(`${s.student_id}:${eid}`);
    const running = s.online && s.running_tests && s.current_exercise_id === eid;
    let state = "none";
    let text = "·";
    if (running) {
      state = "running";
      text = "…";
    } else if (c?.passed) {
      state = "pass";
      text = `✓ ${c.best_score}`;
    } else if (c && c.attempts > 0) {
      state = "fail";
      text = `✗ ${c.failed_attempts}`;
    }
    td.className = `cell-${state}${s.stuck_on.has(eid) ? " stuck" : ""}`;
    td.dataset.state = state;
    const how = c?.checked_by ? ` (vérifié par ${c.checked_by === "server" ? "le serveur" : "le navigateur"})` : "";
    td.title = c ? `${c.attempts} tentative(s), meilleur score ${c.best_score} %${how}` : "pas commencé";
    clear(td, h("a", { href: `/teacher/classes/${this.classId}/students/${s.student_id}/?exercise=${eid}`, "data-link": true }, text));
  }

  updateCell(sid, eid) {
    const td = this.cells.get(`${sid}:${eid}`);
    const s = this.students.get(sid);
    if (td && s) this.fillCell(td, s, eid);
  }

  updateRates() {
    if (!this.rates) return;
    for (const td of this.rates.querySelectorAll("td[data-rate]")) {
      const eid = Number(td.dataset.rate);
      let tried = 0;
      let passed = 0;
      for (const sid of this.students.keys()) {
        const c = this.grid.get(`${sid}:${eid}`);
        if (c && c.attempts > 0) tried++;
        if (c?.passed) passed++;
      }
      td.textContent = tried ? `${Math.round((100 * passed) / tried)} % (${passed}/${tried})` : "—";
    }
  }
}
