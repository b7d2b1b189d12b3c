"""Crash points for the recovery tests: a real SIGKILL at a chosen step of a real run.

A process whose environment names a point in PLATFORM_FAILPOINT kills itself there, exactly as an
operator's `kill -9` or an out-of-memory kill would. Unset in every deployment, it costs one lookup."""

import os
import signal


def failpoint(name: str) -> None:
    if os.environ.get("PLATFORM_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
