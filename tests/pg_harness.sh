#!/bin/sh
# A private PostgreSQL cluster for the tests, reachable only through a Unix socket in DIR.
#   pg_harness.sh start DIR PORT   initdb into DIR/data and start it (a leftover is replaced)
#   pg_harness.sh stop DIR PORT    stop it and remove DIR (succeeds when nothing runs)
#   pg_harness.sh halt DIR PORT    stop it (fast shutdown: sessions are cut) and keep DIR, so
#                                  that resume can start it again; fails when it is not running
#   pg_harness.sh resume DIR PORT  start a halted cluster again; returns once it accepts
#                                  connections
# PORT is the one given to start: the cluster keeps it in DIR/data/postgresql.conf.
# halt and resume are for tests that stop PostgreSQL under a daemon (test_pg_stopped), on a
# cluster of their own: never on the shared one, which other tests use at the same time.
# As root, the cluster belongs to and runs as the postgres user (PostgreSQL refuses root).
set -eu

usage() {
	echo "usage: $0 start|stop|halt|resume DIR PORT" >&2
	exit 2
}

[ $# -eq 3 ] || usage
cmd=$1
dir=$2
port=$3
case $port in
'' | *[!0-9]*) usage ;;
esac
case $dir in
/*) ;;
*) dir=$(pwd)/$dir ;;
esac
case $dir in
*"'"* | *'\'*)
	# The path goes into postgresql.conf as a quoted string.
	echo "pg_harness: DIR must not contain quotes or backslashes: $dir" >&2
	exit 2
	;;
esac
data=$dir/data
log=$dir/postgres.log

bindir=
for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
	[ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && bindir=$d
done
if [ -z "$bindir" ]; then
	if command -v initdb >/dev/null 2>&1; then
		bindir=$(dirname "$(command -v initdb)")
	else
		echo "pg_harness: no PostgreSQL server binaries (/usr/lib/postgresql/*/bin or initdb on PATH)" >&2
		exit 1
	fi
fi

as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

running() {
	[ -f "$data/postmaster.pid" ] && as_pg "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1
}

stop_cluster() {
	if [ -d "$data" ] && running; then
		as_pg "$bindir/pg_ctl" -D "$data" -w -t 30 stop -m fast >/dev/null 2>&1 ||
			as_pg "$bindir/pg_ctl" -D "$data" -w -t 30 stop -m immediate >/dev/null 2>&1 ||
			true
	fi
}

case $cmd in
start)
	# A cluster left by an aborted run is stopped and replaced: tests expect a clean one.
	stop_cluster
	rm -rf "$dir"
	mkdir -p "$dir"
	if [ "$(id -u)" -eq 0 ]; then
		chown postgres: "$dir"
		if ! runuser -u postgres -- test -w "$dir"; then
			echo "pg_harness: the postgres user cannot reach $dir (check the parent directories' modes)" >&2
			exit 1
		fi
	fi
	if ! as_pg "$bindir/initdb" -D "$data" -A trust -U postgres --no-sync -E UTF8 \
		--no-locale >"$dir/initdb.log" 2>&1; then
		echo "pg_harness: initdb failed:" >&2
		cat "$dir/initdb.log" >&2
		exit 1
	fi
	cat >>"$data/postgresql.conf" <<EOF
# pg_harness: a throwaway cluster for tests
listen_addresses = ''
unix_socket_directories = '$dir'
port = $port
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
	if ! as_pg "$bindir/pg_ctl" -D "$data" -l "$log" -w -t 60 start >/dev/null; then
		echo "pg_harness: PostgreSQL did not start; the end of $log:" >&2
		tail -n 40 "$log" >&2 || true
		exit 1
	fi
	echo "pg_harness: PostgreSQL ($bindir) running: host=$dir port=$port user=postgres"
	;;
stop)
	stop_cluster
	rm -rf "$dir"
	;;
halt)
	if ! running; then
		echo "pg_harness: no cluster running in $data" >&2
		exit 1
	fi
	if ! as_pg "$bindir/pg_ctl" -D "$data" -w -t 30 stop -m fast >/dev/null; then
		echo "pg_harness: PostgreSQL did not stop; the end of $log:" >&2
		tail -n 20 "$log" >&2 || true
		exit 1
	fi
	;;
resume)
	if [ ! -f "$data/PG_VERSION" ]; then
		echo "pg_harness: no cluster in $data (start makes one)" >&2
		exit 1
	fi
	# -w: pg_ctl returns once the server accepts connections (or fails after -t seconds).
	if ! as_pg "$bindir/pg_ctl" -D "$data" -l "$log" -w -t 60 start >/dev/null; then
		echo "pg_harness: PostgreSQL did not start again; the end of $log:" >&2
		tail -n 40 "$log" >&2 || true
		exit 1
	fi
	;;
*)
	usage
	;;
esac
