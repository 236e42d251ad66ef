"""Outputs cannot be redirected (harness/common/outputs.py): inside the folders the tools create, a symlink where a tool
writes is refused in one line, never written through or deleted; a symlink the user gave is followed."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.common.outputs import SymlinkRefused
from harness.records.results import atomic_write, write_metrics, write_summary
from harness.report import ReportError, build_report
from hydra_plugins.harness_sweeper._folders import BadSweep, check_folder
from scripts.report import main as report_main
from tests.test_hostile_text import fake_runs
from tests.test_reliability_sweeps import TINY, sweep_here

SECOND_JOB = "dataset.train_size=300,dataset=digits,seed=1,trainer.eval_every=5,trainer.steps=5"  # seed=1's folder


def elsewhere(tmp_path: Path) -> Path:
    """A folder of someone's files that a link points at: it must come out of every test as it went in."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "precious.txt").write_text("keep me")
    return folder


def untouched(folder: Path) -> bool:
    return (
        sorted(p.name for p in folder.iterdir()) == ["precious.txt"]
        and (folder / "precious.txt").read_text() == "keep me"
    )


def test_atomic_write_refuses_a_symlink_and_leaves_its_target_and_the_link(tmp_path):
    target = elsewhere(tmp_path) / "precious.txt"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("summary.json", "metrics.csv", "checkpoint.pt", "dangling.json"):
        (run_dir / name).symlink_to(target if name != "dangling.json" else tmp_path / "nowhere")
    with pytest.raises(SymlinkRefused, match="summary.json is a symlink"):
        write_summary(run_dir, {"schema_version": 1, "status": "ok", "config_hash": "x"})
    with pytest.raises(SymlinkRefused):
        write_metrics(run_dir, [])
    for name in ("checkpoint.pt", "dangling.json"):
        with pytest.raises(SymlinkRefused):
            atomic_write(run_dir / name, lambda f: f.write("x"))
    assert untouched(target.parent) and not (tmp_path / "nowhere").exists()
    assert all((run_dir / n).is_symlink() for n in ("summary.json", "metrics.csv", "checkpoint.pt"))
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "checkpoint.pt",
        "dangling.json",
        "metrics.csv",
        "summary.json",
    ]  # no temporary file left


@pytest.fixture
def runs(tmp_path) -> Path:
    return fake_runs(tmp_path / "runs", {"relu": "relu", "tanh": "tanh"})


