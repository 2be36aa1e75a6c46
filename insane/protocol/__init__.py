"""Sans-IO protocol: the wire codec, fragmentation and (later) reliability. No sockets, no sleeps."""
