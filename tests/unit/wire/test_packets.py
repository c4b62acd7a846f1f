"""
Tests for L{obproxy_tx.wire.packets}: every packet round-trips byte for byte,
golden payloads from real servers decode and re-encode unchanged, and malformed
input only ever raises L{RemoteProtocolError}.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
from typing import Any, Callable

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obproxy_tx.wire.constants import (
    CACHING_SHA2_PASSWORD,
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
    RemoteProtocolError,
)
from obproxy_tx.wire.packets import (
    LONG_DATA,
    AuthMoreData,
    AuthSwitchRequest,
    AuthSwitchResponse,
    BinaryRow,
    BoundParameter,
    ColumnCount,
    ColumnDefinition41,
    ComChangeUser,
    ComFieldList,
    ComInitDB,
    ComPing,
    ComProcessKill,
    ComQuery,
    ComQuit,
    ComResetConnection,
    ComSetOption,
    ComStatistics,
    ComStmtClose,
    ComStmtExecute,
    ComStmtFetch,
    ComStmtPrepare,
    ComStmtReset,
    ComStmtSendLongData,
    EOFPacket,
    ERRPacket,
    HandshakeResponse41,
    HandshakeV10,
    LocalInfileRequest,
    OKPacket,
    RawPacket,
    SessionStateItem,
    SSLRequest,
    StmtPrepareOK,
    TextRow,
    UnknownCommand,
    decode_command,
    decode_text_values,
    is_eof_payload,
)

C = Capability
#: What a modern client and server typically negotiate.
CAPS = (
    C.CLIENT_LONG_PASSWORD
    | C.CLIENT_LONG_FLAG
    | C.CLIENT_CONNECT_WITH_DB
    | C.CLIENT_PROTOCOL_41
    | C.CLIENT_TRANSACTIONS
    | C.CLIENT_SECURE_CONNECTION
    | C.CLIENT_MULTI_STATEMENTS
    | C.CLIENT_MULTI_RESULTS
    | C.CLIENT_PS_MULTI_RESULTS
    | C.CLIENT_PLUGIN_AUTH
    | C.CLIENT_CONNECT_ATTRS
    | C.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | C.CLIENT_SESSION_TRACK
    | C.CLIENT_DEPRECATE_EOF
)
#: seekdb's greeting flags (backends.md section 2).
SEEKDB_CAPS = C(0x009FF7FF)
#: Every optional feature on.
ALL_CAPS = (
    CAPS
    | C.CLIENT_OPTIONAL_RESULTSET_METADATA
    | C.CLIENT_QUERY_ATTRIBUTES
    | C.MARIADB_CLIENT_EXTENDED_TYPE_INFO
    | C.CLIENT_ZSTD_COMPRESSION_ALGORITHM
)
OLD_CAPS = C.CLIENT_LONG_PASSWORD

SCRAMBLE = b"gW_Wvj3^^=Ur`hk_{n7c"

#: seekdb 1.4.0 greeting, from backends.md section 2.
SEEKDB_HANDSHAKE = bytes.fromhex(
    "0a 352e372e323500 6a100000 67575f57766a335e 00 fff7 2e 0200 9f00 15"
    " 00000000000000000000 5e3d557260686b5f7b6e3763 00"
    " 6d7973716c5f6e61746976655f70617373776f7264 00"
)
#: seekdb OK payloads with CLIENT_SESSION_TRACK, from backends.md section 4.
SEEKDB_OK_AUTOCOMMIT_OFF = bytes.fromhex(
    "00 00 00 2040 0000 00 15 00 0f 0a" + b"autocommit".hex() + "03" + b"OFF".hex() + "02 02 01 31"
)
SEEKDB_OK_SET_VAR = bytes.fromhex("00 00 00 2240 0000 00 04 02 02 01 31")
SEEKDB_OK_BEGIN = bytes.fromhex("00 00 00 2300 0000")

#: MariaDB 10.11.19 (Debian 12), captured by a raw client: negotiated capabilities.
MARIADB_CAPS = Capability(0x901BFA28C)
#: Its greeting.
MARIADB_HANDSHAKE = bytes.fromhex(
    "0a352e352e352d31302e31312e31392d4d6172696144422d302b6465623132753100110000007047503e2640"
    "4f4f00feff2d0200ff81150000000000001d0000007d4830574534715f686d6949006d7973716c5f6e617469"
    "76655f70617373776f726400"
)
#: The login OK (session tracking: schema 'test').
MARIADB_LOGIN_OK = bytes.fromhex("00000002400000000701050474657374")
#: COM_STMT_EXECUTE result: column definitions (with MariaDB extended type info), one
#: binary row covering integers, floats, DECIMAL, strings, NULL, DATETIME(6), DATE, TIME,
#: and the OK that ends rows under DEPRECATE_EOF.
MARIADB_BINARY_COLUMNS = [
    bytes.fromhex("03646566000000013f00000c3f0015000000088100000000"),
    bytes.fromhex("03646566000000013f00000c3f0015000000088100000000"),
    bytes.fromhex(
        "0364656600000014313834343637343430373337303935353136313500000c3f001400000008a100000000"
    ),
    bytes.fromhex("0364656600000005312e35653000000c3f00050000000581001f0000"),
    bytes.fromhex(
        "036465660000001b4341535428312e323520415320444543494d414c2831302c33292900000c3f000c000000f68100030000"
    ),
    bytes.fromhex("03646566000000047465787400000c2d0010000000fd0100270000"),
    bytes.fromhex("03646566000000077827303066662700000c3f0002000000fda100000000"),
    bytes.fromhex("03646566000000044e554c4c00000c3f0000000000068000000000"),
    bytes.fromhex(
        "0364656600000031434153542827323032302d30312d30322030333a30343a30352e31323334353627204153204441544554494d452836292900000c3f001a0000000c8000060000"
    ),
    bytes.fromhex(
        "036465660000001a434153542827323032302d30312d30322720415320444154452900000c3f000a0000000a8000000000"
    ),
    bytes.fromhex(
        "036465660000001a4341535428272d3833383a35393a3539272041532054494d452900000c3f000a0000000b8000000000"
    ),
    bytes.fromhex(
        "036465660000001d43415354282731323a30303a30302e35272041532054494d452831292900000c3f000c0000000b8000010000"
    ),
    bytes.fromhex(
        "0364656600000027434153542827323032302d30312d30322030333a30343a303527204153204441544554494d452900000c3f00130000000c8000000000"
    ),
    bytes.fromhex(
        "036465660000001343415354283720415320554e5349474e45442900000c3f000100000003a100000000"
    ),
    bytes.fromhex("0364656600000010524550454154282778272c203330302900000c2d00b0040000fd0000270000"),
]
MARIADB_BINARY_ROW = bytes.fromhex(
    "000002000100000000000000feffffffffffffffffffffffffffffff000000000000f83f05312e3235300474"
    "6578740200ff0be407010203040540e2010004e4070102080122000000163b3b0c00000000000c000020a107"
    "0007e407010203040507000000fc2c0178787878787878787878787878787878787878787878787878787878"
    "7878787878787878787878787878787878787878787878787878787878787878787878787878787878787878"
    "7878787878787878787878787878787878787878787878787878787878787878787878787878787878787878"
    "7878787878787878787878787878787878787878787878787878787878787878787878787878787878787878"
    "7878787878787878787878787878787878787878787878787878787878787878787878787878787878787878"
    "7878787878787878787878787878787878787878787878787878787878787878787878787878787878787878"
    "7878787878787878787878787878787878787878787878787878787878787878787878787878787878787878"
    "7878787878787878"
)
MARIADB_ROWS_END = bytes.fromhex("fe000000000000")
#: ERR for an unknown column.
MARIADB_ERR = bytes.fromhex(
    "ff1e04233432533232556e6b6e6f776e20636f6c756d6e20276e6f73756368636f6c2720696e202753454c45435427"
)
#: A text row of the same SELECT.
MARIADB_TEXT_ROW = bytes.fromhex(
    "0131022d3214313834343637343430373337303935353136313503312e3505312e32353004746578740200ff"
    "fb1a323032302d30312d30322030333a30343a30352e3132333435360a323032302d30312d30320a2d383338"
    "3a35393a35390a31323a30303a30302e3513323032302d30312d30322030333a30343a30350137fc2c017878"
    "7878787878787878787878787878787878787878787878787878787878787878787878787878787878787878"
    "7878787878787878787878787878787878787878787878787878787878787878787878787878787878787878"
    "7878787878787878787878787878787878787878787878787878787878787878787878787878787878787878"
    "7878787878787878787878787878787878787878787878787878787878787878787878787878787878787878"
    "7878787878787878787878787878787878787878787878787878787878787878787878787878787878787878"
    "7878787878787878787878787878787878787878787878787878787878787878787878787878787878787878"
    "78787878787878787878787878787878787878787878787878787878787878787878"
)

COLUMNS = (
    ColumnDefinition41(
        schema=b"test",
        table=b"t",
        org_table=b"t",
        name=b"id",
        org_name=b"id",
        character_set=63,
        column_length=20,
        column_type=ColumnType.MYSQL_TYPE_LONGLONG,
        flags=ColumnFlag.NOT_NULL_FLAG | ColumnFlag.PRI_KEY_FLAG | ColumnFlag.UNSIGNED_FLAG,
    ),
    ColumnDefinition41(name=b"s", character_set=45, column_length=1020),
    ColumnDefinition41(
        name=b"d", column_type=ColumnType.MYSQL_TYPE_DATETIME, column_length=26, decimals=6
    ),
    ColumnDefinition41(name=b"n", column_type=ColumnType.MYSQL_TYPE_NEWDECIMAL, decimals=2),
    ColumnDefinition41(name=b"f", column_type=ColumnType.MYSQL_TYPE_DOUBLE, decimals=31),
    ColumnDefinition41(name=b"t", column_type=ColumnType.MYSQL_TYPE_TIME),
)

EXECUTE_PARAMS = (
    BoundParameter(ColumnType.MYSQL_TYPE_LONGLONG, 42),
    BoundParameter(ColumnType.MYSQL_TYPE_VAR_STRING, b"hello"),
    BoundParameter(ColumnType.MYSQL_TYPE_NULL, None),
    BoundParameter(ColumnType.MYSQL_TYPE_DOUBLE, 1.5),
    BoundParameter(ColumnType.MYSQL_TYPE_TINY, 255, unsigned=True),
    BoundParameter(ColumnType.MYSQL_TYPE_DATETIME, datetime.datetime(2024, 2, 29, 13, 14, 15)),
    BoundParameter(ColumnType.MYSQL_TYPE_NEWDECIMAL, decimal.Decimal("-12.50")),
    BoundParameter(ColumnType.MYSQL_TYPE_BLOB, b"x" * 300),
    BoundParameter(ColumnType.MYSQL_TYPE_LONGLONG, 7),
)

Decoder = Callable[[bytes, Capability], Any]


@attrs.frozen
class Sample:
    """One packet value, the capabilities to encode it with and how to decode it."""

    name: str
    packet: Any
    caps: Capability
    decode: Decoder


def _plain(packet: Any, caps: Capability = CAPS, name: str = "") -> Sample:
    return Sample(name or type(packet).__name__, packet, caps, type(packet).decode)


def _samples() -> list[Sample]:
    samples = [
        _plain(
            HandshakeV10(
                "8.0.36",
                7,
                SCRAMBLE,
                CAPS | C.CLIENT_SSL,
                255,
                ServerStatus.SERVER_STATUS_AUTOCOMMIT,
                CACHING_SHA2_PASSWORD,
            )
        ),
        _plain(
            HandshakeV10(
                "10.11.6-MariaDB",
                99,
                SCRAMBLE,
                (CAPS & ~C.CLIENT_LONG_PASSWORD)
                | C.MARIADB_CLIENT_PROGRESS
                | C.MARIADB_CLIENT_EXTENDED_TYPE_INFO,
                45,
                ServerStatus.SERVER_STATUS_AUTOCOMMIT,
            ),
            name="HandshakeV10-mariadb",
        ),
        _plain(
            HandshakeV10(
                "5.0",
                1,
                SCRAMBLE,
                C.CLIENT_PROTOCOL_41 | C.CLIENT_SECURE_CONNECTION,
                8,
                ServerStatus(0),
                "",
            ),
            name="HandshakeV10-no-plugin-auth",
        ),
        _plain(SSLRequest(CAPS | C.CLIENT_SSL, 1 << 24, 45)),
        _plain(
            SSLRequest(CAPS | C.CLIENT_SSL | C.MARIADB_CLIENT_PROGRESS, 1 << 24, 45),
            name="SSLRequest-mariadb",
        ),
        _plain(
            HandshakeResponse41(
                CAPS,
                1 << 24,
                45,
                "alice",
                b"\x01" * 20,
                "test",
                "mysql_native_password",
                {"_client_name": "pymysql", "_pid": "123"},
            )
        ),
        _plain(
            HandshakeResponse41(
                ALL_CAPS | C.MARIADB_CLIENT_PROGRESS,
                1 << 24,
                45,
                "bob",
                b"",
                "",
                "",
                {},
                3,
            ),
            name="HandshakeResponse41-tail-gaps",
        ),
        _plain(
            HandshakeResponse41(
                (CAPS & ~C.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) & ~C.CLIENT_CONNECT_WITH_DB,
                0,
                33,
                "ünïcode",
                b"\x02" * 20,
                None,
                "mysql_native_password",
            ),
            name="HandshakeResponse41-one-byte-auth-len",
        ),
        _plain(
            HandshakeResponse41(C.CLIENT_PROTOCOL_41, 0, 8, "old", b"pw"),
            name="HandshakeResponse41-old",
        ),
        _plain(AuthSwitchRequest.for_scramble("mysql_native_password", SCRAMBLE)),
        _plain(AuthSwitchResponse(b"\x00" * 20)),
        _plain(AuthMoreData(AuthMoreData.FAST_AUTH_SUCCESS)),
        _plain(AuthMoreData(b"-----BEGIN PUBLIC KEY-----\n..."), name="AuthMoreData-pem"),
        _plain(OKPacket()),
        _plain(OKPacket(1, 2, ServerStatus.SERVER_STATUS_AUTOCOMMIT, 3, b"Rows matched: 1")),
        _plain(
            OKPacket.with_session_state(
                [
                    SessionStateItem.for_system_variable(b"autocommit", b"OFF"),
                    SessionStateItem.for_schema(b"t1"),
                    SessionStateItem.for_state_change(),
                ],
                status_flags=ServerStatus.SERVER_STATUS_AUTOCOMMIT,
            ),
            name="OKPacket-session-state",
        ),
        _plain(
            OKPacket(5, 0, ServerStatus.SERVER_STATUS_IN_TRANS, 0, b"info", header=0xFE),
            name="OKPacket-eof",
        ),
        _plain(OKPacket(1 << 40, 1 << 20, info=b"x"), C.CLIENT_PROTOCOL_41, "OKPacket-no-track"),
        _plain(OKPacket(1, 0, info=b"x"), OLD_CAPS, "OKPacket-old"),
        _plain(
            OKPacket(1, 0, ServerStatus.SERVER_STATUS_AUTOCOMMIT),
            C.CLIENT_TRANSACTIONS,
            "OKPacket-transactions",
        ),
        _plain(ERRPacket(1045, "Access denied for user 'a'", "28000")),
        _plain(ERRPacket(1064, "syntax"), OLD_CAPS, "ERRPacket-old"),
        _plain(EOFPacket(1, ServerStatus.SERVER_STATUS_AUTOCOMMIT)),
        _plain(EOFPacket(), OLD_CAPS, "EOFPacket-old"),
        _plain(RawPacket(b"\x01\x02")),
        _plain(ColumnCount(3)),
        _plain(ColumnCount(300, False), ALL_CAPS, "ColumnCount-optional-metadata"),
        _plain(LocalInfileRequest(b"/tmp/data.csv")),
        _plain(StmtPrepareOK(1, 2, 3, 0)),
        _plain(StmtPrepareOK(1, 0, 0, 1, False), ALL_CAPS, "StmtPrepareOK-optional-metadata"),
        _plain(ComQuery(b"select 1")),
        _plain(
            ComQuery(
                b"select 1", (BoundParameter(ColumnType.MYSQL_TYPE_VAR_STRING, b"v", name=b"a"),)
            ),
            ALL_CAPS,
            "ComQuery-attributes",
        ),
        _plain(ComQuery(b"select 2"), ALL_CAPS, "ComQuery-no-attributes"),
        _plain(ComInitDB(b"test")),
        _plain(ComPing()),
        _plain(ComQuit()),
        _plain(ComStatistics()),
        _plain(ComResetConnection()),
        _plain(ComFieldList(b"t", b"c%")),
        _plain(ComProcessKill(1234)),
        _plain(
            ComChangeUser(
                "carol", b"\x03" * 20, "db", 45, "mysql_native_password", {"_client_name": "x"}
            )
        ),
        _plain(ComChangeUser("dave", b"", None), CAPS, "ComChangeUser-minimal"),
        _plain(ComChangeUser("erin", b"pw", "db", 8), OLD_CAPS, "ComChangeUser-old"),
        _plain(ComSetOption(SetOption.MYSQL_OPTION_MULTI_STATEMENTS_OFF)),
        _plain(ComStmtPrepare(b"select ?")),
        _plain(ComStmtSendLongData(1, 2, b"chunk")),
        _plain(ComStmtClose(9)),
        _plain(ComStmtReset(9)),
        _plain(ComStmtFetch(9, 100)),
        _plain(UnknownCommand(0x12, b"\x01\x02")),
        Sample(
            "ComStmtExecute",
            ComStmtExecute(1, CursorType.CURSOR_TYPE_NO_CURSOR, 1, EXECUTE_PARAMS),
            CAPS,
            lambda p, c: ComStmtExecute.decode(p, c, len(EXECUTE_PARAMS)),
        ),
        Sample(
            "ComStmtExecute-rebind-skipped",
            ComStmtExecute(
                2,
                CursorType.CURSOR_TYPE_READ_ONLY,
                1,
                EXECUTE_PARAMS[:2],
                new_params_bound=False,
            ),
            CAPS,
            lambda p, c: ComStmtExecute.decode(
                p, c, 2, [(p.type, p.unsigned) for p in EXECUTE_PARAMS[:2]]
            ),
        ),
        Sample(
            "ComStmtExecute-no-params",
            ComStmtExecute(3),
            CAPS,
            lambda p, c: ComStmtExecute.decode(p, c, 0),
        ),
        Sample(
            "ComStmtExecute-query-attributes",
            ComStmtExecute(
                4,
                CursorType.PARAMETER_COUNT_AVAILABLE,
                1,
                (
                    BoundParameter(ColumnType.MYSQL_TYPE_LONG, -5, name=b""),
                    BoundParameter(ColumnType.MYSQL_TYPE_VAR_STRING, b"attr", name=b"a"),
                ),
            ),
            ALL_CAPS,
            lambda p, c: ComStmtExecute.decode(p, c, 1),
        ),
        Sample(
            "ComStmtExecute-long-data",
            ComStmtExecute(
                5,
                parameters=(
                    BoundParameter(ColumnType.MYSQL_TYPE_BLOB, LONG_DATA),
                    BoundParameter(ColumnType.MYSQL_TYPE_LONG, 1),
                ),
            ),
            CAPS,
            lambda p, c: ComStmtExecute.decode(p, c, 2, long_data={0}),
        ),
        Sample(
            "ComStmtExecute-raw",
            ComStmtExecute(6, raw_parameters=b"\x00\x01\x08\x00\x01\x00\x00\x00\x00\x00\x00\x00"),
            CAPS,
            ComStmtExecute.decode_header,
        ),
        _plain(COLUMNS[0]),
        _plain(
            attrs.evolve(COLUMNS[1], extended_type_info=b"\x00\x04json"),
            ALL_CAPS,
            "ColumnDefinition41-extended",
        ),
        _plain(
            attrs.evolve(COLUMNS[1], default_values=b"\xfb"), CAPS, "ColumnDefinition41-field-list"
        ),
        Sample(
            "TextRow",
            TextRow((b"1", None, b"", b"x" * 300, b"y" * 70000)),
            CAPS,
            lambda p, c: TextRow.decode(p, c, 5),
        ),
        Sample(
            "BinaryRow",
            BinaryRow(
                (
                    18446744073709551615,
                    b"text",
                    datetime.datetime(2020, 1, 2, 3, 4, 5, 600),
                    decimal.Decimal("3.14"),
                    -2.5,
                    datetime.timedelta(hours=-30, seconds=5),
                )
            ),
            CAPS,
            lambda p, c: BinaryRow.decode(p, c, COLUMNS),
        ),
        Sample(
            "BinaryRow-nulls",
            BinaryRow((None, None, None, None, None, None)),
            CAPS,
            lambda p, c: BinaryRow.decode(p, c, COLUMNS),
        ),
    ]
    return samples


def _golden_samples() -> list[Sample]:
    columns = [ColumnDefinition41.decode(p, MARIADB_CAPS) for p in MARIADB_BINARY_COLUMNS]
    captured: list[tuple[str, bytes, Decoder]] = [
        ("seekdb-handshake", SEEKDB_HANDSHAKE, HandshakeV10.decode),
        ("mariadb-handshake", MARIADB_HANDSHAKE, HandshakeV10.decode),
        ("mariadb-login-ok", MARIADB_LOGIN_OK, OKPacket.decode),
        ("mariadb-rows-end", MARIADB_ROWS_END, OKPacket.decode),
        ("mariadb-err", MARIADB_ERR, ERRPacket.decode),
        ("mariadb-text-row", MARIADB_TEXT_ROW, lambda p, c: TextRow.decode(p, c, 15)),
        ("mariadb-column", MARIADB_BINARY_COLUMNS[5], ColumnDefinition41.decode),
    ]
    samples = [
        Sample(f"golden-{name}", decode(payload, MARIADB_CAPS), MARIADB_CAPS, decode)
        for name, payload, decode in captured
    ]
    samples.append(
        Sample(
            "golden-mariadb-binary-row",
            _GoldenBinaryRow(BinaryRow.decode(MARIADB_BINARY_ROW, MARIADB_CAPS, columns), columns),
            MARIADB_CAPS,
            lambda p, c: _GoldenBinaryRow(BinaryRow.decode(p, c, columns), columns),
        )
    )
    return samples


@attrs.frozen
class _GoldenBinaryRow:
    """A binary row bundled with its captured column definitions."""

    row: BinaryRow
    columns: list[ColumnDefinition41]

    def encode(self, capabilities: Capability) -> bytes:
        return self.row.encode(capabilities, self.columns)


SAMPLES = _samples() + _golden_samples()


def _encode(sample: Sample) -> bytes:
    if isinstance(sample.packet, BinaryRow):
        return sample.packet.encode(sample.caps, COLUMNS)
    return bytes(sample.packet.encode(sample.caps))


def _reencode(sample: Sample, packet: Any) -> bytes:
    if isinstance(packet, BinaryRow):
        return packet.encode(sample.caps, COLUMNS)
    return bytes(packet.encode(sample.caps))


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
def test_round_trip(sample: Sample) -> None:
    """Encoding then decoding gives an equal packet, which encodes to the same bytes."""
    payload = _encode(sample)
    decoded = sample.decode(payload, sample.caps)
    assert decoded == sample.packet
    assert _reencode(sample, decoded) == payload


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
def test_truncation_never_crashes(sample: Sample) -> None:
    """Every prefix of every sample either decodes or raises RemoteProtocolError."""
    payload = _encode(sample)
    lengths = range(len(payload)) if len(payload) < 2000 else range(0, len(payload), 97)
    for length in lengths:
        try:
            sample.decode(payload[:length], sample.caps)
        except RemoteProtocolError as error:
            assert error.error_code in (
                ErrorCode.ER_MALFORMED_PACKET,
                ErrorCode.ER_HANDSHAKE_ERROR,
                ErrorCode.ER_WRONG_ARGUMENTS,
            )


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
def test_corruption_never_crashes(sample: Sample) -> None:
    """Flipping any single byte of a sample never raises anything but RemoteProtocolError."""
    payload = bytearray(_encode(sample))
    for index in range(min(len(payload), 400)):
        for value in (0x00, 0xFB, 0xFC, 0xFE, 0xFF):
            corrupted = bytearray(payload)
            corrupted[index] = value
            with contextlib.suppress(RemoteProtocolError):
                sample.decode(bytes(corrupted), sample.caps)


DECODERS: dict[str, Decoder] = {s.name: s.decode for s in SAMPLES}
DECODERS["decode_command"] = decode_command


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=80), name=st.sampled_from(sorted(DECODERS)))
def test_garbage_only_raises_remote_protocol_error(data: bytes, name: str) -> None:
    """Arbitrary bytes given to any decoder raise nothing but RemoteProtocolError."""
    for caps in (CAPS, ALL_CAPS, OLD_CAPS):
        with contextlib.suppress(RemoteProtocolError):
            DECODERS[name](data, caps)


# --- golden payloads ----------------------------------------------------


def test_seekdb_handshake_golden() -> None:
    """seekdb's greeting decodes to its documented fields and re-encodes identically."""
    greeting = HandshakeV10.decode(SEEKDB_HANDSHAKE)
    assert len(SEEKDB_HANDSHAKE) == 74
    assert greeting.server_version == "5.7.25"
    assert greeting.connection_id == 0x106A
    assert greeting.auth_plugin_data == SCRAMBLE
    assert greeting.capabilities == SEEKDB_CAPS
    assert not greeting.capabilities & Capability.CLIENT_SSL
    assert greeting.character_set == 46
    assert greeting.status_flags == ServerStatus.SERVER_STATUS_AUTOCOMMIT
    assert greeting.auth_plugin_name == "mysql_native_password"
    assert greeting.encode() == SEEKDB_HANDSHAKE


