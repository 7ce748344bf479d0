"""Which partition a key belongs to: the one place the project computes it.

Every producer of the project (aiokafka's default partitioner, like the Java client) puts
a keyed message on ``murmur2(key) % partitions``. A table row lives in the partition of
the event that wrote it, so it is found where its key hashes to only if the event was
there too. Other clients hash differently: kcat, confluent-kafka and every librdkafka
producer default to a CRC32-based partitioner. The agents therefore check each message's
partition against this function and forward a stray one to where it belongs, and the
views read a key from this partition and no other.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2

__all__ = ["partition_for"]


def partition_for(key: str, partitions: int) -> int:
    """The partition ``key`` belongs to among ``partitions``, as aiokafka and Java place it."""
    hashed: int = murmur2(key.encode())
    return (hashed & 0x7FFFFFFF) % partitions
