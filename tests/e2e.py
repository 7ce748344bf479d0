"""End-to-end helpers: a ``LocalCluster`` plus what a person would read with ``kcat``."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterable
from typing import Any

from saga_streams.local.cluster import LocalCluster
from saga_streams.money import cents

__all__ = ["Stack", "cents"]


def _kcat() -> str:
    kcat = shutil.which("kcat")
    assert kcat, "kcat is not installed: run scripts/install-test-tools (make test does)"
    return kcat


class Stack(LocalCluster):
    def kcat(self, *args: str) -> str:
        result = subprocess.run(
            [_kcat(), *self.kafka.kcat_args(), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return result.stdout

    def kcat_produce(self, topic: str, lines: Iterable[str], *extra_args: str) -> None:
        """Produce one message per line with ``kcat -P``, as a person would: kcat's own
        partitioner (CRC32 of the key) unless ``extra_args`` choose a partition (``-p N``).
        ``extra_args`` ``-K '\\t'`` reads each line as ``key<TAB>value``."""
        result = subprocess.run(
            [_kcat(), *self.kafka.kcat_args(), "-t", topic, "-P", *extra_args],
            input="".join(f"{line}\n" for line in lines),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"kcat -P -t {topic} failed: {result.stderr}"

    def topic_messages(self, topic: str) -> list[dict[str, Any]]:
        """Every message of a topic, read with ``kcat -C -e`` as README shows."""
        out = self.kcat("-t", topic, "-C", "-e", "-q")
        return [json.loads(line) for line in out.splitlines() if line.strip()]
