#!/usr/bin/env python3
"""A scripted stand-in for an AI coding agent CLI (`claude -p PROMPT` and the like).

It reads the step from AGENTDOCK_STEP and AGENTDOCK_ATTEMPT (as a real agent wrapper may),
prints progress, edits files in its working directory (the workspace), and can misbehave,
as told by --mode. Standard library only: it runs on the host and in agentdock-base.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

TEST = """import unittest

from feature import double


class DoubleTest(unittest.TestCase):
    def test_double(self):
        self.assertEqual(double(21), 42)
"""
PASSING_TEST = """import unittest


class AlreadyPassing(unittest.TestCase):
    def test_nothing(self):
        self.assertTrue(True)
"""
IMPLEMENTATION = "def double(x):\n    return x * 2\n"
REFACTORED = '"""Doubling."""\n\n\ndef double(x):\n    """Twice ``x``."""\n    return 2 * x\n'


def say(text: str) -> None:
    print(text, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="honest")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("prompt")
    args = parser.parse_args()
    step = os.environ.get("AGENTDOCK_STEP", "?")
    attempt = int(os.environ.get("AGENTDOCK_ATTEMPT", "1"))
    prompts = Path(".agent-prompts")
    prompts.mkdir(exist_ok=True)
    (prompts / f"{step}-{attempt}.txt").write_text(args.prompt)
    say(f"fake-agent: step {step}, attempt {attempt}, mode {args.mode}")
    for _ in range(int(args.delay * 10)):
        time.sleep(0.1)
        say("fake-agent: thinking …")

    if args.mode == "hang":
        say("fake-agent: thinking very hard")
        time.sleep(10_000)
        return 0
    if args.mode == "blocked" and step == "red":
        say("BLOCKED: the task needs a database I cannot reach")
        return 0

    work(step, attempt, args.mode)
    say("fake-agent: done")
    return 0


def work(step: str, attempt: int, mode: str = "honest") -> None:
    """The files one step writes in the working directory (shared with tests/hostile_agent.py)."""
    tests = Path("tests")
    if step == "red":
        tests.mkdir(exist_ok=True)
        if mode == "red-passes-first" and attempt == 1:
            (tests / "test_feature.py").write_text(PASSING_TEST)
        else:
            (tests / "test_feature.py").write_text(TEST)
        say("fake-agent: wrote tests/test_feature.py")
    elif step == "green":
        Path("feature.py").write_text(IMPLEMENTATION)
        if mode == "edits-tests":
            (tests / "test_feature.py").write_text(PASSING_TEST)  # cheating: replace the failing test
        say("fake-agent: wrote feature.py")
    elif step == "refactor":
        Path("feature.py").write_text(REFACTORED)
        say("fake-agent: refactored feature.py")


if __name__ == "__main__":
    sys.exit(main())
