#!/usr/bin/env bash
# Backups: pg_dump a populated database, restore it into a new one, and compare
# every username, flag, ledger, reserved name, history row and school row.
# The log is derived state: restoring the school data logs everyone again, and
# the job then makes the same usernames as in the source, and creates or
# changes none when nothing was waiting. Prints TAP (run with prove).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PG_BIN=/usr/lib/postgresql/15/bin
src="backup_src_$$" dst="backup_dst_$$" again="backup_again_$$" parallel="backup_parallel_$$"
work=$(mktemp -d /tmp/m365_backup_test.XXXXXX)
trap 'rm -rf "$work"; psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $src" -c "DROP DATABASE IF EXISTS $dst" -c "DROP DATABASE IF EXISTS $again" -c "DROP DATABASE IF EXISTS $parallel" >/dev/null 2>&1' EXIT
source test/shell/lib/tap.sh
sql() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }

echo "1..16"
sql -d postgres -c "CREATE DATABASE $src" -c "CREATE DATABASE $dst" -c "CREATE DATABASE $again" >/dev/null
sql -d "$src" -c "SET client_min_messages = error" -c "CREATE EXTENSION m365_usernames" -f test/shell/lib/school_data.sql >/dev/null 2>&1 &&
sql -d "$src" -f test/shell/lib/populate.sql >/dev/null &&
	# A held username (an id back with other names) and a departed person.
	sql -d "$src" >/dev/null <<'SQL'
CREATE TEMP TABLE two AS SELECT person_id FROM m365.username WHERE person_kind = 'student' ORDER BY person_id LIMIT 2;
CREATE TEMP TABLE gone AS SELECT s.*, e.location_id, e.start_date FROM m365.student AS s JOIN m365.enrolment AS e ON e.student_id = s.id
 WHERE s.id IN (SELECT person_id FROM two);
DELETE FROM m365.enrolment WHERE student_id IN (SELECT person_id FROM two);
DELETE FROM m365.student WHERE id IN (SELECT person_id FROM two);
INSERT INTO m365.student (id, first_name, last_name) SELECT id, 'Iemand', 'Anders' FROM gone WHERE id = (SELECT min(person_id) FROM two);
SQL
ok $? "a populated database: 1,500 usernames, 560 queued, edits, history, a reader, a snapshot, a held username, a departed person"

# A forgotten person (issue 16): made, synced, recorded, renamed, deleted by
# the school, then forgotten. Their names are found nowhere in a dump; the
# restored database still never hands their usernames to anyone else.
sql -d "$src" >/dev/null <<'SQL'
INSERT INTO m365.student (id, first_name, last_name) VALUES (99998, 'Xylofiena', 'Quackenboschx');
INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (99998, 99998, 11, CURRENT_DATE - 1);
-- (Its username as the job makes it, without a run: 560 others stay waiting.)
INSERT INTO m365.username (configuration_id, person_kind, person_id, username, sync, base, format)
VALUES (1, 'student', 99998, 'quackenboschx.xylofiena', true, 'quackenboschx.xylofiena', 'naam.voornaam');
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT m365_sds.record_feed('/srv/sds/test', 1);
COMMIT;
SELECT m365.set_username((SELECT id FROM m365.username WHERE person_kind = 'student' AND person_id = 99998), 'x.quackenboschx');
DELETE FROM m365.enrolment WHERE student_id = 99998;
DELETE FROM m365.student WHERE id = 99998;
-- (The export that takes them out of SDS comes first.)
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT m365_sds.record_feed('/srv/sds/test', 1);
COMMIT;
SELECT m365.forget_person('student', 99998);
SQL
ok $? "a person forgotten: made, synced, recorded, renamed, deleted by the school, taken out of the feed, forgotten"
# A tenant imported (issue 17): its accounts reserved, one adopted by a
# pupil who had a username (renamed, audited).
sql -d "$src" >/dev/null <<'SQL'
CREATE TEMP TABLE pupil AS
SELECT u.person_id, (SELECT d FROM m365.accepted_domains(1) AS d ORDER BY d LIMIT 1) AS domain
  FROM m365.username AS u WHERE u.configuration_id = 1 AND u.person_kind = 'student' ORDER BY u.person_id OFFSET 10 LIMIT 1;
SELECT * FROM m365.import_tenant_accounts(1, (SELECT E'userPrincipalName,givenName,surname,employeeId\n'
                                                     || 'oud.account@' || domain || ',Oud,Account,student-' || person_id || E'\n'
                                                     || 'vrij.account@' || domain || E',Vrij,Account,\n' FROM pupil));
SELECT outcome FROM m365.adopt_usernames(1, '{student}', ARRAY[(SELECT person_id FROM pupil)],
                                         ARRAY[(SELECT 'oud.account@' || domain FROM pupil)]) WHERE outcome = 'done';
