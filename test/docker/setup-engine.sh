#!/usr/bin/env bash
# Bring up a Docker engine and the images the Docker tests need, on a machine that reaches
# Debian's apt mirror and the npm registry but no image registry (our CI machines).
#
#   sudo test/docker/setup-engine.sh        # CI runs it before `npm test`
#
# Idempotent: installs docker.io and mmdebstrap only when missing, starts dockerd only when no
# engine answers, and builds the base images only when they are missing. The runner image is
# rebuilt on every run (Docker's layer cache makes an unchanged rebuild take seconds).
#
# Images it leaves behind:
#   local/debian:bookworm            mmdebstrap minbase + git, ca-certificates, tini, libstdc++6
#   local/node20:bookworm            the above + the host's node (and npm) in /usr/local
#   redis:7                          stand-in for the official image: Debian's redis-server,
#                                    `redis-server --protected-mode no` by default
#   local/postgres:15                Debian's postgresql-15 behind an entry point like the official
#                                    image's (trust auth, PGDATA): the infra compose test's Postgres
#   agent-supervisor-runner:latest   docker/Dockerfile built with BASE_IMAGE=local/node20:bookworm
#
# Environment:
#   DOCKERD_LOG=/tmp/dockerd.log     where a dockerd started here logs
#   DOCKERD_TIMEOUT=60               seconds to wait for the engine
#   DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR   apt mirrors for mmdebstrap
#   RUNNER_IMAGE=agent-supervisor-runner:latest
#   SETUP_ENGINE_REBUILD=1           rebuild the local base images even when present
#   SETUP_ENGINE_SKIP_RUNNER=1       stop after the base images (no TypeScript build either)
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/test/docker"
DOCKERD_LOG=${DOCKERD_LOG:-/tmp/dockerd.log}
DOCKERD_TIMEOUT=${DOCKERD_TIMEOUT:-60}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SUITE=bookworm
BASE_IMAGE=local/debian:bookworm
NODE_IMAGE=local/node20:bookworm
REDIS_IMAGE=redis:7
POSTGRES_IMAGE=local/postgres:15
RUNNER_IMAGE=${RUNNER_IMAGE:-agent-supervisor-runner:latest}
REBUILD=${SETUP_ENGINE_REBUILD:-0}
LABEL_LOCAL=dev.agent-supervisor.local-image=true

CURRENT_STEP="start"
T_SCRIPT=$(date +%s%N)
WORK=$(mktemp -d /tmp/setup-engine.XXXXXX)

log() { printf '[setup-engine] %s\n' "$*"; }
elapsed() { # nanosecond timestamp -> "12.3s"
  local ms=$((($(date +%s%N) - $1) / 1000000))
  printf '%d.%ds' $((ms / 1000)) $((ms % 1000 / 100))
}
fail() {
  printf '[setup-engine] FAILED during "%s": %s\n' "$CURRENT_STEP" "$*" >&2
  exit 1
}
on_err() {
  local rc=$? cmd=$BASH_COMMAND
  trap - ERR
  printf '[setup-engine] FAILED during "%s": `%s` exited with %s\n' "$CURRENT_STEP" "$cmd" "$rc" >&2
  exit "$rc"
}
trap on_err ERR
trap 'rm -rf "$WORK"' EXIT

