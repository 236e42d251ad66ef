"""What a run is given, resolved once at the top: the typed configuration and its hash, optimizers, data files and
loaders, the memory footprint, and `resolve`, which turns a Config into built objects. May import
`harness.common` and `harness.networks`."""
