"""Trackers that watch a run besides its own records: TensorBoard and MLflow (`logger=`, docs/trackers.md), live
from the training loop's boundaries and its end, and after the fact from any folder of runs. A run's own folder
stays the source of truth; the tracker packages (the trackers extra) are imported only when a logger is on.
May import `harness.common`, `harness.networks`, `harness.setup` and `harness.records`."""
