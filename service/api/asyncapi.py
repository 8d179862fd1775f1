"""The WebSocket protocols as an AsyncAPI 3 document, generated from the msgspec structs the
sockets encode and decode, so that the code and the schema cannot drift.

Served at ``GET /schema/asyncapi.json`` and written by ``agentdock asyncapi [PATH]``. The
document describes the service: it *receives* what a client sends and *sends* the rest.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import get

from service import __version__
from service.runtimes.build.manager import BuildEvent
from service.sessions.schemas import ErrorFrame, InputMessage, InterruptMessage, OutputFrame, ResizeMessage, StatusFrame
from service.workflows.schemas import RunEvent

REF = "#/components/schemas/{name}"
# message name → (struct, summary)
TERMINAL_IN: dict[str, tuple[type, str]] = {
    "terminalInput": (InputMessage, "Keystrokes or pasted text for the program"),
    "terminalInterrupt": (InterruptMessage, "Ctrl-C: SIGINT to the foreground process"),
    "terminalResize": (ResizeMessage, "The viewer's terminal size"),
}
TERMINAL_OUT: dict[str, tuple[type, str]] = {
    "terminalOutput": (OutputFrame, "What the program printed (on attach first: the screen, with recent history)"),
    "terminalStatus": (StatusFrame, "The session's state; first on attach, and when the program ends"),
    "terminalError": (ErrorFrame, "A message the service could not take; the socket stays open"),
}
RUN_EVENTS: dict[str, tuple[type, str]] = {"runEvent": (RunEvent, "The run as it is after one change")}
BUILD_EVENTS: dict[str, tuple[type, str]] = {"buildEvent": (BuildEvent, "One event of a build")}
CLOSE_CODES = (
    "Close codes: 4401 unauthenticated, 4403 origin not allowed, 4404 unknown target, 4008 too slow "
    "(fell more than its limit behind; reconnect for the screen), 4429 too many viewers; "
    "1009 a frame over 64 KiB."
)


def asyncapi_document() -> dict[str, Any]:
    groups = {**TERMINAL_IN, **TERMINAL_OUT, **RUN_EVENTS, **BUILD_EVENTS}
    structs = [struct for struct, _ in groups.values()]
    refs, schemas = msgspec.json.schema_components(structs, ref_template=REF)
    messages = {
        name: {"name": name, "summary": summary, "contentType": "application/json", "payload": ref}
        for (name, (_, summary)), ref in zip(groups.items(), refs, strict=True)
    }

    def channel(address: str, description: str, names: list[str], **parameters: str) -> dict[str, Any]:
        return {
            "address": address,
            "description": description,
            "parameters": {key: {"description": text} for key, text in parameters.items()},
            "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in names},
        }

    def operation(action: str, channel_name: str, names: list[str], summary: str) -> dict[str, Any]:
        return {
            "action": action,
            "summary": summary,
            "channel": {"$ref": f"#/channels/{channel_name}"},
            "messages": [{"$ref": f"#/channels/{channel_name}/messages/{name}"} for name in names],
        }

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "agentdock sockets",
            "version": __version__,
            "description": "The WebSocket protocols of agentdock. Authenticate with ?token=<API token> "
            f"(browsers cannot set headers on a WebSocket). {CLOSE_CODES}",
        },
        "defaultContentType": "application/json",
        "channels": {
            "terminal": channel(
                "/api/terminal/{target}",
                "A session's terminal. On attach: a status message, the screen as it stands (recent history, "
                "then the current screen) as output, then live output. ?mode=view attaches read-only "
                "(input, interrupt and resize are refused).",
                [*TERMINAL_IN, *TERMINAL_OUT],
                target="a session id, or a project id or its container id (the project's default shell)",
            ),
            "runEvents": channel(
                "/api/workflow-runs/{runId}/events",
                "One event per state change of a workflow run: first a snapshot, then each change; closed "
                "with 1000 when the run is over.",
                list(RUN_EVENTS),
                runId="the run's id",
            ),
            "environmentEvents": channel(
                "/api/projects/{projectId}/environment/events",
                "A project's environment builds: the running build (or the last outcome), then each event.",
                list(BUILD_EVENTS),
                projectId="the project's id",
            ),
        },
        "operations": {
            "receiveTerminalInput": operation(
                "receive", "terminal", list(TERMINAL_IN), "What a viewer sends to the session"
            ),
            "sendTerminalOutput": operation("send", "terminal", list(TERMINAL_OUT), "What the session sends"),
            "sendRunEvents": operation("send", "runEvents", list(RUN_EVENTS), "A run's changes"),
            "sendEnvironmentEvents": operation(
                "send", "environmentEvents", list(BUILD_EVENTS), "A project's build events"
            ),
        },
        "components": {
            "schemas": schemas,
            "messages": messages,
            "securitySchemes": {"token": {"type": "httpApiKey", "name": "token", "in": "query"}},
        },
    }


@get("/schema/asyncapi.json", include_in_schema=False, sync_to_thread=False)
def asyncapi_schema() -> dict[str, Any]:
    """The AsyncAPI 3 document of the sockets (the token is needed, as for the OpenAPI schema)."""
    return asyncapi_document()
