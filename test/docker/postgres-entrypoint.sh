#!/bin/sh
# Entry point of the local `local/postgres:15` image (built by setup-engine.sh from Debian's
# postgresql-15), a stand-in for the official postgres image where infra/docker-compose.yml
# relies on it (INFRA_POSTGRES_IMAGE=local/postgres:15):
#   - PGDATA (/var/lib/postgresql/data) is initialised on the first start, POSTGRES_USER
#     (postgres) its superuser, POSTGRES_HOST_AUTH_METHOD (trust here) for connections from
#     anywhere;
#   - the server listens on every address and runs as the postgres user;
#   - pg_isready is on PATH (the health check).
set -e
PGDATA=${PGDATA:-/var/lib/postgresql/data}
BIN=/usr/lib/postgresql/15/bin

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown -R postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  "$BIN/initdb" -D "$PGDATA" -U "${POSTGRES_USER:-postgres}" --auth-local=trust \
    --auth-host="$auth" >/dev/null
  printf 'host all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
fi
exec "$BIN/postgres" -D "$PGDATA" -c listen_addresses='*' "$@"
