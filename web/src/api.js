// JSON calls to /api/v1 with the session cookie; errors become ApiError with the server's code
// and French message.
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(`/api/v1${path}`, init);
  } catch {
    throw new ApiError(0, "network", "Le serveur ne répond pas : vérifiez la connexion.");
  }
  if (res.status === 204) return null;
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res.ok) {
    throw new ApiError(
      res.status,
      data?.error || "http_" + res.status,
      data?.message || `Erreur ${res.status}`,
    );
  }
  return data;
}

export const get = (path) => api("GET", path);
