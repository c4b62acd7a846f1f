"""
Tests for L{obproxy_tx.session.ids}: cs_id layouts, proxy_sessid and ss_id.
"""

from __future__ import annotations

import ipaddress

import pytest

from obproxy_tx.session.ids import (
    MAX_ALLOCATION_TRIES,
    ClientSessionIdAllocator,
    ClientSessionIdExhaustedError,
    ClientSessionIdLayout,
    ClientSessionIdParts,
    ClientSessionIdVersion,
    ProxySessidAllocator,
    ServerSessionIdCounter,
    as_signed64,
    decode_proxy_sessid,
    is_observer_session_id,
    make_proxy_sessid,
    next_ss_id,
)

V1 = ClientSessionIdVersion.V1
V2 = ClientSessionIdVersion.V2


def test_v1_doc_example_thread_1_seq_9() -> None:
    """
    With V1, proxy_id 0 and 8 workers, 524297 (0x80009) is worker 1, seq 9,
    as in the ODP docs' SHOW PROXYSESSION sample.
    """
    layout = ClientSessionIdLayout(V1, proxy_id=0, worker_count=8)
    assert layout.seq_bits == 19
    assert layout.decode(524297) == ClientSessionIdParts(0, 0, 1, 9)
    assert layout.compose(1, 9) == 524297


def test_v1_doc_example_depends_on_worker_count() -> None:
    """
    1048577 (0x100001) reads as worker 2 seq 1 with 8 workers but worker 4 seq 1
    with 16, because the worker field widens by one bit.
    """
    assert ClientSessionIdLayout(V1, worker_count=8).decode(1048577) == ClientSessionIdParts(
        0, 0, 2, 1
    )
    assert ClientSessionIdLayout(V1, worker_count=16).decode(1048577) == ClientSessionIdParts(
        0, 0, 4, 1
    )


def test_v1_doc_example_proxy_id_and_upgrade_bit() -> None:
    """
    1607729164 (0x5FD4000C) carries proxy_id 191 and the upgrade bit under V1.
    """
    layout = ClientSessionIdLayout(V1, proxy_id=191, upgrade_bit=1, worker_count=8)
    parts = layout.decode(1607729164)
    assert (parts.proxy_id, parts.upgrade_bit) == (191, 1)
    assert layout.compose(parts.worker, parts.seq) == 1607729164
    assert layout.owns(1607729164)


def test_v2_layout_widths() -> None:
    """
    V2 has a 13-bit proxy_id, so 17 - N sequence bits; the top bit stays 0 even
    with the largest proxy_id and worker.
    """
    layout = ClientSessionIdLayout(V2, proxy_id=8191, upgrade_bit=1, worker_count=4)
    assert (layout.proxy_id_bits, layout.worker_bits, layout.seq_bits) == (13, 2, 15)
    cs_id = layout.compose(3, layout.max_seq)
    assert cs_id == 0x7FFFFFFF
    assert layout.decode(cs_id) == ClientSessionIdParts(8191, 1, 3, layout.max_seq)


def test_single_worker_has_no_worker_bits() -> None:
    """
    One worker needs no worker bits: V2 ids are then proxy prefix plus a 17-bit
    sequence, and the first allocated id with proxy_id 0 is 1.
    """
    layout = ClientSessionIdLayout(V2)
    assert (layout.worker_bits, layout.seq_bits) == (0, 17)
    assert ClientSessionIdAllocator(layout).allocate() == 1


def test_v2_proxy_id_in_high_bits() -> None:
    """
    Under V2 the proxy_id sits at bits 30..18 and the upgrade bit at bit 17.
    """
    layout = ClientSessionIdLayout(V2, proxy_id=3, upgrade_bit=1)
    assert layout.compose(0, 5) == (3 << 18) | (1 << 17) | 5


@pytest.mark.parametrize(
    ("version", "proxy_id"), [(V1, 256), (V1, -1), (V2, 8192)], ids=["v1-256", "v1-neg", "v2-8192"]
)
def test_proxy_id_range(version: ClientSessionIdVersion, proxy_id: int) -> None:
    """
    A proxy_id that does not fit the version's field is refused with a message
    naming the version.
    """
    with pytest.raises(ValueError, match="client_session_id_version"):
        ClientSessionIdLayout(version, proxy_id=proxy_id)


def test_layout_rejects_bad_upgrade_bit_and_workers() -> None:
    """
    The upgrade bit is one bit and there is at least one worker.
    """
    with pytest.raises(ValueError):
        ClientSessionIdLayout(V2, upgrade_bit=2)
    with pytest.raises(ValueError):
        ClientSessionIdLayout(V2, worker_count=0)


def test_version_accepts_plain_int() -> None:
    """
    The layout converts the config's plain integer 1 or 2 to the enum.
    """
    assert ClientSessionIdLayout(1).version is V1


def test_compose_rejects_zero_and_oversized_seq() -> None:
    """
    Sequence 0 never names a session and a sequence wider than its field is refused.
    """
    layout = ClientSessionIdLayout(V2)
    with pytest.raises(ValueError):
        layout.compose(0, 0)
    with pytest.raises(ValueError):
        layout.compose(0, layout.max_seq + 1)
    with pytest.raises(ValueError):
        layout.compose(1, 1)


