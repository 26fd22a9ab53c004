#!/usr/bin/env bash
# What the test suite needs beyond `npm ci`, checked and, where missing, provisioned:
#   - commands: git, redis-server (tests that restart Redis start a private one), chromium (the
#     browser tests; CHROMIUM_PATH overrides /usr/bin/chromium), ip (iproute2: the two-host
#     tests), setpriv and mount (util-linux: the unreadable-repository and disk-full tests),
#     promtool (prometheus: /metrics and the alert rules are checked with it), a Compose
#     (docker-compose, when the docker compose plugin is missing);
#   - services: Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432;
#   - a Docker engine with the local images (test/docker/setup-engine.sh; the runner image
#     itself is built by the Docker tests when its sources change).
#
# `npm test` runs it (pretest) and .ci/run runs it. Missing pieces are installed with apt-get
# and started when running as root; otherwise it prints ONE line saying what is missing and what
# to run, and exits 1. With everything in place it only checks (about a second).
#
#   sudo test/provision.sh           # once, on a fresh machine, when npm test runs as a user
#
# Environment: CHROMIUM_PATH, DOCKER_HOST (an engine elsewhere: it is checked, never started),
# PROVISION_QUIET=1 (no progress lines).
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
T0=$(date +%s%N)
ROOT_USER=0
[ "$(id -u)" = 0 ] && ROOT_USER=1

say() { [ "${PROVISION_QUIET:-0}" = 1 ] || printf '[provision] %s\n' "$*"; }
# The one line a user sees when the suite cannot run here.
die() {
  printf 'npm test: %s\n' "$*" >&2
  exit 1
}
as_root_hint='run `sudo test/provision.sh` once (it installs and starts them), then `npm test` again'
elapsed() { # nanosecond timestamp -> "12.3s"
  local ms=$((($(date +%s%N) - $1) / 1000000))
  printf '%d.%ds' $((ms / 1000)) $((ms % 1000 / 100))
}

# --- commands ------------------------------------------------------------------------------
CHROMIUM=${CHROMIUM_PATH:-/usr/bin/chromium}
packages=()
missing=()
need_cmd() { # need_cmd command package
  if ! command -v "$1" >/dev/null 2>&1; then
    packages+=("$2")
    missing+=("$1")
  fi
}
need_cmd git git
need_cmd redis-server redis-server
need_cmd redis-cli redis-tools
need_cmd ip iproute2
need_cmd setpriv util-linux
need_cmd mount mount
need_cmd promtool prometheus
need_cmd tmux tmux # the terminal-safe output test runs the CLI in a real terminal
# test/env/infra-compose.test.ts reads infra/docker-compose.yml with a real Compose: the Docker
# CLI plugin when there is one, else Debian's docker-compose.
if ! docker compose version >/dev/null 2>&1; then need_cmd docker-compose docker-compose; fi
if [ ! -x "$CHROMIUM" ]; then
  if [ -n "${CHROMIUM_PATH:-}" ]; then
    die "CHROMIUM_PATH=$CHROMIUM is not an executable (unset it to use Debian's chromium)"
  fi
  packages+=(chromium)
  missing+=(chromium)
fi
if ((${#packages[@]})); then
  ((ROOT_USER)) || die "missing ${missing[*]}: $as_root_hint"
  mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)
  say "installing ${packages[*]} with apt-get"
  t=$(date +%s%N)
  export DEBIAN_FRONTEND=noninteractive
  log=$(mktemp /tmp/provision-apt.XXXXXX)
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${packages[@]}"; } >"$log" 2>&1; then
    die "apt-get install ${packages[*]} failed (log: $log)"
  fi
  rm -f "$log"
  say "installed ${packages[*]} in $(elapsed "$t")"
fi

# --- services ------------------------------------------------------------------------------
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  ((ROOT_USER)) || die "no Redis answers on 127.0.0.1:6379: start one (\`redis-server --daemonize yes\`) or $as_root_hint"
  say "starting redis-server on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || die "redis-server did not answer on 127.0.0.1:6379 after starting it"
fi
pg_up() {
  if command -v pg_isready >/dev/null; then
    pg_isready -h 127.0.0.1 -p 5432 -q
  else
    (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null
  fi
}
if ! pg_up; then
  if ((ROOT_USER)) && command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    say "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start >/dev/null 2>&1 || true
    for _ in $(seq 50); do pg_up && break; sleep 0.1; done
  fi
  pg_up || die "no PostgreSQL answers on 127.0.0.1:5432 (trust auth for user postgres): install and start it (\`apt-get install postgresql\`, or \`supervisor infra up\`)"
fi

# --- Docker engine and local images -----------------------------------------------------------
images=(local/debian:bookworm local/node20:bookworm redis:7 local/postgres:15)
engine_ready() {
  docker info >/dev/null 2>&1 || return 1
  local i
  for i in "${images[@]}"; do docker image inspect "$i" >/dev/null 2>&1 || return 1; done
}
if ! command -v docker >/dev/null 2>&1 || ! engine_ready; then
  if [ -n "${DOCKER_HOST:-}" ] && [[ "$DOCKER_HOST" != unix:///var/run/docker.sock ]]; then
    # An engine elsewhere is the user's: never start or fill another one instead.
    die "the Docker engine at DOCKER_HOST=$DOCKER_HOST does not answer or lacks ${images[*]}: unset DOCKER_HOST to use a local engine, or $as_root_hint"
  fi
  ((ROOT_USER)) || die "no Docker engine answers to this user, or it lacks the local images (${images[*]}): $as_root_hint"
  say "bringing up the Docker engine and local images (test/docker/setup-engine.sh)"
  t=$(date +%s%N)
  log=$(mktemp /tmp/provision-engine.XXXXXX)
  # The runner image is built by the Docker tests themselves, labelled with its sources' hash.
  if ! SETUP_ENGINE_SKIP_RUNNER=1 "$ROOT/test/docker/setup-engine.sh" >"$log" 2>&1; then
    die "test/docker/setup-engine.sh failed: $(grep -m1 FAILED "$log" || tail -n1 "$log") (log: $log)"
  fi
  rm -f "$log"
  say "Docker engine and images ready in $(elapsed "$t")"
fi

say "the test suite's needs are in place ($(elapsed "$T0"))"
