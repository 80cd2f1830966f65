// Runs code in the run worker, with a time limit: past it the worker is killed (the only way to
// stop an infinite loop) and a new one is started, so the page stays usable.
/* global WORKER_URL */
export const TIME_LIMIT_MS = 5000;

export class Runner {
  constructor(onProgress) {
    this.onProgress = onProgress;
    this.seq = 0;
    this.pending = new Map();
    this.pythonReady = false;
    this.spawn();
  }

  spawn() {
    this.worker = new Worker(WORKER_URL, { type: "module", name: "nsi-run" });
    this.worker.onmessage = (ev) => this.onMessage(ev.data);
    this.worker.onerror = (ev) => {
      ev.preventDefault?.();
      for (const p of this.pending.values()) p.reject(new Error("Le moteur d'exécution a planté."));
      this.pending.clear();
    };
  }

  onMessage(msg) {
    if (msg.type === "progress") {
      if (msg.stage === "ready") this.pythonReady = true;
      this.onProgress?.(msg);
      return;
    }
    const p = this.pending.get(msg.id);
    if (!p) return;
    if (msg.type === "started") {
      // The time limit counts the run itself, not Python's download.
      p.timer = setTimeout(() => this.kill(msg.id), TIME_LIMIT_MS);
    } else if (msg.type === "done") {
      clearTimeout(p.timer);
      this.pending.delete(msg.id);
      p.resolve(msg.result);
    } else if (msg.type === "failed") {
      clearTimeout(p.timer);
      this.pending.delete(msg.id);
      p.reject(new Error(msg.error));
    }
  }

  kill(id) {
    const p = this.pending.get(id);
    this.worker.terminate();
    this.pending.delete(id);
    for (const other of this.pending.values()) other.reject(new Error("Exécution interrompue."));
    this.pending.clear();
    this.pythonReady = false;
    this.spawn();
    if (this.wantPython) this.loadPython();
    const err = new Error(
      `Temps limite dépassé (${TIME_LIMIT_MS / 1000} s) : l'exécution a été arrêtée. ` +
        "Une boucle infinie ? Vérifiez la condition de vos boucles while.",
    );
    err.timeout = true;
    p?.reject(err);
  }

  call(msg) {
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, timer: null });
      this.worker.postMessage({ ...msg, id });
    });
  }

  loadPython() {
    this.wantPython = true;
    this.worker.postMessage({ type: "load_python" });
  }

  runPython(code, tests) {
    return this.call({ type: "run_python", code, tests });
  }

  runSql(schema, data, query) {
    return this.call({ type: "run_sql", schema, data, query });
  }

  terminate() {
    this.worker.terminate();
  }
}
