"""Markdown results tables that recipes append to: one `## title` section per table, one row per system."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sv.data.table import atomic_open

COLUMNS = (("trial list", "trial_list"), ("system", "system"), ("EER%", "eer_percent"),
           ("minDCF0.01", "min_dcf_0.01"), ("minDCF0.05", "min_dcf_0.05"))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.4f}"
    return str(value).replace("|", "\\|")


def _header() -> str:
    return "| " + " | ".join(name for name, _ in COLUMNS) + " |\n|" + "---|" * len(COLUMNS)


def _row_key(line: str) -> tuple[str, ...]:
    """(trial list, system) of a table line."""
    return tuple(cell.strip() for cell in line.strip().strip("|").split("|")[:2])


def format_row(row: dict[str, Any]) -> str:
    """One markdown table row; keys are trial_list, system, eer_percent, min_dcf_0.01, min_dcf_0.05
    (a missing key prints as '-')."""
    return "| " + " | ".join(_cell(row.get(key)) for _, key in COLUMNS) + " |"


def append_results(results_md: Path, title: str, rows: list[dict[str, Any]]) -> None:
    """Add rows to the table under `## title` in results_md, creating the file or section as needed.

    Calling twice with the same title gives one table with the rows of both calls; a row whose trial list
    and system are already in the table replaces that row, so rerunning a stage never duplicates it.
    A new title starts a new section at the end. The file is rewritten atomically (temp file + rename),
    but concurrent writers are not serialised: the last one wins.
    """
    results_md = Path(results_md)
    lines = results_md.read_text(encoding="utf-8").splitlines() if results_md.exists() else []
    new_rows = [format_row(r) for r in rows]
    heading = f"## {title}"
    if heading in lines:
        # Insert after the last table line of the section, i.e. the end of its run of `|` lines.
        i = lines.index(heading) + 1
        while i < len(lines) and not lines[i].startswith(("|", "#")):
            i += 1
        if i == len(lines) or lines[i].startswith("#"):  # a section whose table was deleted by hand
            new_rows = [_header(), *new_rows]
        start = i
        while i < len(lines) and lines[i].startswith("|"):
            i += 1
        existing = {_row_key(lines[j]): j for j in range(start, i)}
        for row in new_rows:
            if _row_key(row) in existing:
                lines[existing[_row_key(row)]] = row
            else:
                lines.insert(i, row)
                i += 1
    else:
        if lines and lines[-1].strip():
            lines.append("")
        lines += [heading, "", _header(), *new_rows]
    with atomic_open(results_md) as f:
        f.write("\n".join(lines) + "\n")
