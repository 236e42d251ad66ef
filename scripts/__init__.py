"""The harness's commands: an install gives each one under the harness- prefix (pyproject.toml [project.scripts]:
harness-report, harness-gallery, the benchmarks); from a checkout, python scripts/NAME.py runs the same."""
