"""Screens a person reads: harness-status counts jobs, groups and runs apart and estimates the time left from the
first logged step; the launchers print no line per job unless asked; every line on the console fits one screen
line (the detail in the log file); the end-of-run screen names each number."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
from pathlib import Path

import pytest

from harness.common.text import FILE_ONLY, SCREEN_LIMIT
from harness.records.results import write_summary
from harness.sweeps import grouping, launchers
from harness.sweeps.joblock import LOCK
from harness.sweeps.jobtable import format_table
from harness.sweeps.status import read_progress, status_report, time_left
from harness.training.console import PROGRESS, format_summary, keep_detail_off_the_console
from tests.test_sweeps import TINY, hydra_config, run_py

LONG = "trainer.lr=0.001,trainer.weight_decay=0.0001,model.width=100,trainer.batch_size=100,dataset.train_size=300"


def screen_lines(text: str) -> list[str]:
    """What a terminal shows as lines: a progress bar's carriage returns end a line too; a path or command to
    copy (results:, resume:, sweep:) is shown whole on its own line."""
    lines = text.replace("\r", "\n").splitlines()
    return [line for line in lines if not line.startswith(("results:", "resume:", "sweep: /", "sweep results: "))]


# ---------------------------------------------------------------- harness-status


def finished(folder: Path, seconds: int) -> None:
    folder.mkdir(parents=True)
    write_summary(
        folder,
        {
            "schema_version": 1,
            "status": "ok",
            "config_hash": folder.name,
            "test_acc": 0.9,
            "started_at": "2026-12-01T10:00:00+00:00",
            "finished_at": f"2026-12-01T10:{seconds // 60:02d}:{seconds % 60:02d}+00:00",
        },
    )


def running(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": "t"}))


def mid_run_sweep(root: Path, logged: bool = True) -> Path:
    """12 runs in 3 groups of 4 (seed 0-11): the first group finished in 100 s, the second running (at step 1,000
    of 4,000 after 50 s, if logged), the third not started."""
    names = [f"{LONG},seed={i}" for i in range(12)]
    root.mkdir()
    jobs = [{"dir": n, "overrides": [*LONG.split(","), f"seed={i}"]} for i, n in enumerate(names)]
    (root / "sweep.json").write_text(json.dumps({"command": "run.py -m", "jobs": jobs}))
    for g in range(3):
        members = names[4 * g : 4 * g + 4]
        folder = grouping.write_members(root, grouping.group_id(members), [{"name": n} for n in members])
        if g == 0:
            for n in members:
                finished(root / n, 100)
        if g == 1:
            for n in members:
                running(root / n)
            if logged:
                line = PROGRESS.format(step=1000, steps=4000, seconds=50.0, first=0)
                (folder / "run.log").write_text(f"[2026-12-04 10:00:00,000][x][INFO] - {line}\n")
    return root


def test_status_counts_jobs_groups_and_runs_apart_and_estimates_from_the_first_logged_step(tmp_path):
    report = status_report(mid_run_sweep(tmp_path / "sweep")).splitlines()
    assert report[1] == "3 jobs (3 groups of 4 members, 0 runs alone): 1 finished, 1 running, 1 pending, 0 failed"
    assert report[2] == "12 runs: 4 finished, 4 running, 4 pending, 0 failed"
    # a job: the mean of 100 s (finished) and 4,000 steps at 20 steps/s (200 s) = 150 s; left: the running
    # group's 3,000 steps (150 s) and the pending group's 150 s, one at a time: 300 s
    assert report[3] == (
        "time left: about 5 min; a job 2 min (mean of 1 running from their steps (20.0 steps/s) and 1 finished), "
        "1 at a time"
    )
    assert sum("step 1,000 of 4,000" in line for line in report) == 4  # each running member's row
    assert all(len(line) <= SCREEN_LIMIT for line in report[1:])


def test_status_estimates_before_any_job_finished_once_a_step_is_logged(tmp_path):
    root = mid_run_sweep(tmp_path / "sweep")
    for n in json.loads((root / "sweep.json").read_text())["jobs"][:4]:
        (root / n["dir"] / "summary.json").unlink()  # the first group not finished either: pending
    assert status_report(root).splitlines()[3] == (
        "time left: about 9 min; a job 3 min (mean of 1 running from their steps (20.0 steps/s)), 1 at a time"
    )
    quiet = mid_run_sweep(tmp_path / "unlogged", logged=False)
    for n in json.loads((quiet / "sweep.json").read_text())["jobs"][:4]:
        (quiet / n["dir"] / "summary.json").unlink()
    assert "none yet: no job has finished and no running job has logged a step" in status_report(quiet)


def test_time_left_counts_a_running_job_without_a_logged_step_as_half_done():
    assert time_left(["running", "pending"], [100.0], []) == (
        "about 2 min; a job 100 s (mean of 1 finished), 1 at a time"
    )
    assert time_left(["pending"] * 3, [100.0], []) == (
        "about 5 min; a job 100 s (mean of 1 finished), one at a time, as none is running now"
    )


# ---------------------------------------------------------------- one screen line, the detail in the log file


@pytest.fixture
def hydra_like_logging(tmp_path):
    """The root logger as Hydra's job logging makes it: a console handler and a file handler (run.log)."""
    root, console = logging.getLogger(), io.StringIO()
    handlers = [logging.StreamHandler(console), logging.FileHandler(tmp_path / "run.log")]
    prefix = logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")  # Hydra's, as in its default
    saved = root.handlers[:], root.level
    for h in handlers:
        h.setFormatter(prefix)
    root.handlers, root.level = handlers, logging.INFO
    keep_detail_off_the_console()
    yield console, tmp_path / "run.log"
    for h in handlers:
        h.close()
    root.handlers, root.level = saved


