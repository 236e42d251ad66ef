"""The one training loop for K >= 1 members (`train`, `group`, `loop`), its clocks, captured steps, stacked
optimizer, born-dead trials, the overhead benchmark's probes and the console. May import every layer below it:
`common`, `networks`, `setup`, `records`, `trackers`."""
