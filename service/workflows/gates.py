"""Gates, run by the service itself and never trusted from the agent: the test command in the
project's environment, the test files' contents, and the commit."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import os
import signal
from pathlib import Path

import msgspec

from service.runtimes.base import ProjectRef
from service.runtimes.docker import DockerRuntime
from service.scaffolding import git
from service.scaffolding.git import Author
from service.workflows.schemas import GateResult

OUTPUT_TAIL_CHARS = 4000
SKIP_DIRS = frozenset({".git", "__pycache__", "node_modules", ".venv", ".mypy_cache", ".pytest_cache"})


class TestOutcome(msgspec.Struct, frozen=True, kw_only=True):
    exit_code: int | None  # None: it did not finish in time
    output_tail: str


async def run_tests(
    project: ProjectRef, test_command: str, *, docker: DockerRuntime, container_id: str | None, timeout: float
) -> TestOutcome:
    """Run ``test_command`` with ``sh -c`` in the workspace of the project's environment."""
    if project.runtime == "docker":
        assert container_id is not None
        try:
            code, output = await docker.run(
                container_id, ["/bin/sh", "-c", test_command], user="agent", timeout=timeout
            )
        except Exception as exc:
            return TestOutcome(exit_code=None, output_tail=f"the test command could not run: {exc}")
        return TestOutcome(exit_code=code, output_tail=_tail(output))
    process = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        test_command,
        cwd=project.path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(timeout):
            output, _ = await process.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        output, _ = await process.communicate()
        return TestOutcome(exit_code=None, output_tail=_tail(output) + f"\n(timed out after {timeout:g} s)")
    return TestOutcome(exit_code=process.returncode, output_tail=_tail(output))


def _tail(output: bytes) -> str:
    return output.decode("utf-8", errors="replace")[-OUTPUT_TAIL_CHARS:]


def test_files_snapshot(workspace: Path, patterns: tuple[str, ...]) -> dict[str, str]:
    """Path → sha256 of every file that counts as a test (synchronous: call it in a thread)."""
    snapshot: dict[str, str] = {}
    for top, dirs, files in os.walk(workspace):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in files:
            path = Path(top) / name
            relative = path.relative_to(workspace).as_posix()
            if any(fnmatch.fnmatchcase(relative, pattern) for pattern in patterns):
                with contextlib.suppress(OSError):
                    snapshot[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return snapshot


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


def safe_directory(path: Path) -> list[str]:
    # Workspaces are handed to the container's user (uid 1000): let git act on them anyway.
    return ["-c", f"safe.directory={path}"]


async def head_commit(path: Path, *, timeout: float) -> str | None:
    try:
        out = await git.run(
            [*safe_directory(path), "rev-parse", "--verify", "--quiet", "HEAD"],
            cwd=path,
            timeout=timeout,
            what="git rev-parse",
        )
    except git.GitError:
        return None
    return out.strip() or None


async def commit_on_branch(path: Path, branch: str, message: str, *, author: Author, timeout: float) -> tuple[str, str]:
    """Commit everything on ``branch`` (created from where the workspace is), then go back to
    the branch the workspace was on; answer the commit id and that branch."""
    safe = safe_directory(path)
    original = (
        await git.run(
            [*safe, "symbolic-ref", "--quiet", "--short", "HEAD"], cwd=path, timeout=timeout, what="git symbolic-ref"
        )
    ).strip()
    await git.run([*safe, "switch", "--quiet", "-c", branch], cwd=path, timeout=timeout, what="git switch -c")
    await git.run([*safe, "add", "--all"], cwd=path, timeout=timeout, what="git add")
    await git.run(
        [*safe, "-c", "commit.gpgsign=false", "commit", "--quiet", "--no-verify", "--allow-empty", "-m", message],
        cwd=path,
        timeout=timeout,
        what="git commit",
        env=git.identity(author),
    )
    sha = (await head_commit(path, timeout=timeout)) or ""
    await git.run([*safe, "switch", "--quiet", original], cwd=path, timeout=timeout, what="git switch back")
    return sha, original
