// The JSON API, with the bearer token kept for this browser tab only (sessionStorage).

const TOKEN = "terrain.console.token";

export class ApiError extends Error {
  constructor(status, body) {
    const detail = typeof body?.detail === "string" ? body.detail : JSON.stringify(body?.detail ?? body);
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.code = body?.code ?? "error";
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN);
}

export function signOut() {
  sessionStorage.removeItem(TOKEN);
}

export async function signIn(email, password) {
  const response = await fetch("/v1/auth/token", {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ username: email, password }),
  });
  const body = await response.json();
  if (!response.ok) throw new ApiError(response.status, body);
  sessionStorage.setItem(TOKEN, body.access_token);
}

async function call(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    signOut();
    window.dispatchEvent(new Event("terrain:signed-out"));
  }
  return response;
}

export async function api(method, path, body) {
  const response = await call(method, path, body);
  const data = response.status === 204 ? null : await response.json();
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body);

// A file from an authenticated route (a zip, a CSV), saved under its name.
export async function downloadFrom(path, filename) {
  const response = await call("GET", path);
  if (!response.ok) throw new ApiError(response.status, await response.json());
  save(await response.blob(), filename);
}

export function save(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

let config = null;
export async function consoleConfig() {
  config ??= await (await fetch("/console/config.json")).json();
  return config;
}