def test_seekdb_ok_autocommit_golden() -> None:
    """seekdb's OK after SET autocommit=0 exposes the variable and the state change."""
    ok = OKPacket.decode(SEEKDB_OK_AUTOCOMMIT_OFF, SEEKDB_CAPS)
    assert ok.status_flags & ServerStatus.SERVER_SESSION_STATE_CHANGED
    assert ok.info == b""
    items = ok.session_state_items()
    assert [item.type for item in items] == [
        SessionTrackType.SESSION_TRACK_SYSTEM_VARIABLES,
        SessionTrackType.SESSION_TRACK_STATE_CHANGE,
    ]
    assert items[0].system_variable() == (b"autocommit", b"OFF")
    assert items[1].state_changed()
    assert ok.encode(SEEKDB_CAPS) == SEEKDB_OK_AUTOCOMMIT_OFF


def test_seekdb_ok_without_info_golden() -> None:
    """An OK that ends after the warnings (no info) decodes and re-encodes identically."""
    ok = OKPacket.decode(SEEKDB_OK_BEGIN, SEEKDB_CAPS)
    assert ok.status_flags == ServerStatus(0x23)
    assert ok.session_state_changes is None
    assert ok.session_state_items() == []
    assert ok.encode(SEEKDB_CAPS) == SEEKDB_OK_BEGIN
    ok = OKPacket.decode(SEEKDB_OK_SET_VAR, SEEKDB_CAPS)
    assert [i.text() for i in ok.session_state_items()] == [b"1"]
    assert ok.encode(SEEKDB_CAPS) == SEEKDB_OK_SET_VAR


