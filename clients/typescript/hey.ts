/**
 * The hey-api client (`@hey-api/openapi-ts`, generated into generated/hey by
 * scripts/check-ts-client.sh) names its functions after the operation ids:
 * this file fails to compile when they are not exactly the clean ones.
 */
import * as sdk from "./generated/hey/sdk.gen";
import type { ErrorBody, ListProjectsError, ProjectPage } from "./generated/hey/types.gen";

type Equal<A, B> =
  (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Assert<T extends true> = T;

type Expected =
  | "getHealth"
  | "listAgents"
  | "listTemplates"
  | "listWorkflows"
  | "listProjects"
  | "createProject"
  | "getProject"
  | "updateProject"
  | "deleteProject"
  | "getContainer"
  | "startContainer"
  | "stopContainer"
  | "restartContainer"
  | "removeContainer"
  | "listContainers"
  | "buildEnvironment"
  | "listSecrets"
  | "setSecret"
  | "deleteSecret"
  | "openSession"
  | "listSessions"
  | "getSession"
  | "closeSession"
  | "createWorkflowRun"
  | "listWorkflowRuns"
  | "getWorkflowRun"
  | "cancelWorkflowRun"
  | "getWorkflowRunDiff"
  | "mergeWorkflowRun"
  | "discardWorkflowRun"
  | "listFiles"
  | "readFile"
  | "writeFile"
  | "deleteFile"
  | "execCommand";

type Functions = {
  [K in keyof typeof sdk]: (typeof sdk)[K] extends (...args: never[]) => unknown ? K : never;
}[keyof typeof sdk];

export type HeyChecks = [
  Assert<Equal<Functions, Expected>>,
  Assert<Equal<ListProjectsError, ErrorBody>>,
];

export async function firstPage(): Promise<ProjectPage | undefined> {
  const { data } = await sdk.listProjects({ query: { limit: 10, offset: 0 } });
  return data;
}
