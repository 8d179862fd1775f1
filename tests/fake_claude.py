#!/usr/bin/env python3
"""A scripted stand-in for Claude Code that speaks its ``--output-format stream-json``.

Installed as ``claude`` early on the PATH of a test project, it takes the `claude` preset's
arguments, prints Claude's events (``system``/``init``, ``assistant`` text and tool use,
``user`` tool results, ``result`` with usage and cost), does the same file work as
tests/fake_agent.py, and records its arguments. FAKE_CLAUDE_MODE: ``honest``,
``red-passes-first`` (the first red attempt writes a test that passes), ``not-logged-in``
(ends at once as the real binary does without credentials). Standard library only.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import uuid
from pathlib import Path


def emit(event: dict[str, object]) -> None:
    print(json.dumps(event), flush=True)


def load_fake_agent() -> object:
    here = Path(__file__).resolve().parent
    for name in ("fake_agent.py", ".fake_agent.py"):
        if (here / name).exists():
            spec = importlib.util.spec_from_file_location("fake_agent", here / name)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise SystemExit("fake_agent.py not found beside fake_claude.py")


def main(argv: list[str]) -> int:
    mode = os.environ.get("FAKE_CLAUDE_MODE", "honest")
    step = os.environ.get("AGENTDOCK_STEP", "?")
    attempt = int(os.environ.get("AGENTDOCK_ATTEMPT", "1"))
    resume = argv[argv.index("--resume") + 1] if "--resume" in argv else None
    calls = Path(".agent-prompts")
    calls.mkdir(exist_ok=True)
    (calls / f"{step}-{attempt}.json").write_text(json.dumps(argv))
    session = resume or str(uuid.uuid4())
    if mode == "not-logged-in":
        emit({"type": "system", "subtype": "init", "session_id": session, "model": "claude-test", "tools": []})
        emit(
            {
                "type": "assistant",
                "message": {"content": [{"type": "text", "text": "Not logged in · Please run /login"}]},
                "error": "authentication_failed",
                "session_id": session,
            }
        )
        emit(
            {
                "type": "result",
                "subtype": "success",
                "is_error": True,
                "result": "Not logged in · Please run /login",
                "num_turns": 1,
                "total_cost_usd": 0,
                "usage": {"input_tokens": 0, "output_tokens": 0},
                "session_id": session,
            }
        )
        return 1
    emit({"type": "system", "subtype": "init", "session_id": session, "model": "claude-test", "tools": ["Write"]})
    emit({"type": "system", "subtype": "api_retry", "attempt": 1, "max_retries": 10, "retry_delay_ms": 500})
    emit(
        {
            "type": "assistant",
            "message": {"content": [{"type": "text", "text": f"Working on the {step} step."}]},
            "session_id": session,
        }
    )
    emit(
        {
            "type": "assistant",
            "message": {"content": [{"type": "tool_use", "id": "t1", "name": "Write", "input": {"path": "x"}}]},
            "session_id": session,
        }
    )
    fake_agent = load_fake_agent()
    fake_agent.work(step, attempt, "red-passes-first" if mode == "red-passes-first" else "honest")  # type: ignore[attr-defined]
    emit(
        {
            "type": "user",
            "message": {"content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
            "session_id": session,
        }
    )
    emit(
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "result": f"Done with {step}, attempt {attempt}.",
            "num_turns": 3,
            "total_cost_usd": 0.0123,
            "usage": {"input_tokens": 1200, "output_tokens": 340},
            "session_id": session,
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