def test_a_group_of_long_names_logs_one_screen_line_each_and_every_name_to_its_log_file(
    tmp_path, hydra_like_logging, monkeypatch, tiny
):
    import run
    from harness.sweeps import sweep

    console, logfile = hydra_like_logging
    root = tmp_path / "sweep"
    names = [f"{LONG},seed={i}" for i in range(4)]
    config = tiny()
    members = [{"name": n, "overrides": [], "values": grouping.member_values(config), "hydra_files": {}} for n in names]
    group_dir = grouping.write_members(root, "g1", members)
    (root / "sweep.json").write_text(
        json.dumps({"jobs": [{"dir": n, "overrides": [f"seed={i}"]} for i, n in enumerate(names)]})
    )
    summaries = [{"status": "ok", "test_acc": 0.5, "run_dir": str(root / n)} for n in names]
    summaries[1] = {
        "status": "failed",
        "error": "Traceback (most recent call last):\n  ...\nRuntimeError: boom",
        "run_dir": str(root / names[1]),
    }
    monkeypatch.setattr(sweep, "run_group_locked", lambda *a, **k: summaries)
    assert run.group_job(config, group_dir, False, None) == "failed"
    shown, kept = console.getvalue(), logfile.read_text()
    assert max(map(len, shown.splitlines())) <= SCREEN_LIMIT, shown
    assert "4 members train together" in shown and "[0/4 done] ok seed=0 test_acc 0.5000" in shown
    assert "RuntimeError: boom" in shown and "Traceback (most recent" not in shown  # the last line only
    assert all(kept.count(name) >= 2 for name in names)  # its member line and its folder line
    assert "Traceback (most recent call last)" in kept


def test_the_loops_progress_line_goes_to_the_log_file_only_and_status_reads_it(tmp_path, hydra_like_logging, tiny):
    from harness.training.train import run

    console, logfile = hydra_like_logging
    run(tiny(), tmp_path / "job")
    assert "progress:" not in console.getvalue()
    progress = read_progress(tmp_path)  # the fixture's run.log is in tmp_path
    assert progress is not None and (progress.step, progress.steps) == (20, 20) and progress.rate > 0


def test_a_log_record_marked_file_only_stays_off_the_console(hydra_like_logging):
    console, logfile = hydra_like_logging
    logging.getLogger("x").info("detail", extra=FILE_ONLY)
    logging.getLogger("x").info("headline")
    keep_detail_off_the_console()  # a second call adds no second filter
    assert "detail" not in console.getvalue() and "headline" in console.getvalue()
    assert "detail" in logfile.read_text() and len(logging.getLogger().handlers[0].filters) == 1


# ---------------------------------------------------------------- launcher chatter


@pytest.fixture
def launcher_loggers():
    yield [logging.getLogger(name) for name in launchers.LAUNCHER_LOGGERS]
    for name in launchers.LAUNCHER_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)