def test_decode_rejects_observer_ids() -> None:
    """
    An id with bit 31 set is not a cs_id; L{owns} says no instead of raising.
    """
    layout = ClientSessionIdLayout(V2)
    with pytest.raises(ValueError):
        layout.decode(2147549231)
    assert not layout.owns(2147549231)
    assert not layout.owns(-1)


def test_owns_checks_proxy_id_and_upgrade_bit() -> None:
    """
    An id made by another proxy_id or upgrade generation is not ours.
    """
    ours = ClientSessionIdLayout(V2, proxy_id=5)
    theirs = ClientSessionIdLayout(V2, proxy_id=6)
    assert ours.owns(ours.compose(0, 1))
    assert not ours.owns(theirs.compose(0, 1))
    assert not ours.owns(ClientSessionIdLayout(V2, proxy_id=5, upgrade_bit=1).compose(0, 1))
    assert not ours.owns(ours.prefix(0))


def test_allocator_counts_per_worker() -> None:
    """
    Each worker allocates 1, 2, 3... under its own prefix, so workers never collide.
    """
    layout = ClientSessionIdLayout(V1, worker_count=8)
    first = ClientSessionIdAllocator(layout, worker=1)
    second = ClientSessionIdAllocator(layout, worker=2)
    assert [first.allocate() for _ in range(3)] == [524289, 524290, 524291]
    assert second.allocate() == 1048577


def test_allocator_skips_ids_in_use() -> None:
    """
    Ids of live sessions are skipped.
    """
    allocator = ClientSessionIdAllocator(ClientSessionIdLayout(V2))
    assert allocator.allocate(in_use={1, 2, 3}) == 4


def test_allocator_wraps_and_skips_zero() -> None:
    """
    When the sequence wraps, 0 is skipped and counting restarts at 1.
    """
    layout = ClientSessionIdLayout(V2, worker_count=1 << 10)
    assert layout.max_seq == 127
    allocator = ClientSessionIdAllocator(layout, worker=3)
    ids = [allocator.allocate() for _ in range(128)]
    seqs = [layout.decode(cs_id).seq for cs_id in ids]
    assert seqs[:2] == [1, 2]
    assert seqs[126:] == [127, 1]
    assert 0 not in seqs


def test_allocator_gives_up_after_max_tries() -> None:
    """
    After 1000 draws that are all in use, allocation fails so the connection
    can be refused (ODP's OB_SESSION_ENTRY_EXIST).
    """

    class Everything:
        calls = 0

        def __contains__(self, item: object) -> bool:
            Everything.calls += 1
            return True

    allocator = ClientSessionIdAllocator(ClientSessionIdLayout(V2))
    with pytest.raises(ClientSessionIdExhaustedError, match="1000 tries"):
        allocator.allocate(in_use=Everything())
    assert Everything.calls == MAX_ALLOCATION_TRIES


def test_allocator_rejects_unknown_worker() -> None:
    """
    A worker number outside the layout's worker count is refused.
    """
    with pytest.raises(ValueError):
        ClientSessionIdAllocator(ClientSessionIdLayout(V2, worker_count=2), worker=2)


def test_observer_session_ids() -> None:
    """
    Observer session ids have bit 31 set (the docs' 2147549231); cs_ids do not.
    """
    assert is_observer_session_id(2147549231)
    assert is_observer_session_id(3221562906)
    assert not is_observer_session_id(56932)
    assert not is_observer_session_id(-1)
    assert not is_observer_session_id(1 << 32)


def test_proxy_sessid_doc_example() -> None:
    """
    12402504630519660553 decodes to 172.30.140.64, port 2883, seq 9 and back.
    """
    parts = decode_proxy_sessid(12402504630519660553)
    assert parts.ip == ipaddress.IPv4Address("172.30.140.64")
    assert (parts.port, parts.seq) == (2883, 9)
    assert make_proxy_sessid("172.30.140.64", 2883, 9) == 12402504630519660553


def test_proxy_sessid_signed_form() -> None:
    """
    SHOW PROXYSESSION ATTRIBUTE prints proxy_sessid as a signed 64-bit number.
    """
    assert as_signed64(12402504630519660556) == -6044239443189891060
    assert as_signed64(756006681247547396) == 756006681247547396
    assert decode_proxy_sessid(-6044239443189891060).seq == 12


def test_proxy_sessid_allocator_counts_from_one_and_wraps() -> None:
    """
    The sequence starts at 1 and is masked to 16 bits.
    """
    allocator = ProxySessidAllocator("127.0.0.1", 2883)
    first = allocator.allocate()
    assert decode_proxy_sessid(first) == decode_proxy_sessid(make_proxy_sessid(0x7F000001, 2883, 1))
    for _ in range(0xFFFF - 1):
        allocator.allocate()
    assert decode_proxy_sessid(allocator.allocate()).seq == 0


def test_ss_id_counter() -> None:
    """
    ss_ids count from 1; the process-wide counter only goes up.
    """
    counter = ServerSessionIdCounter()
    assert [counter.allocate() for _ in range(3)] == [1, 2, 3]
    first = next_ss_id()
    assert first >= 1
    assert next_ss_id() == first + 1
    with pytest.raises(ValueError):
        ServerSessionIdCounter(0)
