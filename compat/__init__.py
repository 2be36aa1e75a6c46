"""Drop-in facades that run existing applications on INSANE: ``compat.nats`` for nats-py."""
