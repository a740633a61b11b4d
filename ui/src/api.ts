// The REST API (/api/v1) is the page's only data path. A browser session is an HttpOnly cookie the
// page never sees, plus a CSRF token kept in memory and sent on every change.

export const API = "/api/v1";

export class ApiError extends Error {
  constructor(public status: number, public problem: string, public fix: string | null) {
    super(problem);
  }
}

export interface Session {
  user: string;
  admin: boolean;
  csrf_token: string;
  expires_at: number;
}

export interface MetricStats {
  last?: number | string;
  min?: number | string;
  max?: number | string;
  count?: number;
  last_step?: number;
}

export interface Run {
  id: string;
  name: string;
  project: string;
  status: string;
  created_at: number;
  ended_at: number | null;
  heartbeat_at: number;
  model: string | null;
  config: Record<string, unknown>;
  summary: Record<string, unknown>;
  tags: string[];
  notes: string;
  error: string | null;
  archived: boolean;
  stop_requested_at: number | null;
  metrics: Record<string, MetricStats>;
}

export interface Series {
  run: string;
  key: string;
  steps: number[];
  times: number[];
  values: (number | string)[];
}

export interface Project {
  name: string;
  role: string;
  runs: number;
}

let csrf: string | null = null;

export async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  let response: Response;
  try {
    response = await fetch(API + path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "the server cannot be reached", "check that the server is running, then reload");
  }
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const err = (data ?? {}) as { error?: string; fix?: string };
    throw new ApiError(response.status, err.error ?? `HTTP ${response.status}`, err.fix ?? null);
  }
  return data as T;
}

export async function logIn(token: string): Promise<Session> {
  const session = await request<Session>("POST", "/session", { token });
  csrf = session.csrf_token;
  return session;
}

/** The session a reloaded page still has, or null when it must log in. */
export async function currentSession(): Promise<Session | null> {
  try {
    const session = await request<Session>("GET", "/session");
    csrf = session.csrf_token;
    return session;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return null;
    throw error;
  }
}

export async function logOut(): Promise<void> {
  await request<void>("DELETE", "/session");
  csrf = null;
}

/** A JSON number, or one of the names the API gives NaN and infinities. */
export function num(value: unknown): number | null {
  if (typeof value === "number") return value;
  if (value === "NaN") return NaN;
  if (value === "Infinity") return Infinity;
  if (value === "-Infinity") return -Infinity;
  return null;
}

export function flatten(config: Record<string, unknown>, prefix = ""): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(config ?? {})) {
    const name = prefix ? `${prefix}.${key}` : key;
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      Object.assign(out, flatten(value as Record<string, unknown>, name));
    } else {
      out[name] = value;
    }
  }
  return out;
}

let projectsCache: { at: number; value: Promise<Project[]> } | null = null;

/** The caller's projects (GET /projects), reused for a few seconds: the first page asks for them twice. */
export function projects(): Promise<Project[]> {
  const now = performance.now();
  if (!projectsCache || now - projectsCache.at > 5000) {
    const value = request<{ projects: Project[] }>("GET", "/projects").then((answer) => answer.projects);
    value.catch(() => (projectsCache = null));
    projectsCache = { at: now, value };
  }
  return projectsCache.value;
}
