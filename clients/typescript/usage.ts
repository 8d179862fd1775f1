/**
 * A small typed use of agentdock's REST API, written the way the browser
 * front end uses the client generated from the OpenAPI schema.
 *
 * It is never run: scripts/check-ts-client.sh generates `schema.d.ts` from the
 * service's schema and type-checks this file against it, so that a schema
 * change which would break the front end (a renamed or removed field, a field
 * whose type changed, a moved path, a renamed path parameter, a different
 * status code) fails the check.
 *
 * What this file relies on, by name:
 *   paths       "/api/health" (get), "/api/projects" (get, post),
 *               "/api/projects/{project_id}" (get, patch, delete),
 *               "/api/templates" (get)
 *   statuses    200 (health, list, get, patch, templates), 201 (post), 204 (delete)
 *   schemas     Project, ProjectPage, ProjectCreate, ProjectUpdate, Template
 *
 * client.ts calls every operation through openapi-fetch; hey.ts checks the
 * hey-api client's function names.
 */
import type { components, paths } from "./schema";

// ---------------------------------------------------------------------------
// Types the front end uses, taken from the generated schema.

type ApiPath = keyof paths;

export type Project = components["schemas"]["Project"];

export type Health =
  paths["/api/health"]["get"]["responses"][200]["content"]["application/json"];

export type ProjectCreate =
  paths["/api/projects"]["post"]["requestBody"]["content"]["application/json"];
type CreatedProject =
  paths["/api/projects"]["post"]["responses"][201]["content"]["application/json"];
type ProjectList =
  paths["/api/projects"]["get"]["responses"][200]["content"]["application/json"];

type ProjectItem = paths["/api/projects/{project_id}"];
export type ProjectPathParams = ProjectItem["get"]["parameters"]["path"];
type FetchedProject = ProjectItem["get"]["responses"][200]["content"]["application/json"];
export type ProjectUpdate = ProjectItem["patch"]["requestBody"]["content"]["application/json"];
type UpdatedProject = ProjectItem["patch"]["responses"][200]["content"]["application/json"];
export type DeleteProjectQuery = NonNullable<ProjectItem["delete"]["parameters"]["query"]>;
type DeletedProject = ProjectItem["delete"]["responses"][204];

export type Template = components["schemas"]["Template"];
type TemplateList =
  paths["/api/templates"]["get"]["responses"][200]["content"]["application/json"];

/** A status code the schema declares for the operation. */
type Status<Op extends { responses: object }> = keyof Op["responses"] & number;

// ---------------------------------------------------------------------------
// Compile-time checks: the operations use the named schemas, not look-alikes.

