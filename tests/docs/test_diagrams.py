"""
The state diagrams of the docs site (C{docs/_ext/obproxy_docs.py}) are drawn from the machines'
own transition tables: every move of the table is an edge, and nothing else is.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "docs" / "_ext"))

import obproxy_docs  # noqa: E402 (a docs extension, not a package)

from obproxy_tx.session import states  # noqa: E402


@pytest.mark.parametrize(
    ("which", "table"),
    [
        ("client-session", states.CLIENT_SESSION_TRANSITIONS),
        ("server-session", states.SERVER_SESSION_TRANSITIONS),
    ],
)
def test_diagram_is_the_table(which: str, table: object) -> None:
    """
    Each (state, next state) pair of the table is one edge labelled with its inputs.
    """
    source = obproxy_docs.diagram_source(which)
    edges = {}
    for state, moves in table.items():  # type: ignore[attr-defined]
        for event, target in moves.items():
            edges.setdefault((state.name, target.name), []).append(event.name)
    drawn = [line.strip() for line in source.splitlines()[1:] if "[*]" not in line]
    expected = [f"{s} --> {t}: {', '.join(labels)}" for (s, t), labels in edges.items()]
    assert drawn == expected


def test_unknown_diagram() -> None:
    """
    A page naming a diagram that does not exist fails the build.
    """
    with pytest.raises(ValueError, match="unknown diagram"):
        obproxy_docs.diagram_source("nonsense")
