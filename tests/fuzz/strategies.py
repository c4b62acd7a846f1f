"""
Hypothesis strategies for every packet class of L{obproxy_tx.wire.packets}
(and the synthetic events of L{obproxy_tx.wire.connection}), in their
canonical form: the values a real peer can send and that decode to an equal
object, so that C{decode(encode(packet)) == packet} is the property.

Each strategy draws C{(packet, capabilities, decoder)} where C{decoder} takes
a payload and the capabilities (classes whose decoding needs more context, like
binary rows and their columns, get it bound in).
"""

from __future__ import annotations

import datetime
import functools
from typing import Any, Callable, Tuple

from hypothesis import strategies as st

from obproxy_tx.wire.connection import LocalInfileData, StatisticsResponse
from obproxy_tx.wire.constants import (
    Capability,
    ColumnFlag,
    ColumnType,
    CursorType,
    ServerStatus,
    SessionTrackType,
    SetOption,
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
    encode_session_state,
)

#: A drawn sample: the packet, the capabilities to encode it with, its decoder.
Drawn = Tuple[Any, Capability, Callable[[bytes, Capability], Any]]

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, (1 << 64) - 1)
#: Length-encoded integers: the edges of each width are the interesting values.
lenenc = st.one_of(
    st.sampled_from([0, 0xFA, 0xFB, 0xFFFF, 0x10000, 0xFFFFFF, 0x1000000, (1 << 64) - 1]), u64
)
short_bytes = st.binary(max_size=40)
#: Strings without NUL: what NUL-terminated fields can carry (any byte sequence,
#: decoded with surrogateescape as the codec does).
nul_free = st.binary(max_size=30).filter(lambda b: b"\x00" not in b)
nul_free_text = nul_free.map(lambda b: b.decode("utf-8", "surrogateescape"))

capabilities = st.builds(Capability, u64.map(lambda v: v & int(~Capability(0))))
server_status = st.builds(ServerStatus, u16)

#: Capability sets the post-login packets are encoded under: the ones that
#: change their layout, in every combination.
_LAYOUT_BITS = [
    Capability.CLIENT_PROTOCOL_41,
    Capability.CLIENT_TRANSACTIONS,
    Capability.CLIENT_SESSION_TRACK,
    Capability.CLIENT_DEPRECATE_EOF,
    Capability.CLIENT_OPTIONAL_RESULTSET_METADATA,
    Capability.CLIENT_QUERY_ATTRIBUTES,
    Capability.MARIADB_CLIENT_EXTENDED_TYPE_INFO,
    Capability.CLIENT_PLUGIN_AUTH,
    Capability.CLIENT_CONNECT_ATTRS,
    Capability.CLIENT_SECURE_CONNECTION,
    Capability.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA,
]
session_caps = st.lists(st.sampled_from(_LAYOUT_BITS), unique=True).map(
    lambda bits: functools.reduce(lambda a, b: a | b, bits, Capability(0))
)


def _plain(packet_strategy: st.SearchStrategy[Any], caps: Any = session_caps) -> Any:
    """Draw a packet with its own class's decoder."""
    return st.tuples(packet_strategy, caps).map(lambda t: (t[0], t[1], type(t[0]).decode))


# --- Python values of the binary protocol, as they come back decoded --------

_temporal_datetime = st.datetimes(
    min_value=datetime.datetime(1000, 1, 1), max_value=datetime.datetime(9999, 12, 31, 23, 59, 59)
)
#: Values that survive encode/decode unchanged for the column type inferred from them.
binary_values = st.one_of(
    st.none(),
    st.integers(-(1 << 63), (1 << 64) - 1),
    st.floats(allow_nan=False, width=64),
    st.decimals(
        allow_nan=False, allow_infinity=False, places=4, min_value=-(10**20), max_value=10**20
    ),
    st.binary(max_size=300),
    _temporal_datetime,
    st.dates(min_value=datetime.date(1000, 1, 1)),
    st.timedeltas(
        min_value=-datetime.timedelta(hours=838), max_value=datetime.timedelta(hours=838)
    ),
)


def _column_for(value: object, name: bytes) -> ColumnDefinition41:
    if value is None:
        return ColumnDefinition41.for_value(name, b"")
    return ColumnDefinition41.for_value(name, value)


# --- connection phase --------------------------------------------------------


