"""
The benchmark's table: one L{Row} per backend, workload, variant and target, the ratios computed
from rows of the same run, and the Markdown, JSON and PNG written from them.

Ratios compare a target with two baselines measured in the same cell (same backend, workload and
variant, interleaved in time):

  - C{x_direct}: the target's rate over the direct connection's (1.0 means the proxy costs no
    throughput; above 1.0 is possible for churn, where a proxy can keep server sessions);
  - C{x_relay}: the target's rate over the bare Twisted relay's;
  - C{cpu_x_relay}: the target's CPU per unit of work over the relay's (below 1.0: cheaper than
    a byte relay).

The relay baseline is the one running on the same interpreter (C{relay-pypy} for the PyPy
targets); targets that are not Python (HAProxy) are compared with the CPython relay.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Sequence, Tuple

import attrs

#: Headline cell: the issue's reference measurement is point_select at 8-32 threads.
HEADLINE_WORKLOAD = "point_select"


@attrs.frozen
class Row:
    """
    One measurement.

    @ivar backend: C{"mariadb"} or C{"seekdb"}.
    @ivar workload: C{"point_select"}, C{"read_only"}, C{"churn"}, C{"stream"} or C{"idle"}.
    @ivar variant: the cell within the workload (C{"text 8thr"}, C{"64MiB"}, C{"1000cl"}, ...).
    @ivar target: the target's name (C{"direct"}, C{"relay"}, C{"obproxy-1w"}, ...).
    @ivar unit: what L{rate} counts per second (C{"q/s"}, C{"conn/s"}, C{"MiB/s"}), or
        C{"sessions"} for idle sessions, where L{rate} is the number held.
    @ivar rate: the throughput (or, for idle, the sessions held).
    @ivar p95_ms: the 95th percentile latency of one event (query, transaction, connection).
    @ivar cpu_us: the proxy process tree's CPU microseconds per query, connection, MiB or login.
    @ivar db_cpu_us: the database server's CPU microseconds per the same unit.
    @ivar rss_growth_mib: for streaming: the proxy's peak RSS growth during the result.
    @ivar kib_per_session: for idle sessions: the proxy's RSS growth per session.
    @ivar errors: errors the client saw.
    @ivar error: why the measurement failed (no L{rate}), or the first of L{errors}.
    @ivar x_direct: L{rate} over the direct target's.
    @ivar x_relay: L{rate} over the relay's.
    @ivar cpu_x_relay: L{cpu_us} over the relay's.
    @ivar mem_x_relay: L{kib_per_session} over the relay's.
    """

    backend: str
    workload: str
    variant: str
    target: str
    unit: str
    rate: float | None = None
    p95_ms: float | None = None
    cpu_us: float | None = None
    db_cpu_us: float | None = None
    rss_growth_mib: float | None = None
    kib_per_session: float | None = None
    errors: int = 0
    error: str = ""
    x_direct: float | None = None
    x_relay: float | None = None
    cpu_x_relay: float | None = None
    mem_x_relay: float | None = None

    @property
    def failed(self) -> bool:
        """
        Whether nothing was measured (a row with some L{errors} still has its figures).
        """
        return self.rate is None

    @property
    def cell(self) -> Tuple[str, str, str]:
        """
        The cell this row belongs to: rows of one cell are compared with each other.
        """
        return (self.backend, self.workload, self.variant)


#: The measured fields of a row (what L{combine} takes the median of).
MEASURED = ("rate", "p95_ms", "cpu_us", "db_cpu_us", "rss_growth_mib", "kib_per_session")


def combine(rounds: Sequence[Row]) -> Row:
    """
    One row from the same cell and target measured in several rounds: the median of each
    figure over the rounds that measured it, the errors added up.  The median keeps one round
    disturbed by something else on the machine from moving the result.
    """
    measured = [r for r in rounds if not r.failed]
    if not measured:
        return rounds[0]
    figures: Dict[str, Any] = {}
    for name in MEASURED:
        values = [getattr(r, name) for r in measured if getattr(r, name) is not None]
        figures[name] = statistics.median(values) if values else None
    return attrs.evolve(
        measured[0],
        errors=sum(r.errors for r in rounds),
        error=next((r.error for r in rounds if r.error), ""),
        **figures,
    )


def ratio(value: float | None, base: float | None) -> float | None:
    """
    C{value / base}, or C{None} when either is missing or C{base} is not positive.
    """
    if value is None or base is None or base <= 0 or math.isnan(value) or math.isnan(base):
        return None
    return value / base


def relay_for(target: str, interpreters: Mapping[str, str]) -> str:
    """
    The name of the relay target that C{target} is compared with: the relay on the same
    interpreter (C{relay-pypy} for a PyPy target), the CPython C{relay} otherwise.
    """
    return "relay-pypy" if interpreters.get(target) == "pypy" else "relay"


def with_ratios(rows: Sequence[Row], interpreters: Mapping[str, str]) -> List[Row]:
    """
    C{rows} with their ratios to the direct and relay rows of the same cell filled in.

    @param interpreters: each target's interpreter (C{"cpython"}, C{"pypy"} or C{""}).
    """
    by_cell: Dict[Tuple[str, str, str], Dict[str, Row]] = {}
    for row in rows:
        by_cell.setdefault(row.cell, {})[row.target] = row
    done = []
    for row in rows:
        cell = by_cell[row.cell]
        direct = cell.get("direct")
        relay = cell.get(relay_for(row.target, interpreters))
        if relay is not None and relay.failed:
            relay = None
        if direct is not None and direct.failed:
            direct = None
        done.append(
            attrs.evolve(
                row,
                x_direct=ratio(row.rate, direct.rate)
                if direct and row.unit != "sessions"
                else None,
                x_relay=ratio(row.rate, relay.rate) if relay and row.unit != "sessions" else None,
                cpu_x_relay=ratio(row.cpu_us, relay.cpu_us) if relay else None,
                mem_x_relay=ratio(row.kib_per_session, relay.kib_per_session) if relay else None,
            )
        )
    return done


# -- text --------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 0) -> str:
    """
    A number for a table cell (C{-} for none).
    """
    if value is None:
        return "-"
    if digits == 0 and abs(value) >= 10:
        return f"{value:,.0f}"
    if digits == 0:
        return f"{value:.1f}"
    return f"{value:.{digits}f}"


def fmt_ratio(value: float | None) -> str:
    """
    A ratio for a table cell: C{0.83x} (C{-} for none).
    """
    return "-" if value is None else f"{value:.2f}x"


#: Columns per workload: (header, how to read it from a row).
_COLUMNS: Dict[str, List[Tuple[str, Any]]] = {
    "sysbench": [
        ("QPS", lambda r: fmt(r.rate)),
        ("x direct", lambda r: fmt_ratio(r.x_direct)),
        ("x relay", lambda r: fmt_ratio(r.x_relay)),
        ("p95 ms", lambda r: fmt(r.p95_ms, 2)),
        ("proxy CPU us/q", lambda r: fmt(r.cpu_us)),
        ("CPU x relay", lambda r: fmt_ratio(r.cpu_x_relay)),
        ("db CPU us/q", lambda r: fmt(r.db_cpu_us)),
    ],
    "churn": [
        ("conn/s", lambda r: fmt(r.rate)),
        ("x direct", lambda r: fmt_ratio(r.x_direct)),
        ("x relay", lambda r: fmt_ratio(r.x_relay)),
        ("p95 ms", lambda r: fmt(r.p95_ms, 2)),
        ("proxy CPU us/conn", lambda r: fmt(r.cpu_us)),
        ("CPU x relay", lambda r: fmt_ratio(r.cpu_x_relay)),
        ("db CPU us/conn", lambda r: fmt(r.db_cpu_us)),
    ],
    "stream": [
        ("MiB/s", lambda r: fmt(r.rate)),
        ("x direct", lambda r: fmt_ratio(r.x_direct)),
        ("x relay", lambda r: fmt_ratio(r.x_relay)),
        ("proxy CPU us/MiB", lambda r: fmt(r.cpu_us)),
        ("CPU x relay", lambda r: fmt_ratio(r.cpu_x_relay)),
        ("RSS growth MiB", lambda r: fmt(r.rss_growth_mib, 1)),
    ],
    "idle": [
        ("sessions held", lambda r: fmt(r.rate)),
        ("KiB/session", lambda r: fmt(r.kib_per_session, 1)),
        ("x relay", lambda r: fmt_ratio(r.mem_x_relay)),
        ("proxy CPU us/login", lambda r: fmt(r.cpu_us)),
    ],
}

_TITLES = {
    "point_select": "sysbench oltp_point_select",
    "read_only": "sysbench oltp_read_only",
    "churn": "connection churn (connect, SELECT 1, quit)",
    "stream": "result streaming",
    "idle": "idle sessions",
}


def _columns(workload: str) -> List[Tuple[str, Any]]:
    return _COLUMNS.get(workload, _COLUMNS["sysbench"])


def _table(header: Sequence[str], body: Iterable[Sequence[str]]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return lines


def _ordered(values: Iterable[str]) -> List[str]:
    seen: Dict[str, None] = {}
    for value in values:
        seen.setdefault(value, None)
    return list(seen)


def markdown(rows: Sequence[Row], meta: Mapping[str, Any]) -> str:
    """
    The whole table as Markdown: what was run and where, the headline, then one table per
    backend and workload (a row per variant and target).
    """
    lines = ["# obproxy_tx benchmark", ""]
    lines += [f"- {key}: {value}" for key, value in meta.items() if key not in ("skipped", "notes")]
    for name, reason in (meta.get("skipped") or {}).items():
        lines.append(f"- skipped {name}: {reason.splitlines()[0] if reason else ''}")
    for note in meta.get("notes") or ():
        lines.append(f"- note: {note}")
    lines.append("")
    headline = headline_rows(rows)
    if headline:
        lines += ["## Headline", ""]
        lines += headline_markdown(headline)
        lines.append("")
    summary = summary_markdown(rows)
    if summary:
        lines += ["## Summary", ""] + summary
    for backend in _ordered(r.backend for r in rows):
        for workload in _ordered(r.workload for r in rows if r.backend == backend):
            chosen = [r for r in rows if r.backend == backend and r.workload == workload]
            columns = _columns(workload)
            lines += [f"## {backend}: {_TITLES.get(workload, workload)}", ""]
            body = []
            for row in chosen:
                cells = [row.variant, row.target]
                if row.failed:
                    cells += [f"failed: {row.error}"] + [""] * (len(columns) - 1)
                else:
                    cells += [get(row) for _, get in columns]
                errors = f"{row.errors} ({row.error[:80]})" if row.error else str(row.errors)
                cells.append(errors if row.errors or (row.error and not row.failed) else "")
                body.append(cells)
            lines += _table(["variant", "target", *(h for h, _ in columns), "errors"], body)
            lines.append("")
    return "\n".join(lines)


def headline_rows(rows: Sequence[Row]) -> List[Row]:
    """
    The rows behind the headline: per backend and target, point_select in text mode at the
    largest thread count of 8-32 that was run (the issue's reference load), else the first
    point_select variant.
    """
    chosen: List[Row] = []
    for backend in _ordered(r.backend for r in rows):
        variants = _ordered(
            r.variant for r in rows if r.backend == backend and r.workload == HEADLINE_WORKLOAD
        )
        if not variants:
            continue
        preferred = [v for v in variants if v.startswith("text ") and _threads(v) in (8, 16, 32)]
        variant = max(preferred, key=_threads) if preferred else variants[0]
        chosen += [
            r
            for r in rows
            if r.backend == backend and r.workload == HEADLINE_WORKLOAD and r.variant == variant
        ]
    return chosen


def _threads(variant: str) -> int:
    digits = "".join(ch for ch in variant.split()[-1] if ch.isdigit())
    return int(digits) if digits else 0


def headline_markdown(rows: Sequence[Row]) -> List[str]:
    """
    A compact table of the headline rows: rate, ratios and CPU per query.
    """
    body = [
        [
            row.backend,
            row.variant,
            row.target,
            fmt(row.rate),
            fmt_ratio(row.x_direct),
            fmt_ratio(row.x_relay),
            fmt(row.cpu_us),
            fmt_ratio(row.cpu_x_relay),
        ]
        for row in rows
        if not row.failed
    ]
    header = [
        "backend",
        "point_select",
        "target",
        "QPS",
        "x direct",
        "x relay",
        "proxy CPU us/q",
        "CPU x relay",
    ]
    return _table(header, body)


def _find(
    rows: Sequence[Row], backend: str, workload: str, variant: str, target: str
) -> Row | None:
    for row in rows:
        if (row.backend, row.workload, row.target) == (backend, workload, target) and (
            not variant or row.variant == variant
        ):
            return None if row.failed else row
    return None


#: The point_select cells of the summary: (mode, threads).
SUMMARY_CELLS = (("text", 8), ("text", 32), ("ps", 32))


def summary_markdown(rows: Sequence[Row]) -> List[str]:
    """
    Two compact tables for the docs: each target's CPU per point select (and its ratio to the
    relay on the same interpreter) at 8 and 32 threads, per backend; and the other workloads'
    main figure per backend (churn rate over direct, streaming rate over the relay with the RSS
    growth, idle KiB per session).
    """
    backends = _ordered(r.backend for r in rows)
    order = _ordered(r.target for r in rows if r.workload == HEADLINE_WORKLOAD)
    order += [t for t in _ordered(r.target for r in rows) if t not in order]
    lines: List[str] = []
    cells = [
        (b, f"{mode} {n}thr")
        for b in backends
        for mode, n in SUMMARY_CELLS
        if any(r.backend == b and r.variant == f"{mode} {n}thr" for r in rows)
    ]
    if cells:
        lines += ["Proxy CPU per point select, us (x the relay on the same interpreter):", ""]
        body = []
        for target in order:
            found = [_find(rows, b, HEADLINE_WORKLOAD, v, target) for b, v in cells]
            if target == "direct" or not any(found):
                continue
            body.append(
                [target]
                + [
                    "-" if r is None else f"{fmt(r.cpu_us)} ({fmt_ratio(r.cpu_x_relay)})"
                    for r in found
                ]
            )
        lines += _table(["target", *(f"{b} {v}" for b, v in cells)], body)
        lines.append("")
        # The PyPy target is stated against HAProxy's CPU per query.
        body = []
        for target in order:
            if not target.startswith("obproxy"):
                continue
            over = [
                ratio(
                    getattr(_find(rows, b, HEADLINE_WORKLOAD, v, target), "cpu_us", None),
                    getattr(_find(rows, b, HEADLINE_WORKLOAD, v, "haproxy"), "cpu_us", None),
                )
                for b, v in cells
            ]
            if any(f is not None for f in over):
                body.append([target, *(fmt_ratio(f) for f in over)])
        if body:
            lines += ["The same CPU per query over HAProxy's:", ""]
            lines += _table(["target", *(f"{b} {v}" for b, v in cells)], body)
            lines.append("")
    others = [w for w in ("churn", "stream", "idle") if any(r.workload == w for r in rows)]
    if others:
        header = ["target"]
        for backend in backends:
            header += [
                {
                    "churn": f"{backend} churn conn/s (x direct)",
                    "stream": f"{backend} stream MiB/s (x relay), RSS growth",
                    "idle": f"{backend} idle KiB/session",
                }[w]
                for w in others
            ]
        body = []
        for target in order:
            line = [target]
            for backend in backends:
                for workload in others:
                    r = _find(rows, backend, workload, "", target)
                    if r is None:
                        line.append("-")
                    elif workload == "churn":
                        line.append(f"{fmt(r.rate)} ({fmt_ratio(r.x_direct)})")
                    elif workload == "stream":
                        growth = (
                            "" if r.rss_growth_mib is None else f", +{r.rss_growth_mib:.1f} MiB"
                        )
                        line.append(f"{fmt(r.rate)} ({fmt_ratio(r.x_relay)}){growth}")
                    else:
                        line.append(fmt(r.kib_per_session, 1))
            body.append(line)
        lines += _table(header, body)
        lines.append("")
    return lines


# -- files -------------------------------------------------------------------------------------


def to_json(rows: Sequence[Row], meta: Mapping[str, Any]) -> str:
    """
    Every row (ratios included) and the run's description, as JSON.
    """
    return json.dumps(
        {"meta": dict(meta), "rows": [attrs.asdict(r) for r in rows]}, indent=1, sort_keys=False
    )


def rows_from_json(text: str) -> Tuple[Dict[str, Any], List[Row]]:
    """
    The inverse of L{to_json}.
    """
    data = json.loads(text)
    return data["meta"], [Row(**r) for r in data["rows"]]


def plot(rows: Sequence[Row], path: Path, title: str = "") -> bool:
    """
    Draw point_select (text) throughput and proxy CPU per query against client threads, one line
    per target and a row of plots per backend, into the PNG C{path}.

    @return: C{False} if matplotlib is missing or there is nothing to draw.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    chosen = [
        r
        for r in rows
        if r.workload == HEADLINE_WORKLOAD and r.variant.startswith("text ") and not r.failed
    ]
    backends = _ordered(r.backend for r in chosen)
    if not backends:
        return False
    # One colour per target in every panel (direct has no CPU line, so cycling would shift them).
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colours = {
        t: palette[i % len(palette)] for i, t in enumerate(_ordered(r.target for r in chosen))
    }
    threads = sorted({_threads(r.variant) for r in chosen})
    figure, axes = plt.subplots(len(backends), 2, figsize=(11, 3.6 * len(backends)), squeeze=False)
    for line, backend in enumerate(backends):
        mine = [r for r in chosen if r.backend == backend]
        for target in _ordered(r.target for r in mine):
            points = sorted((_threads(r.variant), r) for r in mine if r.target == target)
            look = {
                "linestyle": "--" if "pypy" in target else "-",
                "marker": "o",
                "color": colours[target],
                "label": target,
            }
            axes[line][0].plot([t for t, _ in points], [r.rate or 0 for _, r in points], **look)
            cpu = [(t, r.cpu_us) for t, r in points if r.cpu_us is not None]
            if cpu:
                axes[line][1].plot([t for t, _ in cpu], [c for _, c in cpu], **look)
        axes[line][0].set_title(f"{backend}: point_select (text) queries per second")
        axes[line][1].set_title(f"{backend}: proxy CPU per query (us)")
        for axis in axes[line]:
            axis.set_xscale("log")
            axis.set_xticks(threads)
            axis.set_xticklabels([str(t) for t in threads])
            axis.minorticks_off()
            axis.set_xlabel("client threads")
            axis.grid(True, alpha=0.3)
            axis.set_ylim(bottom=0)
    # One legend for all panels, under them, so that no line is hidden behind it.
    labels: Dict[str, Any] = {}
    for axis in axes.flat:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            labels.setdefault(label, handle)
    figure.legend(
        list(labels.values()),
        list(labels),
        loc="lower center",
        ncol=min(4, len(labels)),
        fontsize="small",
        frameon=False,
    )
    if title:
        figure.suptitle(title, fontsize="medium")
    rows_of_legend = (len(labels) + 3) // 4
    figure.tight_layout(rect=(0, 0.035 * rows_of_legend / len(backends) * 2, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def main(argv: Sequence[str]) -> int:
    """
    C{python -m bench.report FILE.json}: print the summary tables of a run (for the docs).
    """
    meta, rows = rows_from_json(Path(argv[0]).read_text())
    print(f"commit {meta.get('commit')}, {meta.get('date')}, {meta.get('machine')}")
    print(f"settings: {meta.get('settings')}")
    print()
    print("\n".join(summary_markdown(rows)))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
