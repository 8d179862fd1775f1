"""git on the service's host, run as asyncio subprocesses under a deadline (never blocking the
event loop). Only for trees no agent has had: a brand-new workspace being scaffolded, and
the service's own bare publishing repositories. Never on a workspace after that.

Every command runs with a clean environment: no terminal prompts, no inherited ``GIT_*`` or
``AGENTDOCK_*`` variables (the service's own tokens live there), no system or global git
configuration of the host, the C locale (stable messages). Output that is shown to a client
or logged goes through a ``Redactor`` first.

A push that needs credentials gets them from a credential helper given on the command line,
which reads the token from an environment variable of that one git process: the token is
never in an argument (visible in ``ps``), a URL, a file in the workspace, or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from service.errors import Invalid, Unavailable, UpstreamError
from service.scaffolding.redaction import Redactor

DEFAULT_BRANCH = "main"
TOKEN_ENV = "AGENTDOCK_GIT_TOKEN"  # noqa: S105 - the name of the variable, not a secret
# Answers only ``get``, so that a ``store`` never writes the token anywhere.
CREDENTIAL_HELPER = (
    f'!f() {{ test "$1" = get || exit 0; echo username=x-access-token; printf "password=%s\\n" "${TOKEN_ENV}"; }}; f'
)
_LOCAL_SCHEMES = ("file",)
_REMOTE_SCHEMES = ("https", "http")
# Messages of a clone that failed because of what the client asked for, not because the
# remote side is broken or unreachable.
_CLIENT_FAULT = re.compile(
    r"not found|does not exist|does not appear to be a git repository|not a git repository"
    r"|authentication failed|could not read username|terminal prompts disabled"
    r"|returned error: 40[0134]|invalid|couldn't find remote ref",
    re.IGNORECASE,
)


class GitError(UpstreamError):
    """A git command failed or ran past its deadline. ``output`` is git's stderr, redacted."""

    def __init__(self, detail: str, *, output: str = "", returncode: int | None = None) -> None:
        super().__init__(detail)
        self.output = output
        self.returncode = returncode

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


@dataclass(frozen=True)
class Author:
    name: str
    email: str


@dataclass(frozen=True)
class CloneSource:
    """A validated ``repo_url``: an http(s) URL without credentials, a ``file://`` URL, or an
    absolute path on the service's host."""

    url: str
    local: bool


def parse_clone_source(url: str) -> CloneSource:
    if not url or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise Invalid("repo_url must be a URL or path without spaces or control characters")
    if url.startswith("/"):
        return CloneSource(url=url, local=True)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in _LOCAL_SCHEMES:
        if not parts.path.startswith("/"):
            raise Invalid("a file:// repo_url needs an absolute path, like file:///srv/git/project.git")
        return CloneSource(url=url, local=True)
    if scheme in _REMOTE_SCHEMES:
        if "@" in parts.netloc:
            raise Invalid(
                "repo_url must not carry credentials (user@ or user:password@): they would be kept in the "
                "workspace's .git/config and shown in the API. Clone public repositories by URL, or use the "
                "github option for repositories the service's GitHub token can reach"
            )
        if not parts.hostname:
            raise Invalid(f"repo_url {url!r} has no host")
        return CloneSource(url=url, local=False)
    raise Invalid(
        "repo_url must be an https:// (or http://) URL, a file:// URL, or an absolute path on the service's "
        "host; ssh and other transports are not supported"
    )


def _child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GIT_", "AGENTDOCK_")) and key not in ("SSH_ASKPASS", "LANGUAGE")
    }
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        LC_ALL="C",
        LANG="C",
    )
    if extra:
        env.update(extra)
    return env


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _message(stderr: str, stdout: str) -> str:
    """git's own words: stderr without the chatter, else stdout."""
    lines = [
        line.rstrip()
        for line in (stderr or stdout).splitlines()
        if line.strip() and not line.startswith(("Cloning into", "hint:"))
    ]
    return "\n".join(lines) or "(no output)"


