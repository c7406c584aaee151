"""What tests share: in-memory stand-ins for Kafka and a clock; no I/O."""
