"""Gates, judged by the service and never trusted from the agent. The evidence (the test
command's exit code and output tail, the test files' snapshots) is gathered in the project's
environment by ``testrun`` and the environment's snapshots; this module only judges."""

from __future__ import annotations

import msgspec

from service.workflows.schemas import GateResult


class TestOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """The evidence of one test run (gathered by ``service.workflows.testrun``)."""

    exit_code: int | None  # None: it did not finish in time
    output_tail: str


def changed_files(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def judge(gate: str, outcome: TestOutcome, *, before: dict[str, str], after: dict[str, str]) -> GateResult:  # noqa: PLR0911
    """The red, green and refactor gates. ``before`` is the test files' state the step must
    change (red) or keep (green, refactor)."""
    changed = changed_files(before, after)

    def result(passed: bool, reason: str) -> GateResult:
        return GateResult(
            passed=passed,
            reason=reason,
            exit_code=outcome.exit_code,
            output_tail=outcome.output_tail,
            tests_changed=changed,
        )

    if outcome.exit_code is None:
        return result(False, "the test command did not finish")
    if gate == "red":
        if not changed:
            return result(False, "no test file changed: write failing tests first")
        if outcome.exit_code == 0:
            return result(False, "the tests pass already: red needs failing tests")
        return result(True, "new tests fail as they should")
    if changed:
        return result(False, f"the tests written in red were changed: {', '.join(changed)}")
    if outcome.exit_code != 0:
        return result(False, f"the test command failed (exit code {outcome.exit_code})")
    return result(True, "the tests pass and are unchanged")
