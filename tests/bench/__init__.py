"""
Tests of the benchmark harness (C{bench/}): its arithmetic, and one tiny run end to end.
"""