type Equal<A, B> =
  (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Assert<T extends true> = T;

export type SchemaChecks = [
  Assert<Equal<CreatedProject, Project>>,
  Assert<Equal<FetchedProject, Project>>,
  Assert<Equal<UpdatedProject, Project>>,
  Assert<Equal<ProjectList, components["schemas"]["ProjectPage"]>>,
  Assert<Equal<ProjectList["items"], Project[]>>,
  Assert<Equal<TemplateList, Template[]>>,
  Assert<Equal<ProjectCreate, components["schemas"]["ProjectCreate"]>>,
  Assert<Equal<ProjectUpdate, components["schemas"]["ProjectUpdate"]>>,
  // A 204 has no body.
  Assert<Equal<DeletedProject["content"], undefined>>,
];

// ---------------------------------------------------------------------------
// Object literals, so that a field the schema no longer has is an excess
// property, a renamed one is that and a missing one, and a retyped one a
// mismatch.
//
// Response bodies (Health, Project) are checked with `satisfies Known<T>`:
// every field written here must exist with a compatible type, but a field the
// service adds later does not break the check (it does not break a client).
// That every field below is also still *required* is checked by the readers
// further down. Request bodies are checked exactly (`: T`): a newly required
// request field does break clients.

/** T with every field optional, recursively (arrays kept as they are). */
type Known<T> = T extends readonly unknown[]
  ? T
  : T extends object
    ? { [K in keyof T]?: Known<T[K]> }
    : T;

export const healthy = {
  status: "ok",
  docker: { ok: true, version: "24.0.7" },
  database: { ok: true },
} satisfies Known<Health>;

export const degraded = {
  status: "degraded",
  docker: { ok: false, version: null },
  database: { ok: true },
} satisfies Known<Health>;

/** Every Project field the front end knows, with a value of its type. */
export const sampleProject = {
  id: "0b6d1a52-4bde-4f3f-9a55-0c0c4f1f0d3e",
  name: "demo",
  description: "A demo project",
  path: "/srv/agentdock/data/workspaces/demo",
  template: "python",
  repo_url: null,
  github_url: "https://github.com/example/demo",
  image: "agentdock-base:latest",
  test_command: "pytest -q",
  agent_command: ["claude", "-p", "{prompt}"],
  created_at: "2025-01-01T12:00:00Z",
  updated_at: "2025-01-01T12:00:00Z",
  container_id: null,
} satisfies Known<Project>;

/** Every Template field the front end knows (`GET /api/templates`). */
export const sampleTemplate = {
  name: "python",
  description: "A Python package with a unittest suite",
  test_command: "python3 -m unittest discover -s tests -t .",
  test_patterns: ["tests/**", "test_*.py"],
} satisfies Known<Template>;

/** Only `name` is required. */
export const minimalCreate: ProjectCreate = { name: "demo" };

export const fullCreate: ProjectCreate = {
  name: "demo",
  description: "A demo project",
  template: "python",
  repo_url: "https://github.com/example/demo.git",
  github: { create: true, private: true, org: "example" },
  image: "agentdock-base:latest",
  test_command: "pytest -q",
  agent_command: ["aider", "--message", "{prompt}"],
};

/** The nullable fields of a create request take `null` (= the default). */
export const createWithNulls: ProjectCreate = {
  name: "demo",
  repo_url: null,
  github: null,
  image: null,
  test_command: null,
  agent_command: null,
};

/** PATCH: every field is optional. */
export const emptyUpdate: ProjectUpdate = {};
export const renameUpdate: ProjectUpdate = { name: "demo-2", description: "Renamed" };
export const commandUpdate: ProjectUpdate = {
  test_command: "npm test",
  agent_command: ["codex", "exec", "{prompt}"],
};

export const keepEverything: DeleteProjectQuery = {};
export const removeEverything: DeleteProjectQuery = { remove_container: true, purge: true };

// ---------------------------------------------------------------------------
// Values the front end reads: every Project field, at the type it expects.

export function describeProject(project: Project): string {
  const id: string = project.id;
  const name: string = project.name;
  const description: string = project.description;
  const path: string = project.path;
  const template: string = project.template;
  const repoUrl: string | null = project.repo_url;
  const githubUrl: string | null = project.github_url;
  const image: string = project.image;
  const testCommand: string = project.test_command;
  const agentCommand: readonly string[] = project.agent_command;
  const createdAt: Date = new Date(project.created_at);
  const updatedAt: Date = new Date(project.updated_at);
  const containerId: string | null = project.container_id;
  return [
    `${name} (${id}) — ${description}`,
    `  workspace ${path}, template ${template}, image ${image}`,
    `  repo ${repoUrl ?? "-"}, github ${githubUrl ?? "-"}`,
    `  tests: ${testCommand}; agent: ${agentCommand.join(" ")}`,
    `  container ${containerId ?? "none"}`,
    `  created ${createdAt.toISOString()}, updated ${updatedAt.toISOString()}`,
  ].join("\n");
}

export function describeTemplate(template: Template): string {
  const name: string = template.name;
  const description: string = template.description;
  const testCommand: string = template.test_command;
  const testPatterns: readonly string[] = template.test_patterns;
  return `${name} — ${description} (tests: ${testCommand}; ${testPatterns.join(", ")})`;
}

export function describeHealth(health: Health): string {
  const status: string = health.status;
  const dockerOk: boolean = health.docker.ok;
  const dockerVersion: string | null | undefined = health.docker.version;
  const databaseOk: boolean = health.database.ok;
  const docker = dockerOk ? `docker ${dockerVersion ?? "?"}` : "docker unreachable";
  return `${status}: ${docker}, database ${databaseOk ? "ok" : "down"}`;
}

// ---------------------------------------------------------------------------
// Tiny typed fetch helpers (no runtime dependency; the global `fetch`).

export interface ApiOptions {
  /** Origin of the service, e.g. "http://127.0.0.1:8000"; "" for the page's own. */
  readonly baseUrl: string;
  /** The API token (`Authorization: Bearer <token>`); not needed for health. */
  readonly token?: string;
  readonly fetch?: typeof fetch;
}

/** A non-success answer; `detail` is the service's human-readable reason. */
export class ApiError extends Error {
  readonly status: number;
  readonly detail: string;

  constructor(status: number, detail: string) {
    super(`agentdock API ${status}: ${detail}`);
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
  }
}

type Method = "GET" | "POST" | "PATCH" | "DELETE";

/** Fills `{name}` placeholders of a schema path. */
function expand(
  template: ApiPath,
  params: Readonly<Record<string, string>> = {},
  query: Readonly<Record<string, string | number | boolean | undefined>> = {},
): string {
  const path = template.replace(/\{([^}]+)\}/g, (_match, name: string) => {
    const value = params[name];
    if (value === undefined) {
      throw new Error(`missing path parameter ${name} for ${template}`);
    }
    return encodeURIComponent(value);
  });
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined) {
      search.set(key, String(value));
    }
  }
  const qs = search.toString();
  return qs === "" ? path : `${path}?${qs}`;
}

