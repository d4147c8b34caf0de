"""The performance targets aiowake is held to, checked against a run's one-CPU results.

Each target is a ratio of two cases' figures from the same run (latency: medians of the rounds'
p50s; burst: median callbacks per second), so machine drift cancels out. A latency target is
checked twice, with an idle and with a working producer: on one CPU these are the kernel's two
ways of running a wake (see ``_harness``), and a mechanism can win in one and lose in the other.
The wakeup-write targets ("at most one write per loop iteration", "no system call for a pending
wake") are properties, not ratios: the tests prove them and the tables show the write counts.

Beside each latency target stands the same ratio for its loop's ``add_reader`` on a bare eventfd
(no aiowake: the producer writes it directly, the reader's first line is the sample): every
aiowake mechanism is such a reader plus its own work, so where that ratio is past the limit, the
target is out of reach in that run for anything built on a watched descriptor.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from rich.table import Table

import aiowake

from ._cases import BURST, FLOOR, LATENCY, ONE_WAKE, STOCK, UVLOOP, WORKING
from ._mechanisms import BARE

AUTO = "{auto}"  # stands for the auto backend's name in a case name
PRODUCER = {LATENCY: "idle", WORKING: "working", BURST: "burst"}


@dataclass(frozen=True)
class Target:
    what: str
    case: str
    ref: str
    scenario: str
    limit: float
    #: True: the ratio must be at most ``limit`` (latency); False: at least (throughput).
    at_most: bool = True

    def cases(self, auto: str) -> tuple[str, str]:
        return self.case.replace(AUTO, auto), self.ref.replace(AUTO, auto)

    @property
    def bare(self) -> str | None:
        """The case whose ratio to ``ref`` bounds this one's: the case's loop watching a bare
        eventfd. None for a burst, which has no such bound."""
        if self.scenario == BURST:
            return None
        return f"{self.case.split('/')[0]}/{BARE}:eventfd"


_LATENCY_TARGETS = (  # what, case, reference, at most this ratio of p50s
    ("Waker via add_reader, asyncio", f"asyncio/waker:{AUTO}", STOCK, 0.75),
    ("Waker via add_reader, uvloop", f"uvloop/waker:{AUTO}", FLOOR, 1.15),
    ("Waker in a selectors loop", f"selectors/waker:{AUTO}", FLOOR, 1.5),
    ("Event, asyncio", "asyncio/aiowake.Event", "asyncio/asyncio.Event+cst", 0.8),
    ("Event, uvloop", "uvloop/aiowake.Event", "uvloop/asyncio.Event+cst", 0.8),
    ("Dispatcher latency, uvloop", "uvloop/Dispatcher", UVLOOP, 0.5),
)

TARGETS: tuple[Target, ...] = (
    *(Target(w, c, r, scenario, lim) for scenario in ONE_WAKE for w, c, r, lim in _LATENCY_TARGETS),
    Target("Dispatcher burst, asyncio", "asyncio/Dispatcher", STOCK, BURST, 3.0, at_most=False),
    Target("Dispatcher burst, asyncio", "asyncio/Dispatcher", UVLOOP, BURST, 0.8, at_most=False),
    Target("Dispatcher burst, uvloop", "uvloop/Dispatcher", UVLOOP, BURST, 1.0, at_most=False),
)


@dataclass(frozen=True)
class Check:
    target: Target
    ratio: float | None  # None: a case was not run (or failed)
    #: The same ratio taken round by round (a round runs every case once, interleaved): its
    #: middle half, first to third quartile. None with fewer than four rounds.
    rounds: tuple[float, float] | None = None
    #: The same ratio for the bare eventfd on the case's loop (``Target.bare``); None if not run.
    bare: float | None = None

    @property
    def out_of_reach(self) -> bool:
        """Even the bare eventfd misses the limit (a latency target's: at most), so no mechanism
        on a watched descriptor meets it in this run."""
        return self.bare is not None and self.bare > self.target.limit

    @property
    def close(self) -> bool:
        """The limit lies within the per-round middle half: another run may land either side."""
        return self.rounds is not None and self.rounds[0] <= self.target.limit <= self.rounds[1]

    @property
    def met(self) -> bool | None:
        if self.ratio is None:
            return None
        t = self.target
        return self.ratio <= t.limit if t.at_most else self.ratio >= t.limit


def _figure(row: dict[str, Any] | None, scenario: str) -> float | None:
    if row is None or "error" in row:
        return None
    value = row.get("callbacks_per_s" if scenario == BURST else "p50")
    return float(value) if value else None


def _per_round(
    row: dict[str, Any], ref: dict[str, Any], scenario: str
) -> tuple[float, float] | None:
    """For two rows that ``_figure`` found usable: quartiles of their per-round ratio."""
    key = "rounds_callbacks_per_s" if scenario == BURST else "rounds_p50"
    a, b = row.get(key) or [], ref.get(key) or []
    if len(a) != len(b) or len(a) < 4 or not all(b):
        return None
    q1, _, q3 = statistics.quantiles([x / y for x, y in zip(a, b, strict=True)], n=4)
    return (q1, q3)


def host_spread(doc: dict[str, Any]) -> float | None:
    """How steady the host was during the run: half the spread of the middle half of the floor's
    per-round p50s, relative to their median, with the working producer on one CPU (the steadiest
    figure the suite has: on a quiet host about 0.01). None if the run has no such rounds."""
    row = doc["results"].get("same", {}).get(WORKING, {}).get(FLOOR, {})
    rounds = [float(v) for v in row.get("rounds_p50") or []]
    if len(rounds) < 4:
        return None
    q1, median, q3 = statistics.quantiles(rounds, n=4)
    return (q3 - q1) / 2 / median


def auto_backend(doc: dict[str, Any]) -> str:
    """The backend ``"auto"`` picked on the machine of the run."""
    return str(doc["machine"].get("auto_backend") or aiowake.Waker.backends()[0])


def check(doc: dict[str, Any]) -> list[Check]:
    """Every target against the run's pinned-to-one-CPU results."""
    same = doc["results"].get("same", {})
    auto = auto_backend(doc)
    checks = []
    for t in TARGETS:
        case, ref = t.cases(auto)
        rows = same.get(t.scenario, {})
        a, b = _figure(rows.get(case), t.scenario), _figure(rows.get(ref), t.scenario)
        if a is None or b is None:
            checks.append(Check(t, None))
            continue
        bare = None if t.bare is None else _figure(rows.get(t.bare), t.scenario)
        checks.append(
            Check(
                t,
                a / b,
                _per_round(rows[case], rows[ref], t.scenario),
                None if bare is None else bare / b,
            )
        )
    return checks


def targets_table(checks: list[Check], auto: str) -> Table:
    table = Table(
        title="Targets, producer and loop pinned to one CPU",
        title_justify="left",
        caption=(
            "bare eventfd: the same ratio for the case's loop watching a raw eventfd (add_reader; "
            "in a selectors loop, register) that the producer writes directly, no aiowake: the "
            "least any mechanism built on a watched descriptor can cost in this run. Past the "
            "limit, the target is out of reach."
        ),
        caption_justify="left",
    )
    table.add_column("target")
    table.add_column("producer")
    table.add_column("case ÷ reference")
    table.add_column("wanted", justify="right")
    table.add_column("measured", justify="right")
    table.add_column("per round, middle half", justify="right")
    table.add_column("bare eventfd", justify="right")
    table.add_column("met", justify="center")
    for c in checks:
        t = c.target
        case, ref = t.cases(auto)
        what = "callbacks/s" if t.scenario == BURST else "p50"
        wanted = f"{'≤' if t.at_most else '≥'} {t.limit:g}×"
        measured = "—" if c.ratio is None else f"{c.ratio:.2f}×"
        spread = "—" if c.rounds is None else f"{c.rounds[0]:.2f}–{c.rounds[1]:.2f}×"
        bare = "—" if c.bare is None else f"{c.bare:.2f}×"
        met = {True: "[green]yes[/green]", False: "[red]no[/red]", None: "—"}[c.met]
        notes = []
        if c.met is not None and c.close:
            notes.append("close")
        if c.met is False and c.out_of_reach:
            notes.append("out of reach")
        if notes:
            met += f" [yellow]({'; '.join(notes)})[/yellow]"
        table.add_row(
            t.what,
            PRODUCER[t.scenario],
            f"{case} ÷ {ref} ({what})",
            wanted,
            measured,
            spread,
            bare,
            met,
        )
    return table
