"""Sans-IO protocol: wire codec, fragmentation (and reliability). No sockets, no sleeps."""