def test_mariadb_handshake_golden() -> None:
    """MariaDB's greeting carries its extended capabilities and re-encodes identically."""
    greeting = HandshakeV10.decode(MARIADB_HANDSHAKE)
    assert greeting.server_version.startswith("5.5.5-10.11.")
    assert not greeting.capabilities & Capability.CLIENT_LONG_PASSWORD
    assert greeting.capabilities & Capability.MARIADB_CLIENT_EXTENDED_TYPE_INFO
    assert len(greeting.auth_plugin_data) == 20
    assert greeting.encode() == MARIADB_HANDSHAKE


def test_mariadb_login_ok_golden() -> None:
    """MariaDB's login OK reports the initial schema through session tracking."""
    ok = OKPacket.decode(MARIADB_LOGIN_OK, MARIADB_CAPS)
    (item,) = ok.session_state_items()
    assert item.schema() == b"test"
    assert ok.encode(MARIADB_CAPS) == MARIADB_LOGIN_OK


def test_mariadb_binary_result_golden() -> None:
    """A real binary result (extended type info, every common type) decodes and re-encodes."""
    columns = [ColumnDefinition41.decode(p, MARIADB_CAPS) for p in MARIADB_BINARY_COLUMNS]
    for column, payload in zip(columns, MARIADB_BINARY_COLUMNS):
        assert column.extended_type_info == b""
        assert column.encode(MARIADB_CAPS) == payload
    row = BinaryRow.decode(MARIADB_BINARY_ROW, MARIADB_CAPS, columns)
    assert row.values[:7] == (
        1,
        -2,
        18446744073709551615,
        1.5,
        decimal.Decimal("1.250"),
        b"text",
        b"\x00\xff",
    )
    assert row.values[7] is None
    assert row.values[8] == datetime.datetime(2020, 1, 2, 3, 4, 5, 123456)
    assert row.values[9] == datetime.date(2020, 1, 2)
    assert row.values[10] == -datetime.timedelta(hours=838, minutes=59, seconds=59)
    assert row.values[11] == datetime.timedelta(hours=12, microseconds=500000)
    assert row.values[12] == datetime.datetime(2020, 1, 2, 3, 4, 5)
    assert row.values[13] == 7
    assert row.values[14] == b"x" * 300
    assert row.encode(MARIADB_CAPS, columns) == MARIADB_BINARY_ROW
    end = OKPacket.decode(MARIADB_ROWS_END, MARIADB_CAPS)
    assert end.header == 0xFE
    assert is_eof_payload(MARIADB_ROWS_END)


