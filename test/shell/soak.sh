#!/usr/bin/env bash
# Load: pgbench clients enrol students, add and remove staff (writing the
# application's own tables, attached to the extension), race each other (and
# the job) for the same usernames and toggle sync flags, while one more
# client runs the job every 2 seconds. Afterwards the invariants must hold
# and no client may have met an error other than "already in use".
# SOAK_SECONDS (default 120) and SOAK_CLIENTS (default 16) size it; the test
# command runs a short version. Prints TAP (run with prove).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PG_BIN=/usr/lib/postgresql/15/bin
seconds=${SOAK_SECONDS:-120} clients=${SOAK_CLIENTS:-16}
db="soak_$$"
work=$(mktemp -d /tmp/m365_soak_test.XXXXXX)
trap 'rm -rf "$work"; psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1' EXIT
source test/shell/lib/tap.sh
sql() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }

echo "1..13"
psql -X -q -d postgres -c "CREATE DATABASE $db" >/dev/null && sql -f test/soak/setup.sql >/dev/null 2>"$work/setup.err"
status=$?
[ $status = 0 ] || sed 's/^/# /' "$work/setup.err"
ok $status "a database with 2,000 students and 40 staff, their usernames made, two login roles"

# One client runs the job; the application's clients mix the four scripts.
"$PG_BIN/pgbench" -n -U soak_admin -c 1 -T "$seconds" -f test/soak/job.pgbench "$db" >"$work/job.out" 2>&1 &
job=$!
# A third of the way in, the application loads 10,000 students and their
# enrolments into its own tables, a statement each (a new school year).
( sleep $((seconds / 3)); psql -X -q -U soak_app -d "$db" -v ON_ERROR_STOP=1 >"$work/bulk.out" 2>&1 <<'SQL'
INSERT INTO app.leerling SELECT 90000000 + i, first_name, last_name FROM generate_series(1, 10000) AS i JOIN soak.name ON n = i % 64;
INSERT INTO app.inschrijving SELECT 90000000 + i, 90000000 + i, 1 + i % 3, CURRENT_DATE FROM generate_series(1, 10000) AS i;
SQL
echo "exit $?" >>"$work/bulk.out" ) &
bulk=$!
"$PG_BIN/pgbench" -n -U soak_app -c "$clients" -j 2 -T "$seconds" -r \
	-f test/soak/enrol.pgbench@4 -f test/soak/staff.pgbench@1 -f test/soak/edit.pgbench@4 -f test/soak/sync.pgbench@2 \
	"$db" >"$work/app.out" 2>&1
app_status=$?
wait $job
job_status=$?
wait $bulk
app_tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/app.out")
app_failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$work/app.out")
[ $app_status = 0 ] && [ "${app_tx:-0}" -gt 0 ] && [ "${app_failed:-0}" = 0 ]
status=$?
[ $status = 0 ] || sed 's/^/# /' "$work/app.out" | tail -20
ok $status "$clients application clients for $seconds s: $app_tx transactions ($(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$work/app.out" | head -1) tps), none failed"
job_runs=$(sql -c "SELECT count(*) FROM m365.job_run WHERE run_by = 'soak_admin' AND outcome = 'done'")
job_failed=$(sql -c "SELECT count(*) FROM m365.job_run WHERE run_by = 'soak_admin' AND outcome NOT IN ('done', 'skipped')")
[ $job_status = 0 ] && [ "$job_runs" -ge 2 ] && [ "$job_failed" = 0 ]
status=$?
[ $status = 0 ] || { sed 's/^/# /' "$work/job.out" | tail -5; sql -c "SELECT outcome, detail FROM m365.job_run WHERE outcome NOT IN ('done', 'skipped') LIMIT 3" | sed 's/^/# /'; }
ok $status "the job client ran the job (CALL) $job_runs times meanwhile, none failed, blocked or interrupted"

grep -q '^exit 0$' "$work/bulk.out"
status=$?
[ $status = 0 ] || sed 's/^/# /' "$work/bulk.out"
ok $status "meanwhile a bulk load of 10,000 enrolments in one statement"

sql -c "SELECT what, sqlstate, message FROM soak.unexpected LIMIT 5" >"$work/unexpected"
[ ! -s "$work/unexpected" ]
status=$?
[ $status = 0 ] || sed 's/^/# /' "$work/unexpected" >&2
ok $status "no client met an error other than \"already in use\" ($(sql -c "SELECT coalesce(string_agg(what || ': ' || c, ', '), 'none') FROM (SELECT what, count(*) AS c FROM soak.done WHERE what LIKE 'retryable%' GROUP BY what) AS r") retryable, retried by an application)"

