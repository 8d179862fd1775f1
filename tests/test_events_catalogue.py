"""docs/events.md and the code name the same events: nothing logged is undocumented,
nothing documented is never logged."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOG_CALL = re.compile(r"""\blog\.(?:debug|info|warning|error|exception|critical)\(\s*["']([a-z_]+(?:\.[a-z_]+)+)["']""")
DOC_ROW = re.compile(r"^\| `([a-z_.]+)` \|", re.MULTILINE)


def events_in_code() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "service").rglob("*.py"):
        found |= set(LOG_CALL.findall(path.read_text()))
    return found


def events_in_docs() -> set[str]:
    return set(DOC_ROW.findall((ROOT / "docs" / "events.md").read_text()))


def test_catalogue_matches_code() -> None:
    code, docs = events_in_code(), events_in_docs()
    assert code, "no log events found: the pattern is broken"
    assert code - docs == set(), "logged but not in docs/events.md"
    assert docs - code == set(), "in docs/events.md but never logged"
