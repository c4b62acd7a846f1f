"""
Every MySQL packet payload as a frozen value with C{encode}/C{decode}.

Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_packets.html},
the connection phase
(U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase.html})
and the command phase
(U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_command_phase.html});
MariaDB's additions from U{https://mariadb.com/kb/en/clientserver-protocol/}.

Every class here has C{encode(capabilities) -> bytes}, which returns the
payload (no framing header), and a classmethod C{decode(payload, capabilities)}.
C{capabilities} are the negotiated ones (for the handshake packets themselves,
whatever is known; those packets carry their own flags and mostly follow them).
Decoding a malformed or truncated payload raises L{RemoteProtocolError}, never
C{IndexError}, C{struct.error} or C{UnicodeDecodeError}, and a decoded packet
re-encodes to the same bytes.

Several packets start with the same byte (0x00 OK / StmtPrepareOK, 0xFE EOF /
OK / AuthSwitchRequest, 0xFB LOCAL INFILE / NULL, 0x01 AuthMoreData / a column
count of 1): which class a payload is depends on the conversation's phase, which
L{obproxy_tx.wire.connection} tracks. Only command packets are self-describing
(L{decode_command}).

Names and usernames are C{str} (UTF-8 with C{surrogateescape}, so any bytes
survive a round trip); SQL text, schema names in commands and column metadata
are C{bytes}, as on the wire.
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Sequence
from typing import Callable, ClassVar, TypeVar, Union

import attrs

from obproxy_tx.wire.codec import (
    PayloadReader,
    lenenc_bytes,
    lenenc_int,
)
from obproxy_tx.wire.constants import (
    MYSQL_NATIVE_PASSWORD,
    Capability,
    ColumnFlag,
    ColumnType,
    Command,
    CursorType,
    ServerStatus,
    SessionTrackType,
    SetOption,
)
from obproxy_tx.wire.errors import (
    ErrorCode,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)
from obproxy_tx.wire.values import (
    LONG_DATA,
    column_length_for,
    decode_binary_value,
    encode_binary_value,
    infer_column_type,
)

__all__ = [
    "AuthMoreData",
    "AuthSwitchRequest",
    "AuthSwitchResponse",
    "BinaryRow",
    "BoundParameter",
    "ColumnCount",
    "ColumnDefinition41",
    "ComChangeUser",
    "ComFieldList",
    "ComInitDB",
    "ComPing",
    "ComProcessKill",
    "ComQuery",
    "ComQuit",
    "ComResetConnection",
    "ComSetOption",
    "ComStatistics",
    "ComStmtClose",
    "ComStmtExecute",
    "ComStmtFetch",
    "ComStmtPrepare",
    "ComStmtReset",
    "ComStmtSendLongData",
    "CommandPacket",
    "EOFPacket",
    "ERRPacket",
    "HandshakeResponse41",
    "HandshakeV10",
    "LONG_DATA",
    "NO_CAPABILITIES",
    "LocalInfileRequest",
    "OKPacket",
    "RawPacket",
    "SSLRequest",
    "SessionStateItem",
    "StmtPrepareOK",
    "TextRow",
    "UnknownCommand",
    "ParameterTypes",
    "decode_command",
    "decode_text_values",
    "encode_session_state",
    "is_eof_payload",
]

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_HANDSHAKE_CAPS = struct.Struct("<BHH")  # character set, status, capability flags upper
_RESPONSE_HEAD = struct.Struct("<IIB")  # capability flags, max packet size, character set
_COLUMN_FIXED = struct.Struct("<HIBHB")  # charset, length, type, flags, decimals
_EOF = struct.Struct("<BHH")
_STMT_PREPARE_OK = struct.Struct("<BIHHBH")
_EXECUTE_HEAD = struct.Struct("<BIBI")
_STMT_ID = struct.Struct("<BI")
_LONG_DATA_HEAD = struct.Struct("<BIH")
_FETCH = struct.Struct("<BII")
_SET_OPTION = struct.Struct("<BH")
_ERR_HEAD = struct.Struct("<BH")

_OK = 0x00
_EOF_HEADER = 0xFE
_ERR_HEADER = 0xFF
_AUTH_MORE_DATA = 0x01
_LOCAL_INFILE = 0xFB

#: No capabilities: the default where a packet's encoding does not depend on them.
NO_CAPABILITIES = Capability(0)
_NO_STATUS = ServerStatus(0)

#: The 32-bit mask of the capability flags that MySQL defines; MariaDB's
#: extended capabilities are the bits above it.
_LOWER_CAPS = 0xFFFFFFFF

# Flags as plain ints for the packets of every connection: an int & IntFlag makes a new
# IntFlag each time.
_LENENC_CLIENT_DATA = int(Capability.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA)
_SECURE_CONNECTION = int(Capability.CLIENT_SECURE_CONNECTION)
_CONNECT_WITH_DB = int(Capability.CLIENT_CONNECT_WITH_DB)
_PLUGIN_AUTH = int(Capability.CLIENT_PLUGIN_AUTH)
_CONNECT_ATTRS = int(Capability.CLIENT_CONNECT_ATTRS)
_ZSTD = int(Capability.CLIENT_ZSTD_COMPRESSION_ALGORITHM)
_PROTOCOL_41 = int(Capability.CLIENT_PROTOCOL_41)
_TRANSACTIONS = int(Capability.CLIENT_TRANSACTIONS)
_SESSION_TRACK = int(Capability.CLIENT_SESSION_TRACK)
_STATE_CHANGED = int(ServerStatus.SERVER_SESSION_STATE_CHANGED)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _malformed(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"malformed packet: {message}", ErrorCode.ER_MALFORMED_PACKET)


def _expect_header(reader: PayloadReader, header: int, name: str) -> None:
    first = reader.read_uint8()
    if first != header:
        raise _malformed(f"{name} must start with 0x{header:02x}, not 0x{first:02x}")


def _expect_end(reader: PayloadReader, name: str) -> None:
    if not reader.at_end():
        raise _malformed(f"{reader.remaining()} unexpected trailing byte(s) in {name}")


def _column_type(value: int) -> ColumnType:
    try:
        return ColumnType(value)
    except ValueError:
        raise _malformed(f"unknown column type 0x{value:02x}") from None


def _encode_attrs(attributes: dict[str, str]) -> bytes:
    body = b"".join(
        lenenc_bytes(_raw(key)) + lenenc_bytes(_raw(value)) for key, value in attributes.items()
    )
    return lenenc_bytes(body)


def _decode_attrs(reader: PayloadReader) -> dict[str, str]:
    block = reader.read_lenenc_bytes()
    # Every login carries a dozen attributes, each key and value shorter than 251
    # bytes (a one-byte length): sliced here directly, a sixth of a connection's
    # protocol work before; anything else is read by the general reader.
    attributes: dict[str, str] = {}
    position = 0
    end = len(block)
    while position < end:
        key_length = block[position]
        key_end = position + 1 + key_length
        if key_length >= 0xFB or key_end >= end:
            return _decode_attrs_any(block)
        value_length = block[key_end]
        value_end = key_end + 1 + value_length
        if value_length >= 0xFB or value_end > end:
            return _decode_attrs_any(block)
        key = block[position + 1 : key_end].decode("utf-8", "surrogateescape")
        attributes[key] = block[key_end + 1 : value_end].decode("utf-8", "surrogateescape")
        position = value_end
    return attributes


def _decode_attrs_any(block: bytes) -> dict[str, str]:
    inner = PayloadReader(block)
    attributes: dict[str, str] = {}
    while not inner.at_end():
        key = _text(inner.read_lenenc_bytes())
        attributes[key] = _text(inner.read_lenenc_bytes())
    return attributes


# --------------------------------------------------------------------------
# Connection phase
# --------------------------------------------------------------------------


@attrs.frozen
class HandshakeV10:
    """
    The server's greeting (protocol version 10).

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_handshake_v10.html}

    MariaDB puts its extended capabilities (the bits above 32 of
    L{Capability}) in the last four of the ten reserved bytes; they are read
    whenever those bytes are not zero (MySQL sends zeros).

    @ivar server_version: the human-readable version (e.g. C{"5.7.25"}).
    @ivar connection_id: the connection (thread) id.
    @ivar auth_plugin_data: the whole scramble (20 bytes normally), without the
        trailing NUL that the packet carries.
    @ivar capabilities: the server's capability flags (64 bits with MariaDB's).
    @ivar character_set: the server's default collation id.
    @ivar status_flags: the server status.
    @ivar auth_plugin_name: the plugin the scramble is meant for.
    """

    server_version: str
    connection_id: int
    auth_plugin_data: bytes
    capabilities: Capability
    character_set: int
    status_flags: ServerStatus
    auth_plugin_name: str = MYSQL_NATIVE_PASSWORD

    PROTOCOL_VERSION: ClassVar[int] = 10

    def encode(self, capabilities: Capability = NO_CAPABILITIES) -> bytes:
        """
        Encode the payload.

        @param capabilities: unused (the greeting carries its own flags).
        @return: the payload.
        """
        caps = int(self.capabilities)
        data = self.auth_plugin_data
        parts = [
            b"\x0a",
            _raw(self.server_version),
            b"\x00",
            _U32.pack(self.connection_id),
            data[:8].ljust(8, b"\x00"),
            b"\x00",
            _U16.pack(caps & 0xFFFF),
            _HANDSHAKE_CAPS.pack(self.character_set, int(self.status_flags), (caps >> 16) & 0xFFFF),
        ]
        if caps & _PLUGIN_AUTH:
            parts.append(bytes((len(data) + 1,)))
        else:
            parts.append(b"\x00")
        parts.append(b"\x00" * 6)
        parts.append(_U32.pack((caps >> 32) & 0xFFFFFFFF))
        if caps & _SECURE_CONNECTION:
            part2 = data[8:] + b"\x00"
            parts.append(part2.ljust(13, b"\x00"))
        if caps & _PLUGIN_AUTH:
            parts.append(_raw(self.auth_plugin_name))
            parts.append(b"\x00")
        return b"".join(parts)

    @classmethod
    def decode(cls, payload: bytes, capabilities: Capability = NO_CAPABILITIES) -> HandshakeV10:
        """
        Decode a greeting.

        @param payload: the packet payload.
        @param capabilities: unused (the greeting carries its own flags).
        @return: the greeting.
        @raise RemoteProtocolError: the payload is not a protocol-10 greeting.
        """
        reader = PayloadReader(payload)
        version = reader.read_uint8()
        if version != cls.PROTOCOL_VERSION:
            raise RemoteProtocolError(
                f"unsupported protocol version {version}", ErrorCode.ER_HANDSHAKE_ERROR
            )
        server_version = _text(reader.read_nul_bytes())
        connection_id = reader.read_uint32()
        data = reader.read_bytes(8)
        reader.skip(1)
        caps = reader.read_uint16()
        character_set = 0
        status = 0
        plugin_name = ""
        if not reader.at_end():
            character_set, status, upper = _HANDSHAKE_CAPS.unpack(reader.read_bytes(5))
            caps |= upper << 16
            data_len = reader.read_uint8()
            reader.skip(6)
            caps |= reader.read_uint32() << 32
            if caps & Capability.CLIENT_SECURE_CONNECTION:
                part2 = reader.read_bytes(max(13, data_len - 8))
                if data_len > 8:
                    # data_len counts the scramble's terminating NUL.
                    data += part2[: data_len - 9]
                else:
                    data += part2[:-1] if part2.endswith(b"\x00") else part2
            if caps & Capability.CLIENT_PLUGIN_AUTH:
                plugin_name = _text(reader.read_nul_bytes_or_rest())
        return cls(
            server_version=server_version,
            connection_id=connection_id,
            auth_plugin_data=data,
            capabilities=Capability(caps),
            character_set=character_set,
            status_flags=ServerStatus(status),
            auth_plugin_name=plugin_name,
        )


@attrs.frozen
class SSLRequest:
    """
    The client's request to switch to TLS: the first 32 bytes of a
    L{HandshakeResponse41}.

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_ssl_request.html}

    @ivar capabilities: the client's flags (MariaDB extended capabilities in
        the last 4 reserved bytes).
    @ivar max_packet_size: the largest packet the client accepts.
    @ivar character_set: the client's collation id.
    """

    capabilities: Capability
    max_packet_size: int
    character_set: int

    def encode(self, capabilities: Capability = NO_CAPABILITIES) -> bytes:
        """
        Encode the payload.

        @param capabilities: unused (the packet carries its own flags).
        @return: the 32-byte payload.
        """
        caps = int(self.capabilities)
        return (
            _RESPONSE_HEAD.pack(caps & _LOWER_CAPS, self.max_packet_size, self.character_set)
            + b"\x00" * 19
            + _U32.pack(caps >> 32)
        )

    @classmethod
    def decode(cls, payload: bytes, capabilities: Capability = NO_CAPABILITIES) -> SSLRequest:
        """
        Decode an SSL request.

        @param payload: the payload (exactly 32 bytes).
        @param capabilities: unused.
        @return: the request.
        @raise RemoteProtocolError: the payload is not 32 bytes long.
        """
        if len(payload) != 32:
            raise _malformed(f"SSLRequest must be 32 bytes, not {len(payload)}")
        caps, max_packet_size, character_set = _RESPONSE_HEAD.unpack_from(payload)
        caps |= _U32.unpack_from(payload, 28)[0] << 32
        return cls(Capability(caps), max_packet_size, character_set)


@attrs.frozen
class HandshakeResponse41:
    """
    The client's login.

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_handshake_response.html}

    Optional parts follow the packet's own capability flags: C{database} with
    C{CLIENT_CONNECT_WITH_DB}, C{auth_plugin_name} with C{CLIENT_PLUGIN_AUTH},
    C{connect_attrs} with C{CLIENT_CONNECT_ATTRS}, C{zstd_compression_level} with
    C{CLIENT_ZSTD_COMPRESSION_ALGORITHM}; a trailing optional part the client
    left out decodes as C{None}. C{auth_response} is length-encoded with
    C{CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA}, else prefixed by one length byte.

    @ivar capabilities: the client's flags (MariaDB extended capabilities in
        the last 4 reserved bytes).
    @ivar max_packet_size: the largest packet the client accepts.
    @ivar character_set: the client's collation id.
    @ivar username: the login name.
    @ivar auth_response: the answer to the scramble (plugin-specific).
    @ivar database: the initial schema, or C{None}.
    @ivar auth_plugin_name: the plugin C{auth_response} was made with, or C{None}.
    @ivar connect_attrs: connection attributes, or C{None}.
    @ivar zstd_compression_level: the zstd level the client wants, or C{None}.
    """

    capabilities: Capability
    max_packet_size: int
    character_set: int
    username: str
    auth_response: bytes
    database: str | None = None
    auth_plugin_name: str | None = None
    connect_attrs: dict[str, str] | None = None
    zstd_compression_level: int | None = None

    def encode(self, capabilities: Capability = NO_CAPABILITIES) -> bytes:
        """
        Encode the payload.

        @param capabilities: unused (the packet carries its own flags).
        @return: the payload.
        """
        caps = int(self.capabilities)
        parts = [
            _RESPONSE_HEAD.pack(caps & _LOWER_CAPS, self.max_packet_size, self.character_set),
            b"\x00" * 19,
            _U32.pack(caps >> 32),
            _raw(self.username),
            b"\x00",
        ]
        if caps & Capability.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA:
            parts.append(lenenc_bytes(self.auth_response))
        elif caps & Capability.CLIENT_SECURE_CONNECTION:
            if len(self.auth_response) > 255:
                raise LocalProtocolError(
                    "auth response longer than 255 bytes needs "
                    "CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA"
                )
            parts.append(bytes((len(self.auth_response),)) + self.auth_response)
        else:
            parts.append(self.auth_response + b"\x00")
        # Optional trailing fields: a None is left out when nothing follows it,
        # else written empty (each empty form is a single NUL byte).
        tail: list[bytes | None] = []
        if caps & Capability.CLIENT_CONNECT_WITH_DB:
            tail.append(None if self.database is None else _raw(self.database) + b"\x00")
        if caps & Capability.CLIENT_PLUGIN_AUTH:
            plugin = self.auth_plugin_name
            tail.append(None if plugin is None else _raw(plugin) + b"\x00")
        if caps & Capability.CLIENT_CONNECT_ATTRS:
            tail.append(None if self.connect_attrs is None else _encode_attrs(self.connect_attrs))
        if caps & Capability.CLIENT_ZSTD_COMPRESSION_ALGORITHM:
            level = self.zstd_compression_level
            tail.append(None if level is None else bytes((level,)))
        while tail and tail[-1] is None:
            tail.pop()
        parts.extend(b"\x00" if field is None else field for field in tail)
        return b"".join(parts)

    @classmethod
    def decode(
        cls, payload: bytes, capabilities: Capability = NO_CAPABILITIES
    ) -> HandshakeResponse41:
        """
        Decode a login.

        @param payload: the packet payload.
        @param capabilities: unused (the packet's own flags govern it).
        @return: the login.
        @raise RemoteProtocolError: the payload is malformed or truncated.
        """
        reader = PayloadReader(payload)
        caps, max_packet_size, character_set = _RESPONSE_HEAD.unpack(reader.read_bytes(9))
        reader.skip(19)
        caps |= reader.read_uint32() << 32
        username = _text(reader.read_nul_bytes())
        # Plain ints: an int & IntFlag makes a new IntFlag each time (one login per connection).
        if caps & _LENENC_CLIENT_DATA:
            auth_response = reader.read_lenenc_bytes()
        elif caps & _SECURE_CONNECTION:
            auth_response = reader.read_bytes(reader.read_uint8())
        else:
            auth_response = reader.read_nul_bytes_or_rest()
        database = None
        plugin = None
        attributes = None
        level = None
        if caps & _CONNECT_WITH_DB and not reader.at_end():
            database = _text(reader.read_nul_bytes_or_rest())
        if caps & _PLUGIN_AUTH and not reader.at_end():
            plugin = _text(reader.read_nul_bytes_or_rest())
        if caps & _CONNECT_ATTRS and not reader.at_end():
            attributes = _decode_attrs(reader)
        if caps & _ZSTD and not reader.at_end():
            level = reader.read_uint8()
        _expect_end(reader, "HandshakeResponse41")
        return cls(
            capabilities=Capability(caps),
            max_packet_size=max_packet_size,
            character_set=character_set,
            username=username,
            auth_response=auth_response,
            database=database,
            auth_plugin_name=plugin,
            connect_attrs=attributes,
            zstd_compression_level=level,
        )


@attrs.frozen
class AuthSwitchRequest:
    """
    The server asks the client to authenticate with another plugin (0xFE).

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_auth_switch_request.html}

    @ivar plugin_name: the plugin to use.
    @ivar plugin_data: the plugin's data as sent; for the password plugins the
        scramble followed by a NUL (see L{for_scramble} and L{scramble}).
    """

    plugin_name: str
    plugin_data: bytes

    @classmethod
    def for_scramble(cls, plugin_name: str, scramble: bytes) -> AuthSwitchRequest:
        """
        Build a switch request carrying C{scramble} the way MySQL does (NUL-terminated).

        @param plugin_name: the plugin to switch to.
        @param scramble: the 20-byte scramble.
        @return: the request.
        """
        return cls(plugin_name, scramble + b"\x00")

    @property
    def scramble(self) -> bytes:
        """The plugin data without its trailing NUL."""
        data = self.plugin_data
        return data[:-1] if data.endswith(b"\x00") else data

    def encode(self, capabilities: Capability = NO_CAPABILITIES) -> bytes:
        """
        Encode the payload.

        @param capabilities: unused.
        @return: the payload.
        """
        return b"\xfe" + _raw(self.plugin_name) + b"\x00" + self.plugin_data

    @classmethod
    def decode(
        cls, payload: bytes, capabilities: Capability = NO_CAPABILITIES
    ) -> AuthSwitchRequest:
        """
        Decode a switch request.

        @param payload: the packet payload.
        @param capabilities: unused.
        @return: the request.
        @raise RemoteProtocolError: the payload is malformed.
        """
        reader = PayloadReader(payload)
        _expect_header(reader, _EOF_HEADER, "AuthSwitchRequest")
        name = _text(reader.read_nul_bytes())
        return cls(name, reader.read_rest())


@attrs.frozen
class AuthSwitchResponse:
    """
    The client's raw authentication data after an L{AuthSwitchRequest} or an
    L{AuthMoreData} (also the public-key request C{0x02} and encrypted or
    clear-text passwords of caching_sha2/sha256/clear-password).

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_auth_switch_response.html}

    @ivar data: the payload, verbatim.
    """

    data: bytes

    def encode(self, capabilities: Capability = NO_CAPABILITIES) -> bytes:
        """
        Encode the payload.

        @param capabilities: unused.
        @return: C{data}.
        """
        return self.data

    @classmethod
    def decode(
        cls, payload: bytes, capabilities: Capability = NO_CAPABILITIES
    ) -> AuthSwitchResponse:
        """
        Decode: the payload is the data.

        @param payload: the packet payload.
        @param capabilities: unused.
        @return: the response.
        """
        return cls(payload)


@attrs.frozen
class AuthMoreData:
    """
    More authentication data from the server (0x01), e.g. caching_sha2's
    C{0x03} (fast auth OK) and C{0x04} (full auth needed) or a PEM public key.

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_auth_more_data.html}

    @ivar data: the data after the 0x01 header.
    """

    data: bytes

    FAST_AUTH_SUCCESS: ClassVar[bytes] = b"\x03"
    PERFORM_FULL_AUTHENTICATION: ClassVar[bytes] = b"\x04"

    def encode(self, capabilities: Capability = NO_CAPABILITIES) -> bytes:
        """
        Encode the payload.

        @param capabilities: unused.
        @return: the payload.
        """
        return b"\x01" + self.data

    @classmethod
    def decode(cls, payload: bytes, capabilities: Capability = NO_CAPABILITIES) -> AuthMoreData:
        """
        Decode more-data.

        @param payload: the packet payload.
        @param capabilities: unused.
        @return: the packet.
        @raise RemoteProtocolError: the payload does not start with 0x01.
        """
        reader = PayloadReader(payload)
        _expect_header(reader, _AUTH_MORE_DATA, "AuthMoreData")
        return cls(reader.read_rest())


# --------------------------------------------------------------------------
# Generic responses
# --------------------------------------------------------------------------


@attrs.frozen
class SessionStateItem:
    """
    One session-state change in an OK packet (C{CLIENT_SESSION_TRACK}).

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_ok_packet.html}
    (C{session_state_info}).

    @ivar type: the item type (a L{SessionTrackType}, or a plain int for types
        this module does not know).
    @ivar data: the item's data (its inner encoding depends on the type).
    """

    type: int
    data: bytes

    @classmethod
    def for_system_variable(cls, name: bytes, value: bytes) -> SessionStateItem:
        """
        Build a C{SESSION_TRACK_SYSTEM_VARIABLES} item.

        @param name: the variable name.
        @param value: its new value.
        @return: the item.
        """
        return cls(
            SessionTrackType.SESSION_TRACK_SYSTEM_VARIABLES,
            lenenc_bytes(name) + lenenc_bytes(value),
        )

    @classmethod
    def for_schema(cls, schema: bytes) -> SessionStateItem:
        """
        Build a C{SESSION_TRACK_SCHEMA} item.

        @param schema: the new current schema.
        @return: the item.
        """
        return cls(SessionTrackType.SESSION_TRACK_SCHEMA, lenenc_bytes(schema))

    @classmethod
    def for_state_change(cls, changed: bool = True) -> SessionStateItem:
        """
        Build a C{SESSION_TRACK_STATE_CHANGE} item.

        @param changed: whether the session state changed.
        @return: the item.
        """
        return cls(
            SessionTrackType.SESSION_TRACK_STATE_CHANGE, lenenc_bytes(b"1" if changed else b"0")
        )

    def system_variable(self) -> tuple[bytes, bytes]:
        """
        Read a C{SESSION_TRACK_SYSTEM_VARIABLES} item.

        @return: C{(name, value)}.
        @raise RemoteProtocolError: the item is of another type or malformed.
        """
        self._require(SessionTrackType.SESSION_TRACK_SYSTEM_VARIABLES)
        reader = PayloadReader(self.data)
        return reader.read_lenenc_bytes(), reader.read_lenenc_bytes()

    def schema(self) -> bytes:
        """
        Read a C{SESSION_TRACK_SCHEMA} item.

        @return: the schema name.
        @raise RemoteProtocolError: the item is of another type or malformed.
        """
        self._require(SessionTrackType.SESSION_TRACK_SCHEMA)
        return PayloadReader(self.data).read_lenenc_bytes()

    def state_changed(self) -> bool:
        """
        Read a C{SESSION_TRACK_STATE_CHANGE} item.

        @return: whether the state changed (C{"1"}).
        @raise RemoteProtocolError: the item is of another type or malformed.
        """
        self._require(SessionTrackType.SESSION_TRACK_STATE_CHANGE)
        return PayloadReader(self.data).read_lenenc_bytes() == b"1"

    def text(self) -> bytes:
        """
        Read an item whose data is one length-encoded string
        (C{SCHEMA}, C{STATE_CHANGE}, C{TRANSACTION_STATE},
        C{TRANSACTION_CHARACTERISTICS}).

        @return: the string.
        @raise RemoteProtocolError: the data is malformed.
        """
        return PayloadReader(self.data).read_lenenc_bytes()

    def _require(self, wanted: SessionTrackType) -> None:
        if self.type != wanted:
            raise _malformed(f"session state item is type {self.type}, not {wanted.name}")


def encode_session_state(items: Sequence[SessionStateItem]) -> bytes:
    """
    Encode session-state items into the block an L{OKPacket} carries in
    C{session_state_changes}.

    @param items: the items.
    @return: the block (without its own length prefix).
    """
    return b"".join(bytes((item.type,)) + lenenc_bytes(item.data) for item in items)


def _session_track_type(value: int) -> int:
    try:
        return SessionTrackType(value)
    except ValueError:
        return value


@attrs.frozen
class OKPacket:
    """
    Success (header 0x00), or the end of rows under C{CLIENT_DEPRECATE_EOF}
    (header 0xFE).

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_ok_packet.html}

    With C{CLIENT_SESSION_TRACK} the info string is omitted when it is empty and
    no state changed (MySQL, MariaDB and OceanBase all do so); the
    session-state block is there when C{SERVER_SESSION_STATE_CHANGED} is set.

    @ivar affected_rows: rows changed by the statement.
    @ivar last_insert_id: the last auto-increment value generated.
    @ivar status_flags: the server status.
    @ivar warnings: the warning count.
    @ivar info: human-readable information (e.g. C{b"Records: 3"} and more counts,
        two spaces apart).
    @ivar session_state_changes: the raw session-state block, or C{None}; see
        L{session_state_items}.
    @ivar header: 0x00, or 0xFE for the OK that replaces EOF.
    """

    affected_rows: int = 0
    last_insert_id: int = 0
    status_flags: ServerStatus = ServerStatus(0)
    warnings: int = 0
    info: bytes = b""
    session_state_changes: bytes | None = None
    header: int = _OK

    @classmethod
    def with_session_state(
        cls,
        items: Sequence[SessionStateItem],
        affected_rows: int = 0,
        last_insert_id: int = 0,
        status_flags: ServerStatus = _NO_STATUS,
        warnings: int = 0,
        info: bytes = b"",
        header: int = _OK,
    ) -> OKPacket:
        """
        Build an OK packet carrying C{items}; sets C{SERVER_SESSION_STATE_CHANGED}.

        @param items: the session-state items.
        @param affected_rows: see L{affected_rows}.
        @param last_insert_id: see L{last_insert_id}.
        @param status_flags: see L{status_flags} (the flag is added).
        @param warnings: see L{warnings}.
        @param info: see L{info}.
        @param header: see L{header}.
        @return: the packet.
        """
        return cls(
            affected_rows=affected_rows,
            last_insert_id=last_insert_id,
            status_flags=status_flags | ServerStatus.SERVER_SESSION_STATE_CHANGED,
            warnings=warnings,
            info=info,
            session_state_changes=encode_session_state(items),
            header=header,
        )

    def session_state_items(self) -> list[SessionStateItem]:
        """
        Parse L{session_state_changes}.

        @return: the items, in order (empty without a state block).
        @raise RemoteProtocolError: the block is malformed.
        """
        if not self.session_state_changes:
            return []
        reader = PayloadReader(self.session_state_changes)
        items = []
        while not reader.at_end():
            kind = reader.read_uint8()
            items.append(SessionStateItem(_session_track_type(kind), reader.read_lenenc_bytes()))
        return items

    def encode(self, capabilities: Capability) -> bytes:
        """
        Encode the payload.

        @param capabilities: the negotiated capabilities.
        @return: the payload.
        """
        parts = [
            bytes((self.header,)),
            lenenc_int(self.affected_rows),
            lenenc_int(self.last_insert_id),
        ]
        caps = int(capabilities)
        if caps & _PROTOCOL_41:
            parts.append(_U16.pack(int(self.status_flags)) + _U16.pack(self.warnings))
        elif caps & _TRANSACTIONS:
            parts.append(_U16.pack(int(self.status_flags)))
        if caps & _SESSION_TRACK:
            if self.info or self.session_state_changes is not None:
                parts.append(lenenc_bytes(self.info))
            if self.session_state_changes is not None:
                parts.append(lenenc_bytes(self.session_state_changes))
        else:
            parts.append(self.info)
        return b"".join(parts)

    @classmethod
    def decode(cls, payload: bytes, capabilities: Capability) -> OKPacket:
        """
        Decode an OK packet (header 0x00 or 0xFE).

        @param payload: the packet payload.
        @param capabilities: the negotiated capabilities.
        @return: the packet.
        @raise RemoteProtocolError: the payload is malformed.
        """
        reader = PayloadReader(payload)
        header = reader.read_uint8()
        if header != _OK and header != _EOF_HEADER:
            raise _malformed(f"OK packet must start with 0x00 or 0xfe, not 0x{header:02x}")
        affected_rows = reader.read_lenenc_int()
        last_insert_id = reader.read_lenenc_int()
        status = 0
        warnings = 0
        caps = int(capabilities)
        if caps & _PROTOCOL_41:
            status = reader.read_uint16()
            warnings = reader.read_uint16()
        elif caps & _TRANSACTIONS:
            status = reader.read_uint16()
        info = b""
        state = None
        if caps & _SESSION_TRACK:
            if not reader.at_end():
                info = reader.read_lenenc_bytes()
                if status & _STATE_CHANGED and not reader.at_end():
                    state = reader.read_lenenc_bytes()
            _expect_end(reader, "OK packet")
        else:
            info = reader.read_rest()
        return cls(
            affected_rows=affected_rows,
            last_insert_id=last_insert_id,
            status_flags=ServerStatus(status),
            warnings=warnings,
            info=info,
            session_state_changes=state,
            header=header,
        )


@attrs.frozen
class ERRPacket:
    """
    An error (header 0xFF).

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_err_packet.html}

    @ivar error_code: the MySQL error number.
    @ivar message: the human-readable message.
    @ivar sqlstate: the five-character SQLSTATE (sent with C{CLIENT_PROTOCOL_41}).
    """

    error_code: int
    message: str
    sqlstate: str = "HY000"

    @classmethod
    def from_error(cls, error: ProtocolError) -> ERRPacket:
        """
        Build the ERR packet that reports a protocol error to the peer.

        @param error: the error.
        @return: the packet.
        """
        return cls(error.error_code, error.message, error.sqlstate)

    def encode(self, capabilities: Capability) -> bytes:
        """
        Encode the payload.

        @param capabilities: the negotiated capabilities.
        @return: the payload.
        """
        head = _ERR_HEAD.pack(_ERR_HEADER, self.error_code)
        if capabilities & Capability.CLIENT_PROTOCOL_41:
            head += b"#" + _raw(self.sqlstate)[:5].ljust(5, b"0")
        return head + _raw(self.message)

    @classmethod
    def decode(cls, payload: bytes, capabilities: Capability) -> ERRPacket:
        """
        Decode an error. The SQLSTATE marker is recognised when present, even
        without C{CLIENT_PROTOCOL_41} (servers that refuse a connection before
        the handshake send it regardless).

        @param payload: the packet payload.
        @param capabilities: the negotiated capabilities.
        @return: the packet.
        @raise RemoteProtocolError: the payload is malformed.
        """
        reader = PayloadReader(payload)
        _expect_header(reader, _ERR_HEADER, "ERR packet")
        code = reader.read_uint16()
        sqlstate = "HY000"
        if (
            capabilities & Capability.CLIENT_PROTOCOL_41
            and reader.remaining() >= 6
            and payload[reader.position] == 0x23  # '#'
        ):
            reader.skip(1)
            sqlstate = _text(reader.read_bytes(5))
        return cls(code, _text(reader.read_rest()), sqlstate)


@attrs.frozen
class EOFPacket:
    """
    End of column definitions or rows (header 0xFE, payload under 9 bytes).

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_eof_packet.html}

    @ivar warnings: the warning count.
    @ivar status_flags: the server status.
    """

    warnings: int = 0
    status_flags: ServerStatus = ServerStatus(0)

    def encode(self, capabilities: Capability) -> bytes:
        """
        Encode the payload.

        @param capabilities: the negotiated capabilities.
        @return: the payload.
        """
        if capabilities & Capability.CLIENT_PROTOCOL_41:
            return _EOF.pack(_EOF_HEADER, self.warnings, int(self.status_flags))
        return b"\xfe"

    @classmethod
    def decode(cls, payload: bytes, capabilities: Capability) -> EOFPacket:
        """
        Decode an EOF packet.

        @param payload: the packet payload.
        @param capabilities: the negotiated capabilities.
        @return: the packet.
        @raise RemoteProtocolError: the payload is malformed.
        """
        reader = PayloadReader(payload)
        _expect_header(reader, _EOF_HEADER, "EOF packet")
        if capabilities & Capability.CLIENT_PROTOCOL_41:
            warnings = reader.read_uint16()
            status = reader.read_uint16()
        else:
            warnings = status = 0
        _expect_end(reader, "EOF packet")
        return cls(warnings, ServerStatus(status))


def is_eof_payload(payload: bytes) -> bool:
    """
    Tell an EOF packet (or the OK that replaces it) from a row that happens to
    start with 0xFE: the end marker is shorter than 9 bytes.

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_eof_packet.html}

    @param payload: a packet payload received where rows may end.
    @return: whether it is the end marker.
    """
    return len(payload) < 9 and payload[:1] == b"\xfe"


@attrs.frozen
class RawPacket:
    """
    A payload relayed without decoding it.

    @ivar payload: the payload, verbatim.
    """

    payload: bytes

    def encode(self, capabilities: Capability = NO_CAPABILITIES) -> bytes:
        """
        Encode: the payload itself.

        @param capabilities: unused.
        @return: C{payload}.
        """
        return self.payload

    @classmethod
    def decode(cls, payload: bytes, capabilities: Capability = NO_CAPABILITIES) -> RawPacket:
        """
        Wrap a payload.

        @param payload: the packet payload.
        @param capabilities: unused.
        @return: the packet.
        """
        return cls(payload)


# --------------------------------------------------------------------------
# Result sets
# --------------------------------------------------------------------------


@attrs.frozen
class ColumnCount:
    """
    The first packet of a result set: how many columns follow.

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_query_response_text_resultset.html}

    @ivar count: the number of columns.
    @ivar metadata_follows: whether column definitions follow (the byte is only
        on the wire with C{CLIENT_OPTIONAL_RESULTSET_METADATA}).
    """

    count: int
    metadata_follows: bool = True

    def encode(self, capabilities: Capability) -> bytes:
        """
        Encode the payload.

        @param capabilities: the negotiated capabilities.
        @return: the payload.
        """
        data = lenenc_int(self.count)
        if capabilities & Capability.CLIENT_OPTIONAL_RESULTSET_METADATA:
            data += b"\x01" if self.metadata_follows else b"\x00"
        return data

    @classmethod
    def decode(cls, payload: bytes, capabilities: Capability) -> ColumnCount:
        """
        Decode a column count.

        @param payload: the packet payload.
        @param capabilities: the negotiated capabilities.
        @return: the packet.
        @raise RemoteProtocolError: the payload is malformed.
        """
        reader = PayloadReader(payload)
        count = reader.read_lenenc_int()
        follows = True
        if capabilities & Capability.CLIENT_OPTIONAL_RESULTSET_METADATA:
            flag = reader.read_uint8()
            if flag > 1:
                raise _malformed(f"bad metadata-follows flag {flag}")
            follows = flag == 1
        _expect_end(reader, "column count")
        return cls(count, follows)


@attrs.frozen(kw_only=True)
class ColumnDefinition41:
    """
    One column (or prepared-statement parameter) definition. Keyword-only.

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_query_response_text_resultset_column_definition.html}

    @ivar catalog: always C{b"def"}.
    @ivar schema: the schema of the table.
    @ivar table: the table alias.
    @ivar org_table: the table's real name.
    @ivar name: the column alias.
    @ivar org_name: the column's real name.
    @ivar character_set: the collation id (63 = binary).
    @ivar column_length: the maximum display length.
    @ivar column_type: the L{ColumnType}.
    @ivar flags: the L{ColumnFlag}s.
    @ivar decimals: the number of decimals (0x1F/0x27 = not fixed).
    @ivar extended_type_info: MariaDB's extended type information block (its
        content, without the length prefix), present when
        C{MARIADB_CLIENT_EXTENDED_TYPE_INFO} is negotiated (C{None} otherwise).
    @ivar default_values: the raw trailing default value of a COM_FIELD_LIST
        response, or C{None}.
    """

    catalog: bytes = b"def"
    schema: bytes = b""
    table: bytes = b""
    org_table: bytes = b""
    name: bytes
    org_name: bytes = b""
    character_set: int = 63
    column_length: int = 0
    column_type: ColumnType = ColumnType.MYSQL_TYPE_VAR_STRING
    flags: ColumnFlag = ColumnFlag(0)
    decimals: int = 0
    extended_type_info: bytes | None = None
    default_values: bytes | None = None

    @property
    def unsigned(self) -> bool:
        """Whether the column has C{UNSIGNED_FLAG}."""
        return bool(self.flags & ColumnFlag.UNSIGNED_FLAG)

    @classmethod
    def for_value(cls, name: bytes, sample: object, **fields: object) -> ColumnDefinition41:
        """
        Define a computed column whose type fits C{sample} (see
        L{obproxy_tx.wire.values.infer_column_type}), for result sets built
        from Python values.

        @param name: the column name (also used as C{org_name}).
        @param sample: a value of the column (C{None} gives a C{NULL} column).
        @param fields: overrides for any other field.
        @return: the definition.
        """
        column_type, flags, charset = infer_column_type(sample)
        decimals = 0
        if column_type in (ColumnType.MYSQL_TYPE_DOUBLE, ColumnType.MYSQL_TYPE_VAR_STRING):
            decimals = 0x1F
        elif column_type == ColumnType.MYSQL_TYPE_NEWDECIMAL:
            exponent = getattr(sample, "as_tuple", lambda: None)()
            if exponent is not None and isinstance(exponent.exponent, int):
                decimals = min(30, max(0, -exponent.exponent))
        defaults: dict[str, object] = {
            "name": name,
            "org_name": name,
            "character_set": charset,
            "column_length": column_length_for(column_type),
            "column_type": column_type,
            "flags": flags,
            "decimals": decimals,
        }
        defaults.update(fields)
        return cls(**defaults)  # type: ignore[arg-type]

    def encode(self, capabilities: Capability) -> bytes:
        """
        Encode the payload.

        @param capabilities: the negotiated capabilities.
        @return: the payload.
        """
        parts = [
            lenenc_bytes(self.catalog),
            lenenc_bytes(self.schema),
            lenenc_bytes(self.table),
            lenenc_bytes(self.org_table),
            lenenc_bytes(self.name),
            lenenc_bytes(self.org_name),
        ]
        if capabilities & Capability.MARIADB_CLIENT_EXTENDED_TYPE_INFO:
            parts.append(lenenc_bytes(self.extended_type_info or b""))
        parts.append(b"\x0c")
        parts.append(
            _COLUMN_FIXED.pack(
                self.character_set,
                self.column_length,
                int(self.column_type),
                int(self.flags) & 0xFFFF,
                self.decimals,
            )
        )
        parts.append(b"\x00\x00")
        if self.default_values is not None:
            parts.append(self.default_values)
        return b"".join(parts)

    @classmethod
    def decode(cls, payload: bytes, capabilities: Capability) -> ColumnDefinition41:
        """
        Decode a column definition.

        @param payload: the packet payload.
        @param capabilities: the negotiated capabilities.
        @return: the definition.
        @raise RemoteProtocolError: the payload is malformed.
        """
        reader = PayloadReader(payload)
        catalog = reader.read_lenenc_bytes()
        schema = reader.read_lenenc_bytes()
        table = reader.read_lenenc_bytes()
        org_table = reader.read_lenenc_bytes()
        name = reader.read_lenenc_bytes()
        org_name = reader.read_lenenc_bytes()
        extended = None
        if capabilities & Capability.MARIADB_CLIENT_EXTENDED_TYPE_INFO:
            extended = reader.read_lenenc_bytes()
        fixed_length = reader.read_lenenc_int()
        if fixed_length != 0x0C:
            raise _malformed(f"column definition fixed part is {fixed_length} bytes, not 12")
        character_set, length, kind, flags, decimals = _COLUMN_FIXED.unpack(reader.read_bytes(10))
        reader.skip(2)
        default_values = reader.read_rest() or None
        return cls(
            catalog=catalog,
            schema=schema,
            table=table,
            org_table=org_table,
            name=name,
            org_name=org_name,
            character_set=character_set,
            column_length=length,
            column_type=_column_type(kind),
            flags=ColumnFlag(flags),
            decimals=decimals,
            extended_type_info=extended,
            default_values=default_values,
        )


@attrs.frozen
class TextRow:
    """
    A result-set row in the text protocol: each value a length-encoded string,
    or 0xFB for NULL.

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_query_response_text_resultset_row.html}

    @ivar values: one C{bytes} or C{None} per column.
    """

    values: tuple[bytes | None, ...]

    def encode(self, capabilities: Capability = NO_CAPABILITIES) -> bytes:
        """
        Encode the payload.

        @param capabilities: unused.
        @return: the payload.
        """
        parts = []
        for value in self.values:
            if value is None:
                parts.append(b"\xfb")
            else:
                length = len(value)
                if length < 0xFB:
                    parts.append(bytes((length,)))
                else:
                    parts.append(lenenc_int(length))
                parts.append(value)
        return b"".join(parts)

    @classmethod
    def decode(cls, payload: bytes, capabilities: Capability, column_count: int) -> TextRow:
        """
        Decode a text row.

        @param payload: the packet payload.
        @param capabilities: unused.
        @param column_count: how many values the row has.
        @return: the row.
        @raise RemoteProtocolError: the payload does not hold exactly
            C{column_count} values.
        """
        return cls(decode_text_values(payload, column_count))


def decode_text_values(payload: bytes, column_count: int) -> tuple[bytes | None, ...]:
    """
    Split a text-protocol row payload into its values (the hot path of
    L{TextRow.decode}).

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_query_response_text_resultset_row.html}

    @param payload: the row payload.
    @param column_count: how many values the row has.
    @return: one C{bytes} or C{None} per column.
    @raise RemoteProtocolError: the payload does not hold exactly
        C{column_count} values.
    """
    values: list[bytes | None] = []
    append = values.append
    position = 0
    size = len(payload)
    for _ in range(column_count):
        if position >= size:
            raise _malformed(f"text row ends after {len(values)} of {column_count} values")
        first = payload[position]
        if first < 0xFB:
            start = position + 1
            position = start + first
        elif first == 0xFB:
            append(None)
            position += 1
            continue
        elif first == 0xFC:
            start = position + 3
            position = start + int.from_bytes(payload[position + 1 : start], "little")
        elif first == 0xFD:
            start = position + 4
            position = start + int.from_bytes(payload[position + 1 : start], "little")
        elif first == 0xFE:
            start = position + 9
            position = start + int.from_bytes(payload[position + 1 : start], "little")
        else:
            raise _malformed("0xff is not a length-encoded string")
        if position > size:
            raise _malformed(f"text row value {len(values)} runs past the payload")
        append(payload[start:position])
    if position != size:
        raise _malformed(f"{size - position} unexpected trailing byte(s) in text row")
    return tuple(values)


@attrs.frozen
class BinaryRow:
    """
    A result-set row in the binary protocol (prepared statements): a 0x00
    header, a NULL bitmap (offset 2) and the non-NULL values.

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_binary_resultset.html}

    @ivar values: one Python value (or C{None}) per column; see
        L{obproxy_tx.wire.values} for the mapping.
    """

    values: tuple[object, ...]

    def encode(self, capabilities: Capability, columns: Sequence[ColumnDefinition41]) -> bytes:
        """
        Encode the payload.

        @param capabilities: unused.
        @param columns: the result set's column definitions (types and signedness).
        @return: the payload.
        @raise LocalProtocolError: the value count does not match C{columns}, or
            a value does not fit its column type.
        """
        if len(self.values) != len(columns):
            raise LocalProtocolError(
                f"binary row has {len(self.values)} values for {len(columns)} columns"
            )
        bitmap = bytearray((len(columns) + 9) // 8)
        parts: list[bytes] = []
        for index, (value, column) in enumerate(zip(self.values, columns)):
            if value is None:
                bit = index + 2
                bitmap[bit >> 3] |= 1 << (bit & 7)
            else:
                parts.append(encode_binary_value(column.column_type, value, column.unsigned))
        return b"\x00" + bytes(bitmap) + b"".join(parts)

    @classmethod
    def decode(
        cls, payload: bytes, capabilities: Capability, columns: Sequence[ColumnDefinition41]
    ) -> BinaryRow:
        """
        Decode a binary row.

        @param payload: the packet payload.
        @param capabilities: unused.
        @param columns: the result set's column definitions.
        @return: the row.
        @raise RemoteProtocolError: the payload is malformed.
        """
        reader = PayloadReader(payload)
        _expect_header(reader, _OK, "binary row")
        bitmap = reader.read_bytes((len(columns) + 9) // 8)
        values: list[object] = []
        for index, column in enumerate(columns):
            bit = index + 2
            if bitmap[bit >> 3] & (1 << (bit & 7)):
                values.append(None)
            else:
                values.append(decode_binary_value(reader, column.column_type, column.flags))
        _expect_end(reader, "binary row")
        return cls(tuple(values))


@attrs.frozen
class LocalInfileRequest:
    """
    The server asks the client for a file's content (0xFB), answering a
    C{LOAD DATA LOCAL INFILE}.

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_query_response_local_infile_request.html}

    @ivar filename: the file name the statement named.
    """

    filename: bytes

    def encode(self, capabilities: Capability = NO_CAPABILITIES) -> bytes:
        """
        Encode the payload.

        @param capabilities: unused.
        @return: the payload.
        """
        return b"\xfb" + self.filename

    @classmethod
    def decode(
        cls, payload: bytes, capabilities: Capability = NO_CAPABILITIES
    ) -> LocalInfileRequest:
        """
        Decode a LOCAL INFILE request.

        @param payload: the packet payload.
        @param capabilities: unused.
        @return: the request.
        @raise RemoteProtocolError: the payload does not start with 0xFB.
        """
        reader = PayloadReader(payload)
        _expect_header(reader, _LOCAL_INFILE, "LOCAL INFILE request")
        return cls(reader.read_rest())


@attrs.frozen
class StmtPrepareOK:
    """
    The first packet answering C{COM_STMT_PREPARE}.

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_stmt_prepare.html}

    @ivar statement_id: the new statement's id.
    @ivar num_columns: how many result columns its execution yields.
    @ivar num_params: how many C{?} parameters it has.
    @ivar warnings: the warning count.
    @ivar metadata_follows: whether definitions follow (on the wire only with
        C{CLIENT_OPTIONAL_RESULTSET_METADATA}).
    """

    statement_id: int
    num_columns: int
    num_params: int
    warnings: int = 0
    metadata_follows: bool = True

    def encode(self, capabilities: Capability) -> bytes:
        """
        Encode the payload.

        @param capabilities: the negotiated capabilities.
        @return: the payload.
        """
        data = _STMT_PREPARE_OK.pack(
            _OK, self.statement_id, self.num_columns, self.num_params, 0, self.warnings
        )
        if capabilities & Capability.CLIENT_OPTIONAL_RESULTSET_METADATA:
            data += b"\x01" if self.metadata_follows else b"\x00"
        return data

    @classmethod
    def decode(cls, payload: bytes, capabilities: Capability) -> StmtPrepareOK:
        """
        Decode a prepare-OK.

        @param payload: the packet payload.
        @param capabilities: the negotiated capabilities.
        @return: the packet.
        @raise RemoteProtocolError: the payload is malformed.
        """
        reader = PayloadReader(payload)
        header, statement_id, columns, params, _, warnings = _STMT_PREPARE_OK.unpack(
            reader.read_bytes(_STMT_PREPARE_OK.size)
        )
        if header != _OK:
            raise _malformed(f"COM_STMT_PREPARE OK must start with 0x00, not 0x{header:02x}")
        follows = True
        if capabilities & Capability.CLIENT_OPTIONAL_RESULTSET_METADATA and not reader.at_end():
            follows = reader.read_uint8() == 1
        _expect_end(reader, "COM_STMT_PREPARE OK")
        return cls(statement_id, columns, params, warnings, follows)


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------


def _command_reader(payload: bytes, command: Command) -> PayloadReader:
    reader = PayloadReader(payload)
    first = reader.read_uint8()
    if first != command:
        raise _malformed(f"{command.name} must start with 0x{command:02x}, not 0x{first:02x}")
    return reader


@attrs.frozen
class BoundParameter:
    """
    One parameter of C{COM_STMT_EXECUTE} (or a query attribute of C{COM_QUERY}).

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_stmt_execute.html}

    @ivar type: the parameter's L{ColumnType} as bound by the client.
    @ivar value: the Python value, C{None} for NULL, or L{LONG_DATA} for a
        parameter whose value was sent with C{COM_STMT_SEND_LONG_DATA}.
    @ivar unsigned: whether the type is unsigned (the flag byte's 0x80).
    @ivar name: the parameter's name (query attributes only; else C{b""}).
    """

    type: ColumnType
    value: object
    unsigned: bool = False
    name: bytes = b""

    @classmethod
    def for_value(cls, value: object, name: bytes = b"") -> BoundParameter:
        """
        Bind a Python value with the type inferred from it (see
        L{obproxy_tx.wire.values.infer_column_type}).

        @param value: the value.
        @param name: the parameter name (query attributes only).
        @return: the parameter.
        """
        column_type, flags, _ = infer_column_type(value)
        return cls(column_type, value, bool(flags & ColumnFlag.UNSIGNED_FLAG), name)


#: C{(column type, unsigned)} per parameter, as remembered between executions
#: of a statement for which the client does not rebind types.
ParameterTypes = Sequence[tuple[ColumnType, bool]]


def _encode_parameters(
    parameters: Sequence[BoundParameter], new_params_bound: bool, with_names: bool
) -> bytes:
    count = len(parameters)
    bitmap = bytearray((count + 7) // 8)
    values: list[bytes] = []
    types: list[bytes] = []
    for index, parameter in enumerate(parameters):
        if new_params_bound:
            types.append(bytes((int(parameter.type), 0x80 if parameter.unsigned else 0)))
            if with_names:
                types.append(lenenc_bytes(parameter.name))
        value = parameter.value
        if value is None:
            bitmap[index >> 3] |= 1 << (index & 7)
        elif value is not LONG_DATA:
            values.append(encode_binary_value(parameter.type, value, parameter.unsigned))
    return (
        bytes(bitmap)
        + (b"\x01" if new_params_bound else b"\x00")
        + b"".join(types)
        + b"".join(values)
    )


def _decode_parameters(
    reader: PayloadReader,
    count: int,
    with_names: bool,
    previous_types: ParameterTypes | None,
    long_data: Collection[int],
) -> tuple[tuple[BoundParameter, ...], bool]:
    bitmap = reader.read_bytes((count + 7) // 8)
    flag = reader.read_uint8()
    if flag > 1:
        raise _malformed(f"bad new-params-bound flag {flag}")
    new_params_bound = flag == 1
    types: list[tuple[ColumnType, bool, bytes]] = []
    if new_params_bound:
        for _ in range(count):
            kind = _column_type(reader.read_uint8())
            unsigned = bool(reader.read_uint8() & 0x80)
            name = reader.read_lenenc_bytes() if with_names else b""
            types.append((kind, unsigned, name))
    else:
        if previous_types is None or len(previous_types) != count:
            raise RemoteProtocolError(
                "COM_STMT_EXECUTE without parameter types, and none were bound before",
                ErrorCode.ER_WRONG_ARGUMENTS,
            )
        types = [(kind, unsigned, b"") for kind, unsigned in previous_types]
    parameters = []
    for index, (kind, unsigned, name) in enumerate(types):
        value: object
        if bitmap[index >> 3] & (1 << (index & 7)):
            value = None
        elif index in long_data:
            value = LONG_DATA
        else:
            flags = ColumnFlag.UNSIGNED_FLAG if unsigned else ColumnFlag(0)
            value = decode_binary_value(reader, kind, flags)
        parameters.append(BoundParameter(kind, value, unsigned, name))
    return tuple(parameters), new_params_bound


@attrs.frozen
class ComQuery:
    """
    C{COM_QUERY}: run SQL text.

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_query.html}

    @ivar query: the SQL text.
    @ivar query_attributes: named parameters sent with C{CLIENT_QUERY_ATTRIBUTES}.
    """

    query: bytes
    query_attributes: tuple[BoundParameter, ...] = ()

    command: ClassVar[Command] = Command.COM_QUERY

    def encode(self, capabilities: Capability) -> bytes:
        """
        Encode the payload.

        @param capabilities: the negotiated capabilities.
        @return: the payload.
        """
        if not capabilities & Capability.CLIENT_QUERY_ATTRIBUTES:
            return b"\x03" + self.query
        count = len(self.query_attributes)
        head = b"\x03" + lenenc_int(count) + b"\x01"
        if count:
            head += _encode_parameters(self.query_attributes, True, True)
        return head + self.query

    @classmethod
    def decode(cls, payload: bytes, capabilities: Capability) -> ComQuery:
        """
        Decode the command.

        @param payload: the packet payload.
        @param capabilities: the negotiated capabilities.
        @return: the command.
        @raise RemoteProtocolError: the payload is malformed.
        """
        reader = _command_reader(payload, Command.COM_QUERY)
        attributes: tuple[BoundParameter, ...] = ()
        if capabilities & Capability.CLIENT_QUERY_ATTRIBUTES:
            count = reader.read_lenenc_int()
            sets = reader.read_lenenc_int()
            if sets != 1:
                raise _malformed(f"COM_QUERY with {sets} parameter sets")
            if count:
                attributes, _ = _decode_parameters(reader, count, True, None, ())
        return cls(reader.read_rest(), attributes)


@attrs.frozen
class ComInitDB:
    """
    C{COM_INIT_DB}: change the default schema.

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_init_db.html}

    @ivar schema: the schema name.
    """

    schema: bytes

    command: ClassVar[Command] = Command.COM_INIT_DB

    def encode(self, capabilities: Capability = NO_CAPABILITIES) -> bytes:
        """
        Encode the payload.

        @param capabilities: unused.
        @return: the payload.
        """
        return b"\x02" + self.schema

    @classmethod
    def decode(cls, payload: bytes, capabilities: Capability = NO_CAPABILITIES) -> ComInitDB:
        """
        Decode the command.

        @param payload: the packet payload.
        @param capabilities: unused.
        @return: the command.
        @raise RemoteProtocolError: the payload is malformed.
        """
        return cls(_command_reader(payload, Command.COM_INIT_DB).read_rest())


_B = TypeVar("_B", bound="_BareCommand")
_S = TypeVar("_S", bound="_StatementCommand")


class _BareCommand:
    """
    A command that is only its command byte (extra bytes are ignored on decode).
    """

    __slots__ = ()
    command: ClassVar[Command]

    def encode(self, capabilities: Capability = NO_CAPABILITIES) -> bytes:
        """
        Encode the payload.

        @param capabilities: unused.
        @return: the one-byte payload.
        """
        return bytes((self.command,))

    @classmethod
    def decode(cls: type[_B], payload: bytes, capabilities: Capability = NO_CAPABILITIES) -> _B:
        """
        Decode the command.

        @param payload: the packet payload.
        @param capabilities: unused.
        @return: the command.
        @raise RemoteProtocolError: the payload has another command byte.
        """
        _command_reader(payload, cls.command)
        return cls()


@attrs.frozen
class ComPing(_BareCommand):
    """
    C{COM_PING}: check the server is alive (answered with OK).

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_ping.html}
    """

    command: ClassVar[Command] = Command.COM_PING


@attrs.frozen
class ComQuit(_BareCommand):
    """
    C{COM_QUIT}: end the conversation (no answer; the server closes).

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_quit.html}
    """

    command: ClassVar[Command] = Command.COM_QUIT


@attrs.frozen
class ComStatistics(_BareCommand):
    """
    C{COM_STATISTICS}: ask for a human-readable status string.

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_statistics.html}
    """

    command: ClassVar[Command] = Command.COM_STATISTICS


@attrs.frozen
class ComResetConnection(_BareCommand):
    """
    C{COM_RESET_CONNECTION}: reset the session state without re-authenticating.

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_reset_connection.html}
    """

    command: ClassVar[Command] = Command.COM_RESET_CONNECTION


@attrs.frozen
class ComFieldList:
    """
    C{COM_FIELD_LIST}: list a table's columns (deprecated, still used by the CLI).

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_field_list.html}

    @ivar table: the table name.
    @ivar wildcard: a column-name pattern (may be empty).
    """

    table: bytes
    wildcard: bytes = b""

    command: ClassVar[Command] = Command.COM_FIELD_LIST

    def encode(self, capabilities: Capability = NO_CAPABILITIES) -> bytes:
        """
        Encode the payload.

        @param capabilities: unused.
        @return: the payload.
        """
        return b"\x04" + self.table + b"\x00" + self.wildcard

    @classmethod
    def decode(cls, payload: bytes, capabilities: Capability = NO_CAPABILITIES) -> ComFieldList:
        """
        Decode the command.

        @param payload: the packet payload.
        @param capabilities: unused.
        @return: the command.
        @raise RemoteProtocolError: the payload is malformed.
        """
        reader = _command_reader(payload, Command.COM_FIELD_LIST)
        table = reader.read_nul_bytes()
        return cls(table, reader.read_rest())


@attrs.frozen
class ComProcessKill:
    """
    C{COM_PROCESS_KILL}: kill a connection (deprecated form of C{KILL}).

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_process_kill.html}

    @ivar connection_id: the connection to kill.
    """

    connection_id: int

    command: ClassVar[Command] = Command.COM_PROCESS_KILL

    def encode(self, capabilities: Capability = NO_CAPABILITIES) -> bytes:
        """
        Encode the payload.

        @param capabilities: unused.
        @return: the payload.
        """
        return _STMT_ID.pack(Command.COM_PROCESS_KILL, self.connection_id)

    @classmethod
    def decode(cls, payload: bytes, capabilities: Capability = NO_CAPABILITIES) -> ComProcessKill:
        """
        Decode the command.

        @param payload: the packet payload.
        @param capabilities: unused.
        @return: the command.
        @raise RemoteProtocolError: the payload is malformed.
        """
        reader = _command_reader(payload, Command.COM_PROCESS_KILL)
        value = reader.read_uint32()
        _expect_end(reader, "COM_PROCESS_KILL")
        return cls(value)


@attrs.frozen
class ComChangeUser:
    """
    C{COM_CHANGE_USER}: log in as another user on the same connection.

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_change_user.html}

    @ivar username: the new user.
    @ivar auth_response: the answer to the connection's scramble (one length
        byte with C{CLIENT_SECURE_CONNECTION}, else NUL-terminated).
    @ivar database: the new default schema (C{None} and C{""} both mean none).
    @ivar character_set: the collation id (0 = the optional tail is absent).
    @ivar auth_plugin_name: the plugin the response was made with (with
        C{CLIENT_PLUGIN_AUTH}).
    @ivar connect_attrs: connection attributes (with C{CLIENT_CONNECT_ATTRS}).
    """

    username: str
    auth_response: bytes
    database: str | None = None
    character_set: int = 0
    auth_plugin_name: str | None = None
    connect_attrs: dict[str, str] | None = None

    command: ClassVar[Command] = Command.COM_CHANGE_USER

    def encode(self, capabilities: Capability) -> bytes:
        """
        Encode the payload.

        @param capabilities: the negotiated capabilities.
        @return: the payload.
        """
        parts = [b"\x11", _raw(self.username), b"\x00"]
        if capabilities & Capability.CLIENT_SECURE_CONNECTION:
            if len(self.auth_response) > 255:
                raise LocalProtocolError("COM_CHANGE_USER auth response longer than 255 bytes")
            parts.append(bytes((len(self.auth_response),)) + self.auth_response)
        else:
            parts.append(self.auth_response + b"\x00")
        parts.append(_raw(self.database or "") + b"\x00")
        plugin = self.auth_plugin_name
        attributes = self.connect_attrs
        with_plugin = bool(capabilities & Capability.CLIENT_PLUGIN_AUTH)
        with_attrs = bool(capabilities & Capability.CLIENT_CONNECT_ATTRS) and attributes is not None
        if self.character_set or (with_plugin and plugin is not None) or with_attrs:
            parts.append(_U16.pack(self.character_set))
            if with_plugin and (plugin is not None or with_attrs):
                parts.append(_raw(plugin or "") + b"\x00")
            if with_attrs and attributes is not None:
                parts.append(_encode_attrs(attributes))
        return b"".join(parts)

    @classmethod
    def decode(cls, payload: bytes, capabilities: Capability) -> ComChangeUser:
        """
        Decode the command.

        @param payload: the packet payload.
        @param capabilities: the negotiated capabilities.
        @return: the command.
        @raise RemoteProtocolError: the payload is malformed.
        """
        reader = _command_reader(payload, Command.COM_CHANGE_USER)
        username = _text(reader.read_nul_bytes())
        if capabilities & Capability.CLIENT_SECURE_CONNECTION:
            auth_response = reader.read_bytes(reader.read_uint8())
        else:
            auth_response = reader.read_nul_bytes()
        database = _text(reader.read_nul_bytes_or_rest()) or None
        character_set = 0
        plugin = None
        attributes = None
        if not reader.at_end():
            character_set = reader.read_uint16()
            if capabilities & Capability.CLIENT_PLUGIN_AUTH and not reader.at_end():
                plugin = _text(reader.read_nul_bytes_or_rest())
            if capabilities & Capability.CLIENT_CONNECT_ATTRS and not reader.at_end():
                attributes = _decode_attrs(reader)
        _expect_end(reader, "COM_CHANGE_USER")
        return cls(username, auth_response, database, character_set, plugin, attributes)


@attrs.frozen
class ComSetOption:
    """
    C{COM_SET_OPTION}: switch multi-statements on or off.

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_set_option.html}

    @ivar option: the L{SetOption}.
    """

    option: SetOption

    command: ClassVar[Command] = Command.COM_SET_OPTION

    def encode(self, capabilities: Capability = NO_CAPABILITIES) -> bytes:
        """
        Encode the payload.

        @param capabilities: unused.
        @return: the payload.
        """
        return _SET_OPTION.pack(Command.COM_SET_OPTION, int(self.option))

    @classmethod
    def decode(cls, payload: bytes, capabilities: Capability = NO_CAPABILITIES) -> ComSetOption:
        """
        Decode the command.

        @param payload: the packet payload.
        @param capabilities: unused.
        @return: the command.
        @raise RemoteProtocolError: the payload is malformed or the option unknown.
        """
        reader = _command_reader(payload, Command.COM_SET_OPTION)
        value = reader.read_uint16()
        _expect_end(reader, "COM_SET_OPTION")
        try:
            option = SetOption(value)
        except ValueError:
            raise _malformed(f"unknown COM_SET_OPTION option {value}") from None
        return cls(option)


@attrs.frozen
class ComStmtPrepare:
    """
    C{COM_STMT_PREPARE}: prepare a statement.

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_stmt_prepare.html}

    @ivar query: the SQL text with C{?} placeholders.
    """

    query: bytes

    command: ClassVar[Command] = Command.COM_STMT_PREPARE

    def encode(self, capabilities: Capability = NO_CAPABILITIES) -> bytes:
        """
        Encode the payload.

        @param capabilities: unused.
        @return: the payload.
        """
        return b"\x16" + self.query

    @classmethod
    def decode(cls, payload: bytes, capabilities: Capability = NO_CAPABILITIES) -> ComStmtPrepare:
        """
        Decode the command.

        @param payload: the packet payload.
        @param capabilities: unused.
        @return: the command.
        @raise RemoteProtocolError: the payload is malformed.
        """
        return cls(_command_reader(payload, Command.COM_STMT_PREPARE).read_rest())


@attrs.frozen
class ComStmtExecute:
    """
    C{COM_STMT_EXECUTE}: run a prepared statement.

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_stmt_execute.html}

    The parameters can only be decoded knowing the statement's parameter count
    (and, when the client does not rebind, the types bound before). A command
    decoded without that (L{decode_header}, L{decode_command}) keeps the
    undecoded parameter block in L{raw_parameters}: it re-encodes verbatim (a
    proxy relays it without decoding) and L{decode_parameters} finishes the job.

    @ivar statement_id: the statement.
    @ivar flags: the L{CursorType} flags.
    @ivar iteration_count: always 1.
    @ivar parameters: the bound parameters (empty while L{raw_parameters} is set).
    @ivar new_params_bound: whether the types are (re)bound in this packet.
    @ivar raw_parameters: the undecoded bytes after the fixed header, or C{None}
        once decoded.
    """

    statement_id: int
    flags: CursorType = CursorType.CURSOR_TYPE_NO_CURSOR
    iteration_count: int = 1
    parameters: tuple[BoundParameter, ...] = ()
    new_params_bound: bool = True
    raw_parameters: bytes | None = None

    command: ClassVar[Command] = Command.COM_STMT_EXECUTE

    def parameter_types(self) -> tuple[tuple[ColumnType, bool], ...]:
        """
        The C{(type, unsigned)} pairs of the parameters, to remember for the
        next execution (L{decode}'s C{previous_types}).

        @return: one pair per parameter.
        """
        return tuple((p.type, p.unsigned) for p in self.parameters)

    def encode(self, capabilities: Capability) -> bytes:
        """
        Encode the payload.

        @param capabilities: the negotiated capabilities.
        @return: the payload.
        """
        head = _EXECUTE_HEAD.pack(
            Command.COM_STMT_EXECUTE, self.statement_id, int(self.flags), self.iteration_count
        )
        if self.raw_parameters is not None:
            return head + self.raw_parameters
        with_names = bool(capabilities & Capability.CLIENT_QUERY_ATTRIBUTES)
        count = len(self.parameters)
        if with_names:
            if not count and not self.flags & CursorType.PARAMETER_COUNT_AVAILABLE:
                return head
            head += lenenc_int(count)
        if not count:
            return head
        return head + _encode_parameters(self.parameters, self.new_params_bound, with_names)

    @classmethod
    def decode_header(cls, payload: bytes, capabilities: Capability) -> ComStmtExecute:
        """
        Decode the fixed header only, keeping the parameters undecoded in
        L{raw_parameters}.

        @param payload: the packet payload.
        @param capabilities: unused.
        @return: the command.
        @raise RemoteProtocolError: the header is truncated.
        """
        reader = _command_reader(payload, Command.COM_STMT_EXECUTE)
        statement_id = reader.read_uint32()
        flags = reader.read_uint8()
        iterations = reader.read_uint32()
        return cls(
            statement_id,
            CursorType(flags),
            iterations,
            (),
            True,
            reader.read_rest(),
        )

    @classmethod
    def decode(
        cls,
        payload: bytes,
        capabilities: Capability,
        param_count: int,
        previous_types: ParameterTypes | None = None,
        long_data: Collection[int] = (),
    ) -> ComStmtExecute:
        """
        Decode the command with its parameters.

        @param payload: the packet payload.
        @param capabilities: the negotiated capabilities.
        @param param_count: the statement's parameter count (from its
            L{StmtPrepareOK}).
        @param previous_types: the C{(type, unsigned)} pairs bound by an earlier
            execution, used when this one does not rebind.
        @param long_data: indexes of parameters sent with
            C{COM_STMT_SEND_LONG_DATA}; their values are not in the packet and
            decode as L{LONG_DATA}.
        @return: the command.
        @raise RemoteProtocolError: the payload is malformed.
        """
        return cls.decode_header(payload, capabilities).decode_parameters(
            capabilities, param_count, previous_types, long_data
        )

    def decode_parameters(
        self,
        capabilities: Capability,
        param_count: int,
        previous_types: ParameterTypes | None = None,
        long_data: Collection[int] = (),
    ) -> ComStmtExecute:
        """
        Decode L{raw_parameters}; see L{decode}.

        @param capabilities: the negotiated capabilities.
        @param param_count: the statement's parameter count.
        @param previous_types: the types bound by an earlier execution.
        @param long_data: indexes of parameters sent as long data.
        @return: a copy with L{parameters} set and L{raw_parameters} C{None}
            (C{self} if already decoded).
        @raise RemoteProtocolError: the parameters are malformed.
        """
        if self.raw_parameters is None:
            return self
        reader = PayloadReader(self.raw_parameters)
        with_names = bool(capabilities & Capability.CLIENT_QUERY_ATTRIBUTES)
        count = param_count
        parameters: tuple[BoundParameter, ...] = ()
        new_params_bound = True
        if with_names and (param_count or self.flags & CursorType.PARAMETER_COUNT_AVAILABLE):
            count = reader.read_lenenc_int()
            if count < param_count:
                raise _malformed(f"{count} parameters sent for {param_count} placeholders")
        if count:
            parameters, new_params_bound = _decode_parameters(
                reader, count, with_names, previous_types, long_data
            )
        _expect_end(reader, "COM_STMT_EXECUTE")
        return attrs.evolve(
            self,
            parameters=parameters,
            new_params_bound=new_params_bound,
            raw_parameters=None,
        )


@attrs.frozen
class ComStmtSendLongData:
    """
    C{COM_STMT_SEND_LONG_DATA}: append data to a parameter (no answer).

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_stmt_send_long_data.html}

    @ivar statement_id: the statement.
    @ivar param_id: the parameter index.
    @ivar data: the data to append.
    """

    statement_id: int
    param_id: int
    data: bytes

    command: ClassVar[Command] = Command.COM_STMT_SEND_LONG_DATA

    def encode(self, capabilities: Capability = NO_CAPABILITIES) -> bytes:
        """
        Encode the payload.

        @param capabilities: unused.
        @return: the payload.
        """
        return (
            _LONG_DATA_HEAD.pack(Command.COM_STMT_SEND_LONG_DATA, self.statement_id, self.param_id)
            + self.data
        )

    @classmethod
    def decode(
        cls, payload: bytes, capabilities: Capability = NO_CAPABILITIES
    ) -> ComStmtSendLongData:
        """
        Decode the command.

        @param payload: the packet payload.
        @param capabilities: unused.
        @return: the command.
        @raise RemoteProtocolError: the payload is malformed.
        """
        reader = _command_reader(payload, Command.COM_STMT_SEND_LONG_DATA)
        statement_id = reader.read_uint32()
        param_id = reader.read_uint16()
        return cls(statement_id, param_id, reader.read_rest())


@attrs.frozen
class _StatementCommand:
    """
    A command that is its byte and a statement id.

    @ivar statement_id: the statement.
    """

    statement_id: int

    command: ClassVar[Command]

    def encode(self, capabilities: Capability = NO_CAPABILITIES) -> bytes:
        """
        Encode the payload.

        @param capabilities: unused.
        @return: the payload.
        """
        return _STMT_ID.pack(self.command, self.statement_id)

    @classmethod
    def decode(cls: type[_S], payload: bytes, capabilities: Capability = NO_CAPABILITIES) -> _S:
        """
        Decode the command.

        @param payload: the packet payload.
        @param capabilities: unused.
        @return: the command.
        @raise RemoteProtocolError: the payload is malformed.
        """
        reader = _command_reader(payload, cls.command)
        statement_id = reader.read_uint32()
        _expect_end(reader, cls.command.name)
        return cls(statement_id)


@attrs.frozen
class ComStmtClose(_StatementCommand):
    """
    C{COM_STMT_CLOSE}: forget a prepared statement (no answer).

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_stmt_close.html}
    """

    command: ClassVar[Command] = Command.COM_STMT_CLOSE


@attrs.frozen
class ComStmtReset(_StatementCommand):
    """
    C{COM_STMT_RESET}: drop a statement's long data and cursor (answered with OK).

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_stmt_reset.html}
    """

    command: ClassVar[Command] = Command.COM_STMT_RESET


@attrs.frozen
class ComStmtFetch:
    """
    C{COM_STMT_FETCH}: fetch rows from a statement's open cursor.

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_stmt_fetch.html}

    @ivar statement_id: the statement.
    @ivar num_rows: how many rows to fetch.
    """

    statement_id: int
    num_rows: int

    command: ClassVar[Command] = Command.COM_STMT_FETCH

    def encode(self, capabilities: Capability = NO_CAPABILITIES) -> bytes:
        """
        Encode the payload.

        @param capabilities: unused.
        @return: the payload.
        """
        return _FETCH.pack(Command.COM_STMT_FETCH, self.statement_id, self.num_rows)

    @classmethod
    def decode(cls, payload: bytes, capabilities: Capability = NO_CAPABILITIES) -> ComStmtFetch:
        """
        Decode the command.

        @param payload: the packet payload.
        @param capabilities: unused.
        @return: the command.
        @raise RemoteProtocolError: the payload is malformed.
        """
        reader = _command_reader(payload, Command.COM_STMT_FETCH)
        statement_id = reader.read_uint32()
        num_rows = reader.read_uint32()
        _expect_end(reader, "COM_STMT_FETCH")
        return cls(statement_id, num_rows)


@attrs.frozen
class UnknownCommand:
    """
    A command this module does not decode (e.g. C{COM_BINLOG_DUMP}, MariaDB's
    C{COM_STMT_BULK_EXECUTE}); kept verbatim.

    @ivar command: the command byte.
    @ivar body: the bytes after it.
    """

    command: int
    body: bytes

    def encode(self, capabilities: Capability = NO_CAPABILITIES) -> bytes:
        """
        Encode the payload.

        @param capabilities: unused.
        @return: the payload.
        """
        return bytes((self.command,)) + self.body

    @classmethod
    def decode(cls, payload: bytes, capabilities: Capability = NO_CAPABILITIES) -> UnknownCommand:
        """
        Wrap a payload.

        @param payload: the packet payload (at least the command byte).
        @param capabilities: unused.
        @return: the command.
        @raise RemoteProtocolError: the payload is empty.
        """
        if not payload:
            raise _malformed("empty command packet")
        return cls(payload[0], payload[1:])


#: Any command packet L{decode_command} returns.
CommandPacket = Union[
    ComQuery,
    ComInitDB,
    ComPing,
    ComQuit,
    ComFieldList,
    ComStatistics,
    ComProcessKill,
    ComChangeUser,
    ComResetConnection,
    ComSetOption,
    ComStmtPrepare,
    ComStmtExecute,
    ComStmtSendLongData,
    ComStmtClose,
    ComStmtReset,
    ComStmtFetch,
    UnknownCommand,
]

_COMMANDS: dict[int, Callable[[bytes, Capability], CommandPacket]] = {
    Command.COM_QUERY: ComQuery.decode,
    Command.COM_INIT_DB: ComInitDB.decode,
    Command.COM_PING: ComPing.decode,
    Command.COM_QUIT: ComQuit.decode,
    Command.COM_FIELD_LIST: ComFieldList.decode,
    Command.COM_STATISTICS: ComStatistics.decode,
    Command.COM_PROCESS_KILL: ComProcessKill.decode,
    Command.COM_CHANGE_USER: ComChangeUser.decode,
    Command.COM_RESET_CONNECTION: ComResetConnection.decode,
    Command.COM_SET_OPTION: ComSetOption.decode,
    Command.COM_STMT_PREPARE: ComStmtPrepare.decode,
    Command.COM_STMT_EXECUTE: ComStmtExecute.decode_header,
    Command.COM_STMT_SEND_LONG_DATA: ComStmtSendLongData.decode,
    Command.COM_STMT_CLOSE: ComStmtClose.decode,
    Command.COM_STMT_RESET: ComStmtReset.decode,
    Command.COM_STMT_FETCH: ComStmtFetch.decode,
}


def decode_command(payload: bytes, capabilities: Capability) -> CommandPacket:
    """
    Decode a command-phase request by its first byte.

    C{COM_STMT_EXECUTE} comes back with its parameters undecoded
    (L{ComStmtExecute.raw_parameters}; finish with
    L{ComStmtExecute.decode_parameters}). Commands this module does not know
    come back as L{UnknownCommand}.

    Spec: U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_command_phase.html}

    @param payload: the packet payload.
    @param capabilities: the negotiated capabilities.
    @return: the command.
    @raise RemoteProtocolError: the payload is empty or malformed.
    """
    if not payload:
        raise _malformed("empty command packet")
    decoder = _COMMANDS.get(payload[0])
    if decoder is None:
        return UnknownCommand(payload[0], payload[1:])
    return decoder(payload, capabilities)
