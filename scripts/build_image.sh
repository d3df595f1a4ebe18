#!/usr/bin/env bash
# `make image` on a machine that reaches no image registry: a Debian-made base image
# (debootstrap: Debian 12's own Python 3.11 and ffmpeg) and a wheelhouse that pip fills here
# from requirements.lock, both cached, then the same Dockerfile a registry build uses, with
# the base and the package source as build arguments.
#
#   bash scripts/build_image.sh [IMAGE]      (root; IMAGE defaults to vocalsep.pipeline.config's)
#
# Cached between runs: the base image (rebuilt only if absent; `docker rmi` it to refresh) and
# the wheelhouse under $VOCALSEP_IMAGE_CACHE (default ~/.cache/vocalsep/image), refilled when
# requirements.lock changes. The wheelhouse reaches the build over loopback HTTP (the build
# runs with --network host), so no 1 GB context is sent and no wheel stays in a layer.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${1:-${IMAGE:-ghcr.io/vocalsep/vocalsep-pipeline:0.1.0}}
BASE_IMAGE=${BASE_IMAGE:-vocalsep/debian-python:bookworm}
CACHE=${VOCALSEP_IMAGE_CACHE:-$HOME/.cache/vocalsep/image}
PYTHON=${PYTHON:-python3}

log() { printf 'image: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

command -v docker >/dev/null || die "no docker client: apt-get install docker.io"
docker info >/dev/null 2>&1 || die "no Docker daemon answers on $(docker context inspect \
  --format '{{.Endpoints.docker.Host}}' 2>/dev/null || echo /var/run/docker.sock); start one \
  (here: dockerd --bridge=none --iptables=false --ip-forward=false &)"

debian_mirror() {
  local uri
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  if [ -z "$uri" ]; then
    uri=$(awk '$1 == "deb" && $0 ~ /debian/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

build_base() {
  [ "$(id -u)" = 0 ] || die "building the base image needs root (debootstrap, chroot)"
  command -v debootstrap >/dev/null || die "no debootstrap: apt-get install debootstrap"
  local mirror root
  mirror=$(debian_mirror)
  root=$(mktemp -d /var/tmp/vocalsep-base.XXXXXX)
  trap 'umount "$root/proc" 2>/dev/null || true; rm -rf "$root"' RETURN
  log "debootstrap bookworm from $mirror (a few minutes, once)"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 \
    || { tail -20 "$root.log" >&2; die "debootstrap failed (log above)"; }
  rm -f "$root.log"
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$mirror" "$mirror" \
    >"$root/etc/apt/sources.list"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  mount -t proc proc "$root/proc"
  chroot "$root" /bin/sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends python3 python3-venv ffmpeg >/dev/null \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin'
  umount "$root/proc"
  : >"$root/etc/resolv.conf"
  tar -C "$root" -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    -c 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
  log "base image $BASE_IMAGE: $(docker run --rm --network none "$BASE_IMAGE" python3 -V)"
}

fill_wheelhouse() {
  local wheels=$CACHE/wheelhouse stamp want
  want=$(cat requirements.lock scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)
  stamp=$wheels/.lock-sha256
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "wheelhouse up to date ($wheels)"
    return
  fi
  mkdir -p "$wheels"
  log "filling the wheelhouse $wheels from requirements.lock (about 1 GB, once per lock)"
  # Markers dropped: the wheelhouse serves every Python 3.11 the lock supports, and the
  # image's own pip applies them.
  sed 's/ *;.*$//' requirements.lock >"$CACHE/requirements.all.txt"
  echo "pip==$(sed -n 's/^PIP_VERSION=//p' scripts/bootstrap.sh)" >>"$CACHE/requirements.all.txt"
  "$PYTHON" -m pip download -q --no-deps --ignore-requires-python \
    -r "$CACHE/requirements.all.txt" -d "$wheels"
  # Packages PyPI has only as sources (pyfarmhash needs a compiler): built here, once.
  local sdists=()
  mapfile -t sdists < <(find "$wheels" -maxdepth 1 \( -name '*.tar.gz' -o -name '*.zip' \))
  if ((${#sdists[@]})); then
    "$PYTHON" -m pip wheel -q --no-deps -w "$wheels" "${sdists[@]}"
    rm -f "${sdists[@]}"
  fi
  echo "$want" >"$stamp"
}

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then build_base; fi
fill_wheelhouse

# A fixed port keeps the build argument, and so Docker's layer cache, the same between builds;
# a free one if it is taken.
port=$("$PYTHON" - "${WHEELHOUSE_PORT:-47810}" <<'PY'
import socket
import sys

with socket.socket() as probe:
    try:
        probe.bind(("127.0.0.1", int(sys.argv[1])))
    except OSError:
        probe.bind(("127.0.0.1", 0))
    print(probe.getsockname()[1])
PY
)
"$PYTHON" -m http.server --bind 127.0.0.1 --directory "$CACHE/wheelhouse" "$port" \
  >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  "$PYTHON" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" \
    2>/dev/null && break
  sleep 0.1
done

log "building $IMAGE on $BASE_IMAGE"
docker build --network host --tag "$IMAGE" \
  --build-arg "BASE_IMAGE=$BASE_IMAGE" \
  --build-arg "WHEELHOUSE_URL=http://127.0.0.1:$port/" \
  .
log "$IMAGE: $(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.2f GB", $1 / 1e9}')"
# Beam's SDK container: the same layers, the boot as entrypoint (vocalsep.pipeline.config.beam_sdk_image).
SDK_IMAGE=$(echo "$IMAGE" | sed -E 's#(:[^:/]*)?$#-beam-sdk\1#')
docker build --network host --target beam-sdk --tag "$SDK_IMAGE" \
  --build-arg "BASE_IMAGE=$BASE_IMAGE" \
  --build-arg "WHEELHOUSE_URL=http://127.0.0.1:$port/" \
  . >/dev/null
log "$SDK_IMAGE: the Beam SDK container of $IMAGE"
