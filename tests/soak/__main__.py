"""C{python -m tests.soak --minutes N}: the soak test with faults (L{tests.soak.soak})."""

from __future__ import annotations

import sys

from tests.soak.soak import main

sys.exit(main())