@st.composite
def handshake_v10(draw: Any) -> Drawn:
    caps = draw(capabilities) | Capability.CLIENT_PROTOCOL_41
    plugin_auth = bool(caps & Capability.CLIENT_PLUGIN_AUTH)
    secure = bool(caps & Capability.CLIENT_SECURE_CONNECTION)
    # The scramble: 8 bytes in part 1; the rest (no NUL: it is NUL-terminated)
    # needs CLIENT_SECURE_CONNECTION, and is padded to 12 bytes there.
    if secure:
        scramble = draw(st.binary(min_size=20, max_size=20).filter(lambda b: b"\x00" not in b[8:]))
    else:
        scramble = draw(st.binary(min_size=8, max_size=8))
    packet = HandshakeV10(
        server_version=draw(nul_free_text),
        connection_id=draw(u32),
        auth_plugin_data=scramble,
        capabilities=caps,
        character_set=draw(u8),
        status_flags=draw(server_status),
        auth_plugin_name=draw(nul_free_text) if plugin_auth else "",
    )
    return packet, Capability(0), HandshakeV10.decode


ssl_request = _plain(
    st.builds(SSLRequest, capabilities.map(lambda c: c | Capability.CLIENT_SSL), u32, u8)
)


@st.composite
def handshake_response(draw: Any) -> Drawn:
    caps = draw(capabilities)
    if caps & Capability.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA:
        auth = draw(st.binary(max_size=300))
    elif caps & Capability.CLIENT_SECURE_CONNECTION:
        auth = draw(st.binary(max_size=255))
    else:
        auth = draw(nul_free)
    # Optional trailing fields: present or not, in order (a None before a
    # present one is written as an empty field, so it decodes as "" / {}).
    fields: dict[str, Any] = {}
    optional = [
        ("database", Capability.CLIENT_CONNECT_WITH_DB, nul_free_text),
        ("auth_plugin_name", Capability.CLIENT_PLUGIN_AUTH, nul_free_text),
        (
            "connect_attrs",
            Capability.CLIENT_CONNECT_ATTRS,
            st.dictionaries(
                st.binary(max_size=300).map(lambda b: b.decode("utf-8", "surrogateescape")),
                st.binary(max_size=300).map(lambda b: b.decode("utf-8", "surrogateescape")),
                max_size=4,
            ),
        ),
        ("zstd_compression_level", Capability.CLIENT_ZSTD_COMPRESSION_ALGORITHM, u8),
    ]
    present = [name for name, bit, _ in optional if caps & bit]
    count = draw(st.integers(0, len(present)))
    for name, _bit, strategy in optional:
        if name in present[:count]:
            fields[name] = draw(strategy)
    # A database or plugin name that is empty and last would be left out by
    # a lenient decoder too: require it to be followed or non-empty.
    packet = HandshakeResponse41(
        capabilities=caps,
        max_packet_size=draw(u32),
        character_set=draw(u8),
        username=draw(nul_free_text),
        auth_response=auth,
        **fields,
    )
    return packet, Capability(0), HandshakeResponse41.decode


auth_switch_request = _plain(st.builds(AuthSwitchRequest, nul_free_text, short_bytes))
auth_switch_response = _plain(st.builds(AuthSwitchResponse, short_bytes))
auth_more_data = _plain(st.builds(AuthMoreData, short_bytes))

# --- generic responses --------------------------------------------------------

session_state_items = st.lists(
    st.one_of(
        st.builds(SessionStateItem.for_system_variable, short_bytes, short_bytes),
        st.builds(SessionStateItem.for_schema, short_bytes),
        st.builds(SessionStateItem.for_state_change, st.booleans()),
        st.builds(
            SessionStateItem,
            st.sampled_from([int(t) for t in SessionTrackType]),
            short_bytes,
        ),
    ),
    max_size=4,
)


@st.composite
def ok_packet(draw: Any) -> Drawn:
    caps = draw(session_caps)
    status = draw(server_status)
    info = draw(short_bytes)
    if not caps & (Capability.CLIENT_PROTOCOL_41 | Capability.CLIENT_TRANSACTIONS):
        status = ServerStatus(0)
    state = None
    if caps & Capability.CLIENT_SESSION_TRACK:
        # The state block is there exactly when the flag says so.
        if status & ServerStatus.SERVER_SESSION_STATE_CHANGED:
            state = encode_session_state(draw(session_state_items))
    else:
        status &= ~ServerStatus.SERVER_SESSION_STATE_CHANGED
    packet = OKPacket(
        affected_rows=draw(lenenc),
        last_insert_id=draw(lenenc),
        status_flags=status,
        warnings=draw(u16) if caps & Capability.CLIENT_PROTOCOL_41 else 0,
        info=info,
        session_state_changes=state,
        header=draw(st.sampled_from([0x00, 0xFE])),
    )
    return packet, caps, OKPacket.decode


