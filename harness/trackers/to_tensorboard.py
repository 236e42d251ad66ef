"""TensorBoard: each run's event files in its own folder, so that `tensorboard --logdir` on a sweep (or on results/)
shows each job as a run, its curves under their metrics.csv names and its configuration in the HParams tab against
its final figures. torch's SummaryWriter writes them (the tensorboard package must be installed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.trackers.records import figures, params

TOOL = "tensorboard"


class TensorBoardRun:
    """One run's event files; the writer is made at the first thing to write (an export with nothing new adds no
    file). entry: the run's tracker.json entry for TensorBoard, unused here (TensorBoard has no run id)."""

    def __init__(self, run_dir: Path, summary: dict, entry: dict[str, Any]) -> None:
        self.run_dir = Path(run_dir)
        self.writer: Any = None

    def _writer(self) -> Any:
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.run_dir), flush_secs=3600)  # flushed at each batch's end
        return self.writer

    def log(self, points: list[tuple[str, float, int]]) -> None:
        writer = self._writer()
        for name, value, step in points:
            writer.add_scalar(name, value, step)
        writer.flush()

    def finish(self, summary: dict, step: int) -> None:
        """Its summary figures as scalars at the last step, the HParams plugin's summaries in this run (torch's
        add_hparams would write them into a sub-run of their own) and summary.json as text."""
        if summary.get("status") == "failed":
            self.close()
            return
        from torch.utils.tensorboard.summary import hparams

        writer = self._writer()
        figs = {f"summary/{k}": v for k, v in figures(summary).items()}
        for name, value in figs.items():
            writer.add_scalar(name, value, step)
        for part in hparams(params(summary), figs):  # the experiment, session start and session end
            writer._get_file_writer().add_summary(part)
        text = json.dumps(summary, indent=1, default=str)
        writer.add_text("summary.json", "    " + text.replace("\n", "\n    "), step)  # indented: shown as code
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
