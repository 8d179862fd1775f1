"""git on a workspace, inside the project's environment (docker: in the container, as
``agent``). Hooks, filters and configuration the agent wrote may run here: inside its own
sandbox, as itself. What these commands print is hostile data: parsed strictly, bounded."""

from __future__ import annotations

import re

from service.errors import Conflict
from service.git.host import Author, GitError, identity
from service.runtimes.environment import BoundedSink, Environment, RunResult

SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
BRANCH = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/-]{1,200}$")
# Commit everything on a new branch made from where the workspace is, then go back to the
# branch it was on. The last line is the service's: `agentdock-commit <sha> <branch>`.
COMMIT = """set -e
orig=$(git symbolic-ref --quiet --short HEAD)
git switch --quiet -c "$1"
git add --all
git -c commit.gpgsign=false commit --quiet --no-verify --allow-empty -m "$2"
sha=$(git rev-parse HEAD)
git switch --quiet "$orig"
echo "agentdock-commit $sha $orig"
"""
_COMMIT_LINE = re.compile(r"^agentdock-commit (\S+) (\S+)$", re.MULTILINE)


def _failed(what: str, result: RunResult, timeout: float) -> GitError:
    if result.timed_out:
        return GitError(f"{what} did not finish within {timeout:g} s", returncode=None)
    output = result.text.strip()[-2000:] or "(no output)"
    return GitError(f"{what} failed: {output}", output=output, returncode=result.exit_code)


async def head(environment: Environment, *, timeout: float) -> str | None:
    """The commit HEAD points at, or None in a repository without commits."""
    result = await environment.run(["git", "rev-parse", "--verify", "--quiet", "HEAD"], timeout=timeout)
    if result.exit_code != 0:
        return None
    value = result.text.strip().splitlines()[-1:] or [""]
    return value[0] if SHA.match(value[0]) else None


async def commit_on_branch(
    environment: Environment, branch: str, message: str, *, author: Author, timeout: float
) -> tuple[str, str]:
    """Commit everything on ``branch``, then switch back; answers the commit and the branch
    the workspace was on (both as the workspace's git says: checked, not trusted)."""
    result = await environment.run(
        ["/bin/sh", "-c", COMMIT, "agentdock-commit", branch, message], timeout=timeout, env=identity(author)
    )
    if result.exit_code != 0:
        raise _failed("the commit", result, timeout)
    found = _COMMIT_LINE.findall(result.text)
    if not found:
        raise GitError("the commit printed no result line", output=result.text[-2000:])
    sha, original = found[-1]
    if not SHA.match(sha) or not BRANCH.match(original):
        raise GitError(f"the commit answered a malformed commit or branch: {sha[:80]!r} {original[:80]!r}")
    return sha, original


async def export_bundle(environment: Environment, branch: str, sink: BoundedSink, *, timeout: float) -> None:
    """Write ``git bundle create - refs/heads/<branch>`` from the workspace to ``sink``: the
    commit leaves the sandbox as data only."""
    result = await environment.run(
        ["git", "bundle", "create", "--quiet", "-", f"refs/heads/{branch}"], timeout=timeout, stdout=sink
    )
    if sink.overflowed:
        raise Conflict(f"the run's commits are larger than the {sink.limit // (1024 * 1024)} MiB a bundle may be")
    if result.exit_code != 0:
        raise _failed("git bundle", result, timeout)
