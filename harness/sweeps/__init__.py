"""Sweeps without Hydra: which jobs are finished, their locks, the manifest, grouping seeds into one job, the
launchers' facts, the job table and `status`. May import `harness.common`, `harness.networks`, `harness.setup`,
`harness.records`, `harness.trackers` and `harness.training`; the Hydra sweeper and launcher (hydra_plugins/) read
it, never the other way."""
