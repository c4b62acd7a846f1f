"""
Run every atheris target (L{fuzz.targets}) for a bounded time: what CI runs
(C{make fuzz}, 60 seconds in all by default; C{make fuzz FUZZ_SECONDS=3600}
for a longer hunt).

Each target starts from seeds made of the captured traffic in
C{fuzz/corpus/} (the recordings for C{replay}, from after the login for
C{proxy}; each side's byte stream for C{framer}; each packet's payload for
C{decoders}), copied to a work
directory so the committed corpus stays as captured. libFuzzer's own limits
make a hang (C{-timeout}, seconds per input) and unbounded memory
(C{-rss_limit_mb}) crashes too. A crash leaves its input in
C{fuzz/artifacts/} and makes the run fail; replay it with
C{python -m fuzz.targets NAME fuzz/artifacts/crash-...}.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List

from fuzz.replay import CLIENT, SERVER, encode_records, parse_records

ROOT = Path(__file__).resolve().parent
CORPUS = ROOT / "corpus"
ARTIFACTS = ROOT / "artifacts"
TARGETS = ("replay", "proxy", "framer", "decoders")
#: The share of the total time each target gets (the replay covers the most code).
SHARES = {"replay": 0.35, "proxy": 0.3, "framer": 0.15, "decoders": 0.2}


def _streams(recording: bytes) -> Dict[int, bytes]:
    streams: Dict[int, List[bytes]] = {CLIENT: [], SERVER: []}
    for direction, chunk in parse_records(recording[1:]):
        streams[direction].append(chunk)
    return {direction: b"".join(chunks) for direction, chunks in streams.items()}


def _payloads(stream: bytes) -> Iterator[bytes]:
    # The packets of one side, read without sequence checks (the compressed
    # sessions give their compressed packets' bodies: seeds all the same).
    position = 0
    while position + 4 <= len(stream):
        length = int.from_bytes(stream[position : position + 3], "little")
        yield stream[position + 4 : position + 4 + length]
        position += 4 + length


def after_login(recording: bytes) -> bytes:
    """
    The records of a recording after the login's OK (the C{proxy} target
    logs its client in itself).
    """
    records = list(parse_records(recording[1:]))
    for index, (direction, chunk) in enumerate(records):
        if direction == SERVER and len(chunk) > 4 and chunk[4] == 0x00 and index > 1:
            return recording[:1] + encode_records(records[index + 1 :])
    return recording


def seed(target: str, directory: Path) -> int:
    """
    Write the seeds of C{target} into C{directory}.

    @return: how many (distinct) seeds.
    """
    names = set()

    def write(data: bytes) -> None:
        name = hashlib.sha1(data).hexdigest()
        (directory / name).write_bytes(data)
        names.add(name)

    for path in sorted(CORPUS.glob("*.bin")):
        recording = path.read_bytes()
        if target == "replay":
            write(recording)
            continue
        if target == "proxy":
            write(after_login(recording))
            continue
        streams = _streams(recording)
        if target == "framer":
            for stream in streams.values():
                write(stream)
            continue
        caps = (0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")
        for direction, stream in streams.items():
            for index, payload in enumerate(_payloads(stream)):
                # The decoder byte: the fuzzer tries the others by itself.
                write(bytes(((index * 2 + direction) % 251,)) + caps + payload)
    return len(names)


def run_target(target: str, seconds: int, workdir: Path) -> int:
    """
    Fuzz one target for C{seconds}; return its exit status (0: no crash).
    """
    corpus = workdir / target
    corpus.mkdir()
    seeds = seed(target, corpus)
    ARTIFACTS.mkdir(exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "fuzz.targets",
        target,
        str(corpus),
        f"-max_total_time={seconds}",
        f"-artifact_prefix={ARTIFACTS}/{target}-",
        "-timeout=10",
        "-rss_limit_mb=1024",
        "-max_len=8192",
        "-print_final_stats=1",
    ]
    print(f"fuzz: {target} for {seconds} s from {seeds} seeds", flush=True)
    started = time.monotonic()
    result = subprocess.run(
        command,
        cwd=ROOT.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    lines = result.stdout.splitlines()
    stats = [line for line in lines if line.startswith(("stat::", "Done ", "#"))]
    summary = [
        line for line in stats if "DONE" in line or line.startswith(("Done", "stat::number"))
    ]
    for line in summary:
        print(f"  {line}")
    print(
        f"  {target}: exit {result.returncode} after {time.monotonic() - started:.0f} s", flush=True
    )
    if result.returncode != 0:
        print("\n".join(lines[-60:]))
    return result.returncode


def main(argv: List[str] | None = None) -> int:
    """
    C{python -m fuzz.run [--seconds N] [TARGET ...]}.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "60")))
    parser.add_argument("targets", nargs="*", default=list(TARGETS))
    args = parser.parse_args(argv)
    try:
        import atheris  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        if sys.implementation.name != "cpython":
            print(f"fuzz: atheris does not run on {sys.implementation.name}: skipped")
            return 0
        print("fuzz: atheris is not installed (pip install -e '.[test]')", file=sys.stderr)
        return 1
    total = sum(SHARES[target] for target in args.targets)
    failed = []
    workdir = Path(tempfile.mkdtemp(prefix="obproxy-fuzz-"))
    try:
        for target in args.targets:
            seconds = max(1, round(args.seconds * SHARES[target] / total))
            if run_target(target, seconds, workdir) != 0:
                failed.append(target)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if failed:
        print(f"fuzz: crashes in {', '.join(failed)}; inputs in {ARTIFACTS}", file=sys.stderr)
        return 1
    print("fuzz: no crash")
    return 0


if __name__ == "__main__":
    sys.exit(main())
