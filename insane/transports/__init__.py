"""Transports move batches of datagrams; one module per technology (udp, xdp, dpdk, rdma)."""
