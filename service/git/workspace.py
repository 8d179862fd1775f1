"""git on a workspace, inside the project's environment (docker: in the container, as
``agent``). Hooks, filters and configuration the agent wrote may run here: inside its own
sandbox, as itself. What these commands print is hostile data: parsed strictly, bounded."""

from __future__ import annotations

import io
import re

import msgspec

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


# --- worktrees: each run works in its own, on its own branch ---------------------------------

WORKTREES = ".agentdock/worktrees"
# Make (or find again) the run's worktree from where the main work tree stands; keep the
# worktrees out of the main tree's status. Last line: `agentdock-worktree <base> [<branch>]`.
ADD_WORKTREE = """set -e
ex=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$ex")"
grep -qx '/.agentdock/' "$ex" 2>/dev/null || echo '/.agentdock/' >> "$ex"
base=$(git rev-parse --verify HEAD)
orig=$(git symbolic-ref --quiet --short HEAD || true)
if [ ! -e "$1/.git" ]; then
  mkdir -p "$(dirname "$1")"
  git worktree prune
  if git rev-parse --verify --quiet "refs/heads/$2" >/dev/null; then git worktree add --quiet "$1" "$2"
  else git worktree add --quiet -b "$2" "$1" HEAD; fi
fi
echo "agentdock-worktree $base $orig"
"""
_WORKTREE_LINE = re.compile(r"^agentdock-worktree (\S+) ?(\S*)$", re.MULTILINE)
COMMIT_HERE = """set -e
git add --all
git -c commit.gpgsign=false commit --quiet --no-verify --allow-empty -m "$1"
echo "agentdock-commit $(git rev-parse HEAD) $(git symbolic-ref --quiet --short HEAD)"
"""
MERGE = """cur=$(git symbolic-ref --quiet --short HEAD) || { echo "agentdock-merge detached"; exit 4; }
[ "$cur" = "$2" ] || { echo "agentdock-merge elsewhere $cur"; exit 5; }
if git merge --ff-only --quiet "$1" >/dev/null 2>&1; then
  echo "agentdock-merge fast-forward $(git rev-parse HEAD)"; exit 0
fi
if git -c commit.gpgsign=false merge --no-ff --no-edit --quiet -m "$3" "$1"; then
  echo "agentdock-merge merge-commit $(git rev-parse HEAD)"; exit 0
fi
files=$(git diff --name-only --diff-filter=U -z | od -A n -v -t x1 | tr -d ' \\n')
git merge --abort >/dev/null 2>&1 || git reset --merge >/dev/null 2>&1 || true
echo "agentdock-merge conflict $files"
exit 3
"""
_MERGE_LINE = re.compile(r"^agentdock-merge (\S+) ?(\S*)$", re.MULTILINE)
REMOVE_WORKTREE = """git worktree remove --force "$1" 2>/dev/null || rm -rf "$1"
git worktree prune
if [ "$3" = delete ]; then git branch -D "$2" >/dev/null 2>&1 || true; fi
exit 0
"""
DIFF_LIMIT = 1024 * 1024  # of the patch in one answer


def worktree_path(run_id: object) -> str:
    return f"{WORKTREES}/{run_id}"


async def add_worktree(environment: Environment, path: str, branch: str, *, timeout: float) -> tuple[str, str | None]:
    """The run's worktree at ``path`` on ``branch``, made from HEAD where it is missing;
    answers HEAD's commit and the main tree's branch (None when detached)."""
    result = await environment.run(["/bin/sh", "-c", ADD_WORKTREE, "agentdock-worktree", path, branch], timeout=timeout)
    found = _WORKTREE_LINE.findall(result.text)
    if result.exit_code != 0 or not found:
        raise _failed("making the run's worktree", result, timeout)
    base, original = found[-1]
    if not SHA.match(base) or (original and not BRANCH.match(original)):
        raise GitError(f"the worktree's base is malformed: {base[:80]!r} {original[:80]!r}")
    return base, original or None


async def commit_in_worktree(
    environment: Environment, path: str, message: str, *, author: Author, timeout: float
) -> str:
    """Commit everything in the run's worktree on its branch; answers the commit."""
    result = await environment.run(
        ["/bin/sh", "-c", COMMIT_HERE, "agentdock-commit", message], timeout=timeout, env=identity(author), cwd=path
    )
    if result.exit_code != 0:
        raise _failed("the commit", result, timeout)
    found = _COMMIT_LINE.findall(result.text)
    if not found or not SHA.match(found[-1][0]):
        raise GitError("the commit printed no result line", output=result.text[-2000:])
    return str(found[-1][0])


