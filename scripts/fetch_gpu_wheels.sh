#!/usr/bin/env bash
# Fetch into .whl/ (git-ignored) the wheels that the offline GPU machine lacks, for scripts/gpu_check.sh to install.
#
#   scripts/fetch_gpu_wheels.sh                  # wheels for the GPU machine's Python 3.12
#   PY_VERSION=3.11 scripts/fetch_gpu_wheels.sh  # for another Python (the ones here are pure Python anyway)
#
# The GPU machine has torch, torchvision, pandas, seaborn, tqdm, scipy, scikit-learn, requests, PyYAML and
# pytest, but not Hydra and its parser runtime, MNIST-1D's generator, plotly (the report's figures), pydantic (the
# results reader) or the launchers' packages. Run this where pip
# can reach PyPI, then carry .whl to the machine (the device tool: carry [".whl"]). Versions are the ones CI uses.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
PY_VERSION=${PY_VERSION:-3.12}
PACKAGES=(
  hydra-core==1.3.8
  omegaconf==2.3.1
  mnist1d==0.0.2.post1
  submitit==1.5.4
  hydra-submitit-launcher==1.2.0
  hydra-joblib-launcher==1.2.0
  plotly==7.1.0
  narwhals==2.29.0
  pydantic==2.14.4
  pydantic-core==2.50.5
  annotated-types==0.8.0
  typing-inspection==0.4.5
  typing-extensions==4.16.0  # pydantic-core needs a recent one; the GPU machine's may be older
)
PLATFORMS=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  PLATFORMS+=(--platform "$tag")
done

mkdir -p .whl
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
  "${PLATFORMS[@]}" -d .whl "${PACKAGES[@]}"
# omegaconf pins antlr4-python3-runtime 4.9.*, and 4.9.3 is on PyPI as a source archive only: build its (pure
# Python) wheel here.
if ! ls .whl/antlr4_python3_runtime-4.9.3-*.whl >/dev/null 2>&1; then
  "$PYTHON" -m pip wheel --quiet --no-deps -w .whl antlr4-python3-runtime==4.9.3
fi
ls -l .whl
