"""
The side-by-side benchmark: obproxy_tx against a direct connection, a bare Twisted relay and
HAProxy, on real MariaDB and seekdb servers (C{make bench}, or C{python -m bench.run}).

  - L{bench.run}: the command line and the interleaved run;
  - L{bench.targets}: what is measured (direct, relay, HAProxy, obproxy_tx, each on CPython or
    PyPy) and how each is started and stopped;
  - L{bench.workloads}: sysbench, connection churn, result streaming and idle sessions;
  - L{bench.procstat}: CPU time and RSS of a process tree from C{/proc};
  - L{bench.report}: the table, its ratios, and the Markdown, JSON and PNG written from it;
  - L{bench.relay}: the bare Twisted TCP relay (the floor for any Python proxy).

Numbers are printed and written, never asserted: the tests check the arithmetic and that one tiny
run goes through end to end.
"""
