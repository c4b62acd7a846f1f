"""
High availability: what the proxy knows about the health of its backend servers (issue 6).

  - L{obproxy_tx.ha.replicas}: the replica monitor of the read/write split (which replicas
    replicate within C{max_replica_lag}).
"""
