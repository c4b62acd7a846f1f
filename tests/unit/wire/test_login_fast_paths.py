"""
The login's decoding shortcuts (issue 5): connection attributes sliced
directly when every length fits one byte, the general reader otherwise, and
the same answers and errors either way.
"""

from __future__ import annotations

import pytest

from obproxy_tx.wire.codec import lenenc_bytes
from obproxy_tx.wire.constants import Capability
from obproxy_tx.wire.errors import RemoteProtocolError
from obproxy_tx.wire.packets import HandshakeResponse41

C = Capability
CAPS = (
    C.CLIENT_PROTOCOL_41
    | C.CLIENT_SECURE_CONNECTION
    | C.CLIENT_PLUGIN_AUTH
    | C.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | C.CLIENT_CONNECT_WITH_DB
    | C.CLIENT_CONNECT_ATTRS
)

SYSBENCH_LIKE = {
    "_os": "Linux",
    "_client_name": "libmariadb",
    "_pid": "1234",
    "_client_version": "3.3.8",
    "_platform": "x86_64",
    "_server_host": "127.0.0.1",
    "program_name": "sysbench",
}


@pytest.mark.parametrize(
    "attributes",
    [
        SYSBENCH_LIKE,
        {},
        {"": ""},
        {"k": "v" * 250},  # the longest one-byte length
        {"k": "v" * 251, "after": "x"},  # a two-byte length: the general reader
        {"k" * 300: "v", "x": "y"},
        {"utf8": "d\u00e9j\u00e0 vu", "bad": "\udcff"},  # surrogateescape both ways
    ],
)
def test_attributes_round_trip(attributes: dict[str, str]) -> None:
    """
    Attributes decode to what was encoded, with short and long lengths alike.
    """
    response = HandshakeResponse41(CAPS, 1 << 24, 45, "u", b"\x01" * 20, "db", "p", attributes)
    decoded = HandshakeResponse41.decode(response.encode())
    assert decoded == response
    assert decoded.connect_attrs == attributes


def _login_with_attribute_block(block: bytes) -> bytes:
    head = HandshakeResponse41(CAPS, 0, 45, "u", b"", "db", "p").encode()
    return head + lenenc_bytes(block)


@pytest.mark.parametrize(
    "block",
    [
        b"\x01k",  # a key with no value length after it
        b"\x01k\x05v",  # a value shorter than its length
        b"\x05k",  # a key shorter than its length
        b"\x01k\xfc\x10",  # a two-byte value length cut short
    ],
)
def test_truncated_attributes_are_malformed(block: bytes) -> None:
    """
    A truncated attribute block is a protocol error, not a short dict.
    """
    with pytest.raises(RemoteProtocolError, match="malformed packet"):
        HandshakeResponse41.decode(_login_with_attribute_block(block))


def test_capabilities_stay_flags() -> None:
    """
    The decoded capabilities are still a L{Capability}, MariaDB's upper bits included.
    """
    caps = CAPS | C.MARIADB_CLIENT_EXTENDED_TYPE_INFO
    decoded = HandshakeResponse41.decode(HandshakeResponse41(caps, 0, 45, "u", b"").encode())
    assert isinstance(decoded.capabilities, Capability)
    assert decoded.capabilities == caps
