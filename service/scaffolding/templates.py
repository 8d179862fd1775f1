"""Project templates. A template is data: a folder of files in the package plus a few defaults."""

from __future__ import annotations

from dataclasses import dataclass

from service.errors import Invalid

DEFAULT_TEST_PATTERNS = ("tests/**", "test_*.py", "**/test_*.py", "*_test.*", "**/*_test.*", "*.spec.*", "**/*.spec.*")


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    test_command: str
    test_patterns: tuple[str, ...] = DEFAULT_TEST_PATTERNS


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template("blank", "An empty repository with a README and a .gitignore", "true"),
        Template(
            "python",
            "A Python package with a unittest suite that runs on the standard library alone",
            "python3 -m unittest discover -s tests -t .",
        ),
    )
}


def get_template(name: str) -> Template:
    try:
        return TEMPLATES[name]
    except KeyError:
        known = ", ".join(sorted(TEMPLATES))
        raise Invalid(f"unknown template {name!r}; known templates: {known}") from None
