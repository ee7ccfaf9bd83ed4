#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the history store tests.
#
#   source .ci/postgres.sh && pg_ci_start    # exports SPEECHQA_TEST_POSTGRES_URL, stops on EXIT
#
# Installs Debian's postgresql when no server binaries are found. initdb refuses to run as
# root, so as root the cluster belongs to the `postgres` user (or a `speechqa-ci` user made for
# it); otherwise to the current user. The cluster lives in a temporary folder, listens on
# 127.0.0.1 at a free port with trust authentication, and is deleted by pg_ci_stop.

pg_ci_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [ -z "$dir" ] && ! command -v initdb >/dev/null; then
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "postgres.sh: installing Debian's postgresql" >&2
    $sudo apt-get update -qq >&2 || return 1
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2 || return 1
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  fi
  if [ -n "$dir" ]; then echo "$dir"; else dirname "$(command -v initdb)"; fi
}

pg_ci_start() {
  PG_CI_BIN=$(pg_ci_bin) || { echo "postgres.sh: cannot install PostgreSQL" >&2; return 1; }
  PG_CI_AS=()
  PG_CI_DIR=$(mktemp -d /tmp/speechqa-pg.XXXXXX)
  trap pg_ci_stop EXIT  # from here on, whatever happens, the cluster and its folder go
  if [ "$(id -u)" -eq 0 ]; then
    local owner=postgres
    if ! id -u "$owner" >/dev/null 2>&1; then
      owner=speechqa-ci
      id -u "$owner" >/dev/null 2>&1 || useradd --system --no-create-home "$owner"
    fi
    PG_CI_AS=(runuser -u "$owner" --)
    chown "$owner" "$PG_CI_DIR"
  fi
  PG_CI_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "${PG_CI_AS[@]}" "$PG_CI_BIN/initdb" -D "$PG_CI_DIR/data" -U speechqa --auth=trust -E UTF8 \
    --locale=C.UTF-8 >"$PG_CI_DIR/initdb.log" 2>&1 \
    || { cat "$PG_CI_DIR/initdb.log" >&2; return 1; }
  "${PG_CI_AS[@]}" "$PG_CI_BIN/pg_ctl" -D "$PG_CI_DIR/data" -l "$PG_CI_DIR/server.log" -w -t 60 \
    -o "-k $PG_CI_DIR -h 127.0.0.1 -p $PG_CI_PORT" start >/dev/null \
    || { cat "$PG_CI_DIR/server.log" >&2; return 1; }
  "$PG_CI_BIN/createdb" -h 127.0.0.1 -p "$PG_CI_PORT" -U speechqa speechqa_test || return 1
  export SPEECHQA_TEST_POSTGRES_URL="postgresql+psycopg://speechqa@127.0.0.1:$PG_CI_PORT/speechqa_test"
  export SPEECHQA_REQUIRE_POSTGRES=1
  echo "postgres.sh: PostgreSQL $("$PG_CI_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_CI_PORT" >&2
}

pg_ci_stop() {
  if [ -n "${PG_CI_DIR:-}" ] && [ -d "$PG_CI_DIR" ]; then
    if [ -f "$PG_CI_DIR/data/postmaster.pid" ]; then
      "${PG_CI_AS[@]}" "$PG_CI_BIN/pg_ctl" -D "$PG_CI_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$PG_CI_DIR"
  fi
  PG_CI_DIR=""
}
