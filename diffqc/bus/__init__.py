"""Kafka plumbing shared by every service: client configuration, topics, the consume loop."""