@pytest.mark.extra("launchers")
def test_joblib_composes_quiet_and_its_per_job_lines_are_off_unless_asked(launcher_loggers):
    cfg = hydra_config("hydra/launcher=joblib").hydra
    assert cfg.launcher.verbose == 0
    assert launchers.quiet_launcher(cfg.launcher, cfg.verbose)
    assert all(logger.level == logging.WARNING for logger in launcher_loggers)
    asked = hydra_config("hydra/launcher=joblib", "hydra.launcher.verbose=5").hydra
    assert not launchers.quiet_launcher(asked.launcher, asked.verbose)
    assert all(logger.level == logging.NOTSET for logger in launcher_loggers)
    basic = hydra_config().hydra
    assert launchers.quiet_launcher(basic.launcher, basic.verbose)


@pytest.mark.slow
@pytest.mark.extra("launchers")
def test_a_joblib_sweep_of_long_named_groups_prints_no_chatter_and_one_screen_line_each(tmp_path):
    out = tmp_path / "sweep"
    long = LONG.replace(",dataset.train_size=300", "").split(",")  # TINY has it
    result = run_py(
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "seed=0,1,2,3",
        *TINY,
        *long,
        "trainer.threads=1",
        "hydra.sweeper.group_size=2",
        "hydra.sweeper.cost_probe=false",
        f"hydra.sweep.dir={out}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    shown = result.stdout + result.stderr
    assert "[Parallel(" not in shown and "#0 :" not in shown and "Joblib.Parallel" not in shown
    assert max(map(len, screen_lines(shown))) <= SCREEN_LIMIT, shown
    logs = "".join(p.read_text() for p in out.glob(".groups/*/run.log"))
    names = [p.parent.name for p in out.glob("*/summary.json")]
    assert len(names) == 4 and all(name in logs for name in names)


# ---------------------------------------------------------------- the end-of-run screen


def test_the_end_of_run_screen_names_each_accuracy_and_fits_one_screen_line_per_line(tmp_path):
    layers = {"hidden.0": 0.1, "blocks.0.a_very_long_module_name_from_a_users_model_that_goes_on_and_on": 0.2}
    summary = {
        "activation": "relu" * 40,
        "model": "mlp",
        "dataset": "mnist1d",
        "seed": 0,
        "status": "ok",
        "test_acc": 0.632,
        "test_acc_at_best_val": 0.602,
        "best_val_acc": 0.6425,
        "train_loss": 0.00001,
        "test_loss": 3.6346,
        "steps": 6000,
        "samples_per_s": 100351.0,
        "clock_samples_per_s": 100383.0,
        "speed_clock": "thread_cpu",
        "device": "cuda:0 " + "x" * 200,
        "num_threads": 1,
        "train_time_s": 6.0,
        "n_params": 15210,
        "width_used": 100,
        "dead_fraction": 0.16,
        "saturated_fraction": 0.16,
        "dead_fraction_by_layer": layers,
        "saturated_fraction_by_layer": layers,
        "grad_norm_init_by_layer": layers,
        "grad_norm_by_layer": layers,
        "grad_norm_final_by_layer": layers,
        "run_dir": str(tmp_path / ("run" * 100)),
    }
    screen = format_summary(summary).splitlines()
    assert screen[1] == "test accuracy 0.6020 (at the evaluation with the best validation accuracy, 0.6425)"
    assert screen[2] == "at the last step (6,000): test accuracy 0.6320, test loss 3.6346, train loss 0.0000"
    assert max(map(len, screen_lines("\n".join(screen)))) <= SCREEN_LIMIT
    assert screen[-1].endswith("run" * 100)  # the folder, whole: a path to copy


def test_a_sweep_whose_jobs_have_all_ended_has_no_time_left():
    assert time_left(["finished", "failed"], [12.0], []) == "none: every job has ended"
    assert time_left(["finished", "pending"], [12.0], []).startswith("about 12 s")


def test_the_end_table_shows_what_tells_long_named_jobs_apart():
    name = "activation.target=tests.test_slurm.SlowReLU,activation=custom,dataset=digits,seed={},trainer.steps=1000"
    rows = [("ok", name.format(0), {"test_acc": 0.5, "train_time_s": 1.0}), ("failed", name.format(1), {"error": "x"})]
    table = format_table(rows).splitlines()
    assert table[1].split()[-1] == "seed=0" and " seed=1 " in table[2]  # cut in the middle, both read the same
    assert format_table([("ok", "seed=0", {})]).splitlines()[1].split()[-1] == "seed=0"  # short names stay whole
