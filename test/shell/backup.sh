#!/usr/bin/env bash
# Backups: pg_dump a populated database, restore it into a new one, and compare
# every username, flag, ledger, reserved name, history row and school row.
# The queue is derived state: it is rebuilt with m365.queue_missing_usernames()
# and the job then makes the same usernames. Prints TAP (run with prove).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PG_BIN=/usr/lib/postgresql/15/bin
src="backup_src_$$" dst="backup_dst_$$"
work=$(mktemp -d /tmp/m365_backup_test.XXXXXX)
trap 'rm -rf "$work"; psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $src" -c "DROP DATABASE IF EXISTS $dst" >/dev/null 2>&1' EXIT
n=0 failed=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=$((failed + 1)); fi; }
sql() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }

echo "1..8"
sql -d postgres -c "CREATE DATABASE $src" -c "CREATE DATABASE $dst" >/dev/null
sql -d "$src" -c "SET client_min_messages = error" -c "CREATE EXTENSION m365_usernames" -f demo/load.sql >/dev/null 2>&1 &&
sql -d "$src" -f test/shell/lib/populate.sql >/dev/null
ok $? "a populated database: 1,500 usernames, 560 queued, edits, history, a reader, a snapshot"

"$PG_BIN/pg_dump" -Fc -d "$src" -f "$work/dump" 2>"$work/dump.err"
ok $? "pg_dump"
"$PG_BIN/pg_restore" -d "$dst" "$work/dump" 2>"$work/restore.err"
status=$?
[ $status = 0 ] || sed 's/^/# /' "$work/restore.err" | head -5
ok $status "pg_restore into a new database, without a single error"

digest() { sql -d "$1" -f test/shell/lib/data_digest.sql; }
a=$(digest "$src"); b=$(digest "$dst")
[ "$a" = "$b" ] || { echo "# source:   $a"; echo "# restored: $b"; }
[ "$a" = "$b" ]
ok $? "every username, sync flag, issued and reserved name, history row, school row and snapshot is the same"

sql -d "$dst" -c "SELECT m365.queue_missing_usernames()" >/dev/null
missing() { sql -d "$1" -c "SELECT count(*) FROM m365.student s WHERE NOT EXISTS (SELECT FROM m365.username u WHERE u.person_kind = 'student' AND u.person_id = s.id) AND NOT EXISTS (SELECT FROM m365.username_queue q WHERE q.person_kind = 'student' AND q.person_id = s.id)"; }
[ "$(missing "$dst")" = 0 ] && [ "$(missing "$src")" = 0 ]
ok $? "after queue_missing_usernames() everyone without a username is queued, as in the source"
made_src=$(sql -d "$src" -c "SELECT m365.generate_usernames()")
made_dst=$(sql -d "$dst" -c "SELECT m365.generate_usernames()")
[ "$made_src" = "$made_dst" ] && [ "$made_src" = 560 ]
ok $? "the job then makes the same 560 usernames in both ($made_src / $made_dst)"
[ "$(sql -d "$dst" -c "SELECT count(*) FROM m365.username_queue WHERE last_error IS NOT NULL")" = 1 ]
ok $? "and the name that yields nothing is queued with its reason again"
sql -d "$dst" -c "INSERT INTO m365.configuration (name) VALUES ('after restore')" -c "SELECT m365.set_sync(ARRAY[(SELECT max(id) FROM m365.username)], true)" >/dev/null
ok $? "identity sequences were restored: new rows get new ids"

[ "$failed" = 0 ]
