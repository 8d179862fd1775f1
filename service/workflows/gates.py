"""Gates, judged by the service and never trusted from the agent. The evidence is gathered in
the project's environment (the test command's exit code and output tail, the test files'
snapshots); this module only runs the test command there and judges."""

from __future__ import annotations

import msgspec

from service.errors import AppError
from service.runtimes.environment import Environment
from service.workflows.schemas import GateResult

OUTPUT_TAIL_CHARS = 4000
# The test command, with nothing the agent left behind deciding the result: Python reads and
# writes bytecode only under a fresh, empty PYTHONPYCACHEPREFIX made for this one run, so a
# stale .pyc in the workspace (whose size/mtime check the agent can fool) is never used.
GATE_WRAPPER = """p=$(mktemp -d "${TMPDIR:-/tmp}/agentdock-gate.XXXXXXXX") || exit 125
export PYTHONPYCACHEPREFIX="$p"
/bin/sh -c "$1"
c=$?
rm -rf "$p"
exit $c
"""


class TestOutcome(msgspec.Struct, frozen=True, kw_only=True):
    exit_code: int | None  # None: it did not finish in time
    output_tail: str


async def run_tests(environment: Environment, test_command: str, *, timeout: float) -> TestOutcome:
    """Run ``test_command`` with ``sh -c`` in the workspace, inside the project's environment."""
    try:
        result = await environment.run(["/bin/sh", "-c", GATE_WRAPPER, "agentdock-gate", test_command], timeout=timeout)
    except AppError as exc:
        return TestOutcome(exit_code=None, output_tail=f"the test command could not run: {exc.detail}")
    tail = result.text[-OUTPUT_TAIL_CHARS:]
    if result.timed_out:
        return TestOutcome(exit_code=None, output_tail=f"{tail}\n(timed out after {timeout:g} s)")
    return TestOutcome(exit_code=result.exit_code, output_tail=tail)


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
