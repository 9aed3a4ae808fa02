#!/usr/bin/env bash
# The one command for a lent GPU machine: installs the carried wheels (build/gpu-wheels/) the machine lacks, runs
# the GPU benchmark, tests/gpu and a segbench suite within 8 minutes, and writes the results (JSON, Markdown, the
# log) to one folder: $OUT when set, else build/gpu-results/<time>. Without an NVIDIA GPU it says so in one line
# and exits 0. See tests/gpu/README.md; `tests/gpu/run.sh --help` for the options.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec "${PYTHON:-python3}" tests/gpu/gpu_run.py "$@"
