// Drives the test page (index.html + page.js) in headless Debian chromium against a running
// agentdock: real key presses into xterm.js, read back from xterm's own buffer.
//
// usage: node drive.mjs --server http://127.0.0.1:PORT --target SESSION_OR_PROJECT_ID
//                       --token TOKEN [--scenario shell|fullscreen] [--screenshot PATH]
//                       [--timeout-ms 40000]
//
// Scenario `shell` (the default): serve this folder on a loopback port; open the page (xterm
// + fit addon on ws://…/api/terminal/TARGET); wait for the `running` status and the first
// output; `stty size` must print the size the page fitted and sent; type `echo hello` + Enter
// and find `hello` as a line of its own; make the window smaller, and `stty size` must follow.
//
// Scenario `fullscreen` (TARGET runs a full-screen program that waits for a line, draws, and
// prints DONE): open the page, type `go` + Enter, wait for DONE and record what xterm shows;
// close the page (its socket goes), open a new page (a new xterm) on the same session, and
// record what that one shows once the replay is in. test_browser.py compares the two.
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
    scenario: { type: "string", default: "shell" },
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

// Open the test page in `page` on the socket, wait for its `running` status (and its first
// output, where `output` is set), then for the output to pause.
async function openTerminal(page, url, { output }) {
  await page.goto(url);
  await page.waitForFunction(
    (output) => {
      const s = window.agentdock;
      const status = s?.received.some((m) => m.type === "status");
      return s && (s.socket === "closed" || (status && (!output || s.outputFrames > 0)));
    },
    output,
    { timeout: 20000, polling: 50 },
  );
  const attached = await page.evaluate(() => ({
    socket: window.agentdock.socket,
    closeCode: window.agentdock.closeCode,
    first: window.agentdock.received[0] ?? null,
  }));
  if (attached.socket !== "open") throw new Error(`the socket closed: ${JSON.stringify(attached)}`);
  if (attached.first?.type !== "status" || attached.first.state !== "running") {
    throw new Error(`the first message is not a running status: ${JSON.stringify(attached.first)}`);
  }
  await page.waitForFunction(() => performance.now() - window.agentdock.lastOutputAt > 300, null, {
    timeout: 10000,
    polling: 50,
  });
}

// What xterm shows: which buffer is active, its visible lines, the cursor, every styled or
// non-blank cell of the active buffer (character and attributes), and the normal buffer's
// visible lines (what the shell showed before the program took the alternate screen).
const shown = (page) =>
  page.evaluate(() => {
    const term = window.agentdock.term;
    const visible = (buffer) => {
      const lines = [];
      for (let y = 0; y < term.rows; y++) lines.push(buffer.getLine(buffer.viewportY + y)?.translateToString(true) ?? "");
      return lines;
    };
    const buffer = term.buffer.active;
    const cells = [];
    for (let y = 0; y < term.rows; y++) {
      const line = buffer.getLine(buffer.viewportY + y);
      for (let x = 0; line && x < term.cols; x++) {
        const c = line.getCell(x);
        const styled = !c.isAttributeDefault();
        if (!styled && (c.getChars() === "" || c.getChars() === " ")) continue;
        cells.push([y, x, c.getChars(), c.getWidth(), c.getFgColorMode(), c.getFgColor(), c.getBgColorMode(),
          c.getBgColor(), c.isBold(), c.isItalic(), c.isUnderline(), c.isInverse()]);
      }
    }
    return {
      type: buffer.type,
      cols: term.cols,
      rows: term.rows,
      lines: visible(buffer),
      cursor: { x: buffer.cursorX, y: buffer.cursorY },
      cells,
      normal: visible(term.buffer.normal),
      modes: { ...term.modes },
    };
  });

async function fullScreen(context, first, url) {
  await openTerminal(first, url, { output: false }); // the program waits for a line: no output yet
  await first.click("#terminal");
  await first.keyboard.type("go", { delay: 10 });
  await first.keyboard.press("Enter");
  await first.waitForFunction(() => window.agentdock.lines().some((line) => line.startsWith("DONE")), null, {
    timeout: 30000,
    polling: 50,
  });
  await first.waitForFunction(() => performance.now() - window.agentdock.lastOutputAt > 300, null, {
    timeout: 10000,
    polling: 50,
  });
  result.steps.live = await shown(first);
  result.steps.live_errors = await first.evaluate(() => window.agentdock.received.filter((m) => m.type === "error"));
  const again = await context.newPage();
  await first.close(); // its socket goes with it
  timed("live");

  await openTerminal(again, url, { output: true }); // a new xterm: all it has is the replay
  result.steps.reconnected = await shown(again);
  result.steps.reconnected_frames = await again.evaluate(() => window.agentdock.outputFrames);
  result.steps.reconnected_errors = await again.evaluate(() =>
    window.agentdock.received.filter((m) => m.type === "error"),
  );
  result.steps.reconnected_input = await again.evaluate(() => window.agentdock.sent.input || 0);
  if (opts.screenshot) await again.screenshot({ path: opts.screenshot });
  timed("reconnected");
}

// Scenario `shell`: type into the default shell, then make the window smaller.
async function shell(page, url) {
  await page.goto(url);
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
  if (result.steps.errors.length) throw new Error(`the server refused messages: ${JSON.stringify(result.steps.errors)}`);
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
  const problems = [];
  const watch = (page) => {
    page.on("pageerror", (error) => problems.push(`pageerror: ${error.message}`));
    page.on("console", (msg) => msg.type() === "error" && problems.push(`console: ${msg.text()}`));
  };
  context.pages().forEach(watch);
  context.on("page", watch);
  const page = context.pages()[0] ?? (await context.newPage());
  result.browser = context.browser()?.version() ?? null;
  timed("launch");

  const url = `${pageBase}/index.html?ws=${encodeURIComponent(wsUrl)}`;
  if (opts.scenario === "fullscreen") {
    await fullScreen(context, page, url);
  } else {
    await shell(page, url);
  }
  result.problems = problems;
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