def test_mariadb_err_and_text_row_golden() -> None:
    """MariaDB's ERR and a 15-column text row round-trip."""
    err = ERRPacket.decode(MARIADB_ERR, MARIADB_CAPS)
    assert (err.error_code, err.sqlstate) == (1054, "42S22")
    assert err.encode(MARIADB_CAPS) == MARIADB_ERR
    values = decode_text_values(MARIADB_TEXT_ROW, 15)
    assert values[:3] == (b"1", b"-2", b"18446744073709551615")
    assert values[7] is None
    assert TextRow(values).encode(MARIADB_CAPS) == MARIADB_TEXT_ROW


def test_prepare_ok_golden() -> None:
    """The documented COM_STMT_PREPARE answer layout decodes to its fields."""
    payload = bytes.fromhex("00 01000000 0200 0300 00 0000")
    assert StmtPrepareOK.decode(payload, SEEKDB_CAPS) == StmtPrepareOK(1, 2, 3, 0)
    assert StmtPrepareOK(1, 2, 3, 0).encode(SEEKDB_CAPS) == payload


# --- behaviour ----------------------------------------------------------


def test_handshake_mariadb_extended_caps_in_filler() -> None:
    """MariaDB's extended capabilities travel in the last 4 reserved bytes."""
    caps = (CAPS & ~C.CLIENT_LONG_PASSWORD) | C.MARIADB_CLIENT_STMT_BULK_OPERATIONS
    payload = HandshakeV10("10.11", 1, SCRAMBLE, caps, 45, ServerStatus(0)).encode()
    filler_end = payload.index(b"\x00") + 1 + 4 + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10
    assert payload[filler_end - 4 : filler_end] == (1 << 2).to_bytes(4, "little")
    assert HandshakeV10.decode(payload).capabilities == caps


