// Types of the WebSocket messages, from the service's AsyncAPI document: every message
// payload's JSON Schema (made by msgspec from the structs the sockets use) becomes a
// TypeScript type in generated/sockets.d.ts.
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { compile } from "json-schema-to-typescript";

const [input, output] = process.argv.slice(2);
const doc = JSON.parse(readFileSync(input, "utf8"));
if (doc.asyncapi !== "3.0.0") throw new Error(`not an AsyncAPI 3 document: ${doc.asyncapi}`);
const rewrite = (value) =>
  JSON.parse(JSON.stringify(value).replaceAll('"#/components/schemas/', '"#/$defs/'));
const defs = rewrite(doc.components.schemas);
const properties = {};
for (const [name, message] of Object.entries(doc.components.messages)) {
  properties[name] = rewrite(message.payload);
}
const schema = {
  title: "SocketMessages",
  type: "object",
  properties,
  required: Object.keys(properties),
  additionalProperties: false,
  $defs: defs,
};
const ts = await compile(schema, "SocketMessages", {
  bannerComment: "// Generated from the AsyncAPI document by sockets-gen.mjs: do not edit.",
  declareExternallyReferenced: true,
  additionalProperties: false,
  unreachableDefinitions: true,
});
mkdirSync(output.substring(0, output.lastIndexOf("/")), { recursive: true });
writeFileSync(output, ts);