read -r edited in_use <<<"$(sql -F ' ' -c "SELECT count(*) FILTER (WHERE what = 'username edited'), count(*) FILTER (WHERE what = 'already in use') FROM soak.done")"
[ "$edited" -gt 0 ] && [ "$in_use" -gt 0 ]
ok $? "the edits raced: $edited renamed, $in_use answered \"already in use\""

final=$(sql -c "SELECT m365.generate_usernames_in_transaction()")
[ "$(sql -c "SELECT count(*) FROM m365.username_request")" = 0 ]
ok $? "a final run ($final made) leaves the log empty"

[ "$(sql -c "SELECT count(*) FROM (SELECT configuration_id, local_part FROM m365.username GROUP BY 1, 2 HAVING count(*) > 1) AS d")" = 0 ] &&
	[ "$(sql -c "SELECT count(*) FROM (SELECT configuration_id, person_kind, person_id FROM m365.username GROUP BY 1, 2, 3 HAVING count(*) > 1) AS d")" = 0 ]
ok $? "every username is unique in its configuration, and nobody has two"

[ "$(sql -c "SELECT count(*) FROM m365.username AS u JOIN m365.issued_username AS i USING (configuration_id, local_part)
              WHERE i.person_kind <> u.person_kind OR i.person_id <> u.person_id")" = 0 ] &&
	[ "$(sql -c "SELECT count(*) FROM m365.username_history AS h
                 WHERE h.field = 'username'
                   AND NOT EXISTS (SELECT FROM m365.username AS u
                                    WHERE u.configuration_id = h.configuration_id AND u.local_part = m365.local_part_key(h.old_value)
                                      AND (u.person_kind, u.person_id) = (h.person_kind, h.person_id))
                   AND NOT EXISTS (SELECT FROM m365.issued_username AS i
                                    WHERE i.configuration_id = h.configuration_id AND i.local_part = m365.local_part_key(h.old_value)
                                      AND (i.person_kind, i.person_id) = (h.person_kind, h.person_id))")" = 0 ]
ok $? "every name edited away is still its owner's (in the ledger, or taken back): no name was handed to a second person"

sql -c "SELECT entity, key, problem FROM m365.source_drift() LIMIT 5" >"$work/drift"
[ ! -s "$work/drift" ] && [ "$(sql -c "SELECT (SELECT count(*) FROM app.leerling) = (SELECT count(*) FROM m365.student)
                                          AND (SELECT count(*) FROM app.inschrijving) = (SELECT count(*) FROM m365.enrolment)
                                          AND (SELECT count(*) FILTER (WHERE actief) FROM app.personeel) = (SELECT count(*) FILTER (WHERE active) FROM m365.staff)")" = t ]
status=$?
[ $status = 0 ] || sed 's/^/# /' "$work/drift"
ok $status "the extension's copies equal the application's tables: source_drift() is empty ($(sql -c "SELECT count(*) FROM app.leerling") students)"

missing=$(sql -c "SELECT (SELECT count(*) FROM app.leerling AS s WHERE NOT EXISTS (SELECT FROM m365.username AS u WHERE u.person_kind = 'student' AND u.person_id = s.leerling_nr))
                       + (SELECT count(*) FROM app.personeel AS s WHERE s.actief AND NOT EXISTS (SELECT FROM m365.username AS u WHERE u.person_kind = 'staff' AND u.person_id = s.personeelslid_nr))")
ok "$missing" "every student and every active staff member of the application's tables has a username ($(sql -c "SELECT count(*) FROM m365.username") in all)"

read -r done_edits history_edits <<<"$(sql -F ' ' -c "SELECT (SELECT count(*) FROM soak.done WHERE what = 'username edited'),
       (SELECT count(*) FROM m365.username_history WHERE changed_by = 'soak_app' AND field = 'username')")"
[ "$done_edits" = "$history_edits" ]
ok $? "an audit row for every rename ($history_edits)"
read -r done_sync history_sync <<<"$(sql -F ' ' -c "SELECT (SELECT coalesce(sum(n), 0) FROM soak.done WHERE what = 'sync changed'),
       (SELECT count(*) FROM m365.username_history WHERE changed_by = 'soak_app' AND field = 'sync')")"
[ "$done_sync" = "$history_sync" ]
ok $? "an audit row for every sync flag changed ($history_sync)"

sed -n '/latency average/p; /statement latencies/,$p' "$work/app.out" | sed 's/^/# /' | head -20
[ "$failed" = 0 ]
