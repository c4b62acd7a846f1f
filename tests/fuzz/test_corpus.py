"""
The seed corpus of the atheris targets (real traffic captured from MariaDB
and seekdb by C{python -m fuzz.capture}) through the sans-IO proxy of
L{fuzz.replay}: each whole conversation passes, with and without
L{AnswerRelay}, however its bytes are cut; mutated, it ends in a protocol
error at worst. And the fuzz runner's seeds are what it says.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz import replay as r
from fuzz import run
from fuzz.proxy import run_proxy
from obproxy_tx.wire.connection import Phase
from tests.fuzz.budget import examples

CORPUS = sorted((Path(__file__).resolve().parents[2] / "fuzz" / "corpus").glob("*.bin"))


def test_corpus_has_both_servers_and_clients() -> None:
    """Recordings of MariaDB and seekdb, each with PyMySQL, prepared statements, compression."""
    names = {path.stem for path in CORPUS}
    for kind in ("mariadb", "seekdb"):
        for session in ("pymysql", "connector-prepared", "connector-compressed"):
            assert f"{kind}-{session}" in names


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
@pytest.mark.parametrize("mode", [0, r.MODE_RELAY])
def test_recorded_conversation_passes_the_proxy(path: Path, mode: int) -> None:
    """The whole recorded conversation goes through; both ends close with COM_QUIT."""
    recording = path.read_bytes()
    proxy = r.replay(bytes((mode,)) + recording[1:])
    assert proxy.front.phase is Phase.CLOSED and proxy.back.phase is Phase.CLOSED
    if "compressed" in path.stem:
        assert proxy.front.compression == proxy.back.compression == "zlib"


def _recut(recording: bytes, sizes: list[int]) -> bytes:
    # The same bytes per direction, cut into other pieces (a new piece at
    # every change of direction).
    records = list(r.parse_records(recording[1:]))
    out: list[r.Record] = []
    index = 0
    for direction, chunk in records:
        position = 0
        while position < len(chunk):
            size = sizes[index % len(sizes)] if sizes else len(chunk)
            index += 1
            out.append((direction, chunk[position : position + size]))
            position += size
    return recording[:1] + r.encode_records(out)


@settings(max_examples=examples(12), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, 100),
    sizes=st.lists(st.integers(1, 700), min_size=1, max_size=5),
    mode=st.sampled_from([0, r.MODE_RELAY]),
)
def test_any_chunking(which: int, sizes: list[int], mode: int) -> None:
    """However the recorded bytes were cut by the network, the replay ends the same."""
    recording = CORPUS[which % len(CORPUS)].read_bytes()
    proxy = r.replay(bytes((mode,)) + _recut(recording, sizes)[1:])
    assert proxy.front.phase is Phase.CLOSED and proxy.back.phase is Phase.CLOSED


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, 100),
    flips=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=6),
)
def test_mutated_recordings(which: int, flips: list[tuple[int, int]]) -> None:
    """Bytes of a recording changed: the proxy refuses with a protocol error at worst."""
    data = bytearray(CORPUS[which % len(CORPUS)].read_bytes())
    for position, value in flips:
        data[position % len(data)] = value
    r.replay(bytes(data))


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_recorded_commands_through_the_proxy_sessions(path: Path) -> None:
    """
    The proxy target's seeds (each recording from after its login) through the
    proxy's own sessions: nothing escapes, nothing unexpected is logged, and
    a new client is served afterwards (run_proxy raises otherwise).
    """
    run_proxy(run.after_login(path.read_bytes()))


def test_runner_seeds(tmp_path: Path) -> None:
    """Each target gets seeds from every recording."""
    for target in run.TARGETS:
        directory = tmp_path / target
        directory.mkdir()
        count = run.seed(target, directory)
        assert count == len(list(directory.iterdir())) >= len(CORPUS)
