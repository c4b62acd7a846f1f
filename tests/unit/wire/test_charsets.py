"""
Tests for L{obproxy_tx.wire.charsets}: collation ids as MariaDB, MySQL and OceanBase use them.
"""

from __future__ import annotations

import codecs

from obproxy_tx.wire import charsets
from obproxy_tx.wire.charsets import (
    collation_by_id,
    collation_by_name,
    default_collation,
    python_encoding,
)


def test_well_known_ids() -> None:
    """The ids clients and servers exchange most map to the names MySQL gives them."""
    assert collation_by_id(8).name == "latin1_swedish_ci"  # type: ignore[union-attr]
    assert collation_by_id(33).name == "utf8mb3_general_ci"  # type: ignore[union-attr]
    assert collation_by_id(45).name == "utf8mb4_general_ci"  # type: ignore[union-attr]
    assert collation_by_id(46).name == "utf8mb4_bin"  # type: ignore[union-attr]
    assert collation_by_id(63).name == "binary"  # type: ignore[union-attr]
    assert collation_by_id(224).name == "utf8mb4_unicode_ci"  # type: ignore[union-attr]
    assert collation_by_id(255).name == "utf8mb4_0900_ai_ci"  # type: ignore[union-attr]
    assert collation_by_id(248).charset == "gb18030"  # type: ignore[union-attr]
    assert collation_by_id(9999) is None


def test_names_and_defaults() -> None:
    """Names resolve case-insensitively, utf8_* as utf8mb3_*, and charsets to their default."""
    assert collation_by_name("UTF8MB4_GENERAL_CI").id == 45  # type: ignore[union-attr]
    assert collation_by_name("utf8_general_ci").id == 33  # type: ignore[union-attr]
    assert default_collation("utf8mb4").name == "utf8mb4_general_ci"  # type: ignore[union-attr]
    assert default_collation("latin1").id == 8  # type: ignore[union-attr]
    assert default_collation("nosuch") is None


def test_ids_are_unique_and_every_charset_has_a_default() -> None:
    """Each id appears once, and every character set in the table has one default."""
    ids = [row[0] for row in charsets._TABLE]
    assert len(ids) == len(set(ids))
    names = {row[2] for row in charsets._TABLE}
    for charset in names:
        assert default_collation(charset) is not None, charset


def test_python_encodings_exist() -> None:
    """Every Python codec named is one Python has; binary has none."""
    for row in charsets._TABLE:
        encoding = python_encoding(row[0])
        if encoding is not None:
            codecs.lookup(encoding)
    assert python_encoding(63) is None
    assert python_encoding(45) == "utf-8"
    assert python_encoding(8) == "cp1252"