def test_handshake_wrong_protocol_version() -> None:
    """A greeting that is not protocol 10 (e.g. an ERR) raises ER_HANDSHAKE_ERROR."""
    with pytest.raises(RemoteProtocolError) as info:
        HandshakeV10.decode(ERRPacket(1040, "Too many connections").encode(CAPS))
    assert info.value.error_code == ErrorCode.ER_HANDSHAKE_ERROR


def test_ssl_request_is_prefix_of_response() -> None:
    """An SSLRequest is exactly the first 32 bytes of the matching HandshakeResponse41."""
    response = HandshakeResponse41(CAPS | C.CLIENT_SSL, 1 << 24, 45, "u", b"")
    request = SSLRequest(CAPS | C.CLIENT_SSL, 1 << 24, 45)
    assert response.encode()[:32] == request.encode()
    with pytest.raises(RemoteProtocolError):
        SSLRequest.decode(response.encode())


def test_auth_switch_scramble() -> None:
    """AuthSwitchRequest.scramble strips the trailing NUL that MySQL appends."""
    request = AuthSwitchRequest.decode(b"\xfemysql_native_password\x00" + SCRAMBLE + b"\x00", CAPS)
    assert request.plugin_name == "mysql_native_password"
    assert request.scramble == SCRAMBLE
    assert AuthSwitchRequest("p", b"abc").scramble == b"abc"


