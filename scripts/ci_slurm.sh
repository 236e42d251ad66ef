#!/usr/bin/env bash
# The SLURM tests against a real single-node cluster: start it, run `pytest -m slurm`, stop it.
#   scripts/ci_slurm.sh [PYTEST ARGS...]
# Uses a cluster that already answers (and leaves it running); otherwise starts one with scripts/slurm_local.sh
# and stops it afterwards, whatever the tests did. Where none can be started (not root, no apt-get) it says so in
# one line and exits 0: the tests are skipped, as they are on such a machine anyway.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! { timeout 5 sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mixed|allocated'; }; then
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
        echo "ci_slurm: skipped: no SLURM cluster here, and starting one needs root on Debian or Ubuntu"
        exit 0
    fi
    scripts/slurm_local.sh start || exit 1
    trap 'scripts/slurm_local.sh stop' EXIT
fi
SECONDS=0
python -m pytest -q -m slurm tests/test_slurm.py "$@"
status=$?
echo "ci_slurm: SLURM tests took ${SECONDS} s"
exit $status