SQL
[ "$(sql -d "$src" -c "SELECT count(*) FROM m365.tenant_adoption") $(sql -d "$src" -c "SELECT m365.username_is_taken(1, 'vrij.account')")" = "1 t" ]
ok $? "a tenant imported: one account kept from everyone, one adopted by a pupil"
"$PG_BIN/pg_dump" -d "$src" 2>/dev/null | grep -ci 'xylofiena\|quackenboschx' >"$work/found"
[ "$(cat "$work/found")" = 0 ]
ok $? "pg_dump holds neither their names nor a username made of them ($(cat "$work/found") lines)"

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
held() { sql -d "$1" -c "SELECT concat_ws(' / ', (SELECT string_agg(h::text, ',' ORDER BY username_id) FROM m365.username_hold AS h),
                                           (SELECT string_agg(concat_ws(' ', person_kind, person_id, first_name, last_name), ',' ORDER BY person_id)
                                              FROM m365.departed_person))"; }
[ -n "$(held "$src")" ] && [ "$(held "$src")" = "$(held "$dst")" ] &&
	[ "$(sql -d "$dst" -c "SELECT count(*) FROM m365.username_hold")" = 1 ] && [ "$(sql -d "$dst" -c "SELECT count(*) FROM m365.departed_person")" = 1 ]
ok $? "the held username and the departed person are restored as they were (the restore's inserts hold nothing more)"
[ "$(sql -d "$dst" -c "SELECT m365.username_is_taken(1, 'quackenboschx.xylofiena') AND m365.username_is_taken(1, 'x.quackenboschx') AND m365.username_is_taken(1, 'vrij.account')")" = t ]
ok $? "restored: the forgotten person's usernames and the tenant's account are still never handed to anyone else (the key, the hashes and the accounts came along)"

missing() { sql -d "$1" -c "SELECT count(*) FROM m365.student s WHERE NOT EXISTS (SELECT FROM m365.username u WHERE u.person_kind = 'student' AND u.person_id = s.id) AND NOT EXISTS (SELECT FROM m365.username_request q WHERE q.person_kind = 'student' AND q.person_id = s.id)"; }
[ "$(missing "$dst")" = 0 ] && [ "$(missing "$src")" = 0 ]
ok $? "the restore logged the people again: everyone without a username is in the log, as in the source"
names() { sql -d "$1" -c "SELECT md5(string_agg(concat_ws(' ', configuration_id, person_kind, person_id, username), '|'
                                                 ORDER BY configuration_id, person_kind, person_id)) FROM m365.username"; }
made() { sql -d "$1" -c "CALL m365.generate_usernames()" >/dev/null && sql -d "$1" -c "SELECT created FROM m365.job_run ORDER BY id DESC LIMIT 1"; }
made_src=$(made "$src"); made_dst=$(made "$dst")
[ "$made_src" = "$made_dst" ] && [ "$made_src" = 560 ] && [ "$(names "$src")" = "$(names "$dst")" ]
ok $? "the job then makes the same 560 usernames in both ($made_src / $made_dst), every restored one unchanged"
[ "$(sql -d "$dst" -c "SELECT count(*) FROM m365.username_failure")" = 1 ] && [ "$(sql -d "$dst" -c "SELECT count(*) FROM m365.username_request")" = 0 ]
ok $? "the name that yields nothing is a failure with its reason again, and the log is drained"

# Nothing waiting in the source: the rows the restore logs are drained
# without creating or changing a single username.
"$PG_BIN/pg_dump" -Fc -d "$src" -f "$work/dump2" 2>>"$work/dump.err" && "$PG_BIN/pg_restore" -d "$again" "$work/dump2" 2>>"$work/restore.err"
ok $? "a second dump, taken with nothing waiting, restores"
logged=$(sql -d "$again" -c "SELECT count(*) FROM m365.username_request")
before=$(digest "$again")
[ "$logged" -gt 2000 ] && [ "$(made "$again")" = 0 ] && [ "$(digest "$again")" = "$before" ] && [ "$before" = "$(digest "$src")" ] &&
	[ "$(sql -d "$again" -c "SELECT count(*) FROM m365.username_request")" = 0 ]
ok $? "the run drains the $logged rows the restore logged: no username created or changed, the log empty"
sql -d "$dst" -c "INSERT INTO m365.configuration (name) VALUES ('after restore')" -c "SELECT m365.set_sync(ARRAY[(SELECT max(id) FROM m365.username)], true)" >/dev/null
ok $? "identity sequences were restored: new rows get new ids"

# A parallel restore (pg_restore -j) loads table data without ordering it by
# the foreign keys between the extension's tables (its COPYs failed, rows
# lost); docs/backup.md restores everything else in parallel and the
# extension's data after it, in the dump's order.
sql -d postgres -c "CREATE DATABASE $parallel" >/dev/null &&
	"$PG_BIN/pg_restore" -l "$work/dump" >"$work/toc" &&
	grep -v ' TABLE DATA m365 ' "$work/toc" >"$work/toc.parallel" && grep ' TABLE DATA m365 ' "$work/toc" >"$work/toc.serial" &&
	"$PG_BIN/pg_restore" -j 4 -L "$work/toc.parallel" -d "$parallel" "$work/dump" 2>>"$work/restore.err" &&
	"$PG_BIN/pg_restore" -L "$work/toc.serial" -d "$parallel" "$work/dump" 2>>"$work/restore.err" &&
	[ "$(digest "$parallel")" = "$a" ]
ok $? "the documented parallel restore (-j 4, then the extension's data in order) restores every row"

[ "$failed" = 0 ]