step() { # step "title" function [args...]
  CURRENT_STEP=$1
  shift
  log "==> $CURRENT_STEP"
  local t0
  t0=$(date +%s%N)
  "$@"
  log "    $CURRENT_STEP: done in $(elapsed "$t0")"
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
image_label() { docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true; }

# Debian's mirrors here are snapshots whose Release files are past their Valid-Until date;
# mmdebstrap does not read the host's apt.conf.d, so say it again.
MMDEBSTRAP_OPTS=(
  --variant=minbase
  --aptopt='Acquire::Check-Valid-Until "false"'
  --aptopt='Acquire::Check-Date "false"'
  --aptopt='Acquire::Retries "3"'
  # Images do not need manuals, docs or translations (keep the copyright files).
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
)
MIRRORS=(
  "deb $DEBIAN_MIRROR $SUITE main"
  "deb $DEBIAN_MIRROR $SUITE-updates main"
  "deb $DEBIAN_SECURITY_MIRROR $SUITE-security main"
)
IMPORT_CHANGES=(
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  --change 'ENV LANG=C.UTF-8'
  --change "LABEL $LABEL_LOCAL"
)

# --- steps -------------------------------------------------------------------------------

install_packages() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v docker >/dev/null || missing+=(docker.io)
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  if [ ${#missing[@]} -eq 0 ]; then
    log "    dockerd, docker and mmdebstrap are installed"
    return
  fi
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "    installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || fail "apt-get update failed: is Debian's mirror reachable?"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$WORK/apt.log" 2>&1 ||
    { tail -n 30 "$WORK/apt.log" >&2; fail "apt-get install ${missing[*]} failed (log above)"; }
  command -v dockerd >/dev/null || fail "dockerd is still missing after installing docker.io"
}

start_engine() {
  if docker info >/dev/null 2>&1; then
    log "    an engine already answers ($(docker version -f 'server {{.Server.Version}}' 2>/dev/null))"
    return
  fi
  if pgrep -x dockerd >/dev/null; then
    log "    dockerd is running but not answering yet; waiting for it"
  else
    log "    starting dockerd in the background, logging to $DOCKERD_LOG"
    # setsid: the engine outlives this script and is not hit by signals sent to its group.
    setsid dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
  fi
  local t0 waited=0
  t0=$(date +%s%N)
  until docker info >/dev/null 2>&1; do
    if ! pgrep -x dockerd >/dev/null; then
      tail -n 40 "$DOCKERD_LOG" >&2 || true
      fail "dockerd exited during start-up (last lines of $DOCKERD_LOG above)"
    fi
    if [ "$waited" -ge $((DOCKERD_TIMEOUT * 2)) ]; then
      tail -n 40 "$DOCKERD_LOG" >&2 || true
      fail "no engine answered within ${DOCKERD_TIMEOUT}s (last lines of $DOCKERD_LOG above)"
    fi
    if [ $((waited % 10)) -eq 0 ]; then log "    waiting for the engine... ($(elapsed "$t0"))"; fi
    sleep 0.5
    waited=$((waited + 1))
  done
  log "    engine ready after $(elapsed "$t0"): $(docker version -f 'server {{.Server.Version}}, API {{.Server.APIVersion}}')"
}

build_base_image() {
  if image_exists "$BASE_IMAGE" && [ "$REBUILD" != 1 ]; then
    log "    $BASE_IMAGE exists"
    return
  fi
  log "    mmdebstrap $SUITE (minbase + git, ca-certificates, tini, libstdc++6) | docker import"
  mmdebstrap "${MMDEBSTRAP_OPTS[@]}" --include=git,ca-certificates,tini,libstdc++6 \
    "$SUITE" - "${MIRRORS[@]}" </dev/null 2>"$WORK/mmdebstrap-base.log" |
    docker import "${IMPORT_CHANGES[@]}" --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null ||
    { tail -n 30 "$WORK/mmdebstrap-base.log" >&2; fail "could not build $BASE_IMAGE (mmdebstrap log above)"; }
  BASE_REBUILT=1
}

build_node_image() {
  local node_bin npm_dir version
  node_bin=$(readlink -f "$(command -v node)") || fail "node is not on PATH"
  version=$("$node_bin" --version)
  if image_exists "$NODE_IMAGE" && [ "$REBUILD" != 1 ] && [ "${BASE_REBUILT:-0}" != 1 ] &&
    [ "$(image_label "$NODE_IMAGE" dev.agent-supervisor.node-version)" = "$version" ]; then
    log "    $NODE_IMAGE exists with node $version"
    return
  fi
  # npm comes along so the runner Dockerfile can prune dev dependencies offline and install
  # AGENT_PACKAGES when asked, as it can on the public node image.
  npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")") || fail "npm is not on PATH"
  [ -f "$npm_dir/bin/npm-cli.js" ] || fail "cannot find npm's package directory (looked in $npm_dir)"
  log "    copying node $version from $node_bin and npm from $npm_dir"
  local ctx="$WORK/node-image"
  mkdir -p "$ctx"
  cp "$node_bin" "$ctx/node"
  cp -a "$npm_dir" "$ctx/npm"
  cat >"$ctx/Dockerfile" <<EOF
FROM $BASE_IMAGE
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
 && node --version && npm --version
ENV NODE_VERSION=${version#v}
LABEL $LABEL_LOCAL dev.agent-supervisor.node-version=$version
CMD ["node"]
EOF
  docker build --force-rm -q -t "$NODE_IMAGE" "$ctx" >"$WORK/node-build.log" 2>&1 ||
    { tail -n 30 "$WORK/node-build.log" >&2; fail "could not build $NODE_IMAGE (log above)"; }
  docker run --rm "$NODE_IMAGE" node -e 'process.exit(0)' ||
    fail "node does not run inside $NODE_IMAGE (missing shared library?)"
}

# debian_image IMAGE PACKAGE ENTRYPOINT HOOK CHANGE...: mmdebstrap minbase + PACKAGE with the
# ENTRYPOINT script as docker-entrypoint.sh and one more customize HOOK, imported as IMAGE with
# the CHANGEs (Dockerfile instructions docker import takes).
debian_image() {
  local image=$1 package=$2 entry=$3 hook=$4 c
  shift 4
  local changes=(--change 'ENTRYPOINT ["docker-entrypoint.sh"]')
  for c in "$@"; do changes+=(--change "$c"); done
  log "    mmdebstrap $SUITE (minbase + $package) | docker import"
  mmdebstrap "${MMDEBSTRAP_OPTS[@]}" --include="$package" \
    --customize-hook="install -m 0755 '$entry' \"\$1/usr/local/bin/docker-entrypoint.sh\"" \
    --customize-hook="$hook" \
    "$SUITE" - "${MIRRORS[@]}" </dev/null 2>"$WORK/mmdebstrap-$package.log" |
    docker import "${IMPORT_CHANGES[@]}" "${changes[@]}" - "$image" >/dev/null ||
    { tail -n 30 "$WORK/mmdebstrap-$package.log" >&2; fail "could not build $image (mmdebstrap log above)"; }
}

build_redis_image() {
  if image_exists "$REDIS_IMAGE" && [ "$REBUILD" != 1 ] &&
    [ "$(image_label "$REDIS_IMAGE" dev.agent-supervisor.local-image)" = true ]; then
    log "    $REDIS_IMAGE exists (local stand-in)"
    return
  fi
  if image_exists "$REDIS_IMAGE" && [ "$(image_label "$REDIS_IMAGE" dev.agent-supervisor.local-image)" != true ]; then
    log "    $REDIS_IMAGE exists and is not ours (pulled from a registry?): keeping it"
    return
  fi
  debian_image "$REDIS_IMAGE" redis-server "$HERE/redis-entrypoint.sh" \
    'mkdir -p "$1/data" && chroot "$1" chown redis:redis /data' \
    'WORKDIR /data' 'EXPOSE 6379' 'CMD ["redis-server"]'
}

build_postgres_image() {
  if image_exists "$POSTGRES_IMAGE" && [ "$REBUILD" != 1 ]; then
    log "    $POSTGRES_IMAGE exists"
    return
  fi
  # The package's own cluster (/var/lib/postgresql/15/main) goes: the entry point makes one in PGDATA.
  debian_image "$POSTGRES_IMAGE" postgresql-15 "$HERE/postgres-entrypoint.sh" \
    'rm -rf "$1/var/lib/postgresql/15" "$1/etc/postgresql/15"' \
    'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'ENV PGDATA=/var/lib/postgresql/data' 'EXPOSE 5432'
}

compile_typescript() {
  [ -d "$ROOT/node_modules" ] || fail "$ROOT/node_modules is missing: run \`npm ci\` first"
  local out="$ROOT/dist/agent-runner/main.js" newer
  if [ -f "$out" ]; then
    # tsc rewrites every output, so one source newer than main.js means dist/ is stale.
    newer=$(cd "$ROOT" && find . -path ./node_modules -prune -o -path ./dist -prune -o \
      -path ./.git -prune -o -path ./.worktrees -prune -o \
      \( -name '*.ts' -o -name 'tsconfig.json' -o -name 'package-lock.json' \) -newer "$out" -print -quit)
    if [ -z "$newer" ]; then
      log "    dist/ is up to date"
      return
    fi
  fi
  (cd "$ROOT" && npm run --silent build) || fail "the TypeScript build failed (npm run build)"
  [ -f "$ROOT/dist/agent-runner/main.js" ] || fail "dist/agent-runner/main.js was not produced by the build"
}

build_runner_image() {
  local previous
  previous=$(docker image inspect -f '{{.Id}}' "$RUNNER_IMAGE" 2>/dev/null || true)
  log "    docker build -f docker/Dockerfile --build-arg BASE_IMAGE=$NODE_IMAGE -t $RUNNER_IMAGE ."
  (cd "$ROOT" && docker build --force-rm -f docker/Dockerfile --build-arg "BASE_IMAGE=$NODE_IMAGE" \
    -t "$RUNNER_IMAGE" .) >"$WORK/runner-build.log" 2>&1 ||
    {
      tail -n 40 "$WORK/runner-build.log" >&2
      if grep -q ENOTCACHED "$WORK/runner-build.log"; then
        fail "could not build $RUNNER_IMAGE: node_modules does not match package-lock.json (run \`npm ci\`)"
      fi
      fail "could not build $RUNNER_IMAGE (log above)"
    }
  # Smoke test: the entry point's tools are there and the image runs as the agent user.
  docker run --rm --entrypoint /usr/bin/tini "$RUNNER_IMAGE" -- sh -c \
    'node --version >/dev/null && git --version >/dev/null && test "$(id -un)" = agent' ||
    fail "$RUNNER_IMAGE does not have node, git and the agent user"
  # The image it replaces would stay behind untagged on every CI run; drop it unless in use.
  if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect -f '{{.Id}}' "$RUNNER_IMAGE")" ]; then
    docker rmi "$previous" >/dev/null 2>&1 || true
  fi
  log "    $RUNNER_IMAGE: $(docker image inspect -f '{{.Size}}' "$RUNNER_IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
}

# --- main --------------------------------------------------------------------------------

[ "$(id -u)" = 0 ] || fail "run as root (it installs packages and starts dockerd)"

step "install docker.io and mmdebstrap" install_packages
step "start the Docker engine" start_engine
step "build $BASE_IMAGE" build_base_image
step "build $NODE_IMAGE" build_node_image
step "build $REDIS_IMAGE" build_redis_image
step "build $POSTGRES_IMAGE" build_postgres_image
if [ "${SETUP_ENGINE_SKIP_RUNNER:-0}" != 1 ]; then
  step "compile TypeScript" compile_typescript
  step "build $RUNNER_IMAGE" build_runner_image
fi
CURRENT_STEP="finish"
log "ready in $(elapsed "$T_SCRIPT"); dockerd log: $DOCKERD_LOG"
docker images --filter "reference=local/*" --filter "reference=$REDIS_IMAGE" \
  --filter "reference=${RUNNER_IMAGE%%:*}" --format '  {{.Repository}}:{{.Tag}}  {{.Size}}'
