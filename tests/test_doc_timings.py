"""Every timing the docs claim names the machine and the date it was measured on, in the same paragraph or in the
table (with its caption, the paragraph just above it) or code block (with the paragraph that introduces it)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "experiments").glob("*.md"))]

UNIT = r"(?:s|ms|µs|us|ns|min|minutes?|seconds?|h|hours?)"
# a duration (12 s, 1.5 min, 3.4 h, 17-63 s), a throughput, or a speed ratio (2.9x faster; 0.8x in a sentence on speed)
DURATION = re.compile(rf"(?<![\w.=-])\d[\d,.]*(?:-\d[\d,.]*)? ?{UNIT}\b(?![/\w-])")
WORDS = re.compile(r"\b(?:one|two|three|four|five|six|seven|eight|nine|ten) (?:seconds?|minutes?|hours?)\b")
THROUGHPUT = re.compile(r"\d[\d,.]*[kM]? (?:training )?samples(?:/s| per second)")
RATIO = re.compile(r"(?<![\w.])\d[\d.]*(?:-\d[\d.]*)?x\b")
SPEED_WORDS = re.compile(r"faster|slower|speed|samples/s|\btook\b|\bcost|\bms\b|µs|throughput", re.I)
# What names a machine, and a date (the day it was measured).
MACHINE = re.compile(r"\d-vCPU|\d-core|EPYC|Xeon|NVIDIA|H100|H200|A100|\bApple M\d")
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")
# Durations that are settings or examples, not measurements: each with why.
NOT_MEASURED = [
    r"every 2 s",  # the lock's heartbeat interval (reliability.md)
    r"heartbeat < 120 s",  # the staleness threshold of a job lock
    r"younger than 120 s",  # the same threshold
    r"`?signal_delay_s`? \(120 s\)",  # a launcher setting
    r"\| 240 min \|",  # the SLURM presets' time limit
    r"within 90 s",  # slurm_local.sh's start-up timeout
    r"expire after 5 s",  # slurm_local.sh's settings: credentials, scheduler interval, KillWait
    r"runs every\s+2 s",
    r"killed 5 s later, not 30 s",
    r"sleeps 4 ms per",  # the slurm tests' slow activation, by design
    r"about 4 min left \(mean 2 min per job",  # an example of harness-status's output
    r"ends? within about 2 s",  # the heartbeat's interval bounds it (reliability.md)
    r"2 s relu",  # s is StarReLU's scale (activations.md)
    r"8\.5 minutes in all, the install included",  # the sum of gpu_check.sh's time limits
    r"time left: about 5 min; a job 2 min",  # an example of harness-status's output (sweep_status.md)
    r"step 1000 of 4000, 50\.000 s after step 0",  # an example of the loop's progress line (sweep_status.md)
    r"at most 30 s",  # the cost probe's budget per setting (cost.md)
    r"at least 20 ms",  # the cost probe's shortest round (cost.md)
]


def blocks(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each paragraph, list, table or code block; a table or code block is joined to
    the paragraph just above it (its caption), headings end a block."""
    found: list[tuple[int, str]] = []
    current: list[str] = []
    start = 1
    in_code = False
    for number, line in enumerate(text.splitlines(), 1):
        starts_table_or_code = not in_code and line.startswith(("|", "```")) and not current
        if line.startswith("```"):
            in_code = not in_code
        if not in_code and (not line.strip() or line.startswith("#")):
            if current:
                found.append((start, "\n".join(current)))
            current = []
            continue
        if starts_table_or_code and found and found[-1][0] + found[-1][1].count("\n") + 2 == number:
            start, previous = found.pop()  # the caption just above, one blank line apart
            current = [previous, ""]
        if not current:
            start = number
        current.append(line)
    if current:
        found.append((start, "\n".join(current)))
    return found


def claims(block: str) -> list[str]:
    """The timing claims of a block: durations, throughputs and speed ratios, settings left out."""
    text = block
    for pattern in NOT_MEASURED:
        text = re.sub(pattern, " ", text)
    found = [m[0] for pattern in (DURATION, WORDS, THROUGHPUT) for m in pattern.finditer(text)]
    for sentence in re.split(r"(?<=[.;:])\s", text):
        if SPEED_WORDS.search(sentence):
            found += [m[0] for m in RATIO.finditer(sentence)]
    return found


def unsourced(text: str, name: str) -> list[str]:
    """'file:line: claims' for each block with a timing claim but no machine or no date (for a table or code block
    not captioned above, the paragraph after it may name them)."""
    problems = []
    found_blocks = blocks(text)
    for index, (line, block) in enumerate(found_blocks):
        found = claims(block)
        context = block
        if block.startswith(("|", "```")) and index + 1 < len(found_blocks):  # a table or code block: its caption
            context += "\n" + found_blocks[index + 1][1]  # may follow it
        if found and not (MACHINE.search(context) and DATE.search(context)):
            lacks = " and ".join(w for w, p in (("machine", MACHINE), ("date", DATE)) if not p.search(context))
            problems.append(f"{name}:{line}: {', '.join(found[:4])} without a {lacks}")
    return problems


def test_the_scanner_finds_a_claim_without_a_machine_or_date():
    text = (
        "# Speed\n\nThe default run took 12 s and trained 100,000 samples/s.\n\n"
        "On a 2-vCPU AMD EPYC VM on 2026-12-06 the default run took 9.2 s, 1.5x faster than before.\n\n"
        "Measured on 2026-12-06:\n\n| run | time |\n|---|---|\n| default | 9.2 s |\n\n"
        "The heartbeat is refreshed every 2 s. The model has 4 x 4 patches and 15,210 parameters.\n"
    )
    problems = unsourced(text, "doc.md")
    assert problems == [
        "doc.md:3: 12 s, 100,000 samples/s without a machine and date",
        "doc.md:7: 9.2 s without a machine",
    ]


def test_a_ratio_counts_only_in_a_sentence_on_speed():
    assert claims("It ran 2.9x faster.") == ["2.9x"]
    assert claims("The gradient vanishes about 4x per layer.") == []


def test_every_timing_in_the_docs_names_its_machine_and_date():
    problems = [p for doc in DOCS for p in unsourced(doc.read_text(), str(doc.relative_to(ROOT)))]
    assert problems == [], "timings without the machine or date they were measured on:\n" + "\n".join(problems)
