"""Faust workers as child processes: started, checked for readiness, stopped or killed.

Used by ``python -m saga_streams run`` and by the end-to-end tests, so both start the
system the same way a person would: ``python -m saga_streams worker ROLE --web-port N``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from saga_streams.http_client import http_json

__all__ = ["WorkerError", "WorkerProcess"]


class WorkerError(RuntimeError):
    """A worker exited, or did not become ready in time."""


class WorkerProcess:
    """One ``faust worker`` of one role, on its own web port, logging to a file or a pipe."""

    def __init__(
        self,
        role: str,
        web_port: int,
        env: Mapping[str, str],
        log_path: Path | None = None,
        command: Sequence[str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.role = role
        self.web_port = web_port
        self.env = dict(env)
        self.log_path = log_path
        # The default is the project's own entry point; tests also run the plain
        # ``faust -A module worker`` form through ``command``.
        self.command = (
            list(command)
            if command is not None
            else [
                sys.executable,
                "-m",
                "saga_streams",
                "worker",
                role,
                "--web-port",
                str(web_port),
                *extra_args,
            ]
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self, pipe_output: bool = False) -> None:
        if self.log_path is not None and not pipe_output:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command,
            env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe_output else (self._log or subprocess.DEVNULL),
            stderr=subprocess.STDOUT,
            # Own process group: a terminal's Ctrl-C reaches the supervisor, which then
            # stops the workers in order instead of all at once.
            start_new_session=True,
        )

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def health(self, timeout: float = 2.0) -> tuple[int, Any]:
        return http_json("GET", f"{self.url}/health", timeout=timeout)

    def wait_ready(self, timeout: float = 90.0) -> float:
        """Block until ``GET /health`` says ready; return the seconds it took."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if not self.is_running():
                raise WorkerError(f"{self.role} exited with {self.returncode()}: {self.log_tail()}")
            try:
                status, _ = self.health()
                if status == 200:
                    return time.monotonic() - began
            except OSError:
                pass  # not listening yet
            time.sleep(0.2)
        raise WorkerError(f"{self.role} not ready after {timeout:.0f}s: {self.log_tail()}")

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def terminate(self) -> None:
        """SIGTERM without waiting: lets several workers stop at once."""
        self._signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (Faust stops cleanly and commits its offsets), SIGKILL if it hangs."""
        self.terminate()
        try:
            self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed or committed."""
        self._signal(signal.SIGKILL)
        self.wait(30)

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def wait(self, timeout: float | None = None) -> int | None:
        if self.proc is None:
            return None
        code = self.proc.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _signal(self, signum: int) -> None:
        if self.is_running():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):  # it died just now
                os.killpg(self.proc.pid, signum)
