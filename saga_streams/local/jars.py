"""The Kafka broker's jars, fetched from Maven Central once and cached outside the repo.

No Docker and no release tarball: ``kafka/pom.xml`` lists ``org.apache.kafka:kafka_2.13``
plus the SLF4J binding the tarball would add, and ``mvn dependency:copy-dependencies``
fills a classpath directory under ``${SAGA_KAFKA_CACHE:-~/.cache/saga_streams}``, shared
by every checkout.  ``mvn`` is only needed the first time; afterwards :func:`ensure_jars`
returns the cached directory at once.  Kept apart from the broker itself: it is the only
part that talks to the network, and ``make install`` calls it alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from saga_streams.local.errors import LocalKafkaError, require_tool

__all__ = ["KAFKA_VERSION", "cache_root", "ensure_jars", "jars_dir", "kafka_config_dir"]

#: The Kafka release whose jars are fetched (org.apache.kafka:kafka_2.13:<version>).
KAFKA_VERSION: Final = "3.9.1"

#: Where ``pom.xml`` and ``log4j.properties`` live: ``<repo>/kafka`` unless overridden.
_REPO_KAFKA_DIR: Final = Path(__file__).resolve().parents[2] / "kafka"

#: Written into the jars directory last: its presence (with the right content) means the
#: directory is complete.  Java's ``dir/*`` classpath only picks ``*.jar`` files.
_MARKER: Final = ".complete"

#: Generous: a cold resolution of the ~57 jars (~46 MB) takes seconds on a good link.
_MVN_TIMEOUT_S: Final = 900.0

_ANSI: Final = re.compile(r"\x1b\[[0-9;]*m")
# Maven's generic advice printed after every failure.
_MVN_BOILERPLATE: Final = re.compile(
    r"^\[ERROR\]\s*($|To see the full|Re-run Maven|For more information|\[Help \d+\])"
)


def kafka_config_dir() -> Path:
    """Directory holding ``pom.xml`` and ``log4j.properties`` (env ``SAGA_KAFKA_DIR``)."""
    override = os.environ.get("SAGA_KAFKA_DIR")
    return Path(override).expanduser().resolve() if override else _REPO_KAFKA_DIR


def cache_root() -> Path:
    """``${SAGA_KAFKA_CACHE:-~/.cache/saga_streams}``: outside git, shared by checkouts."""
    override = os.environ.get("SAGA_KAFKA_CACHE")
    root = Path(override) if override else Path.home() / ".cache" / "saga_streams"
    return root.expanduser().resolve()


def jars_dir(version: str = KAFKA_VERSION) -> Path:
    """The classpath directory for one Kafka version: ``<cache>/kafka-<version>/libs``."""
    return cache_root() / f"kafka-{version}" / "libs"


def _fingerprint(version: str, pom: Path) -> str:
    """Identifies what a jars directory was built from (version and pom content).

    Editing the pom (say, another logging binding) therefore refreshes the cache.
    """
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    return f"kafka {version} pom-sha256 {digest}\n"


def _is_complete(libs: Path, fingerprint: str) -> bool:
    try:
        return (libs / _MARKER).read_text() == fingerprint
    except OSError:
        return False


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so that concurrent processes run mvn only once."""
    with path.open("a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _mvn_error_summary(output: str, max_lines: int = 4) -> str:
    """The informative tail of mvn's output, on one line."""
    lines = [_ANSI.sub("", line).strip() for line in output.splitlines()]
    useful = [line for line in lines if line and not _MVN_BOILERPLATE.match(line)]
    return " | ".join(useful[-max_lines:]) or "(no output)"


def ensure_jars(version: str = KAFKA_VERSION) -> Path:
    """Return a complete classpath directory for Kafka ``version``, fetching it if needed.

    A complete directory (marker file present and matching) is returned at once, without
    needing ``mvn``.  Otherwise ``mvn dependency:copy-dependencies`` fills a temporary
    directory next to the target, which is then renamed into place, so that an
    interrupted download never leaves a half-filled classpath behind.
    """
    pom = kafka_config_dir() / "pom.xml"
    if not pom.is_file():
        raise LocalKafkaError(f"{pom} not found (set SAGA_KAFKA_DIR to the kafka/ directory)")
    fingerprint = _fingerprint(version, pom)
    target = jars_dir(version)
    if _is_complete(target, fingerprint):
        return target

    mvn = require_tool("mvn", "once, to fetch the Kafka jars from Maven Central")
    require_tool("java", "to run Maven and the Kafka broker")
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / ".lock"):
        if _is_complete(target, fingerprint):  # another process just finished it
            return target
        tmp = Path(tempfile.mkdtemp(prefix=".libs-", dir=target.parent))
        try:
            _fetch_into(mvn, pom, version, tmp)
            (tmp / _MARKER).write_text(fingerprint)
            if target.exists():  # stale or incomplete (no marker): replace it
                shutil.rmtree(target)
            os.rename(tmp, target)  # atomic on the same filesystem
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def _fetch_into(mvn: str, pom: Path, version: str, into: Path) -> None:
    """``mvn dependency:copy-dependencies`` of the pom into ``into``; LocalKafkaError
    (with mvn's own reason) if it fails, times out or leaves out Kafka's jar."""
    cmd = [
        mvn,
        "-B",  # batch mode: no progress bars, no prompts
        "-q",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={into}",
        "-DincludeScope=runtime",
        # A -D user property overrides the pom's <kafka.version> property.
        f"-Dkafka.version={version}",
    ]
    try:
        result = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=_MVN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LocalKafkaError(
            f"mvn did not finish fetching Kafka {version} jars within {_MVN_TIMEOUT_S:.0f}s"
        ) from exc
    if result.returncode != 0:
        raise LocalKafkaError(
            f"mvn failed (exit {result.returncode}) fetching Kafka {version} jars: "
            f"{_mvn_error_summary(result.stdout)}"
        )
    if not (into / f"kafka_2.13-{version}.jar").is_file():
        raise LocalKafkaError(f"mvn succeeded but kafka_2.13-{version}.jar is missing from {into}")
