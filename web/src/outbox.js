// Submissions not yet acknowledged by the server, kept in IndexedDB so that a closed tab, a
// network cut or a server restart loses nothing: each is resent with its attempt_id (the server
// stores an attempt once) until an answer comes back.
const DB = "nsi-live";
const STORE = "outbox";

function open() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: "attempt_id" });
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function tx(mode, fn) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const t = db.transaction(STORE, mode);
    const out = fn(t.objectStore(STORE));
    t.oncomplete = () => {
      db.close();
      resolve(out?.result);
    };
    t.onerror = () => {
      db.close();
      reject(t.error);
    };
  });
}

/// item: { attempt_id, user_id, exercise_id, message (the socket's submit), queued_at }
export const put = (item) => tx("readwrite", (s) => s.put(item));
export const remove = (attemptId) => tx("readwrite", (s) => s.delete(attemptId));
export const all = () => tx("readonly", (s) => s.getAll());
