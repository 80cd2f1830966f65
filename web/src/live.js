// The student's socket (/ws): progress, results, badges and achievements as toasts (also for
// submissions made in another tab), and the outbox's resend on every (re)connection.
import { backoff, toast } from "./dom.js";
import * as outbox from "./outbox.js";

const RETRYABLE = new Set(["rate_limited", "unavailable", "internal"]);

// 4010: the session this socket was opened with has ended (logout elsewhere, a new recovery
// code, the account closed): reconnecting would be refused, the student must sign in again.
export const SESSION_ENDED = 4010;

export class StudentSocket {
  constructor(userId, { onSessionEnded = () => {} } = {}) {
    this.userId = userId;
    this.onSessionEnded = onSessionEnded;
    this.ws = null;
    this.attempt = 0;
    this.listeners = new Set();
    this.waiting = new Map(); // attempt_id -> callbacks of the page that submitted it
    this.seen = new Set(); // attempt_id:code of toasts already shown
    this.progress = null;
    this.closed = false;
    this.retryTimer = null;
    window.addEventListener("online", () => this.reconnectNow());
    window.addEventListener("offline", () => this.ws?.close());
    this.connect();
    this.refreshPending();
  }

  on(fn) {
    this.listeners.add(fn);
    if (this.progress) fn({ type: "progress", ...this.progress });
    return () => this.listeners.delete(fn);
  }

  emit(msg) {
    for (const fn of this.listeners) fn(msg);
  }

  get open() {
    return this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  connect() {
    if (this.closed) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/ws?v=1`);
    this.ws = ws;
    this.emit({ type: "_status", status: "connecting" });
    ws.sent = new Set();
    ws.onopen = () => {
      this.attempt = 0;
      this.emit({ type: "_status", status: "open" });
      this.flush();
    };
    ws.onmessage = (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      this.handle(msg);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      // 4000/4001: the server could not read a message of ours. An outbox entry that keeps
      // doing that would be resent forever: after three such closes it is dropped and said.
      if (ev.code === 4000 || ev.code === 4001) this.poisoned(ws.sent);
      this.emit({ type: "_status", status: "closed" });
      if (ev.code === SESSION_ENDED && !this.closed) {
        this.closed = true;
        this.onSessionEnded();
        return;
      }
      if (this.closed || ev.code === 4009) {
        if (ev.code === 4009) toast("Trop d'onglets ouverts : fermez-en un puis rechargez.", "error");
        return;
      }
      this.retryTimer = setTimeout(() => this.connect(), backoff(this.attempt++));
    };
  }

  reconnectNow() {
    clearTimeout(this.retryTimer);
    if (!this.ws) this.connect();
  }

  send(msg) {
    if (this.open) {
      if (msg.attempt_id) this.ws.sent.add(msg.attempt_id);
      this.ws.send(JSON.stringify(msg));
      return true;
    }
    return false;
  }

  async handle(msg) {
    switch (msg.type) {
      case "progress":
        this.progress = msg;
        break;
      case "result":
        await this.settle(msg.attempt_id, msg, null);
        break;
      case "error":
        if (msg.attempt_id) {
          if (RETRYABLE.has(msg.code)) {
            this.waiting.get(msg.attempt_id)?.pending?.(msg);
            const delay = (msg.retry_after_secs || 5) * 1000;
            setTimeout(() => this.flush(), Math.min(delay, 60000));
          } else {
            await this.settle(msg.attempt_id, null, msg);
          }
        }
        break;
      case "badge_awarded":
        this.once(msg, `Badge obtenu : ${msg.title || msg.badge}`);
        break;
      case "achievement_unlocked":
        this.once(msg, `Succès débloqué : ${msg.title || msg.achievement} (+${msg.xp_bonus} XP)`);
        break;
      case "level_up":
        this.once(msg, `Niveau ${msg.level} atteint !`);
        break;
      case "welcome":
        if (msg.protocol_version !== 1) {
          toast("Une nouvelle version est disponible : rechargez la page.", "error");
          this.closed = true;
          this.ws?.close();
        }
        break;
    }
    this.emit(msg);
  }

  once(msg, text) {
    const key = `${msg.attempt_id}:${msg.type}:${msg.badge || msg.achievement || msg.level}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    toast(text, "success");
  }

  async settle(attemptId, result, error) {
    if (!attemptId) return;
    await outbox.remove(attemptId).catch(() => {});
    const w = this.waiting.get(attemptId);
    this.waiting.delete(attemptId);
    if (w) (result ? w.resolve(result) : w.reject(error));
    if (result && result.xp_awarded > 0 && !w) toast(`+${result.xp_awarded} XP`, "success");
    this.refreshPending();
  }

  /// Queues a submission and sends it when the socket is open; callbacks get the answer.
  async submit(exerciseId, body, callbacks) {
    const message = { type: "submit", exercise_id: exerciseId, ...body };
    this.waiting.set(body.attempt_id, callbacks);
    await outbox.put({
      attempt_id: body.attempt_id,
      user_id: this.userId,
      exercise_id: exerciseId,
      message,
      queued_at: Date.now(),
    });
    this.refreshPending();
    if (!navigator.onLine || !this.send(message)) callbacks.pending?.();
  }

  async poisoned(sentIds) {
    const items = await outbox.all().catch(() => []);
    for (const item of items) {
      if (!sentIds.has(item.attempt_id)) continue;
      item.refused = (item.refused || 0) + 1;
      if (item.refused >= 3) {
        await this.settle(item.attempt_id, null, {
          code: "refused",
          message: "Le serveur n'a pas pu lire cette réponse : rechargez la page (nouvelle version ?).",
        });
      } else {
        await outbox.put(item).catch(() => {});
      }
    }
  }

  async flush() {
    if (!this.open) return;
    const items = await outbox.all().catch(() => []);
    for (const item of items) {
      if (item.user_id === this.userId) this.send(item.message);
    }
  }

  async refreshPending() {
    const items = await outbox.all().catch(() => []);
    const n = items.filter((i) => i.user_id === this.userId).length;
    this.emit({ type: "_pending", count: n });
  }

  close() {
    this.closed = true;
    this.ws?.close();
  }
}
