"""
The soak test with faults (issue 8): a driver (L{tests.soak.soak}, C{python -m tests.soak}), the
pausable TCP relay it stalls a backend with (L{tests.soak.relay}), and its short CI run
(C{test_soak.py}).
"""
