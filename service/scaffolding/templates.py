"""Project templates. A template is data: a folder of files in the package plus a few defaults.

The registry below is the source of truth (name, description, default ``test_command``, the
``test_patterns`` that say which files are tests); the files of template ``<name>`` live in
``template_files/<name>/``. Adding a template is adding a folder and one registry entry.

How a template folder becomes a workspace (see docs/scaffolding.md):

- a file name ending in ``.tmpl`` is rendered (``{{project_name}}``, ``{{package_name}}``,
  ``{{description}}`` replaced) and loses the suffix; other files are copied byte for byte;
- a path part starting with ``dot-`` starts with ``.`` instead (``dot-gitignore`` →
  ``.gitignore``), so the package holds no hidden files;
- ``__package__`` in a path part becomes the package name derived from the project name.
"""

from __future__ import annotations

import keyword
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from service.errors import Invalid

FILES_DIR = Path(__file__).resolve().parent / "template_files"
DEFAULT_TEST_PATTERNS = ("tests/**", "test_*.py", "**/test_*.py", "*_test.*", "**/*_test.*", "*.spec.*", "**/*.spec.*")
PYTHON_TEST_PATTERNS = ("tests/**", "test_*.py", "**/test_*.py", "*_test.py", "**/*_test.py")
RENDER_SUFFIX = ".tmpl"
DOT_PREFIX = "dot-"
PACKAGE_PLACEHOLDER = "__package__"
_PLACEHOLDER = re.compile(r"\{\{\s*(project_name|package_name|description)\s*\}\}")
# Names a package of the project must not take: it would shadow the module for the test runner.
_RESERVED_PACKAGES = frozenset({"test", "tests"}) | frozenset(sys.stdlib_module_names)


@dataclass(frozen=True)
class TemplateSpec:
    name: str
    description: str
    test_command: str
    test_patterns: tuple[str, ...] = DEFAULT_TEST_PATTERNS

    @property
    def files_dir(self) -> Path:
        return FILES_DIR / self.name


TEMPLATES: dict[str, TemplateSpec] = {
    t.name: t
    for t in (
        TemplateSpec("blank", "An empty repository with a README and a .gitignore", "true"),
        TemplateSpec(
            "python",
            "A Python package with a unittest suite that runs on the standard library alone",
            "python3 -m unittest discover -s tests -t .",
            PYTHON_TEST_PATTERNS,
        ),
    )
}


def get_template(name: str) -> TemplateSpec:
    try:
        return TEMPLATES[name]
    except KeyError:
        known = ", ".join(sorted(TEMPLATES))
        raise Invalid(f"unknown template {name!r}; known templates: {known}") from None


def package_name(project_name: str) -> str:
    """A Python identifier for the project's package: ``My-App.2`` → ``my_app_2``."""
    name = re.sub(r"[^0-9a-z_]+", "_", project_name.lower()).strip("_") or "project"
    if name[0].isdigit():
        name = f"p{name}"
    if keyword.iskeyword(name) or name in _RESERVED_PACKAGES:
        name = f"{name}_pkg"
    return name


def _target_part(part: str, context: Mapping[str, str]) -> str:
    if part.startswith(DOT_PREFIX):
        part = "." + part[len(DOT_PREFIX) :]
    part = part.replace(PACKAGE_PLACEHOLDER, context["package_name"])
    return part.removesuffix(RENDER_SUFFIX)


def render(template: TemplateSpec, target: Path, *, project_name: str, description: str) -> list[Path]:
    """Write the template's files into ``target``; return their paths relative to it.

    Synchronous (a handful of small files): callers on the event loop run it in a thread."""
    source = template.files_dir
    if not source.is_dir():
        raise Invalid(f"template {template.name!r} has no files in the package (expected {source})")
    context = {
        "project_name": project_name,
        "package_name": package_name(project_name),
        "description": description.strip() or f"{project_name}, made with agentdock.",
    }
    written: list[Path] = []
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        relative = file.relative_to(source)
        if "__pycache__" in relative.parts:
            continue
        out = Path(*(_target_part(part, context) for part in relative.parts))
        destination = target / out
        destination.parent.mkdir(parents=True, exist_ok=True)
        if file.name.endswith(RENDER_SUFFIX):
            text = _PLACEHOLDER.sub(lambda match: context[match.group(1)], file.read_text(encoding="utf-8"))
            destination.write_text(text, encoding="utf-8")
        else:
            destination.write_bytes(file.read_bytes())
        destination.chmod(0o755 if file.stat().st_mode & 0o111 else 0o644)
        written.append(out)
    return written
