"""Hydra sweeper of the activation harness: validates every job first, skips finished ones, isolates failures."""
