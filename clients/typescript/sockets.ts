// The WebSocket protocols, typed from the AsyncAPI document (generated/sockets.d.ts):
// what a browser terminal sends and handles, and the run and build event streams.
import type {
  BuildEvent,
  ErrorFrame,
  InputMessage,
  InterruptMessage,
  OutputFrame,
  ResizeMessage,
  RunEvent,
  StatusFrame,
} from "./generated/sockets";

export type TerminalClientMessage = InputMessage | InterruptMessage | ResizeMessage;
export type TerminalServerMessage = OutputFrame | StatusFrame | ErrorFrame;

export function terminalUrl(base: string, target: string, token: string, readOnly = false): string {
  const query = new URLSearchParams({ token, ...(readOnly ? { mode: "view" } : {}) });
  return `${base}/api/terminal/${encodeURIComponent(target)}?${query.toString()}`;
}

export const typed: TerminalClientMessage[] = [
  { type: "input", data: "ls\r" },
  { type: "interrupt" },
  { type: "resize", cols: 120, rows: 40 },
];

// Every server message is handled: a new message type would fail this switch.
export function onTerminalMessage(raw: string, write: (text: string) => void): string {
  const message = JSON.parse(raw) as TerminalServerMessage;
  switch (message.type) {
    case "output":
      write(message.data);
      return "output";
    case "status":
      return message.exit_code === undefined || message.exit_code === null
        ? message.state
        : `${message.state} (${message.exit_code})`;
    case "error":
      return `error: ${message.message}`;
    default: {
      const unreachable: never = message;
      return unreachable;
    }
  }
}

export function onRunEvent(raw: string): string {
  const event = JSON.parse(raw) as RunEvent;
  const steps = event.run.steps.map((step) => `${step.name}:${step.state}`).join(" ");
  const usage = event.run.steps.find((step) => step.usage)?.usage;
  return `${event.type} ${event.change} ${event.run.state} ${steps} ${usage?.cost_usd ?? ""}`;
}

export function onBuildEvent(raw: string): string {
  const event = JSON.parse(raw) as BuildEvent;
  return `${event.type} ${event.build_id} ${event.state} ${event.tag ?? event.error ?? event.stream ?? ""}`;
}
