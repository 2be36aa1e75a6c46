"""Peer processes of the benchmarks, one module per system.

Every module is run as ``python -m benchmarks.peers.MODULE ROLE ARGS`` with the roles of the
raw C baseline: ``server PORT``, ``client HOST PORT SIZE COUNT WARMUP``, ``sink PORT COUNT``
and ``blast HOST PORT SIZE COUNT``.
"""
