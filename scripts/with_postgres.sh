#!/usr/bin/env bash
# Run a command with a throwaway PostgreSQL server: NEWSLETTER_TEST_PG_URL points at it while the command runs.
#
#   scripts/with_postgres.sh .venv/bin/pytest -q
#
# When NEWSLETTER_TEST_PG_URL is already set, the command runs against that server instead. Otherwise PostgreSQL is
# installed from Debian's packages when missing, a private cluster is made in a temporary folder (unix socket only,
# no TCP port, fsync off: it is thrown away), and stopped and removed when the command ends.
set -euo pipefail

if [ -n "${NEWSLETTER_TEST_PG_URL:-}" ]; then
    exec "$@"
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    echo "installing PostgreSQL from Debian's packages for the PostgreSQL tests" >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
    bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi

dir=$(mktemp -d /tmp/newsletter-pg.XXXXXX)
chmod 755 "$dir"
# PostgreSQL refuses to run as root: as root, the cluster belongs to the postgres user.
if [ "$(id -u)" = 0 ]; then
    chown postgres: "$dir"
    run_pg() { runuser -u postgres -- "$@"; }
else
    run_pg() { "$@"; }
fi
port=$(( 20000 + RANDOM % 20000 ))
cleanup() {
    run_pg "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

run_pg "$bindir/initdb" -D "$dir/data" -A trust -U newsletter -E UTF8 --locale=C.UTF-8 >/dev/null
run_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-k $dir -p $port -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    start >/dev/null
run_pg "$bindir/createdb" -h "$dir" -p "$port" -U newsletter newsletter_test

export NEWSLETTER_TEST_PG_URL="postgresql+psycopg://newsletter@/newsletter_test?host=$dir&port=$port"
echo "PostgreSQL for the tests: $NEWSLETTER_TEST_PG_URL" >&2
set +e
"$@"
rc=$?
set -e
exit $rc
