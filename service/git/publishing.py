"""The service's own bare repositories, from which runs are published.

A run's commit leaves the sandbox as a git bundle (data), is fetched here into a bare
repository under ``<data>/publish/`` that only the service writes (no hooks, a configuration
the service wrote, objects checked on the way in), and is pushed from here to the URL the
service itself looked up: never a URL, helper or option read from a workspace. The token
exists only in that one push process's environment.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from service.git import host as git
from service.scaffolding.redaction import Redactor

# Every fetch and push from a publishing repository: no hooks, objects checked.
SAFE = ["-c", "core.hooksPath=/dev/null", "-c", "transfer.fsckObjects=true"]


async def ensure_repository(path: Path, *, timeout: float) -> None:
    if await asyncio.to_thread((path / "HEAD").is_file):
        return
    await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
    await git.run(["init", "--quiet", "--bare", str(path)], cwd=path.parent, timeout=timeout, what="git init --bare")


async def fetch_bundle(path: Path, bundle: Path, branch: str, *, timeout: float) -> str:
    """Fetch ``refs/heads/<branch>`` from the bundle into the repository; answer its commit
    as this repository (not the workspace) says."""
    ref = f"refs/heads/{branch}"
    await git.run(
        [*SAFE, "fetch", "--quiet", "--no-tags", str(bundle), f"+{ref}:{ref}"],
        cwd=path,
        timeout=timeout,
        what="fetching the run's bundle",
    )
    return (await git.run(["rev-parse", "--verify", ref], cwd=path, timeout=timeout, what="git rev-parse")).strip()


async def push_branch(path: Path, url: str, branch: str, *, token: str, timeout: float) -> None:
    """Push ``branch`` to ``url`` with the token given only to this process, for that URL."""
    ref = f"refs/heads/{branch}"
    await git.run(
        [*SAFE, *git.credential_args(url), "push", "--quiet", "--", url, f"{ref}:{ref}"],
        cwd=path,
        timeout=timeout,
        what=f"git push of {branch}",
        env={git.TOKEN_ENV: token},
        redact=Redactor([token]),
    )
