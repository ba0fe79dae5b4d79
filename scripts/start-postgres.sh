#!/usr/bin/env bash
# Installs (Debian postgresql) and starts a throwaway PostgreSQL cluster for the history and gate
# tests (tests/it/history.rs), then prints its URL as the last line:
#   KVSWEEP_TEST_POSTGRES_URL=$(scripts/start-postgres.sh | tail -n 1)
# The cluster lives in $KVSWEEP_PG_DIR (default /tmp/kvsweep-postgres), listens on 127.0.0.1 at
# $KVSWEEP_PG_PORT (default 54329) with trust authentication, and runs without fsync: test data
# only. PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user the
# package creates. Idempotent: a cluster already answering is left alone.
set -euo pipefail

PORT=${KVSWEEP_PG_PORT:-54329}
DIR=${KVSWEEP_PG_DIR:-/tmp/kvsweep-postgres}
URL="postgres://kvsweep@127.0.0.1:${PORT}/kvsweep_test"

if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  echo "start-postgres: apt-get install postgresql" >&2
  $SUDO apt-get update -qq
  # Debian's own major version (15 on bookworm): the package's version is the distribution's.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
BIN=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d | sort -V | tail -n 1)

as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
  echo "$URL"
  exit 0
fi

mkdir -p "$DIR"
[[ $(id -u) -ne 0 ]] || chown postgres:postgres "$DIR"
chmod 0700 "$DIR"
if [[ ! -f "$DIR/PG_VERSION" ]]; then
  as_owner "$BIN/initdb" -D "$DIR" -U kvsweep -A trust --no-sync >"$DIR.initdb.log" 2>&1 || {
    cat "$DIR.initdb.log" >&2
    exit 1
  }
fi
as_owner "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w -t 60 \
  -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
  start >&2 || {
  cat "$DIR/server.log" >&2
  exit 1
}
"$BIN/psql" -q -h 127.0.0.1 -p "$PORT" -U kvsweep -d postgres -tAc \
  "SELECT 1 FROM pg_database WHERE datname = 'kvsweep_test'" | grep -q 1 ||
  "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U kvsweep kvsweep_test
echo "$URL"
