"""Local development helpers: a real single-node Kafka broker without Docker."""
