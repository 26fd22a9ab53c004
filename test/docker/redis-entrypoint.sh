#!/bin/sh
# Entry point of the local `redis:7` stand-in image (built by setup-engine.sh from Debian's
# redis-server). It behaves like the official image's docker-entrypoint.sh where our tests
# rely on it:
#   - `docker run redis:7 --port 7000` means `redis-server --port 7000`;
#   - without a config file, redis-server listens on all interfaces and would refuse clients
#     that come through Docker's port mapping (protected mode), so `--protected-mode no` goes
#     first and a later `--protected-mode yes` from the caller still wins;
#   - it drops root for the `redis` user, owning /data.
# testcontainers' RedisContainer replaces the command with `redis-server [args]`, which keeps
# the entry point, so it gets the same treatment.
set -e

case "${1:-}" in
  -*) set -- redis-server "$@" ;;
esac

if [ "${1:-}" = redis-server ]; then
  shift
  if [ -n "${1:-}" ] && [ "${1%.conf}" != "$1" ] && [ -f "$1" ]; then
    conf=$1
    shift
    set -- redis-server "$conf" --protected-mode no "$@"
  else
    set -- redis-server --protected-mode no "$@"
  fi
  if [ "$(id -u)" = 0 ]; then
    chown redis:redis /data 2>/dev/null || true
    exec setpriv --reuid=redis --regid=redis --init-groups "$@"
  fi
fi

exec "$@"
