"""Claude Code's ``--output-format stream-json`` rendered as readable terminal lines, and the
report of its final ``result`` event.

What the agent prints is hostile data: each line is decoded as JSON with a size bound, only
known fields are read, everything shown is cut to a bounded length, and a line that is not
such JSON is passed through as it is.
"""

from __future__ import annotations

from typing import Any

import msgspec

MAX_LINE_CHARS = 1024 * 1024  # a longer "line" is passed through unparsed
SHOWN_CHARS = 2000  # of one text block
TOOL_INPUT_CHARS = 200
RESULT_LINES = 3

_decode = msgspec.json.Decoder().decode


class AgentReport(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What the agent said of its work at its end (Claude's ``result`` event)."""

    message: str | None = None
    is_error: bool = False
    turns: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    session_id: str | None = None  # the conversation, for --resume

    def usage(self) -> dict[str, Any] | None:
        if self.turns is None and self.input_tokens is None and self.cost_usd is None:
            return None
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd,
            "turns": self.turns,
        }


class ClaudeStreamRenderer:
    """Fed the decoded PTY output in pieces; answers what to show for each piece."""

    def __init__(self) -> None:
        self._partial = ""
        self.report: AgentReport | None = None
        self.session_id: str | None = None

    def feed(self, text: str) -> str:
        data = self._partial + text
        lines = data.split("\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_LINE_CHARS:  # never buffer without bound
            lines.append(self._partial)
            self._partial = ""
        return "".join(self._line(line.rstrip("\r")) for line in lines)

    @property
    def held_back(self) -> str:
        """Text fed and not yet shown: the start of a line still to come."""
        return self._partial

    def finish(self) -> str:
        rest, self._partial = self._partial, ""
        return self._line(rest.rstrip("\r")) if rest else ""

    def _line(self, line: str) -> str:
        stripped = line.strip()
        if not stripped.startswith("{") or len(stripped) > MAX_LINE_CHARS:
            return line + "\r\n"
        try:
            event = _decode(stripped)
        except msgspec.DecodeError:
            return line + "\r\n"
        if not isinstance(event, dict):
            return line + "\r\n"
        return _render(event, self)


def _text(value: Any, limit: int = SHOWN_CHARS) -> str:
    text = value if isinstance(value, str) else msgspec.json.encode(value).decode("utf-8", errors="replace")
    text = text.replace("\x1b", "␛")  # no terminal control from the agent's text
    return text if len(text) <= limit else text[:limit] + " …"


def _lines(text: str) -> str:
    return "".join(f"{line}\r\n" for line in text.splitlines() or [""])


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _render(event: dict[str, Any], renderer: ClaudeStreamRenderer) -> str:
    kind, subtype = event.get("type"), event.get("subtype")
    if isinstance(event.get("session_id"), str):
        renderer.session_id = event["session_id"][:200]
    if kind == "system" and subtype == "init":
        model = _text(event.get("model", "?"), 100)
        return _lines(f"● claude · model {model} · session {renderer.session_id or '?'}")
    if kind == "system" and subtype == "api_retry":
        attempt, most = _int(event.get("attempt")), _int(event.get("max_retries"))
        delay = event.get("retry_delay_ms")
        wait = f" in {delay / 1000:.1f} s" if isinstance(delay, int | float) else ""
        return _lines(f"… the model's API did not answer: retry {attempt}/{most}{wait}")
    if kind in ("assistant", "user"):
        return _message(event.get("message"), kind)
    if kind == "result":
        report = _report(event, renderer.session_id)
        renderer.report = report
        summary = ", ".join(
            part
            for part in (
                f"{report.turns} turns" if report.turns is not None else "",
                f"{report.input_tokens} in / {report.output_tokens} out tokens"
                if report.input_tokens is not None
                else "",
                f"${report.cost_usd:.4f}" if report.cost_usd is not None else "",
            )
            if part
        )
        head = "✗ the agent ended with an error" if report.is_error else "✓ the agent is done"
        body = "\n".join((report.message or "").splitlines()[-RESULT_LINES:])
        return _lines(f"{head}{f' ({summary})' if summary else ''}" + (f"\n{body}" if body else ""))
    return ""  # other events (hooks, status) are not shown


def _message(message: Any, kind: str) -> str:
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        return ""
    out: list[str] = []
    for block in message["content"]:
        if not isinstance(block, dict):
            continue
        match block.get("type"):
            case "text" if kind == "assistant":
                out.append(_text(block.get("text", "")))
            case "tool_use":
                name = _text(block.get("name", "?"), 80)
                out.append(f"→ {name}({_text(block.get('input', {}), TOOL_INPUT_CHARS)})")
            case "tool_result":
                content = block.get("content")
                size = len(content) if isinstance(content, str | list) else 0
                out.append(f"  ← {'error' if block.get('is_error') else 'result'} ({size} chars)")
    return _lines("\n".join(out)) if out else ""


def _report(event: dict[str, Any], session_id: str | None) -> AgentReport:
    usage = event.get("usage") if isinstance(event.get("usage"), dict) else {}
    assert isinstance(usage, dict)
    cost = event.get("total_cost_usd")
    result = event.get("result")
    return AgentReport(
        message=_text(result, 8000) if isinstance(result, str) else None,
        is_error=event.get("is_error") is True,
        turns=_int(event.get("num_turns")),
        input_tokens=_int(usage.get("input_tokens")),
        output_tokens=_int(usage.get("output_tokens")),
        cost_usd=float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None,
        session_id=session_id,
    )


def make_renderer(output: str | None) -> ClaudeStreamRenderer | None:
    return ClaudeStreamRenderer() if output == "claude-stream" else None