def test_ok_info_without_session_track() -> None:
    """Without SESSION_TRACK the info string runs to the end of the packet."""
    payload = b"\x00\x03\x00\x02\x00\x00\x00Records: 3  Deleted: 0  Skipped: 0  Warnings: 0"
    ok = OKPacket.decode(payload, CAPS & ~C.CLIENT_SESSION_TRACK)
    assert ok.affected_rows == 3
    assert ok.info.startswith(b"Records: 3")


def test_ok_info_with_session_track_and_info() -> None:
    """With SESSION_TRACK a non-empty info is length-encoded."""
    ok = OKPacket(1, info=b"Rows matched: 1  Changed: 1  Warnings: 0")
    payload = ok.encode(CAPS)
    assert payload[7] == len(ok.info)
    assert OKPacket.decode(payload, CAPS) == ok


def test_ok_rejects_wrong_header() -> None:
    """An OK packet must start with 0x00 or 0xFE."""
    with pytest.raises(RemoteProtocolError):
        OKPacket.decode(b"\x01\x00\x00\x00\x00\x00\x00", CAPS)


def test_session_state_item_helpers_check_type() -> None:
    """Reading an item as the wrong type raises RemoteProtocolError."""
    item = SessionStateItem.for_schema(b"db")
    assert item.schema() == b"db"
    with pytest.raises(RemoteProtocolError):
        item.system_variable()
    with pytest.raises(RemoteProtocolError):
        item.state_changed()


