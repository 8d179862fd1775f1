// Drives the test page (index.html + page.js) in headless Debian chromium against a running
// agentdock: real key presses into xterm.js, read back from xterm's own buffer.
//
// usage: node drive.mjs --server http://127.0.0.1:PORT --target SESSION_OR_PROJECT_ID
//                       --token TOKEN [--screenshot PATH] [--timeout-ms 40000]
//
// Steps: serve this folder on a loopback port; open the page (xterm + fit addon on
// ws://…/api/terminal/TARGET); wait for the `running` status and the first output;
// `stty size` must print the size the page fitted and sent; type `echo hello` + Enter and
// find `hello` as a line of its own; make the window smaller, and `stty size` must follow.
// Prints one JSON object ({"ok": true|false, ...}) on stdout; exits 1 on any failure.
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const CHROMIUM = "/usr/bin/chromium";
const ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const HERE = dirname(fileURLToPath(import.meta.url));
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css" };

const { values: opts } = parseArgs({
  options: {
    server: { type: "string" },
    target: { type: "string" },
    token: { type: "string" },
    screenshot: { type: "string" },
    "timeout-ms": { type: "string", default: "40000" },
  },
});
for (const name of ["server", "target", "token"]) {
  if (!opts[name]) {
    console.error(`drive.mjs: --${name} is required`);
    process.exit(2);
  }
}
const timeoutMs = Number(opts["timeout-ms"]);
const result = { ok: false, steps: {}, timings_ms: {} };
const started = performance.now();
let stepStarted = started;

function done(ok, error) {
  result.ok = ok;
  if (error) result.error = String(error?.stack || error);
  result.timings_ms.total = Math.round(performance.now() - started);
  process.stdout.write(JSON.stringify(result) + "\n");
}

function timed(name) {
  const now = performance.now();
  result.timings_ms[name] = Math.round(now - stepStarted);
  stepStarted = now;
}

