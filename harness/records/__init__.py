"""What a run leaves behind: the schema and its one validated reader, the schema upgrade and migration, atomic
writes and checkpoints, and the per-run recorder. May import `harness.common`, `harness.networks` and
`harness.setup`."""
