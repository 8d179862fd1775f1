from __future__ import annotations

from litestar import Controller, get

from service.scaffolding.schemas import Template, to_schema
from service.scaffolding.templates import TEMPLATES


class TemplateController(Controller):
    path = "/api/templates"
    tags = ["templates"]

    @get("/", operation_id="listTemplates", summary="List project templates")
    async def list_templates(self) -> list[Template]:
        """The templates a project can be created from, with their default test command and the
        glob patterns that say which of their files are tests."""
        return [to_schema(template) for template in sorted(TEMPLATES.values(), key=lambda t: t.name)]
