"""The one-screen terminal summary of a finished run, and the training loop's progress line (for its log file and
harness-status). Every line it makes fits one screen line (harness.common.text.SCREEN_LIMIT), paths apart."""

from __future__ import annotations

import logging
import re

from harness.common.text import ELLIPSIS, NAME_LIMIT, PATH_LIMIT, SCREEN_LIMIT, clean

# A log message's room on one screen line after Hydra's job-logging prefix (48 characters at most):
# '[2026-12-04 10:00:00,123][__main__][WARNING] - '
LOG_ROOM = SCREEN_LIMIT - 48

# The loop's line at each log step, in the job's log file only (harness.common.text.FILE_ONLY): harness-status reads
# its rate from the last one (steps since the attempt's first step over the seconds since the loop started).
PROGRESS = "progress: step {step} of {steps}, {seconds:.3f} s after step {first}"  # ms: a tiny run has a rate too
PROGRESS_RE = re.compile(r"progress: step (\d+) of (\d+), ([0-9.]+) s after step (\d+)")


def fmt(value: float | None, spec: str = ".4f") -> str:
    """A number in a table cell; a dash for a missing one."""
    return "-" if value is None else format(value, spec)


def fit(text: object, limit: int) -> str:
    """text cleaned (harness.common.text) and cut to at most `limit` characters in the middle, so that both ends
    show: job folders of a sweep often differ only at their end (seed=3)."""
    text = clean(text, PATH_LIMIT)
    if len(text) <= limit:
        return text
    head = max(limit - 1, 0) // 2
    tail = max(limit - 1 - head, 0)
    return text[:head] + ELLIPSIS + (text[-tail:] if tail else "")


class OffTheConsole(logging.Filter):
    """Drops a record logged with harness.common.text.FILE_ONLY: its detail is for the log file only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False)


def keep_detail_off_the_console() -> None:
    """Put OffTheConsole on each console handler of the root logger (Hydra's job logging has a console and a file
    handler, made again for every job: call it in each job). A file handler keeps every record."""
    for handler in logging.getLogger().handlers:
        console = isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
        if console and not any(isinstance(f, OffTheConsole) for f in handler.filters):
            handler.addFilter(OffTheConsole())


def format_summary(summary: dict) -> str:
    """Accuracy, speed, and per-layer dead/saturated fractions and gradient norms, as plain text."""
    s = summary
    name = " x ".join(fit(s[k], 30) for k in ("activation", "model", "dataset"))  # a user's text: cleaned
    lines = [
        f"{name}  seed {s['seed']}  status {s['status']}"
        + (f" at step {s['diverged_at_step']}" if s.get("diverged_at_step") else ""),
    ]
    if s["status"] == "failed":
        error = [line for line in str(s.get("error") or "").splitlines() if line.strip()]
        lines.append(clean(error[-1].strip(), SCREEN_LIMIT) if error else "failed")
    else:
        lines += accuracy_lines(s) + speed_lines(s) + unit_lines(s)
    lines += ["", f"results: {clean(s['run_dir'], PATH_LIMIT)}"]  # a path to copy: whole
    return "\n".join(lines)


def accuracy_lines(s: dict) -> list[str]:
    """What each number is: the test accuracy chosen on validation (at the evaluation with the best validation
    accuracy, the one the report compares), then the last step's."""
    steps = f" ({s['steps']:,})" if isinstance(s.get("steps"), int) else ""
    return [
        f"test accuracy {fmt(s['test_acc_at_best_val'])} (at the evaluation with the best validation accuracy, "
        f"{fmt(s['best_val_acc'])})",
        f"at the last step{steps}: test accuracy {fmt(s['test_acc'])}, test loss {fmt(s['test_loss'])}, "
        f"train loss {fmt(s['train_loss'])}",
    ]


def speed_lines(s: dict) -> list[str]:
    clock = f"; {fmt(s['clock_samples_per_s'], ',.0f')} by its CPU time" if s.get("speed_clock") == "thread_cpu" else ""
    width = f" (width {s['width_used']})" if s.get("width_used") else ""
    return [
        f"{fmt(s['samples_per_s'], ',.0f')} samples/s on {fit(s['device'], 24)} ({s['num_threads']} threads){clock}",
        f"train time {fmt(s['train_time_s'], '.1f')} s  {s['steps']} steps  {s['n_params']:,} parameters{width}",
        f"dead {fmt(s['dead_fraction'], '.1%')}  saturated {fmt(s['saturated_fraction'], '.1%')} of units",
    ]


def unit_lines(s: dict) -> list[str]:
    """The per-layer table; a layer's name is cut to fit (NAME_LIMIT first: a user's module may name it)."""
    layers = {layer: fit(clean(layer, NAME_LIMIT), 40) for layer in s["grad_norm_init_by_layer"]}
    width = max([len(shown) for shown in layers.values()] + [10])
    lines = [
        "",
        f"{'layer':<{width}} {'dead':>7} {'saturated':>10} {'|grad| init':>12} {'|grad| mean':>12} {'|grad| end':>12}",
    ]
    for layer, shown in layers.items():
        lines.append(
            f"{shown:<{width}} {fmt(s['dead_fraction_by_layer'].get(layer), '.1%'):>7} "
            f"{fmt(s['saturated_fraction_by_layer'].get(layer), '.1%'):>10} "
            f"{fmt(s['grad_norm_init_by_layer'].get(layer), '.3e'):>12} "
            f"{fmt(s['grad_norm_by_layer'].get(layer), '.3e'):>12} "
            f"{fmt(s['grad_norm_final_by_layer'].get(layer), '.3e'):>12}"
        )
    return lines
