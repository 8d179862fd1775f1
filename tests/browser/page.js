// xterm.js on agentdock's terminal WebSocket, as a front end would attach it: typed keys go
// out through onData as `input` messages, size changes (fit on window resize) as `resize`
// messages, and `output` is written to the terminal. Everything the driver (drive.mjs)
// checks is exposed on window.agentdock.
import { Terminal } from "/node_modules/@xterm/xterm/lib/xterm.mjs";
import { FitAddon } from "/node_modules/@xterm/addon-fit/lib/addon-fit.mjs";

const url = new URLSearchParams(location.search).get("ws");
const term = new Terminal({ fontFamily: "monospace", fontSize: 14, scrollback: 1000 });
const fit = new FitAddon();
term.loadAddon(fit);
term.open(document.getElementById("terminal"));
fit.fit();

const state = {
  term,
  socket: "connecting", // "open", then "closed"
  closeCode: null,
  received: [], // every non-output message from the server
  outputFrames: 0,
  lastOutputAt: 0, // performance.now() of the last output frame
  sent: { input: 0, resize: 0 },
  lastResize: null,
  lines() {
    const buffer = term.buffer.active;
    const lines = [];
    for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
    return lines;
  },
};
window.agentdock = state;

const ws = new WebSocket(url);
const send = (message) => {
  if (ws.readyState !== WebSocket.OPEN) return;
  ws.send(JSON.stringify(message));
  state.sent[message.type] = (state.sent[message.type] || 0) + 1;
};
const sendSize = () => {
  state.lastResize = { cols: term.cols, rows: term.rows };
  send({ type: "resize", cols: term.cols, rows: term.rows });
};

ws.onopen = () => {
  state.socket = "open";
  sendSize(); // the server's shell starts at its own default size
};
ws.onclose = (event) => {
  state.socket = "closed";
  state.closeCode = event.code;
};
ws.onmessage = (event) => {
  const message = JSON.parse(event.data);
  if (message.type === "output") {
    state.outputFrames += 1;
    state.lastOutputAt = performance.now();
    term.write(message.data);
  } else {
    state.received.push(message);
  }
};
term.onData((data) => send({ type: "input", data }));
term.onResize(sendSize);
window.addEventListener("resize", () => fit.fit());
term.focus();
