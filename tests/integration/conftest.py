"""
Fixtures shared by the integration tests that start processes of their own.
"""

from __future__ import annotations

import subprocess
from typing import Iterator, List

import pytest


@pytest.fixture
def processes() -> Iterator[List[subprocess.Popen[str]]]:
    """
    The processes (twistd, mostly) a test starts; any still running at the end
    are killed.
    """
    started: List[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
