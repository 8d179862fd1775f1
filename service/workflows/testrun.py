"""A gate's test run: the project's test command, in its environment, with nothing the agent
left behind deciding the result."""

from __future__ import annotations

from collections.abc import Callable

from service.errors import AppError
from service.runtimes.environment import Environment
from service.workflows.gates import TestOutcome

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


async def run_tests(
    environment: Environment,
    test_command: str,
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    redact: Callable[[str], str] = str,
    cwd: str | None = None,
) -> TestOutcome:
    """Run ``test_command`` with ``sh -c`` in the workspace, inside the project's environment,
    with ``env`` (the agents' settings and secrets) as its exec environment; the output kept
    is ``redact``-ed (no secret value is stored)."""
    argv = ["/bin/sh", "-c", GATE_WRAPPER, "agentdock-gate", test_command]
    try:
        result = await environment.run(argv, timeout=timeout, env=env, cwd=cwd)
    except AppError as exc:
        return TestOutcome(exit_code=None, output_tail=f"the test command could not run: {redact(exc.detail)}")
    tail = redact(result.text)[-OUTPUT_TAIL_CHARS:]
    if result.timed_out:
        return TestOutcome(exit_code=None, output_tail=f"{tail}\n(timed out after {timeout:g} s)")
    return TestOutcome(exit_code=result.exit_code, output_tail=tail)
