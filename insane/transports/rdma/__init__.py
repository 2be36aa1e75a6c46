"""The RDMA transport: RC queue pairs on pyverbs (transport), the verbs and the GID choice
(verbs), registered slots (buffers), receive credits (credits), and what one side of a
connection is (endpoint)."""
