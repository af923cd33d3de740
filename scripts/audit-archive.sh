#!/usr/bin/env bash
# Archives and removes the audit rows written before a time (docs/audit.md, "Retention"):
#   scripts/audit-archive.sh --before TIME --out FILE [--database URL]
# Run it as the database's owner (the role that applies migrations, migrate_database_url):
# nobody else may remove audit rows. In one REPEATABLE READ transaction it copies the rows
# pcs_audit_archivable(TIME) names (whole chain links of each chain's prefix, see
# migrations/014_audit_retention.sql) to FILE as JSON lines (one row_to_json object per row,
# every column), flushes FILE to disk, then calls pcs_audit_archive, which removes exactly
# those rows and their links (or nothing, when the count in FILE differs, or a chain is broken
# where it would be archived) and records one summary per chain in audit_archive_summaries;
# it prints the summaries. FILE must not
# exist; it appears only once the transaction committed. URL defaults to libpq's
# environment (PGHOST, PGDATABASE, ...).
set -euo pipefail

usage() {
	echo "usage: $0 --before TIME --out FILE [--database URL]" >&2
	exit 2
}

before="" out="" db=""
while [[ $# -gt 0 ]]; do
	case "$1" in
	--before) [[ $# -ge 2 ]] || usage; before=$2; shift 2 ;;
	--out) [[ $# -ge 2 ]] || usage; out=$2; shift 2 ;;
	--database) [[ $# -ge 2 ]] || usage; db=$2; shift 2 ;;
	*) usage ;;
	esac
done
[[ -n $before && -n $out ]] || usage
if [[ -e $out ]]; then
	echo "$0: $out exists: archive to a new file" >&2
	exit 1
fi

export PCS_ARCHIVE_PART="$out.partial"
rm -f -- "$PCS_ARCHIVE_PART"

# The file is written by cat through psql's \o pipe, so psql's variables never need quoting
# for the shell; a short or failed write is caught by the count pcs_audit_archive checks.
status=0
psql ${db:+"$db"} -X -q -v ON_ERROR_STOP=1 -v before="$before" <<'SQL' || status=$?
BEGIN ISOLATION LEVEL REPEATABLE READ;
\pset format unaligned
\pset tuples_only on
\set FETCH_COUNT 10000
\o |cat > "$PCS_ARCHIVE_PART"
SELECT row_to_json(a)::text FROM public.pcs_audit_archivable(:'before'::timestamptz) a;
\o
\unset FETCH_COUNT
\set copied `sync -- "$PCS_ARCHIVE_PART" && wc -l < "$PCS_ARCHIVE_PART"`
\pset tuples_only off
\pset format aligned
SELECT instance_id, lane, nrows, nlinks, first_id, last_id, first_seq, last_seq,
       encode(last_hash, 'hex') AS last_hash
  FROM public.pcs_audit_archive(:'before'::timestamptz, :copied);
COMMIT;
SQL
if [[ $status -ne 0 ]]; then
	# Rolled back: nothing was removed, and the copy is not an archive.
	rm -f -- "$PCS_ARCHIVE_PART"
	echo "$0: nothing archived" >&2
	exit 1
fi
# Committed: the rows are gone from the database, so the copy is never removed here.
if ! mv -- "$PCS_ARCHIVE_PART" "$out"; then
	echo "$0: the rows were archived to $PCS_ARCHIVE_PART; move it to $out" >&2
	exit 1
fi
echo "archived $(wc -l < "$out") audit rows to $out" >&2
