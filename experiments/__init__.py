"""The predefined studies: their report tables and figures (harness-study-report), and their micro-benchmarks."""
