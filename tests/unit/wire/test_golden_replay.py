"""
Whole conversations recorded from real MariaDB and seekdb servers
(C{tests/golden/}) replayed through our own state machines.

Each recorded packet is delivered to the connection that received it on the
real wire (L{ClientConnection} for the server's packets, L{ServerConnection}
for the client's), byte at a time, and the events it produced are then sent by
the other connection: the bytes that come out must be the recorded frame,
exactly. So every golden exchange is checked three ways at once: our decoder
accepts the real server's bytes in the phase they arrived in, our encoder
reproduces them, and both state machines agree on the phase after every packet.
"""

from __future__ import annotations

from typing import Any

import pytest

from obproxy_tx.testing import ConnectionPair
from obproxy_tx.wire.connection import Phase, Role
from obproxy_tx.wire.constants import Capability
from obproxy_tx.wire.packets import (
    ColumnDefinition41,
    ComStmtPrepare,
    EOFPacket,
    HandshakeV10,
    OKPacket,
    StmtPrepareOK,
)
from tests.golden import SERVERS, GoldenFile, available, load

#: Files that hold a fragment of a conversation (one packet cut out of a result
#: set), checked by decoding alone.
_FRAGMENTS = {
    "column_definition": ColumnDefinition41,
    "eof": EOFPacket,
    "ok_after_login": OKPacket,
}

#: Files that start at the server's greeting or at the client's handshake response.
_LOGIN_FILES = {"handshake", "handshake_tls", "login", "auth_switch", "err_1045"}


def _cases() -> list[tuple[str, str]]:
    return [
        (server, name) for server in SERVERS for name in available(server) if name not in _FRAGMENTS
    ]


def _replay(pair: ConnectionPair, golden: GoldenFile, start: int = 0) -> list[Any]:
    """
    Deliver every recorded packet from index C{start} on, byte at a time, to
    its receiver, have the other side send what was received, and check the
    bytes match the recording.
    """
    received: list[Any] = []
    for packet in golden.packets[start:]:
        receiver_role = Role.CLIENT if packet.direction == "<" else Role.SERVER
        sender = pair.side(Role.SERVER if receiver_role is Role.CLIENT else Role.CLIENT)
        receiver = pair.side(receiver_role)
        events: list[Any] = []
        for index in range(len(packet.frame)):
            events.extend(receiver.receive_data(packet.frame[index : index + 1]))
        assert events, f"{golden.server}/{golden.name}: no event for seq {packet.seq}"
        sent = b"".join(sender.send(event) for event in events)
        assert sent == packet.frame, (
            f"{golden.server}/{golden.name}: seq {packet.seq} re-encoded differently\n"
            f"recorded {packet.frame.hex()}\nours     {sent.hex()}"
        )
        pair.phase()
        received.extend(events)
    return received


def _pair_for(golden: GoldenFile) -> ConnectionPair:
    server_caps = Capability(golden.server_capabilities or golden.capabilities)
    client_caps = Capability(golden.capabilities or golden.server_capabilities)
    return ConnectionPair(server_caps, client_caps)


def _greet(pair: ConnectionPair, golden: GoldenFile) -> None:
    """Put both sides past the greeting with the same server's recorded greeting."""
    (greeting_packet,) = load(golden.server, "handshake").packets
    greeting = HandshakeV10.decode(greeting_packet.payload, Capability(0))
    pair.send(Role.SERVER, greeting)


@pytest.mark.parametrize(("server", "name"), _cases())
def test_golden_conversation_replays_byte_for_byte(server: str, name: str) -> None:
    """
    A conversation recorded from a real server passes through our client and
    server state machines, and re-encodes to exactly the recorded bytes.
    """
    golden = load(server, name)
    pair = _pair_for(golden)
    if name in _LOGIN_FILES:
        if golden.packets[0].direction == ">":
            _greet(pair, golden)
        _replay(pair, golden)
        return
    pair.handshake(capabilities=pair.client.capabilities & pair.server.capabilities)
    assert pair.phase() is Phase.COMMAND_IDLE
    if name == "resultset_binary":
        _prepare_statement_of(pair, golden)
    _replay(pair, golden)
    assert pair.phase() in (Phase.COMMAND_IDLE, Phase.CLOSED)


def _prepare_statement_of(pair: ConnectionPair, golden: GoldenFile) -> None:
    """
    Prepare, on both sides, the statement the recorded COM_STMT_EXECUTE runs,
    with the recorded prepare answer, so the execute is legal.
    """
    prepare = load(golden.server, "stmt_prepare_ok")
    statement_id = int.from_bytes(golden.client_packets()[0].payload[1:5], "little")
    query = ComStmtPrepare.decode(prepare.client_packets()[0].payload, Capability(0))
    pair.send(Role.CLIENT, query)
    caps = pair.server.capabilities
    answer = StmtPrepareOK.decode(prepare.server_packets()[0].payload, caps)
    answer = StmtPrepareOK(statement_id, answer.num_columns, answer.num_params, answer.warnings)
    events: list[Any] = [answer]
    for packet in prepare.server_packets()[1:]:
        if packet.payload[:1] == b"\xfe" and len(packet.payload) < 9:
            events.append(EOFPacket.decode(packet.payload, caps))
        else:
            events.append(ColumnDefinition41.decode(packet.payload, caps))
    pair.send(Role.SERVER, *events)
    assert pair.phase() is Phase.COMMAND_IDLE


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("name", sorted(_FRAGMENTS))
def test_golden_fragment_round_trips(server: str, name: str) -> None:
    """A packet cut out of a real result set decodes and re-encodes unchanged."""
    golden = load(server, name)
    (packet,) = golden.server_packets()
    cls = _FRAGMENTS[name]
    caps = Capability(golden.capabilities)
    assert cls.decode(packet.payload, caps).encode(caps) == packet.payload
