"""The networks: activations (gated ones included), the model families (`networks.models`, one module each), their
stacked forms for K members at once, and the unit probes. May import `harness.common` only."""
