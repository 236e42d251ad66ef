"""The one-screen terminal summary of a finished run."""

from __future__ import annotations

from harness.common.text import NAME_LIMIT, NOTE_LIMIT, PATH_LIMIT, clean


def fmt(value: float | None, spec: str = ".4f") -> str:
    """A number in a table cell; a dash for a missing one."""
    return "-" if value is None else format(value, spec)


def format_summary(summary: dict) -> str:
    """Accuracy, speed, and per-layer dead/saturated fractions and gradient norms, as plain text."""
    s = summary
    name = " x ".join(clean(s[k], NAME_LIMIT) for k in ("activation", "model", "dataset"))  # a user's text: cleaned
    lines = [
        f"{name}  seed {s['seed']}  status {s['status']}"
        + (f" at step {s['diverged_at_step']}" if s.get("diverged_at_step") else ""),
    ]
    if s["status"] == "failed":
        error = [line for line in str(s.get("error") or "").splitlines() if line.strip()]
        lines.append(clean(error[-1].strip(), NOTE_LIMIT) if error else "failed")
    else:
        lines += [
            f"test acc {fmt(s['test_acc'])} (at best val {fmt(s['test_acc_at_best_val'])}, best val "
            f"{fmt(s['best_val_acc'])})  train loss {fmt(s['train_loss'])}  test loss {fmt(s['test_loss'])}",
            f"{fmt(s['samples_per_s'], ',.0f')} samples/s on {clean(s['device'], NAME_LIMIT)} ({s['num_threads']} "
            "threads)"
            + (
                f"; {fmt(s['clock_samples_per_s'], ',.0f')} by its CPU time"
                if s.get("speed_clock") == "thread_cpu"
                else ""
            )
            + "  "
            f"train time {fmt(s['train_time_s'], '.1f')} s  {s['steps']} steps  {s['n_params']:,} parameters"
            + (f" (width {s['width_used']})" if s.get("width_used") else ""),
            f"dead {fmt(s['dead_fraction'], '.1%')}  saturated {fmt(s['saturated_fraction'], '.1%')} of units",
            "",
            f"{'layer':<10} {'dead':>7} {'saturated':>10} {'|grad| init':>12} {'|grad| mean':>12} {'|grad| end':>12}",
        ]
        for layer in s["grad_norm_init_by_layer"]:
            lines.append(
                f"{clean(layer, NAME_LIMIT):<10} {fmt(s['dead_fraction_by_layer'].get(layer), '.1%'):>7} "
                f"{fmt(s['saturated_fraction_by_layer'].get(layer), '.1%'):>10} "
                f"{fmt(s['grad_norm_init_by_layer'].get(layer), '.3e'):>12} "
                f"{fmt(s['grad_norm_by_layer'].get(layer), '.3e'):>12} "
                f"{fmt(s['grad_norm_final_by_layer'].get(layer), '.3e'):>12}"
            )
    lines += ["", f"results: {clean(s['run_dir'], PATH_LIMIT)}"]
    return "\n".join(lines)
