"""saga_streams: an orchestrated Saga (a money transfer with compensation) on Kafka, with Faust."""

__version__ = "0.1.0"