async function errorDetail(response: Response): Promise<string> {
  try {
    const body: unknown = await response.json();
    if (typeof body === "object" && body !== null && "detail" in body) {
      return String(body.detail);
    }
  } catch {
    // not JSON: fall back to the status text
  }
  return response.statusText;
}

async function send(
  options: ApiOptions,
  method: Method,
  url: string,
  accepted: readonly number[],
  body?: unknown,
): Promise<Response> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (options.token !== undefined) {
    headers["Authorization"] = `Bearer ${options.token}`;
  }
  const init: RequestInit = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const doFetch = options.fetch ?? fetch;
  const response = await doFetch(`${options.baseUrl}${url}`, init);
  if (!accepted.includes(response.status)) {
    throw new ApiError(response.status, await errorDetail(response));
  }
  return response;
}

const OK: Status<ProjectItem["get"]> = 200;
const CREATED: Status<paths["/api/projects"]["post"]> = 201;
const NO_CONTENT: Status<ProjectItem["delete"]> = 204;
const HEALTH_OK: Status<paths["/api/health"]["get"]> = 200;
const TEMPLATES_OK: Status<paths["/api/templates"]["get"]> = 200;
/** DESIGN.md: a degraded service answers 503 with the same body. */
const HEALTH_DEGRADED = 503;

/** `GET /api/health` — no token needed; a degraded service answers 503. */
export async function getHealth(options: ApiOptions): Promise<Health> {
  const response = await send(options, "GET", expand("/api/health"), [
    HEALTH_OK,
    HEALTH_DEGRADED,
  ]);
  return (await response.json()) as Health;
}

/** `GET /api/templates` → 200 Template[]: what a project can be created from. */
export async function listTemplates(options: ApiOptions): Promise<Template[]> {
  const response = await send(options, "GET", expand("/api/templates"), [TEMPLATES_OK]);
  return (await response.json()) as TemplateList;
}

/** `POST /api/projects` → 201 Project. */
export async function createProject(
  options: ApiOptions,
  body: ProjectCreate,
): Promise<Project> {
  const response = await send(options, "POST", expand("/api/projects"), [CREATED], body);
  return (await response.json()) as CreatedProject;
}

/** `GET /api/projects?limit=&offset=` → 200 a page `{items, total, limit, offset}`. */
export async function listProjects(
  options: ApiOptions,
  query: { limit?: number; offset?: number } = {},
): Promise<ProjectList> {
  const response = await send(options, "GET", expand("/api/projects", {}, query), [OK]);
  return (await response.json()) as ProjectList;
}

/** `GET /api/projects/{project_id}` → 200 Project. */
export async function getProject(
  options: ApiOptions,
  params: ProjectPathParams,
): Promise<Project> {
  const url = expand("/api/projects/{project_id}", params);
  const response = await send(options, "GET", url, [OK]);
  return (await response.json()) as FetchedProject;
}

/** `PATCH /api/projects/{project_id}` → 200 Project. */
export async function updateProject(
  options: ApiOptions,
  params: ProjectPathParams,
  body: ProjectUpdate,
): Promise<Project> {
  const url = expand("/api/projects/{project_id}", params);
  const response = await send(options, "PATCH", url, [OK], body);
  return (await response.json()) as UpdatedProject;
}

/** `DELETE /api/projects/{project_id}` → 204; keeps container and workspace unless asked. */
export async function deleteProject(
  options: ApiOptions,
  params: ProjectPathParams,
  query: DeleteProjectQuery = {},
): Promise<void> {
  const url = expand("/api/projects/{project_id}", params, query);
  await send(options, "DELETE", url, [NO_CONTENT]);
}

// ---------------------------------------------------------------------------
// A front-end flow, end to end.

export async function demo(options: ApiOptions): Promise<string> {
  const lines: string[] = [describeHealth(await getHealth(options))];
  for (const template of await listTemplates(options)) {
    lines.push(describeTemplate(template));
  }
  const created = await createProject(options, fullCreate);
  const params: ProjectPathParams = { project_id: created.id };
  const renamed = await updateProject(options, params, renameUpdate);
  const fetched = await getProject(options, { project_id: renamed.id });
  lines.push(describeProject(fetched));
  for (const project of (await listProjects(options, { limit: 100 })).items) {
    lines.push(project.name);
  }
  await deleteProject(options, params, removeEverything);
  return lines.join("\n");
}
