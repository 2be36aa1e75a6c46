"""The control plane, beside the data plane: discovery (peers, liveness, interest), the host
registry, and the RDMA connection set-up. It runs a few times a second; the node passes it
the control frames it receives and sends what it asks."""
