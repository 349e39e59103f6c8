"""Background jobs: the broker, the transactional outbox, periodic tasks."""