@st.composite
def err_packet(draw: Any) -> Drawn:
    caps = draw(session_caps) | Capability.CLIENT_PROTOCOL_41
    sqlstate = draw(
        st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=5, max_size=5)
    )
    message = draw(st.binary(max_size=60).map(lambda b: b.decode("utf-8", "surrogateescape")))
    return ERRPacket(draw(u16), message, sqlstate), caps, ERRPacket.decode


eof_packet = st.tuples(u16, server_status).map(
    lambda t: (EOFPacket(t[0], t[1]), Capability.CLIENT_PROTOCOL_41, EOFPacket.decode)
)
raw_packet = _plain(st.builds(RawPacket, short_bytes))


@st.composite
def column_count(draw: Any) -> Drawn:
    caps = draw(session_caps)
    follows = True
    if caps & Capability.CLIENT_OPTIONAL_RESULTSET_METADATA:
        follows = draw(st.booleans())
    return ColumnCount(draw(lenenc.filter(bool)), follows), caps, ColumnCount.decode


@st.composite
def column_definition(draw: Any) -> Drawn:
    caps = draw(session_caps)
    extended = None
    if caps & Capability.MARIADB_CLIENT_EXTENDED_TYPE_INFO:
        extended = draw(short_bytes)
    packet = ColumnDefinition41(
        catalog=draw(short_bytes),
        schema=draw(short_bytes),
        table=draw(short_bytes),
        org_table=draw(short_bytes),
        name=draw(st.binary(max_size=300)),
        org_name=draw(short_bytes),
        character_set=draw(u16),
        column_length=draw(u32),
        column_type=draw(st.sampled_from(list(ColumnType))),
        flags=ColumnFlag(draw(u16)),
        decimals=draw(u8),
        extended_type_info=extended,
        default_values=draw(st.none() | st.binary(min_size=1, max_size=20)),
    )
    return packet, caps, ColumnDefinition41.decode


@st.composite
def text_row(draw: Any) -> Drawn:
    values = tuple(draw(st.lists(st.none() | st.binary(max_size=300), min_size=1, max_size=8)))
    decoder = functools.partial(_decode_text_row, count=len(values))
    return TextRow(values), Capability.CLIENT_PROTOCOL_41, decoder


def _decode_text_row(payload: bytes, caps: Capability, count: int) -> TextRow:
    return TextRow.decode(payload, caps, count)


class BinaryRowWithColumns:
    """A binary row bundled with the columns it is encoded and decoded with."""

    def __init__(self, row: BinaryRow, columns: list[ColumnDefinition41]) -> None:
        self.row = row
        self.columns = columns

    def encode(self, capabilities: Capability) -> bytes:
        """Encode the row for its columns."""
        return self.row.encode(capabilities, self.columns)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BinaryRowWithColumns) and _same_values(
            self.row.values, other.row.values
        )

    def __repr__(self) -> str:
        return f"BinaryRowWithColumns({self.row!r})"


def _same_values(left: tuple[object, ...], right: tuple[object, ...]) -> bool:
    # -0.0 == 0.0, which hides a lost sign: compare floats by their bits.
    if len(left) != len(right):
        return False
    for a, b in zip(left, right):
        if isinstance(a, float) or isinstance(b, float):
            if repr(a) != repr(b):
                return False
        elif a != b or type(a) is not type(b):
            return False
    return True


@st.composite
def binary_row(draw: Any) -> Drawn:
    values = tuple(draw(st.lists(binary_values, min_size=1, max_size=10)))
    columns = [_column_for(value, b"c%d" % index) for index, value in enumerate(values)]

    def decode(payload: bytes, caps: Capability) -> BinaryRowWithColumns:
        return BinaryRowWithColumns(BinaryRow.decode(payload, caps, columns), columns)

    return BinaryRowWithColumns(BinaryRow(values), columns), Capability.CLIENT_PROTOCOL_41, decode


local_infile_request = _plain(st.builds(LocalInfileRequest, short_bytes))


@st.composite
def stmt_prepare_ok(draw: Any) -> Drawn:
    caps = draw(session_caps)
    follows = True
    if caps & Capability.CLIENT_OPTIONAL_RESULTSET_METADATA:
        follows = draw(st.booleans())
    packet = StmtPrepareOK(draw(u32), draw(u16), draw(u16), draw(u16), follows)
    return packet, caps, StmtPrepareOK.decode


# --- commands ---------------------------------------------------------------


@st.composite
def bound_parameter(draw: Any, named: bool = False) -> BoundParameter:
    value = draw(binary_values)
    parameter = BoundParameter.for_value(b"" if value is None else value)
    if value is None:
        parameter = BoundParameter(parameter.type, None, parameter.unsigned)
    if named:
        parameter = BoundParameter(
            parameter.type, parameter.value, parameter.unsigned, draw(short_bytes)
        )
    return parameter