async def run(
    args: Sequence[str],
    *,
    cwd: Path | None,
    timeout: float,
    what: str,
    env: Mapping[str, str] | None = None,
    redact: Redactor | None = None,
) -> str:
    """Run ``git *args``; return its stdout. A failure or a timeout raises ``GitError`` whose
    detail names ``what`` and quotes git's (redacted) message."""
    redact = redact or Redactor()
    try:
        process = await asyncio.create_subprocess_exec(
            "git",
            *args,
            cwd=cwd,
            env=_child_env(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: a timeout ends its helpers too
        )
    except FileNotFoundError:
        if shutil.which("git") is None:
            raise Unavailable("git is not installed on the service's host") from None
        raise GitError(f"{what} failed: the directory {cwd} does not exist", returncode=-1) from None
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate()
    except TimeoutError:
        _kill_group(process)
        await process.wait()
        raise GitError(f"{what} did not finish within {timeout:g} s", returncode=None) from None
    except BaseException:
        _kill_group(process)
        raise
    stdout = out.decode("utf-8", errors="replace")
    if process.returncode != 0:
        output = redact(_message(err.decode("utf-8", errors="replace"), stdout))
        raise GitError(f"{what} failed: {output}", output=output, returncode=process.returncode)
    return stdout


def identity(author: Author) -> dict[str, str]:
    return {
        "GIT_AUTHOR_NAME": author.name,
        "GIT_AUTHOR_EMAIL": author.email,
        "GIT_COMMITTER_NAME": author.name,
        "GIT_COMMITTER_EMAIL": author.email,
    }


async def init_and_commit(path: Path, *, author: Author, message: str, timeout: float) -> str:
    """``git init -b main``, add everything, commit as ``author``; return the commit id."""
    await run(["init", "--quiet", "-b", DEFAULT_BRANCH], cwd=path, timeout=timeout, what="git init")
    await run(["add", "--all"], cwd=path, timeout=timeout, what="git add")
    await run(
        ["-c", "commit.gpgsign=false", "commit", "--quiet", "--no-verify", "--allow-empty", "-m", message],
        cwd=path,
        timeout=timeout,
        what="git commit",
        env=identity(author),
    )
    return await head(path, timeout=timeout) or ""


async def head(path: Path, *, timeout: float) -> str | None:
    """The commit HEAD points at, or None in a repository without commits."""
    try:
        out = await run(["rev-parse", "--verify", "--quiet", "HEAD"], cwd=path, timeout=timeout, what="git rev-parse")
    except GitError:
        return None
    return out.strip() or None


async def current_branch(path: Path, *, timeout: float) -> str:
    out = await run(["symbolic-ref", "--quiet", "--short", "HEAD"], cwd=path, timeout=timeout, what="git symbolic-ref")
    return out.strip()


async def clone(source: CloneSource, path: Path, *, timeout: float) -> None:
    """Clone into ``path`` (an empty directory). A failure is 400 where the request is at
    fault (no such repository, not a repository, access refused), else 502."""
    try:
        await run(
            ["clone", "--quiet", "--no-local", "--", source.url, str(path)],
            cwd=path.parent,
            timeout=timeout,
            what="git clone",
        )
    except GitError as exc:
        if exc.timed_out:
            raise GitError(f"cloning {source.url} did not finish within {timeout:g} s") from None
        message = f"could not clone {source.url}: {exc.output}"
        if source.local or _CLIENT_FAULT.search(exc.output):
            raise Invalid(message) from None
        raise GitError(message, output=exc.output, returncode=exc.returncode) from None


async def set_remote(path: Path, name: str, url: str, *, timeout: float) -> None:
    """Point remote ``name`` at ``url``; an existing remote of that name is renamed ``upstream``."""
    remotes = (await run(["remote"], cwd=path, timeout=timeout, what="git remote")).split()
    if name in remotes:
        await run(["remote", "rename", name, "upstream"], cwd=path, timeout=timeout, what="git remote rename")
    await run(["remote", "add", name, url], cwd=path, timeout=timeout, what="git remote add")


def credential_args(remote_url: str) -> list[str]:
    """``-c`` options that make git ask our helper, and only it, for ``remote_url``'s host.

    The first option empties the helper list, so that no helper of the host's git
    configuration (``store``, a keychain) is asked or told about the token."""
    parts = urlsplit(remote_url)
    if parts.scheme.lower() not in _REMOTE_SCHEMES or not parts.hostname:
        return []
    origin = f"{parts.scheme.lower()}://{parts.netloc}"
    return ["-c", "credential.helper=", "-c", f"credential.{origin}.helper={CREDENTIAL_HELPER}"]


async def push(path: Path, remote: str, *, token: str | None, timeout: float) -> str:
    """Push the current branch to ``remote`` and track it; return the branch name."""
    redact = Redactor([token])
    url = (await run(["remote", "get-url", remote], cwd=path, timeout=timeout, what="git remote get-url")).strip()
    branch = await current_branch(path, timeout=timeout)
    env = {TOKEN_ENV: token} if token else None
    await run(
        [*credential_args(url), "push", "--quiet", "--set-upstream", remote, f"HEAD:refs/heads/{branch}"],
        cwd=path,
        timeout=timeout,
        what=f"git push to {remote}",
        env=env,
        redact=redact,
    )
    return branch