def test_session_state_unknown_type_kept() -> None:
    """Unknown session-state item types are kept as plain ints."""
    ok = OKPacket(
        status_flags=ServerStatus.SERVER_SESSION_STATE_CHANGED,
        session_state_changes=b"\x09\x01z",
    )
    (item,) = OKPacket.decode(ok.encode(CAPS), CAPS).session_state_items()
    assert item.type == 9
    assert item.data == b"z"


def test_err_from_error() -> None:
    """ERRPacket.from_error carries the protocol error's code, SQLSTATE and message."""
    error = RemoteProtocolError("bad", ErrorCode.ER_NET_PACKETS_OUT_OF_ORDER)
    packet = ERRPacket.from_error(error)
    assert packet == ERRPacket(1156, "bad", "08S01")
    assert packet.encode(CAPS) == b"\xff\x84\x04#08S01bad"


def test_err_without_sqlstate_marker() -> None:
    """An ERR without the '#' marker (sent before the handshake) still decodes."""
    packet = ERRPacket.decode(b"\xff\x10\x04Too many connections", CAPS)
    assert packet == ERRPacket(1040, "Too many connections", "HY000")


def test_eof_payload_detection() -> None:
    """is_eof_payload tells a short 0xFE packet from a row starting with 0xFE."""
    assert is_eof_payload(EOFPacket().encode(CAPS))
    assert is_eof_payload(OKPacket(header=0xFE).encode(CAPS))
    assert not is_eof_payload(TextRow((b"x" * 70000,)).encode(CAPS)[:1] + b"\x00" * 9)
    assert not is_eof_payload(b"\x00")


def test_text_row_values() -> None:
    """Text rows split into bytes and None, and extra or missing values are errors."""
    payload = TextRow((b"a", None, b"")).encode(CAPS)
    assert payload == b"\x01a\xfb\x00"
    assert decode_text_values(payload, 3) == (b"a", None, b"")
    with pytest.raises(RemoteProtocolError):
        decode_text_values(payload, 2)
    with pytest.raises(RemoteProtocolError):
        decode_text_values(payload, 4)
    with pytest.raises(RemoteProtocolError):
        decode_text_values(b"\xff", 1)


def test_text_row_large_lengths() -> None:
    """Values of 3- and 8-byte length prefixes decode."""
    big = b"z" * 0x10000
    payload = TextRow((big,)).encode(CAPS)
    assert payload[:4] == b"\xfd\x00\x00\x01"
    assert decode_text_values(payload, 1) == (big,)
    assert decode_text_values(b"\xfe" + (2).to_bytes(8, "little") + b"ab", 1) == (b"ab",)


def test_binary_row_wrong_count() -> None:
    """Encoding a binary row with the wrong number of values is a local error."""
    with pytest.raises(LocalProtocolError):
        BinaryRow((1,)).encode(CAPS, COLUMNS)


def test_binary_row_null_bitmap_offset() -> None:
    """The binary row's NULL bitmap has an offset of 2 bits."""
    columns = [ColumnDefinition41(name=b"a", column_type=ColumnType.MYSQL_TYPE_LONG)] * 7
    payload = BinaryRow((None, 1, 1, 1, 1, 1, None)).encode(CAPS, columns)
    assert payload[:3] == b"\x00\x04\x01"
    assert BinaryRow.decode(payload, CAPS, columns).values == (None, 1, 1, 1, 1, 1, None)