@st.composite
def com_query(draw: Any) -> Drawn:
    caps = draw(session_caps)
    attributes: tuple[BoundParameter, ...] = ()
    if caps & Capability.CLIENT_QUERY_ATTRIBUTES:
        attributes = tuple(draw(st.lists(bound_parameter(named=True), max_size=3)))
    return ComQuery(draw(st.binary(max_size=200)), attributes), caps, ComQuery.decode


@st.composite
def com_change_user(draw: Any) -> Drawn:
    caps = draw(session_caps) | Capability.CLIENT_PROTOCOL_41
    if caps & Capability.CLIENT_SECURE_CONNECTION:
        auth = draw(st.binary(max_size=255))
    else:
        auth = draw(nul_free)
    plugin = draw(nul_free_text) if caps & Capability.CLIENT_PLUGIN_AUTH else None
    attributes = None
    if plugin is not None and caps & Capability.CLIENT_CONNECT_ATTRS:
        attributes = draw(st.dictionaries(nul_free_text, nul_free_text, max_size=3))
    # No database is written as an empty one: both decode as None.
    database = draw(st.none() | nul_free_text.filter(bool))
    packet = ComChangeUser(draw(nul_free_text), auth, database, draw(u16), plugin, attributes)
    return packet, caps, ComChangeUser.decode


@st.composite
def com_stmt_execute(draw: Any) -> Drawn:
    caps = draw(session_caps)
    parameters = tuple(draw(st.lists(bound_parameter(), max_size=6)))
    long_data = frozenset(
        draw(st.sets(st.integers(0, max(0, len(parameters) - 1)), max_size=2)) if parameters else ()
    )
    parameters = tuple(
        BoundParameter(p.type, LONG_DATA, p.unsigned) if i in long_data else p
        for i, p in enumerate(parameters)
    )
    flags = CursorType(draw(st.integers(0, 7)))
    rebind = draw(st.booleans()) or not parameters
    packet = ComStmtExecute(draw(u32), flags, 1, parameters, rebind)
    previous = None if rebind else [(p.type, p.unsigned) for p in parameters]

    def decode(payload: bytes, caps: Capability) -> ComStmtExecute:
        return ComStmtExecute.decode(payload, caps, len(parameters), previous, long_data)

    return packet, caps, decode


commands = st.one_of(
    com_query(),
    _plain(st.builds(ComInitDB, short_bytes)),
    _plain(st.builds(ComPing)),
    _plain(st.builds(ComQuit)),
    _plain(st.builds(ComStatistics)),
    _plain(st.builds(ComResetConnection)),
    _plain(st.builds(ComFieldList, nul_free, short_bytes)),
    _plain(st.builds(ComProcessKill, u32)),
    com_change_user(),
    _plain(st.builds(ComSetOption, st.sampled_from(list(SetOption)))),
    _plain(st.builds(ComStmtPrepare, short_bytes)),
    com_stmt_execute(),
    _plain(st.builds(ComStmtSendLongData, u32, u16, short_bytes)),
    _plain(st.builds(ComStmtClose, u32)),
    _plain(st.builds(ComStmtReset, u32)),
    _plain(st.builds(ComStmtFetch, u32, u32)),
    _plain(
        st.builds(
            UnknownCommand,
            st.integers(0, 0xFF).filter(lambda c: c not in _KNOWN_COMMANDS),
            short_bytes,
        )
    ),
)
_KNOWN_COMMANDS = frozenset(
    (0x01, 0x02, 0x03, 0x04, 0x09, 0x0C, 0x0E, 0x11, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1F)
)

synthetic = st.one_of(
    _plain(st.builds(LocalInfileData, short_bytes)),
    _plain(st.builds(StatisticsResponse, short_bytes)),
)

#: Every packet class, each with its own strategy.
ALL_PACKETS: dict[str, st.SearchStrategy[Drawn]] = {
    "HandshakeV10": handshake_v10(),
    "SSLRequest": ssl_request,
    "HandshakeResponse41": handshake_response(),
    "AuthSwitchRequest": auth_switch_request,
    "AuthSwitchResponse": auth_switch_response,
    "AuthMoreData": auth_more_data,
    "OKPacket": ok_packet(),
    "ERRPacket": err_packet(),
    "EOFPacket": eof_packet,
    "RawPacket": raw_packet,
    "ColumnCount": column_count(),
    "ColumnDefinition41": column_definition(),
    "TextRow": text_row(),
    "BinaryRow": binary_row(),
    "LocalInfileRequest": local_infile_request,
    "StmtPrepareOK": stmt_prepare_ok(),
    "commands": commands,
    "synthetic": synthetic,
}
