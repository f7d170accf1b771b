"""Journey Tower: a Kafka-native control tower for AI-driven customer journeys."""