def test_column_definition_rejects_bad_fixed_length() -> None:
    """A column definition whose fixed part is not 12 bytes is malformed."""
    payload = bytearray(COLUMNS[0].encode(CAPS))
    payload[payload.index(b"\x0c")] = 0x0B
    with pytest.raises(RemoteProtocolError):
        ColumnDefinition41.decode(bytes(payload), CAPS)


def test_column_definition_unknown_type() -> None:
    """An unknown column type byte is a RemoteProtocolError, not a ValueError."""
    payload = bytearray(ColumnDefinition41(name=b"a").encode(CAPS))
    payload[-6] = 0x77
    with pytest.raises(RemoteProtocolError):
        ColumnDefinition41.decode(bytes(payload), CAPS)


def test_column_definition_for_value() -> None:
    """ColumnDefinition41.for_value picks a type from a Python value."""
    column = ColumnDefinition41.for_value(b"n", decimal.Decimal("1.250"))
    assert column.column_type == ColumnType.MYSQL_TYPE_NEWDECIMAL
    assert column.decimals == 3
    column = ColumnDefinition41.for_value(b"s", "text", table=b"t")
    assert column.character_set == 45
    assert column.table == b"t"
    assert ColumnDefinition41.for_value(b"i", 1).unsigned is False
    assert ColumnDefinition41.for_value(b"i", 1 << 63).unsigned is True


def test_decode_command_dispatch() -> None:
    """decode_command picks the class by the first byte, UnknownCommand otherwise."""
    assert decode_command(b"\x03select 1", CAPS) == ComQuery(b"select 1")
    assert decode_command(b"\x0e", CAPS) == ComPing()
    assert decode_command(b"\x1d", CAPS) == UnknownCommand(Command.COM_DAEMON, b"")
    with pytest.raises(RemoteProtocolError):
        decode_command(b"", CAPS)


def test_decode_command_execute_is_lazy() -> None:
    """COM_STMT_EXECUTE is decoded to its header; decode_parameters finishes it."""
    command = ComStmtExecute(7, parameters=EXECUTE_PARAMS[:3])
    payload = command.encode(CAPS)
    lazy = decode_command(payload, CAPS)
    assert isinstance(lazy, ComStmtExecute)
    assert lazy.statement_id == 7
    assert lazy.raw_parameters is not None
    assert lazy.encode(CAPS) == payload
    full = lazy.decode_parameters(CAPS, 3)
    assert full == command
    assert full.decode_parameters(CAPS, 3) is full
    assert full.parameter_types() == tuple((p.type, p.unsigned) for p in EXECUTE_PARAMS[:3])


def test_execute_without_types_needs_previous() -> None:
    """An execute that does not rebind types cannot be decoded without the earlier types."""
    payload = ComStmtExecute(1, parameters=EXECUTE_PARAMS[:1], new_params_bound=False).encode(CAPS)
    with pytest.raises(RemoteProtocolError) as info:
        ComStmtExecute.decode(payload, CAPS, 1)
    assert info.value.error_code == ErrorCode.ER_WRONG_ARGUMENTS


def test_execute_long_data_value_not_in_packet() -> None:
    """A parameter sent as long data has no bytes in the execute packet."""
    with_long = ComStmtExecute(
        1, parameters=(BoundParameter(ColumnType.MYSQL_TYPE_BLOB, LONG_DATA),)
    ).encode(CAPS)
    # header(10) + bitmap(1) + bound flag(1) + type(2), no value
    assert len(with_long) == 14


def test_bound_parameter_for_value() -> None:
    """BoundParameter.for_value infers the type and signedness."""
    assert BoundParameter.for_value(1 << 63) == BoundParameter(
        ColumnType.MYSQL_TYPE_LONGLONG, 1 << 63, True
    )
    assert BoundParameter.for_value("s").type == ColumnType.MYSQL_TYPE_VAR_STRING


def test_set_option_unknown() -> None:
    """An unknown COM_SET_OPTION value is a RemoteProtocolError."""
    with pytest.raises(RemoteProtocolError):
        ComSetOption.decode(b"\x1b\x07\x00", CAPS)


def test_command_wrong_first_byte() -> None:
    """A command class refuses a payload of another command."""
    with pytest.raises(RemoteProtocolError):
        ComPing.decode(b"\x01", CAPS)
    with pytest.raises(RemoteProtocolError):
        ComStmtClose.decode(b"\x1a\x01\x00\x00\x00", CAPS)


def test_handshake_response_long_auth_needs_lenenc() -> None:
    """An auth response over 255 bytes needs CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA."""
    caps = CAPS & ~C.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    with pytest.raises(LocalProtocolError):
        HandshakeResponse41(caps, 0, 45, "u", b"x" * 256).encode()
    big = HandshakeResponse41(CAPS, 0, 45, "u", b"x" * 256, "db")
    assert HandshakeResponse41.decode(big.encode()) == big


def test_handshake_response_gaps_written_empty() -> None:
    """Optional fields left as None before a present one are written empty."""
    response = HandshakeResponse41(ALL_CAPS, 0, 45, "u", b"", None, None, None, 3)
    decoded = HandshakeResponse41.decode(response.encode())
    assert (decoded.database, decoded.auth_plugin_name, decoded.connect_attrs) == ("", "", {})
    assert decoded.zstd_compression_level == 3
    assert decoded.encode() == response.encode()


def test_handshake_response_surrogateescape() -> None:
    """Non-UTF-8 usernames survive a round trip."""
    payload = HandshakeResponse41(CAPS, 0, 45, "x", b"").encode().replace(b"x\x00", b"\xff\x00")
    response = HandshakeResponse41.decode(payload)
    assert response.encode() == payload