// A static server for this folder only (the page and node_modules/@xterm), on loopback.
function serveHere() {
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname));
    const file = join(HERE, path === sep ? "index.html" : path);
    const allowed = file.startsWith(HERE + sep) && !file.includes(`${sep}.`);
    try {
      if (!allowed || !statSync(file).isFile()) throw new Error("not found");
      res.writeHead(200, { "content-type": TYPES[extname(file)] || "application/octet-stream" });
      res.end(readFileSync(file));
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

// The lines of xterm's buffer, right-trimmed, as the page exposes them.
const lines = (page) => page.evaluate(() => window.agentdock.lines());

// Type a command with real key presses, then wait for a line of output that matches the
// regular expression `want` in full, below the cursor's line at the start (a line of its
// own: the echoed command line, with its prompt and the command, never matches).
async function run(page, command, want) {
  const start = await page.evaluate(() => {
    const buffer = window.agentdock.term.buffer.active;
    return buffer.baseY + buffer.cursorY;
  });
  await page.keyboard.type(command, { delay: 10 });
  await page.keyboard.press("Enter");
  let found;
  try {
    const handle = await page.waitForFunction(
      ({ start, want }) => {
        const pattern = new RegExp(`^(?:${want})$`);
        const all = window.agentdock.lines();
        const at = all.findIndex((line, i) => i > start && pattern.test(line.trim()));
        return at >= 0 ? { at, all } : false;
      },
      { start, want },
      { timeout: 15000, polling: 50 },
    );
    found = await handle.jsonValue();
  } catch (error) {
    const tail = (await lines(page)).filter((line) => line.trim()).slice(-15);
    throw new Error(`no line /${want}/ after typing ${JSON.stringify(command)}; ` +
      `buffer: ${JSON.stringify(tail)} (${error.message})`);
  }
  const { at, all } = found;
  const echoed = all.slice(start, at).some((line) => line.includes(command));
  return { output: all[at].trim(), line: at, echoed, around: all.slice(Math.max(0, at - 2), at + 2) };
}

const deadline = setTimeout(() => {
  done(false, `timed out after ${timeoutMs} ms`);
  process.exit(1);
}, timeoutMs);
deadline.unref();

const userDataDir = mkdtempSync(join(tmpdir(), "agentdock-chromium-"));
let http;
let context;
try {
  http = await serveHere();
  const pageBase = `http://127.0.0.1:${http.address().port}`;
  const wsBase = opts.server.replace(/^http/, "ws");
  const wsUrl = `${wsBase}/api/terminal/${encodeURIComponent(opts.target)}?token=${encodeURIComponent(opts.token)}`;

  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 900, height: 560 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const problems = [];
  page.on("pageerror", (error) => problems.push(`pageerror: ${error.message}`));
  page.on("console", (msg) => msg.type() === "error" && problems.push(`console: ${msg.text()}`));
  result.browser = context.browser()?.version() ?? null;
  timed("launch");

  await page.goto(`${pageBase}/index.html?ws=${encodeURIComponent(wsUrl)}`);
  await page.waitForFunction(
    () => {
      const s = window.agentdock;
      return s && (s.socket === "closed" || (s.received.some((m) => m.type === "status") && s.outputFrames > 0));
    },
    null,
    { timeout: 20000, polling: 50 },
  );
  const attached = await page.evaluate(() => ({
    socket: window.agentdock.socket,
    closeCode: window.agentdock.closeCode,
    first: window.agentdock.received[0] ?? null,
  }));
  result.steps.attach = attached;
  if (attached.socket !== "open") throw new Error(`the socket closed: ${JSON.stringify(attached)}`);
  if (attached.first?.type !== "status" || attached.first.state !== "running") {
    throw new Error(`the first message is not a running status: ${JSON.stringify(attached.first)}`);
  }
  // The shell has printed its banner and prompt once its output pauses: keys typed earlier
  // could be echoed by the tty before the line editor takes over, and garble the check.
  await page.waitForFunction(() => performance.now() - window.agentdock.lastOutputAt > 150, null, {
    timeout: 10000,
    polling: 50,
  });
  await page.click("#terminal"); // focus xterm, as a person would
  timed("attach");

  const size = () => page.evaluate(() => ({ cols: window.agentdock.term.cols, rows: window.agentdock.term.rows }));
  const initial = await size();
  // Any size here: the one the page sent on open is reported, not required (see test_browser.py).
  result.steps.initial_size = { ...initial, ...(await run(page, "stty size", "\\d+ \\d+")) };
  timed("initial_size");

  result.steps.echo = await run(page, "echo hello", "hello");
  if (!result.steps.echo.echoed) throw new Error("the typed command was not echoed in the terminal");
  if (opts.screenshot) await page.screenshot({ path: opts.screenshot });
  timed("echo");

  await page.setViewportSize({ width: 600, height: 360 });
  await page.waitForFunction(
    ({ cols, rows }) => {
      const t = window.agentdock.term;
      const sent = window.agentdock.lastResize;
      return (t.cols !== cols || t.rows !== rows) && sent && sent.cols === t.cols && sent.rows === t.rows;
    },
    initial,
    { timeout: 10000, polling: 50 },
  );
  const resized = await size();
  result.steps.resized_size = { ...resized, ...(await run(page, "stty size", `${resized.rows} ${resized.cols}`)) };
  timed("resize");

  result.steps.sent = await page.evaluate(() => window.agentdock.sent);
  result.steps.errors = await page.evaluate(() => window.agentdock.received.filter((m) => m.type === "error"));
  result.problems = problems;
  if (result.steps.errors.length) throw new Error(`the server refused messages: ${JSON.stringify(result.steps.errors)}`);
  if (problems.length) throw new Error(`the page reported errors: ${problems.join("; ")}`);
  done(true);
} catch (error) {
  done(false, error);
  process.exitCode = 1;
} finally {
  clearTimeout(deadline);
  await context?.close().catch(() => {});
  http?.close();
  http?.closeAllConnections?.();
  rmSync(userDataDir, { recursive: true, force: true });
}
