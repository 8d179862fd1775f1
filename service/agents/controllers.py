from __future__ import annotations

from litestar import Controller, get

from service.agents.presets import PRESETS, Agent


class AgentsController(Controller):
    path = "/api/agents"
    tags = ["agents"]

    @get("/", operation_id="listAgents", summary="The agent presets a project may choose")
    async def list_agents(self) -> list[Agent]:
        return [Agent(name=p.name, command=list(p.command), description=p.description) for p in PRESETS.values()]
