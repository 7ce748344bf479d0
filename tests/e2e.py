"""End-to-end helpers: a ``LocalCluster`` plus what a person would read with ``kcat``."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from saga_streams.local.cluster import LocalCluster
from saga_streams.money import cents

__all__ = ["Stack", "cents"]


class Stack(LocalCluster):
    def kcat(self, *args: str) -> str:
        kcat = shutil.which("kcat")
        assert kcat, "kcat is not installed: run scripts/install-test-tools (make test does)"
        result = subprocess.run(
            [kcat, "-b", self.kafka.bootstrap, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return result.stdout

    def topic_messages(self, topic: str) -> list[dict[str, Any]]:
        """Every message of a topic, read with ``kcat -C -e`` as README shows."""
        out = self.kcat("-t", topic, "-C", "-e", "-q")
        return [json.loads(line) for line in out.splitlines() if line.strip()]
