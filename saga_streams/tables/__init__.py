"""Changelog-backed state: RocksDB locally, Kafka changelog topics for recovery."""
