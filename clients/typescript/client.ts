/**
 * Every operation of agentdock's REST API through openapi-fetch over the
 * openapi-typescript output (`schema.d.ts`), the way a front end calls it.
 *
 * Never run: scripts/check-ts-client.sh type-checks it under `tsc --strict`.
 * Each call checks that the success body has the named schema and that the
 * error body is typed (`error?.detail` is a string; an untyped or missing
 * error response makes `error` `undefined`, and reading it fails to compile).
 */
import createClient from "openapi-fetch";
import type { components, paths } from "./schema";

type Schemas = components["schemas"];
export type ErrorBody = Schemas["ErrorBody"];

export const api = createClient<paths>({
  baseUrl: "http://127.0.0.1:8000",
  headers: { Authorization: "Bearer <token>" },
});

/**
 * The reason of a failed call: every error of every operation is an ErrorBody.
 * An operation that documents no error gives `error: undefined`, and then the
 * call needs a second argument of type `never`: it does not compile.
 */
function reason<E extends ErrorBody | undefined>(
  error: E,
  ..._documented: [E] extends [undefined] ? [never] : []
): string {
  return error === undefined ? "" : `${error.status_code}: ${error.detail}`;
}

export async function everyOperation(projectId: string): Promise<string[]> {
  const out: string[] = [];
  const project = { params: { path: { project_id: projectId } } };

  // health: no token; a degraded service answers 503 with the Health body.
  const health = await api.GET("/api/health");
  const status: "ok" | "degraded" | undefined = health.data?.status ?? health.error?.status;
  out.push(status ?? "");

  // static lists: plain arrays
  const agents: Schemas["Agent"][] | undefined = (await api.GET("/api/agents")).data;
  const templates: Schemas["Template"][] | undefined = (await api.GET("/api/templates")).data;
  const workflows: Schemas["Workflow"][] | undefined = (await api.GET("/api/workflows")).data;
  out.push(String(agents?.length), String(templates?.length), String(workflows?.length));

  // projects
  const listed = await api.GET("/api/projects", { params: { query: { limit: 20, offset: 40 } } });
  const page: Schemas["ProjectPage"] | undefined = listed.data;
  const total: number | undefined = page?.total;
  const first: Schemas["Project"] | undefined = page?.items[0];
  out.push(String(total), first?.name ?? "", reason(listed.error));
  const created = await api.POST("/api/projects", { body: { name: "demo", template: "python" } });
  const made: Schemas["Project"] | undefined = created.data;
  out.push(made?.id ?? "", reason(created.error));
  const got = await api.GET("/api/projects/{project_id}", project);
  out.push(got.data?.path ?? "", reason(got.error));
  const patched = await api.PATCH("/api/projects/{project_id}", { ...project, body: { description: "x" } });
  out.push(patched.data?.description ?? "", reason(patched.error));
  const deleted = await api.DELETE("/api/projects/{project_id}", {
    params: { path: { project_id: projectId }, query: { remove_container: true, purge: false } },
  });
  out.push(String(deleted.response.status), reason(deleted.error));

  // containers
  const container = await api.GET("/api/projects/{project_id}/container", project);
  const state: Schemas["Container"]["status"] | undefined = container.data?.status;
  out.push(state ?? "", reason(container.error));
  for (const action of ["start", "stop", "restart"] as const) {
    const answered = await api.POST(`/api/projects/{project_id}/container/${action}`, project);
    out.push(answered.data?.status ?? "", reason(answered.error));
  }
  const removed = await api.DELETE("/api/projects/{project_id}/container", project);
  out.push(reason(removed.error));
  const containers = await api.GET("/api/containers", { params: { query: { limit: 500 } } });
  const containerPage: Schemas["ContainerPage"] | undefined = containers.data;
  out.push(String(containerPage?.items.length), reason(containers.error));

  // environment
  const build = await api.POST("/api/projects/{project_id}/environment/build", project);
  out.push(build.data?.build_id ?? "", reason(build.error));

  // secrets
  const secrets = await api.GET("/api/projects/{project_id}/secrets", project);
  const secretList: Schemas["Secret"][] | undefined = secrets.data;
  out.push(String(secretList?.length), reason(secrets.error));
  const secret = { params: { path: { project_id: projectId, name: "API_KEY" } } };
  const set = await api.PUT("/api/projects/{project_id}/secrets/{name}", { ...secret, body: { value: "v" } });
  out.push(reason(set.error));
  const unset = await api.DELETE("/api/projects/{project_id}/secrets/{name}", secret);
  out.push(reason(unset.error));

  // sessions
  const opened = await api.POST("/api/projects/{project_id}/sessions", {
    ...project,
    body: { command: ["bash", "-l"], cols: 120, rows: 40 },
  });
  const session: Schemas["Session"] | undefined = opened.data;
  out.push(session?.state ?? "", reason(opened.error));
  const sessions = await api.GET("/api/projects/{project_id}/sessions", project);
  const sessionPage: Schemas["SessionPage"] | undefined = sessions.data;
  out.push(String(sessionPage?.total), reason(sessions.error));
  const bySession = { params: { path: { session_id: session?.id ?? "" } } };
  const one = await api.GET("/api/sessions/{session_id}", bySession);
  out.push(String(one.data?.exit_code), reason(one.error));
  const closed = await api.DELETE("/api/sessions/{session_id}", bySession);
  out.push(reason(closed.error));

  // workflow runs
  const run = await api.POST("/api/projects/{project_id}/workflow-runs", {
    ...project,
    body: { workflow: "tdd", task: "add a feature" },
  });
  const full: Schemas["Run"] | undefined = run.data;
  const gate: Schemas["Gate"] | null | undefined = full?.steps[0]?.gate;
  out.push(gate?.output_tail ?? "", String(gate?.passed), reason(run.error));
  const runs = await api.GET("/api/projects/{project_id}/workflow-runs", {
    params: { path: { project_id: projectId }, query: { limit: 10 } },
  });
  const runPage: Schemas["RunPage"] | undefined = runs.data;
  const summary: Schemas["RunSummary"] | undefined = runPage?.items[0];
  out.push(summary?.steps[0]?.state ?? "", reason(runs.error));
  const byRun = { params: { path: { run_id: full?.id ?? "" } } };
  const fetched = await api.GET("/api/workflow-runs/{run_id}", byRun);
  out.push(fetched.data?.state ?? "", reason(fetched.error));
  const cancelled = await api.POST("/api/workflow-runs/{run_id}/cancel", byRun);
  out.push(cancelled.data?.state ?? "", reason(cancelled.error));

  // the review loop
  const diff = await api.GET("/api/workflow-runs/{run_id}/diff", {
    params: { path: { run_id: full?.id ?? "" }, query: { limit: 20, offset: 0 } },
  });
  const runDiff: Schemas["RunDiff"] | undefined = diff.data;
  out.push(runDiff?.files[0]?.path ?? "", runDiff?.patch ?? "", reason(diff.error));
  const merged = await api.POST("/api/workflow-runs/{run_id}/merge", byRun);
  const conflicts: string[] | undefined = merged.error && "conflicts" in merged.error ? merged.error.conflicts : [];
  out.push(merged.data?.review ?? "", String(conflicts?.length), merged.error?.detail ?? "");
  const discarded = await api.POST("/api/workflow-runs/{run_id}/discard", byRun);
  out.push(discarded.data?.review ?? "", reason(discarded.error));

  // the workspace: files (through the project's environment) and exec
  const at = (path: string) => ({ params: { path: { project_id: projectId }, query: { path } } });
  const listing = await api.GET("/api/projects/{project_id}/files/listing", at("src"));
  const entries: Schemas["DirectoryListing"] | undefined = listing.data;
  out.push(entries?.entries[0]?.type ?? "", reason(listing.error));
  const file = await api.GET("/api/projects/{project_id}/files", { ...at("README.md"), parseAs: "blob" });
  out.push(String(file.response.status), reason(file.error));
  const written = await api.PUT("/api/projects/{project_id}/files", {
    ...at("notes.txt"),
    body: "hello" as never,
    bodySerializer: (body: unknown) => body as string,
  });
  out.push(String(written.response.status), reason(written.error));
  const deletedFile = await api.DELETE("/api/projects/{project_id}/files", at("notes.txt"));
  out.push(String(deletedFile.response.status), reason(deletedFile.error));
  const exec = await api.POST("/api/projects/{project_id}/exec", {
    ...project,
    body: { command: ["ls", "-la"], timeout_s: 10 },
    parseAs: "stream",
  });
  out.push(String(exec.response.status), reason(exec.error));
  return out;
}
