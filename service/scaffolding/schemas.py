"""API shapes of templates."""

from __future__ import annotations

import msgspec

from service.scaffolding.templates import TemplateSpec


class Template(msgspec.Struct, kw_only=True):
    name: str
    description: str
    test_command: str
    test_patterns: list[str]


def to_schema(template: TemplateSpec) -> Template:
    return Template(
        name=template.name,
        description=template.description,
        test_command=template.test_command,
        test_patterns=list(template.test_patterns),
    )
