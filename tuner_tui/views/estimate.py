"""The memory and time estimate as a person reads it: one presenter for `tuner estimate` and the
Model & method step.

Every figure carries its unit or a word saying what it counts ("16 sequences", "1.20 GiB",
"about 16 min"); `estimate_view` returns one rich renderable that the CLI prints and the screen
shows. Engine notes and time assumptions are shown as written (they may name recipe sections
such as "[training] batch_size", so never as markup). Textual-free.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from tuner_tui.modeling.estimate import Estimate
    from tuner_tui.recipe import Problem

ESTIMATE_READS = (
    "model.",
    "method.",
    "training.batch_size",
    "training.max_length",
    "training.gradient_accumulation",
    "training.gradient_checkpointing",
    "training.optimizer",
    "training.num_processes",
    "training.nnodes",
    "training.strategy",
    "training.device",
    "training.max_steps",
    "training.epochs",
    "training.packing",
)
"""Recipe keys (or whole sections, ending in '.') that `estimate_memory` reads. An invalid value in
one of them gives no estimate: the numbers would describe a run that cannot start.
tests/modeling/test_estimate.py checks this against what the estimate really reads. The data
is left out on purpose: when it cannot be read the estimate says so in its notes."""

VERDICT_STYLES = {"fits": "bold green", "tight": "bold yellow"}
"""Verdict -> style; anything else ("won't-fit") is red."""


def estimate_blocker(problems: Iterable[Problem]) -> Problem | None:
    """The first problem in a key the estimate reads (None: the estimate can run). Problems of
    this machine (no GPU for an fsdp layout) do not block: the estimate is for the device meant."""
    for problem in problems:
        if problem.machine:
            continue
        key = problem.path.split("[", 1)[0]
        if any(key.startswith(read) if read.endswith(".") else key == read for read in ESTIMATE_READS):
            return problem
    return None


def blocked_view(problem: Problem) -> Text:
    """'No estimate: fix training.batch_size first', then what is wrong with it."""
    text = Text(f"No estimate: fix {problem.path} first", style="bold red")
    text.append(f"\n{problem.path} {problem.message}", style="dim")
    return text


def format_bytes(count: int | float) -> str:
    """1288490188 -> '1.20 GiB'."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.2f} {unit}"
    return f"{int(count)} bytes"


def format_share(share: float) -> str:
    """0.072 -> '7%'; a share too small to round to 1% reads '<1%', not '0%'."""
    return "<1%" if 0 < share < 0.005 else f"{share:.0%}"


def format_duration(seconds: float) -> str:
    """983 -> 'about 16 min'."""
    if seconds < 1:
        return "under 1 s"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    if seconds < 90 * 60:
        return f"about {seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"about {seconds / 3600:.1f} h"
    return f"about {seconds / 86400:.1f} days"


def layout_text(estimate: Estimate, nodes: int = 1) -> str:
    """'1 process, one device', or 'per device · 2 processes × 1 node (ddp)': with several
    processes the sizes are one device's share.

    Args:
        estimate: The estimate (its `processes` is the world size over all nodes).
        nodes: The recipe's nnodes, to show processes per node.
    """
    world = estimate.processes
    if world <= 1:
        return "1 process, one device"
    if nodes < 1 or world % nodes:  # not this recipe's layout: the total only
        return f"per device · {world} processes ({estimate.strategy})"
    per_node = world // nodes
    processes = f"{per_node} process" + ("es" if per_node > 1 else "")
    return f"per device · {processes} × {nodes} node{'s' if nodes > 1 else ''} ({estimate.strategy})"


def _sequences(count: int) -> str:
    return f"{count:,} sequence" + ("" if count == 1 else "s")


def memory_text(estimate: Estimate) -> str:
    """'1.20 GiB of 16.00 GiB (7%) on GPU 0 (NVIDIA H200)': the peak against the device."""
    share = estimate.total_bytes / estimate.device_bytes if estimate.device_bytes else 0.0
    return (
        f"{format_bytes(estimate.total_bytes)} of {format_bytes(estimate.device_bytes)} "
        f"({format_share(share)}) on {estimate.device_label}"
    )


def estimate_rows(estimate: Estimate, nodes: int = 1) -> list[tuple[str, str]]:
    """(label, value with its unit) for the figures below the headline (the verdict and
    `memory_text`), the breakdown aside."""
    total = max(estimate.total_params, 1)
    rows = [
        ("layout", layout_text(estimate, nodes)),
        ("method", f"{estimate.method}, {estimate.dtype}"),
        (
            "trainable",
            f"{estimate.trainable_params:,} of {estimate.total_params:,} parameters "
            f"({100 * estimate.trainable_params / total:.3f}%)",
        ),
        (
            "batch",
            f"{_sequences(estimate.batch_size)} of up to {estimate.max_length:,} tokens"
            + (" per device" if estimate.processes > 1 else ""),
        ),
        (
            "largest batch",
            f"{_sequences(estimate.max_batch_size)} " + ("fits" if estimate.max_batch_size == 1 else "fit")
            if estimate.max_batch_size
            else "none: not even 1 sequence fits",
        ),
    ]
    if estimate.peak_phase:
        rows.append(("peak", f"at the {estimate.peak_phase}"))
    if estimate.time_s is not None:
        rows.append(("time", f"{format_duration(estimate.time_s)} for {estimate.planned_tokens:,} tokens"))
    else:
        rows.append(("time", "unknown (see the assumptions)"))
    return rows


def breakdown_table(estimate: Estimate) -> Table:
    """What the peak is made of: part, size, share of the total."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("part")
    table.add_column("size", justify="right")
    table.add_column("share", justify="right")
    for part, size in estimate.breakdown.items():
        share = size / estimate.total_bytes if estimate.total_bytes else 0.0
        table.add_row(part.replace("_", " "), format_bytes(size), format_share(share))
    table.add_row(Text("total", "bold"), Text(format_bytes(estimate.total_bytes), "bold"), "")
    return table


def estimate_view(estimate: Estimate, nodes: int = 1) -> RenderableType:
    """The whole estimate: the verdict, the figures, the breakdown, then notes and assumptions.

    Args:
        estimate: `estimate_memory`'s result.
        nodes: The recipe's nnodes, to show the estimate's processes per node.
    """
    style = VERDICT_STYLES.get(estimate.verdict, "bold red")
    headline = Text.assemble((f" {estimate.verdict} ", f"{style} reverse"), f"  {memory_text(estimate)}")
    figures = Table.grid(padding=(0, 2))
    figures.add_column(style="dim", no_wrap=True)
    figures.add_column()
    for label, value in estimate_rows(estimate, nodes):
        figures.add_row(label, Text(value))
    parts: list[RenderableType] = [headline, figures, breakdown_table(estimate)]
    parts.extend(Text(f"• {note}", style="dim") for note in estimate.notes)
    parts.extend(Text(f"assumes: {assumption}", style="dim") for assumption in estimate.time_assumptions)
    return Group(*parts)


def print_estimate(console: Console, estimate: Estimate, nodes: int = 1) -> None:
    """Print `estimate_view` on a terminal (`tuner estimate`), at most 80 columns wide."""
    console.print(estimate_view(estimate, nodes), width=min(console.width, 80), soft_wrap=False)
