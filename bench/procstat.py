"""
CPU time and resident memory of a process and its descendants, read from C{/proc}.

The benchmark's stable figure on a small machine is the proxy's own CPU time per query: client,
proxy and database share the cores, so throughput moves with whatever else runs, while the CPU a
process spends per query does not.  A multi-worker proxy is a parent and its workers, so both
figures are summed over the process tree.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List

#: Clock ticks per second of the utime/stime fields.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

PROC = Path("/proc")


def _stat_fields(pid: int) -> List[str]:
    """
    The fields of C{/proc/<pid>/stat} after the command name (field 3, the state, is index 0).
    """
    text = (PROC / str(pid) / "stat").read_text()
    return text.rsplit(")", 1)[1].split()


def descendants(pid: int) -> List[int]:
    """
    C{pid} and every live process below it, parents first.
    """
    children: Dict[int, List[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry.name))[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(entry.name))
    tree = [pid]
    for parent in tree:  # grows while walked: breadth first
        tree.extend(children.get(parent, ()))
    return tree


def cpu_seconds(pid: int, tree: bool = True) -> float:
    """
    User plus system CPU seconds of C{pid} (and, with C{tree}, of its live descendants), including
    children it has already reaped (cutime/cstime), so a worker that exits mid-run still counts.

    @raise OSError: if C{pid} does not exist.
    """
    total = 0
    for index, member in enumerate(descendants(pid) if tree else [pid]):
        try:
            fields = _stat_fields(member)
        except OSError:
            if index == 0:
                raise
            continue
        # utime, stime, cutime, cstime are fields 14-17 of stat (indexes 11-14 here).
        total += sum(int(f) for f in fields[11:15])
    return total / CLOCK_TICKS


def rss_bytes(pid: int, tree: bool = True) -> int:
    """
    Resident set size of C{pid} (summed over its live descendants with C{tree}), in bytes.

    Pages that forked workers still share with their parent count once per process, which
    overstates the total but not the growth measured between two readings.

    @raise OSError: if C{pid} does not exist.
    """
    total = 0
    for index, member in enumerate(descendants(pid) if tree else [pid]):
        try:
            status = (PROC / str(member) / "status").read_text()
        except OSError:
            if index == 0:
                raise
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
                break
    return total
