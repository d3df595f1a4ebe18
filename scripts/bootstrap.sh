#!/usr/bin/env bash
# One idempotent set-up for users, developers and CI: system packages, .venv, the locked
# stack, and vocalsep itself (editable). A second run with nothing changed returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
PIP_VERSION=24.2
VENV=.venv
STAMP=$VENV/.vocalsep-installed

log() { printf 'bootstrap: %s\n' "$*" >&2; }

if ! command -v "$PYTHON" >/dev/null; then
  log "no '$PYTHON' on PATH: install Python 3.11 (Debian 12: apt-get install python3 python3-venv)"
  exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  log "vocalsep's locked stack (TFX 1.16, TensorFlow 2.16) is built for Python 3.11;"
  log "'$PYTHON' is $("$PYTHON" -V 2>&1). Set PYTHON=/path/to/python3.11."
  exit 1
fi

# System packages: ffmpeg decodes mp3/m4a/.stem.mp4 and encodes mp3; python3-venv makes .venv
# on Debian's own Python; chromium renders the evaluator's HTML report headless in the tests,
# and chromium-driver lets Selenium drive it through the `vocalsep web` page.
# Installed with apt-get when we are root, otherwise named. Checked on every run (before the
# stamp below), so adding a package here takes effect on the next run without touching .venv.
missing=()
if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then missing+=(ffmpeg); fi
if ! command -v chromium >/dev/null; then missing+=(chromium); fi
if ! command -v chromedriver >/dev/null; then missing+=(chromium-driver); fi
if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then missing+=(python3-venv); fi
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
      >/dev/null
  else
    log "missing Debian packages: ${missing[*]}; run: sudo apt-get install ${missing[*]}"
    if [[ " ${missing[*]} " == *" python3-venv "* ]]; then exit 1; fi
    if [[ " ${missing[*]} " == *" ffmpeg "* ]]; then
      log "continuing without ffmpeg: wav/flac/ogg/opus work, mp3 output and m4a/mp4 input will not"
    fi
    if [[ " ${missing[*]} " == *" chromium "* ]]; then
      log "continuing without chromium: the evaluator report's browser test will skip"
    fi
    if [[ " ${missing[*]} " == *" chromium-driver "* ]]; then
      log "continuing without chromium-driver: the web page's browser test will skip"
    fi
  fi
fi

wanted=$(cat requirements.lock setup.py | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$wanted" ] && [ -x "$VENV/bin/vocalsep" ]; then
  log "up to date ($VENV)"
  exit 0
fi

log "creating $VENV and installing the locked stack (a few minutes the first time)"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "pip==$PIP_VERSION"
# --no-deps: the lock is complete, so no resolver run (an unconstrained TFX resolve backtracks
# for a very long time). --ignore-requires-python: TFX 1.16.0 declares <3.11 but runs on 3.11.
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --ignore-requires-python \
  -r requirements.lock
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation --use-pep517 -e .
"$VENV/bin/pip" check
echo "$wanted" >"$STAMP"
log "ready: $VENV/bin/vocalsep"
