"""The comparison table, as plain text for the terminal and as markdown for bench/reports/."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Comparison:
    """One service figure beside the ceiling it is judged against."""

    measure: str
    unit: str
    service: float
    ceiling_name: str
    ceiling: float
    target: float | None  # the least acceptable service/ceiling ratio; None: for information
    # A latency against its limit: the ratio is the most acceptable, not the least.
    at_most: bool = False

    @property
    def ratio(self) -> float:
        return self.service / self.ceiling if self.ceiling else 0.0

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "info"
        met = self.ratio <= self.target if self.at_most else self.ratio >= self.target
        return "MET" if met else "MISSED"

    def cells(self) -> list[str]:
        bound = "<=" if self.at_most else ">="
        target = "-" if self.target is None else f"{bound} {self.target:.0%}"
        return [
            self.measure,
            f"{self.service:,.0f} {self.unit}",
            self.ceiling_name,
            f"{self.ceiling:,.0f} {self.unit}",
            f"{self.ratio:.0%}",
            target,
            self.verdict,
        ]


HEADER = ["Measure", "Service", "Ceiling", "Ceiling value", "Ratio", "Target", "Verdict"]


def text_table(rows: Sequence[Comparison], header: Sequence[str] = HEADER) -> str:
    lines = [header, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    numeric = {1, 3, 4}  # right-aligned columns

    def render(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    rendered = [render(header), "  ".join("-" * width for width in widths)]
    rendered += [render(cells) for cells in lines[1:]]
    return "\n".join(line.rstrip() for line in rendered)


def markdown(
    title: str,
    rows: Sequence[Comparison],
    context: Sequence[tuple[str, str]],
    checks: Sequence[str],
    notes: Sequence[str],
    header: Sequence[str] = HEADER,
) -> str:
    out = [f"# {title}", ""]
    out += [f"- {name}: {value}" for name, value in context]
    out += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    out += ["", "## Checks", ""]
    out += [f"- {check}" for check in checks]
    if notes:
        out += ["", "## Notes", ""]
        out += [f"- {note}" for note in notes]
    return "\n".join(out) + "\n"


def publish(
    path: Path,
    title: str,
    rows: Sequence[Comparison],
    context: Sequence[tuple[str, str]],
    checks: Sequence[str],
    notes: Sequence[str],
    header: Sequence[str] = HEADER,
) -> None:
    """Prints the table and the notes, and writes the markdown report to `path`."""
    print()
    print(text_table(rows, header))
    print()
    for note in notes:
        print(f"  {note}")
    path.parent.mkdir(exist_ok=True)
    draft = path.with_suffix(".md.tmp")  # ignored by git; renamed once complete
    draft.write_text(markdown(title, rows, context, checks, notes, header))
    draft.replace(path)


def publish_verdict(
    path: Path,
    title: str,
    rows: Sequence[Comparison],
    context: Sequence[tuple[str, str]],
    checks: Sequence[str],
    notes: Sequence[str],
    header: Sequence[str],
    repo: Path,
) -> int:
    """`publish`, then the exit status of a benchmark with targets: 1 when one is missed."""
    publish(path, title, rows, context, checks, notes, header)
    print(f"\n[bench] report written to {path.relative_to(repo)}")
    missed = [row.measure for row in rows if row.verdict == "MISSED"]
    if missed:
        print(f"[bench] target missed: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0
