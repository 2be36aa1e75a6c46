"""The public API: sessions, subscriptions, messages, and connect()."""