@pytest.mark.parametrize(
    "link", ["report", "report/figures", "report/summary.csv", "report/report.md", "report/figures/learning_curves.png"]
)
def test_the_report_refuses_a_symlink_where_it_writes_in_one_line_exit_2(runs, tmp_path, capsys, link):
    target = elsewhere(tmp_path)
    (runs / link).parent.mkdir(parents=True, exist_ok=True)
    (runs / link).symlink_to(target if "." not in Path(link).name else target / "precious.txt")
    assert report_main([str(runs), "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is a symlink" in err and err.count("\n") == 1, err
    assert untouched(target) and (runs / link).is_symlink()


def test_a_report_folder_the_user_names_may_be_a_symlink(runs, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (tmp_path / "out").symlink_to(scratch)
    assert build_report([runs], out=tmp_path / "out", figures=False) == tmp_path / "out"
    assert (scratch / "report.md").is_file() and (scratch / "summary.csv").is_file()
    with pytest.raises(ReportError, match="is a symlink"):  # but not at a name it writes inside
        (scratch / "ranks.csv").unlink()
        (scratch / "ranks.csv").symlink_to(elsewhere(tmp_path) / "precious.txt")
        build_report([runs], out=tmp_path / "out", figures=False)
    assert untouched(tmp_path / "elsewhere")


def test_a_sweep_job_folder_or_a_name_a_job_writes_may_not_be_a_symlink(tmp_path):
    target = elsewhere(tmp_path)
    sweep = tmp_path / "sweep"
    (sweep / "study").mkdir(parents=True)
    (sweep / "linked").symlink_to(target)
    (sweep / "study" / "job").mkdir()
    (sweep / "study" / "job" / "fault.log").symlink_to(target / "precious.txt")
    check_folder(sweep, "study/other", ("summary.json", "fault.log"))  # a plain job folder: fine
    with pytest.raises(BadSweep, match="linked is a symlink"):
        check_folder(sweep, "linked/job", ("summary.json",))
    with pytest.raises(BadSweep, match="fault.log is a symlink"):
        check_folder(sweep, "study/job", ("summary.json", "fault.log"))
    assert untouched(target)


def test_a_sweep_refuses_a_symlinked_job_folder_before_any_job_and_follows_a_linked_sweep_folder(capsys, tmp_path):
    target = elsewhere(tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (tmp_path / "sweep").symlink_to(scratch)  # the user's link to scratch storage: followed
    (scratch / SECOND_JOB).symlink_to(target)  # a job's folder inside it: refused
    code, text = sweep_here(capsys, "seed=0,1", *TINY, f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert code == 2 and text.startswith("error: ") and f"{SECOND_JOB} is a symlink" in text, text
    assert (
        len(text.strip().splitlines()) == 1 and untouched(target) and list(scratch.iterdir()) == [scratch / SECOND_JOB]
    )
    (scratch / SECOND_JOB).unlink()
    code, text = sweep_here(capsys, "seed=0,1", *TINY, f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert code == 0, text[-2000:]
    assert (scratch / "sweep.json").is_file() and (scratch / SECOND_JOB / "summary.json").is_file()


def test_a_single_run_refuses_a_symlink_where_it_writes_and_follows_a_linked_run_folder(capsys, tmp_path, monkeypatch):
    from tests.test_bad_input import run_here

    target = elsewhere(tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (tmp_path / "run").symlink_to(scratch)  # the user's link to scratch storage: followed
    (scratch / "metrics.csv").symlink_to(target / "precious.txt")  # a name the run writes: refused
    monkeypatch.chdir(tmp_path)
    code = run_here([*TINY, f"hydra.run.dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "metrics.csv is a symlink" in err and err.count("\n") == 1, err
    assert untouched(target) and [p.name for p in scratch.iterdir()] == ["metrics.csv"]
    (scratch / "metrics.csv").unlink()
    assert run_here([*TINY, f"hydra.run.dir={tmp_path / 'run'}"]) == 0
    assert (scratch / "summary.json").is_file() and untouched(target)


def test_a_report_stopped_midway_links_no_figure_already_gone_and_a_finished_one_leaves_none_stale(
    runs, tmp_path, monkeypatch
):
    """Stale figures go only once the new report.md is in place (a report stopped by SIGTERM or Ctrl-C while
    drawing keeps the old report whole); figures this report no longer draws then go."""
    from harness.report import build

    drawn_now = {"learning_curves", "cost"}

    def draw(a, gallery, folder):
        paths = {}
        for name in sorted(drawn_now):
            atomic_write(folder / f"{name}.png", lambda f: f.write(b"png"), binary=True)
            paths[name] = folder / f"{name}.png"
            if name == "stop":
                raise KeyboardInterrupt
        return paths

    monkeypatch.setattr(build, "draw_figures", draw)
    monkeypatch.setattr(build, "interactive_figures", lambda a: {})
    out = build_report([runs], out=tmp_path / "out")
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["cost.png", "learning_curves.png"]
    drawn_now = {"learning_curves", "stop"}  # the next report draws one, then is stopped
    with pytest.raises(KeyboardInterrupt):
        build_report([runs], out=tmp_path / "out")
    report = (out / "report.md").read_text()
    assert "figures/cost.png" in report and (out / "figures" / "cost.png").is_file()
    drawn_now = {"learning_curves"}
    build_report([runs], out=tmp_path / "out")
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["learning_curves.png"]
    assert "figures/cost.png" not in (out / "report.md").read_text()
