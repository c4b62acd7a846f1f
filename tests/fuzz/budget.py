"""
How long the fuzz properties run: the regular suite keeps them short;
C{OBPROXY_FUZZ_EXAMPLES=N} (e.g. via C{make fuzz}) multiplies the examples of
every property for a longer hunt.
"""

from __future__ import annotations

import os

#: How many times more examples than in the regular suite (1 there).
SCALE = max(1, int(os.environ.get("OBPROXY_FUZZ_EXAMPLES", "1")))


def examples(count: int) -> int:
    """
    The number of examples a property runs: C{count} in the regular suite.

    @param count: the regular suite's number.
    @return: C{count} times L{SCALE}.
    """
    return count * SCALE
