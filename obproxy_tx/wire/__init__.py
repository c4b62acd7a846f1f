"""
The sans-IO MySQL wire protocol: bytes in, events out; events in, bytes out.

Nothing in this package imports Twisted, reads a clock or touches a socket, so
every protocol rule can be exercised by calling methods (a test enforces this).
"""
