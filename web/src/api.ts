// The one client of the public /api2/json API: the ticket cookie and CSRF header as
// Proxmox VE's UI sends them, ticket renewal, and errors that keep the server's text and
// its per-field messages.

export class ApiError extends Error {
  status: number;
  errors: Record<string, string>;
  constructor(status: number, message: string, errors: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.errors = errors;
  }
  /** The message with the field errors, as one text for the user. */
  full(): string {
    // Proxmox VE's message already lists the field errors; add only those it lacks.
    const fields = Object.entries(this.errors)
      .map(([k, v]) => `${k}: ${v}`)
      .filter((line) => !this.message.includes(line));
    return [this.message, ...fields].filter(Boolean).join("\n");
  }
}

export interface Session {
  username: string;
  ticket: string;
  csrf: string;
}

const SESSION_KEY = "ferrox-session";
/** Proxmox VE's UI renews its 2-hour ticket every 15 minutes. */
const RENEW_MS = 15 * 60 * 1000;

let session: Session | null = load();
let renewTimer: number | undefined;
const listeners = new Set<(s: Session | null) => void>();

function load(): Session | null {
  try {
    const s = JSON.parse(localStorage.getItem(SESSION_KEY) ?? "null");
    return s && s.ticket && document.cookie.includes("PVEAuthCookie=") ? s : null;
  } catch {
    return null;
  }
}

function store(s: Session | null) {
  session = s;
  if (s) {
    localStorage.setItem(SESSION_KEY, JSON.stringify(s));
    document.cookie = `PVEAuthCookie=${encodeURIComponent(s.ticket)}; path=/; secure; samesite=strict`;
    scheduleRenewal();
  } else {
    localStorage.removeItem(SESSION_KEY);
    document.cookie = "PVEAuthCookie=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT";
    window.clearTimeout(renewTimer);
  }
  listeners.forEach((l) => l(s));
}

function scheduleRenewal() {
  window.clearTimeout(renewTimer);
  renewTimer = window.setTimeout(() => {
    if (!session) return;
    // A valid ticket is accepted as the password for a new one.
    login(session.username, session.ticket).catch(() => store(null));
  }, RENEW_MS);
}

export function currentSession(): Session | null {
  if (session) scheduleRenewal();
  return session;
}

export function onSession(l: (s: Session | null) => void): () => void {
  listeners.add(l);
  return () => listeners.delete(l);
}

export type Params = Record<string, string | number | boolean | undefined | null>;

function encode(params: Params): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === "") continue;
    q.append(k, typeof v === "boolean" ? (v ? "1" : "0") : String(v));
  }
  return q.toString();
}

export async function request<T = any>(method: string, path: string, params: Params = {}): Promise<T> {
  let url = `/api2/json${path}`;
  if (method === "GET" || method === "DELETE") {
    const q = encode(params);
    if (q) url += `?${q}`;
    return send<T>(method, url, path);
  }
  return send<T>(method, url, path, encode(params), "application/x-www-form-urlencoded");
}

/** A multipart upload as Proxmox VE takes it: `fields`, then the file as `filename`. */
export async function upload<T = any>(path: string, fields: Params, file: File): Promise<T> {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined || v === null || v === "") continue;
    form.append(k, String(v));
  }
  form.append("filename", file, file.name);
  // The browser sets the multipart content type with its boundary.
  return send<T>("POST", `/api2/json${path}`, path, form);
}

async function send<T>(method: string, url: string, path: string, body?: string | FormData, contentType?: string): Promise<T> {
  const headers: Record<string, string> = {};
  if (contentType) headers["Content-Type"] = contentType;
  if (method !== "GET" && session) headers["CSRFPreventionToken"] = session.csrf;
  let resp: Response;
  try {
    resp = await fetch(url, { method, headers, body, credentials: "same-origin" });
  } catch (e) {
    throw new ApiError(0, `connection failed: ${(e as Error).message}`);
  }
  let json: any = null;
  try {
    json = await resp.json();
  } catch {
    // Errors may come with an empty body; the status line carries the message.
  }
  if (!resp.ok) {
    const message = (json?.message ?? resp.statusText ?? `HTTP ${resp.status}`).trim();
    if (resp.status === 401 && path !== "/access/ticket") store(null);
    throw new ApiError(resp.status, message || `HTTP ${resp.status}`, json?.errors ?? {});
  }
  return json?.data as T;
}

export const get = <T = any>(path: string, params?: Params) => request<T>("GET", path, params);
export const post = <T = any>(path: string, params?: Params) => request<T>("POST", path, params);
export const put = <T = any>(path: string, params?: Params) => request<T>("PUT", path, params);
export const del = <T = any>(path: string, params?: Params) => request<T>("DELETE", path, params);

/** The first step of a login with a second factor: answer `challenge` with `loginSecondFactor`. */
export class SecondFactorNeeded extends Error {
  username: string;
  challenge: string;
  constructor(username: string, challenge: string) {
    super("second factor needed");
    this.username = username;
    this.challenge = challenge;
  }
}

export async function login(username: string, password: string, realm?: string): Promise<Session> {
  const data = await post("/access/ticket", { username, password, realm });
  if (data?.NeedTFA) throw new SecondFactorNeeded(data.username, data.ticket);
  return keep(data);
}

/** `answer` is `totp:<code>` or `recovery:<key>`, as Proxmox VE's second step takes it. */
export async function loginSecondFactor(username: string, challenge: string, answer: string): Promise<Session> {
  return keep(await post("/access/ticket", { username, "tfa-challenge": challenge, password: answer }));
}

function keep(data: any): Session {
  const s = { username: data.username, ticket: data.ticket, csrf: data.CSRFPreventionToken };
  store(s);
  return s;
}

export function logout() {
  store(null);
}

/** Waits for a task to end; returns its exit status. */
export async function waitTask(upid: string, timeoutMs = 600_000): Promise<string> {
  const node = upid.split(":")[1];
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    const st = await get(`/nodes/${node}/tasks/${encodeURIComponent(upid)}/status`);
    if (st.status === "stopped") return st.exitstatus ?? "";
    await new Promise((r) => setTimeout(r, 500));
  }
  return "timeout";
}
