// The run worker: Python through Pyodide (loaded once per worker) and SQL through sql.js.
// The page kills and recreates this worker when a run exceeds its time limit (an infinite
// loop cannot be interrupted from inside).
import initSqlJs from "sql.js";

/* global PYODIDE_BASE, SQL_WASM_URL */
let pyodide = null;
let pyodideLoading = null;
let sqlPromise = null;

const post = (msg) => self.postMessage(msg);

// The test harness: the student's code then one test, in a fresh namespace per test, with
// stdout and stderr captured.
const HARNESS = `
import sys, io, json, traceback

def _nsi_format_error(exc):
    tb = traceback.extract_tb(exc.__traceback__)
    where = ""
    for frame in tb:
        if frame.filename in ("<votre code>", "<test>"):
            where = f" ({'votre code' if frame.filename == '<votre code>' else 'test'}, ligne {frame.lineno})"
    if isinstance(exc, AssertionError):
        msg = str(exc) or "assertion fausse"
        return f"Échec : {msg}{where}"
    return f"{type(exc).__name__} : {exc}{where}"

def _nsi_run(code, tests_json):
    tests = json.loads(tests_json)
    results = []
    try:
        compiled = compile(code, "<votre code>", "exec")
    except SyntaxError as e:
        msg = f"Erreur de syntaxe ligne {e.lineno} : {e.msg}"
        return json.dumps([{"name": t["name"], "passed": False, "output": msg} for t in tests])
    for t in tests:
        out = io.StringIO()
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = out
        passed = False
        try:
            ns = {"__name__": "__main__"}
            exec(compiled, ns)
            exec(compile(t["code"], "<test>", "exec"), ns)
            passed = True
        except BaseException as e:
            print(_nsi_format_error(e))
        finally:
            sys.stdout, sys.stderr = saved
        results.append({"name": t["name"], "passed": passed, "output": out.getvalue()})
    return json.dumps(results)

def _nsi_exec(code):
    out = io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = out
    ok = True
    try:
        exec(compile(code, "<votre code>", "exec"), {"__name__": "__main__"})
    except BaseException as e:
        ok = False
        print(_nsi_format_error(e))
    finally:
        sys.stdout, sys.stderr = saved
    return json.dumps({"ok": ok, "output": out.getvalue()})
`;

async function loadPython() {
  if (pyodide) return pyodide;
  if (!pyodideLoading) {
    pyodideLoading = (async () => {
      const started = performance.now();
      post({ type: "progress", stage: "download", text: "Téléchargement de Python…" });
      const { loadPyodide } = await import(PYODIDE_BASE + "pyodide.mjs");
      post({ type: "progress", stage: "init", text: "Démarrage de Python…" });
      const py = await loadPyodide({ indexURL: PYODIDE_BASE, fullStdLib: false });
      py.runPython(HARNESS);
      pyodide = py;
      post({ type: "progress", stage: "ready", text: "Python prêt", ms: performance.now() - started });
      return py;
    })();
  }
  return pyodideLoading;
}

function loadSql() {
  if (!sqlPromise) sqlPromise = initSqlJs({ locateFile: () => SQL_WASM_URL });
  return sqlPromise;
}

function tableOf(res) {
  if (!res) return { columns: [], rows: [] };
  return { columns: res.columns, rows: res.values };
}

async function runSql({ schema, data, query }) {
  const SQL = await loadSql();
  const db = new SQL.Database();
  try {
    db.exec(schema || "");
    db.exec(data || "");
    const names = db.exec("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name");
    const tables = (names[0]?.values || []).map(([name]) => {
      const quoted = '"' + String(name).replaceAll('"', '""') + '"';
      const content = db.exec(`SELECT * FROM ${quoted} LIMIT 50`);
      const cols = db.exec(`PRAGMA table_info(${quoted})`)[0]?.values.map((r) => r[1]) || [];
      return { name, ...(content[0] ? tableOf(content[0]) : { columns: cols, rows: [] }) };
    });
    if (!query) return { tables };
    try {
      const results = db.exec(query);
      const last = results[results.length - 1];
      return { tables, result: tableOf(last) };
    } catch (e) {
      return { tables, error: String(e.message || e) };
    }
  } finally {
    db.close();
  }
}

self.onmessage = async (ev) => {
  const msg = ev.data;
  try {
    if (msg.type === "load_python") {
      await loadPython();
    } else if (msg.type === "run_python") {
      const py = await loadPython();
      post({ type: "started", id: msg.id });
      const fn = py.globals.get(msg.tests ? "_nsi_run" : "_nsi_exec");
      const raw = msg.tests ? fn(msg.code, JSON.stringify(msg.tests)) : fn(msg.code);
      fn.destroy();
      post({ type: "done", id: msg.id, result: JSON.parse(raw) });
    } else if (msg.type === "run_sql") {
      await loadSql();
      post({ type: "started", id: msg.id });
      post({ type: "done", id: msg.id, result: await runSql(msg) });
    }
  } catch (e) {
    post({ type: "failed", id: msg.id, error: String((e && e.message) || e) });
  }
};
