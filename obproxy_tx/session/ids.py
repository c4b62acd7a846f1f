"""
Session identifiers as ODP assigns them: C{cs_id}, C{proxy_sessid} and C{ss_id}.

All three are pure arithmetic on integers, so the L{SessionManager
<obproxy_tx.session>} can allocate them and the admin commands can decode them
without a reactor.

C{cs_id} (the C{Id} column of SHOW PROXYSESSION, the connection id in the proxy's
handshake) is a 32-bit number laid out as ODP lays it out
(C{src/obproxy/proxy/mysql/ob_mysql_client_session.cpp},
C{get_thread_init_cs_id}, C{acquire_client_session_id_v1/v2})::

    V1: | 0 | proxy_id: 8 bits  | upgrade: 1 | worker: N bits | seq: 22 - N bits |
    V2: | 0 | proxy_id: 13 bits | upgrade: 1 | worker: N bits | seq: 17 - N bits |

N is the bit width of C{worker_count - 1}: one worker gives N = 0, 8 workers
N = 3. ODP's workers are threads of one process; ours will be processes sharing
one listening port, each allocating from its own C{worker} prefix, so ids never
collide between them. Bit 31 is always 0: an id with bit 31 set is an observer's
own session id (C{1 | 15-bit server id | 16-bit seq}), which is how C{KILL id}
tells the two kinds apart (L{is_observer_session_id}).

C{proxy_sessid} is C{(proxy IPv4 << 32) | (listen port << 16) | (seq & 0xFFFF)}
from one process-wide counter starting at 1 (C{get_next_proxy_sessid}).

C{ss_id} is a process-wide counter starting at 1, never 0
(C{ob_mysql_server_session.h}, C{get_next_ss_id}).
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Container
from enum import IntEnum

import attrs

__all__ = [
    "ClientSessionIdExhaustedError",
    "ClientSessionIdVersion",
    "ClientSessionIdLayout",
    "ClientSessionIdParts",
    "ClientSessionIdAllocator",
    "MAX_ALLOCATION_TRIES",
    "ProxySessidParts",
    "ProxySessidAllocator",
    "ServerSessionIdCounter",
    "as_signed64",
    "decode_proxy_sessid",
    "is_observer_session_id",
    "make_proxy_sessid",
    "next_ss_id",
]

MAX_ALLOCATION_TRIES = 1000
"""
How many ids L{ClientSessionIdAllocator.allocate} draws before giving up, as ODP
does before failing with C{OB_SESSION_ENTRY_EXIST}.
"""

_MAX_WORKERS = 1 << 10


class ClientSessionIdVersion(IntEnum):
    """
    The C{client_session_id_version} config item: which C{cs_id} layout is used.
    """

    V1 = 1
    """8-bit proxy_id and 22 - N sequence bits; ids are only unique per proxy."""
    V2 = 2
    """13-bit proxy_id and 17 - N sequence bits; ids are unique across proxies."""


class ClientSessionIdExhaustedError(Exception):
    """
    No free C{cs_id} was found in L{MAX_ALLOCATION_TRIES} draws: the worker's
    sequence space is full. The new connection must be refused.
    """


def _worker_bits(worker_count: int) -> int:
    return (worker_count - 1).bit_length()


@attrs.frozen
class ClientSessionIdParts:
    """
    The fields of one C{cs_id}, as L{ClientSessionIdLayout.decode} reads them.

    @ivar proxy_id: the C{proxy_id} config item of the proxy that made the id.
    @ivar upgrade_bit: the hot-upgrade generation bit.
    @ivar worker: which worker allocated it (ODP: thread id).
    @ivar seq: the worker-local sequence number, never 0.
    """

    proxy_id: int
    upgrade_bit: int
    worker: int
    seq: int


@attrs.frozen
class ClientSessionIdLayout:
    """
    One C{cs_id} bit layout: version, proxy id, upgrade bit and worker count.

    @ivar version: V1 or V2.
    @ivar proxy_id: 0..255 with V1, 0..8191 with V2.
    @ivar upgrade_bit: 0 or 1 (ODP: hot-upgrade generation & 1).
    @ivar worker_count: how many workers share the id space (ODP: threads).
    """

    version: ClientSessionIdVersion = attrs.field(converter=ClientSessionIdVersion)
    proxy_id: int = 0
    upgrade_bit: int = 0
    worker_count: int = 1

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.proxy_id <= self.max_proxy_id:
            raise ValueError(
                f"proxy_id {self.proxy_id} is out of range 0..{self.max_proxy_id} "
                f"for client_session_id_version {int(self.version)}"
            )
        if self.upgrade_bit not in (0, 1):
            raise ValueError(f"upgrade_bit must be 0 or 1, not {self.upgrade_bit}")
        if not 1 <= self.worker_count <= _MAX_WORKERS:
            raise ValueError(f"worker_count must be 1..{_MAX_WORKERS}, not {self.worker_count}")

    @property
    def proxy_id_bits(self) -> int:
        """
        Width of the proxy_id field: 8 (V1) or 13 (V2).
        """
        return 8 if self.version == ClientSessionIdVersion.V1 else 13

    @property
    def max_proxy_id(self) -> int:
        """
        Largest proxy_id this version can carry: 255 (V1) or 8191 (V2).
        """
        return (1 << self.proxy_id_bits) - 1

    @property
    def worker_bits(self) -> int:
        """
        N, the bit width of C{worker_count - 1}.
        """
        return _worker_bits(self.worker_count)

    @property
    def seq_bits(self) -> int:
        """
        Width of the sequence field: 22 - N (V1) or 17 - N (V2).
        """
        return 31 - self.proxy_id_bits - 1 - self.worker_bits

    @property
    def max_seq(self) -> int:
        """
        Largest sequence number, also the mask of the sequence field.
        """
        return (1 << self.seq_bits) - 1

    @property
    def _upgrade_offset(self) -> int:
        return 31 - self.proxy_id_bits - 1

    def prefix(self, worker: int) -> int:
        """
        The constant high part of every id that C{worker} allocates (ODP's
        C{thread_init_cs_id}).

        @param worker: 0 <= worker < worker_count.
        @raise ValueError: the worker is out of range.
        """
        if not 0 <= worker < self.worker_count:
            raise ValueError(f"worker must be 0..{self.worker_count - 1}, not {worker}")
        return (
            (self.proxy_id << (self._upgrade_offset + 1))
            | (self.upgrade_bit << self._upgrade_offset)
            | (worker << self.seq_bits)
        )

    def compose(self, worker: int, seq: int) -> int:
        """
        Build the id of sequence number C{seq} on C{worker}.

        @raise ValueError: C{seq} is 0 or does not fit the sequence field.
        """
        if not 1 <= seq <= self.max_seq:
            raise ValueError(f"seq must be 1..{self.max_seq}, not {seq}")
        return self.prefix(worker) | seq

    def decode(self, cs_id: int) -> ClientSessionIdParts:
        """
        Split C{cs_id} into its fields under this layout. The fields are read
        whatever proxy made the id; use L{owns} to ask whether this proxy did.

        @raise ValueError: C{cs_id} is not a 31-bit number (bit 31 set means an
            observer session id, or ODP's internal clients under V1).
        """
        if not 0 <= cs_id < (1 << 31):
            raise ValueError(f"{cs_id} is not a client session id (needs 0 <= id < 2**31)")
        return ClientSessionIdParts(
            proxy_id=cs_id >> (self._upgrade_offset + 1),
            upgrade_bit=(cs_id >> self._upgrade_offset) & 1,
            worker=(cs_id >> self.seq_bits) & ((1 << self.worker_bits) - 1),
            seq=cs_id & self.max_seq,
        )

    def owns(self, cs_id: int) -> bool:
        """
        Whether C{cs_id} could have been allocated under this layout: right
        proxy_id and upgrade bit, an existing worker and a non-zero sequence.
        """
        if not 0 <= cs_id < (1 << 31):
            return False
        parts = self.decode(cs_id)
        return (
            parts.proxy_id == self.proxy_id
            and parts.upgrade_bit == self.upgrade_bit
            and parts.worker < self.worker_count
            and parts.seq != 0
        )


class ClientSessionIdAllocator:
    """
    Allocates C{cs_id}s for one worker: a worker-local counter masked to the
    sequence bits, skipping 0 and every id still in use.

    @ivar layout: the id layout.
    @ivar worker: this worker's number.
    """

    def __init__(self, layout: ClientSessionIdLayout, worker: int = 0) -> None:
        """
        @param layout: the id layout (version, proxy_id, upgrade bit, workers).
        @param worker: which worker this allocator serves.
        @raise ValueError: C{worker} is out of range for the layout.
        """
        self.layout = layout
        self.worker = worker
        self._prefix = layout.prefix(worker)
        self._counter = 0

    def allocate(
        self, in_use: Container[int] = frozenset(), max_tries: int = MAX_ALLOCATION_TRIES
    ) -> int:
        """
        Draw the next free id.

        @param in_use: the ids of this worker's live sessions.
        @param max_tries: how many ids to draw before giving up.
        @return: an id not in C{in_use}, never with sequence 0.
        @raise ClientSessionIdExhaustedError: every draw was in use.
        """
        mask = self.layout.max_seq
        for _ in range(max_tries):
            self._counter += 1
            seq = self._counter & mask
            if seq == 0:
                self._counter += 1
                seq = self._counter & mask
            cs_id = self._prefix | seq
            if cs_id not in in_use:
                return cs_id
        raise ClientSessionIdExhaustedError(
            f"no free client session id after {max_tries} tries "
            f"(worker {self.worker}, {mask} ids per worker)"
        )


def is_observer_session_id(connection_id: int) -> bool:
    """
    Whether an id given to C{KILL} or C{SHOW PROXYSESSION ATTRIBUTE} is an
    observer's session id (bit 31 set, C{1 | server id | seq}) rather than a
    C{cs_id} (ODP does this test when C{proxy_service_mode=client}).
    """
    return 0 <= connection_id < (1 << 32) and bool(connection_id & 0x80000000)


@attrs.frozen
class ProxySessidParts:
    """
    The fields of one C{proxy_sessid}.

    @ivar ip: the proxy's IPv4 address.
    @ivar port: the proxy's listen port.
    @ivar seq: the low 16 bits of the global sequence.
    """

    ip: ipaddress.IPv4Address
    port: int
    seq: int


def make_proxy_sessid(ip: str | int | ipaddress.IPv4Address, port: int, seq: int) -> int:
    """
    Compose C{(ipv4 << 32) | (port << 16) | (seq & 0xFFFF)}.

    @param ip: the proxy's own IPv4 address; an IPv6 or unspecified address
        cannot be encoded, so callers pass C{0.0.0.0} only knowingly.
    @param port: the listen port (masked to 16 bits as ODP does).
    @param seq: the global sequence number (masked to 16 bits).
    @return: an unsigned 64-bit number.
    """
    address = ipaddress.IPv4Address(ip)
    return (int(address) << 32) | ((port & 0xFFFF) << 16) | (seq & 0xFFFF)


def decode_proxy_sessid(proxy_sessid: int) -> ProxySessidParts:
    """
    Split a C{proxy_sessid} (signed or unsigned 64-bit) into ip, port and seq.
    """
    value = proxy_sessid & 0xFFFFFFFFFFFFFFFF
    return ProxySessidParts(
        ip=ipaddress.IPv4Address(value >> 32),
        port=(value >> 16) & 0xFFFF,
        seq=value & 0xFFFF,
    )


def as_signed64(value: int) -> int:
    """
    Reinterpret an unsigned 64-bit number as signed, as SHOW PROXYSESSION
    ATTRIBUTE prints C{proxy_sessid} (the spec shows C{-6044239443189891060} for
    C{12402504630519660556}).
    """
    value &= 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value & (1 << 63) else value


class ProxySessidAllocator:
    """
    Makes C{proxy_sessid}s for one proxy address from a counter starting at 1.

    @ivar ip: the proxy's IPv4 address.
    @ivar port: the proxy's listen port.
    """

    def __init__(self, ip: str | int | ipaddress.IPv4Address, port: int) -> None:
        """
        @param ip: the proxy's IPv4 address.
        @param port: the proxy's listen port.
        """
        self.ip = ipaddress.IPv4Address(ip)
        self.port = port
        self._counter = itertools.count(1)

    def allocate(self) -> int:
        """
        The next C{proxy_sessid}. Like ODP, the sequence wraps at 16 bits.
        """
        return make_proxy_sessid(self.ip, self.port, next(self._counter))


class ServerSessionIdCounter:
    """
    Hands out C{ss_id}s 1, 2, 3, ... (never 0).
    """

    def __init__(self, start: int = 1) -> None:
        """
        @param start: the first id; must be at least 1.
        @raise ValueError: C{start} is below 1.
        """
        if start < 1:
            raise ValueError(f"ss_id must start at 1 or above, not {start}")
        self._counter = itertools.count(start)

    def allocate(self) -> int:
        """
        The next C{ss_id}.
        """
        return next(self._counter)


_process_ss_ids = ServerSessionIdCounter()


def next_ss_id() -> int:
    """
    The next C{ss_id} from the process-wide counter (ODP's C{get_next_ss_id}).
    Code that wants its own sequence (tests, a second manager) uses a
    L{ServerSessionIdCounter} instead.
    """
    return _process_ss_ids.allocate()
