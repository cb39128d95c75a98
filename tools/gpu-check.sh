#!/usr/bin/env bash
# The one prepared GPU check, run on the GPU machine from the repository root (no network there).
#   make gpu-wheels                 # first, on a machine with PyPI: fills .gpu-wheels/ (about 16 MiB)
#   tools/gpu-check.sh [bench options]   # on the GPU machine; the report goes to $OUT (default ./gpu_out)
# Installs the carried wheels into a venv that sees the system torch/transformers/peft/accelerate
# (--system-site-packages), offline and without resolving dependencies, then runs
# `python -m monai_ils.bench gpu`. Every section is time-capped; the whole run stays within 8 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${GPU_WHEELS:-.gpu-wheels}
OUT=${OUT:-gpu_out}
VENV=${GPU_VENV:-/tmp/monai_ils_gpu_venv}
ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "no wheels in $WHEELS: run 'make gpu-wheels' where PyPI is reachable and carry $WHEELS/" >&2; exit 2; }
mkdir -p "$OUT"
python3 -m venv --system-site-packages "$VENV"
"$VENV/bin/python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir "$WHEELS"/*.whl
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DS_BUILD_OPS=0
set +e
timeout 510 "$VENV/bin/python" -m monai_ils.bench gpu --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_bench.log"
status=${PIPESTATUS[0]}
set -e
echo "gpu-check: exit status $status; report in $OUT/gpu_report.md"
exit "$status"