async def remove_worktree(
    environment: Environment, path: str, branch: str, *, delete_branch: bool, timeout: float
) -> None:
    await environment.run(
        ["/bin/sh", "-c", REMOVE_WORKTREE, "agentdock-remove", path, branch, "delete" if delete_branch else "keep"],
        timeout=timeout,
    )


class MergeConflict(Conflict):
    """409 with the conflicting paths: ``{detail, conflicts: [path]}``."""

    def __init__(self, detail: str, conflicts: list[str]) -> None:
        super().__init__(detail)
        self.conflicts = conflicts

    @property
    def body_extra(self) -> dict[str, object]:
        return {"conflicts": self.conflicts}


async def merge(
    environment: Environment, branch: str, into: str, message: str, *, author: Author, timeout: float
) -> tuple[str, str]:
    """Merge ``branch`` into ``into`` in the main work tree: a fast-forward where possible,
    else a merge commit. A conflict leaves everything as it was (``MergeConflict``, with the
    conflicting paths). Answers how it merged and the resulting commit."""
    result = await environment.run(
        ["/bin/sh", "-c", MERGE, "agentdock-merge", branch, into, message], timeout=timeout, env=identity(author)
    )
    found = _MERGE_LINE.findall(result.text)
    if result.timed_out:
        raise _failed("the merge", result, timeout)
    kind, value = found[-1] if found else ("", "")
    if result.exit_code == 0 and kind in ("fast-forward", "merge-commit") and SHA.match(value):
        return kind, value
    if kind == "conflict":
        try:
            names = [n for n in bytes.fromhex(value).decode("utf-8", "replace").split("\0") if n]
        except ValueError:
            names = []
        detail = "the merge conflicts; nothing was changed" if names else f"the merge failed: {result.text[-1000:]}"
        raise MergeConflict(detail, names[:1000])
    if kind == "elsewhere":
        raise Conflict(f"the workspace is on the branch {value!r}, not on {into!r} where the run started")
    if kind == "detached":
        raise Conflict("the workspace's HEAD is detached: check out the branch the run started from")
    raise _failed("the merge", result, timeout)


class DiffFile(msgspec.Struct, kw_only=True):
    path: str
    additions: int | None  # None: a binary file
    deletions: int | None


async def diff_files(environment: Environment, base: str, branch: str, *, timeout: float) -> list[DiffFile]:
    result = await environment.run(
        ["git", "diff", "--no-renames", "--numstat", "-z", base, f"refs/heads/{branch}", "--"],
        timeout=timeout,
        output_limit=8 * 1024 * 1024,
    )
    if result.exit_code != 0 or result.truncated:
        raise _failed("git diff", result, timeout)
    files = []
    for record in result.output.split(b"\0"):
        if not record.strip():
            continue
        parts = record.decode("utf-8", "replace").split("\t", 2)
        if len(parts) != 3:
            continue
        added, deleted, path = parts
        files.append(
            DiffFile(
                path=path.lstrip("\n"),
                additions=int(added) if added.isdigit() else None,
                deletions=int(deleted) if deleted.isdigit() else None,
            )
        )
    return files


async def diff_patch(
    environment: Environment, base: str, branch: str, paths: list[str], *, timeout: float
) -> tuple[str, bool]:
    """The unified diff of ``paths``, cut at DIFF_LIMIT bytes; answers it and whether it was cut."""
    if not paths:
        return "", False
    buffer = io.BytesIO()
    sink = BoundedSink(buffer, DIFF_LIMIT)
    result = await environment.run(
        ["git", "diff", "--no-renames", "--no-color", base, f"refs/heads/{branch}", "--", *paths],
        timeout=timeout,
        stdout=sink,
    )
    if not sink.overflowed and result.exit_code != 0:
        raise _failed("git diff", result, timeout)
    return buffer.getvalue().decode("utf-8", "replace"), sink.overflowed


async def head_of(environment: Environment, branch: str, *, timeout: float) -> str:
    result = await environment.run(["git", "rev-parse", "--verify", f"refs/heads/{branch}"], timeout=timeout)
    value = result.text.strip().splitlines()[-1:] or [""]
    if result.exit_code != 0 or not SHA.match(value[0]):
        raise Conflict(f"the run's branch {branch} is gone")
    return value[0]
