"""
Checks that the recorded golden files are complete and readable (no server needed).
"""

from __future__ import annotations

import pytest

from tests.golden import SERVERS, GoldenFile, available, load, parse
from tests.testbed import wireclient

#: Files every server folder must have (see tests/golden/capture.py).
EXPECTED = {
    "auth_switch",
    "change_user",
    "column_definition",
    "eof",
    "err_1045",
    "err_1064",
    "err_1146",
    "handshake",
    "local_infile",
    "login",
    "multi_result",
    "ok_after_login",
    "ok_insert",
    "ok_session_track_autocommit",
    "ok_session_track_schema",
    "ok_session_track_user_var",
    "ping",
    "resultset_binary",
    "resultset_text",
    "statistics",
    "stmt_prepare_ok",
}


@pytest.mark.parametrize("server", SERVERS)
def test_every_golden_file_was_recorded(server: str) -> None:
    """Each server folder holds every expected golden file."""
    assert set(available(server)) >= EXPECTED


@pytest.mark.parametrize("server", SERVERS)
def test_golden_files_name_their_server_version(server: str) -> None:
    """Every golden file parses and names the server, its version and the client capabilities."""
    for name in available(server):
        golden = load(server, name)
        assert golden.meta["server"] == server
        assert golden.meta["version"], name
        assert golden.capabilities or name.startswith("handshake"), name
        assert golden.server_packets(), name


@pytest.mark.parametrize("server", SERVERS)
def test_golden_handshake_is_protocol_10(server: str) -> None:
    """The recorded handshake is a protocol-10 handshake offering mysql_native_password."""
    (packet,) = load(server, "handshake").packets
    assert packet.direction == "<" and packet.seq == 0
    handshake = wireclient.parse_handshake(packet.payload)
    assert handshake.auth_plugin == "mysql_native_password"
    assert len(handshake.scramble) == 20


@pytest.mark.parametrize(("name", "code"), [("err_1045", 1045), ("err_1064", 1064)])
@pytest.mark.parametrize("server", SERVERS)
def test_golden_errors_carry_their_codes(server: str, name: str, code: int) -> None:
    """The recorded ERR packets carry the expected error code and a SQLSTATE."""
    error = wireclient.error_from_payload(load(server, name).server_packets()[-1].payload)
    assert error.code == code
    assert len(error.sqlstate) == 5


def test_parse_reads_directions_sequences_and_meta() -> None:
    """parse() turns comment key/value lines into meta and packet lines into packets."""
    golden = parse(
        "# server: x\n# client_capabilities: 0x00000200\n> 0 0e\n< 1 00000002000000\n< 2\n"
    )
    assert isinstance(golden, GoldenFile)
    assert golden.meta == {"server": "x", "client_capabilities": "0x00000200"}
    assert golden.capabilities == 0x200
    assert [p.payload for p in golden.client_packets()] == [b"\x0e"]
    assert [p.seq for p in golden.server_packets()] == [1, 2]
    assert golden.server_packets()[1].payload == b""
    assert golden.wire_bytes(">") == b"\x01\x00\x00\x00\x0e"
