"""nats-py's ``nats.aio``: ``client``, ``msg``, ``subscription``, ``errors``."""
