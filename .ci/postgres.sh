#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on loopback for the store tests, and export its URL as
# SPEECHQA_TEST_POSTGRES_URL. Source it; call pg_ci_stop (or let the EXIT trap do it) after.
# Installs Debian's postgresql when it is missing. initdb refuses to run as root, so the
# cluster belongs to the `postgres` user (or the current user when not root).

pg_ci_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [ -z "$dir" ] && ! command -v initdb >/dev/null; then
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq >/dev/null && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  fi
  if [ -n "$dir" ]; then echo "$dir"; else dirname "$(command -v initdb)"; fi
}

pg_ci_start() {
  PG_CI_BIN=$(pg_ci_bin)
  PG_CI_DIR=$(mktemp -d /tmp/speechqa-pg.XXXXXX)
  PG_CI_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  PG_CI_AS=()
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres "$PG_CI_DIR"
    PG_CI_AS=(runuser -u postgres --)
  fi
  "${PG_CI_AS[@]}" "$PG_CI_BIN/initdb" -D "$PG_CI_DIR/data" -U speechqa --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  "${PG_CI_AS[@]}" "$PG_CI_BIN/pg_ctl" -D "$PG_CI_DIR/data" -l "$PG_CI_DIR/log" -w \
    -o "-h 127.0.0.1 -p $PG_CI_PORT -k $PG_CI_DIR" start >/dev/null
  "${PG_CI_AS[@]}" "$PG_CI_BIN/createdb" -h 127.0.0.1 -p "$PG_CI_PORT" -U speechqa speechqa_test
  export SPEECHQA_TEST_POSTGRES_URL="postgresql://speechqa@127.0.0.1:$PG_CI_PORT/speechqa_test"
  export SPEECHQA_REQUIRE_POSTGRES=1
  trap pg_ci_stop EXIT
}

pg_ci_stop() {
  if [ -n "${PG_CI_DIR:-}" ] && [ -d "$PG_CI_DIR/data" ]; then
    "${PG_CI_AS[@]}" "$PG_CI_BIN/pg_ctl" -D "$PG_CI_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_CI_DIR"
  fi
}
