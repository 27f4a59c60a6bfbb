#!/usr/bin/env bash
# Crash safety: the backend running the job (CALL m365.generate_usernames(), a
# transaction per chunk of 50,000) is killed (SIGKILL) after its first chunk
# committed, in the middle of the next; then the cluster is shut down
# immediately in the middle of another run. After each restart the committed
# chunks stay, the rest is still in the log, nobody has two usernames and the
# ledger is untouched; a last run gives everyone exactly one. Prints TAP.
# Needs the cluster of scripts/test (M365_CLUSTER) and root, as the tests run.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PG_BIN=/usr/lib/postgresql/15/bin
db=${PGDATABASE:-m365_test}
source test/shell/lib/tap.sh
sql() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }
wait_ready() { for _ in $(seq 1 60); do "$PG_BIN/pg_isready" -q && sql -c "SELECT 1" >/dev/null 2>&1 && return 0; sleep 0.5; done; return 1; }
# Waits until the job has committed more than $1 usernames of the test's
# configuration, and a little more, so that it is in the middle of a chunk.
job_pid() {
	for _ in $(seq 1 600); do
		pid=$(sql -c "SELECT pid FROM pg_stat_activity WHERE query LIKE 'CALL m365.generate_usernames()%' AND state = 'active' AND pid <> pg_backend_pid()")
		[ -n "$pid" ] && [ "$(stored)" -gt "$1" ] && { sleep 1; echo "$pid"; return 0; }
		sleep 0.1
	done
	return 1
}

echo "1..9"
[ -n "${M365_CLUSTER:-}" ] || { echo "# M365_CLUSTER is not set: run me from scripts/test"; exit 1; }
cfg=$(( $(date +%s) % 100000 + 700000 ))
base=$(( cfg * 100000 ))  # room for $count ids per run: runs never collide
count=120000
sql >/dev/null <<SQL
SELECT m365.unschedule_jobs();
INSERT INTO m365.configuration (id, name) VALUES ($cfg, 'crash test $cfg');
INSERT INTO m365.school (id, name, configuration_id) VALUES ($cfg, 'School', $cfg);
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain) VALUES ($cfg, $cfg, 'Campus', $cfg, 'crash.be');
CREATE TEMP TABLE p (n serial, first_name text, last_name text);
\copy p (first_name, last_name) FROM 'data/persons.csv' CSV HEADER
INSERT INTO m365.student (id, first_name, last_name) SELECT $base + n, first_name, last_name FROM p WHERE n <= $count;
INSERT INTO m365.enrolment (id, student_id, location_id, start_date) SELECT $base + n, $base + n, $cfg, CURRENT_DATE FROM p WHERE n <= $count;
SQL
stored() { sql -c "SELECT count(*) FROM m365.username WHERE configuration_id = $cfg"; }
logged() { sql -c "SELECT count(DISTINCT person_id) FROM m365.username_request
                    WHERE person_kind = 'student' AND person_id BETWEEN $base + 1 AND $base + $count"; }
# Nobody lost: every student has a username or is still in the log.
covered() { sql -c "SELECT count(*) FROM m365.student AS s
                     WHERE s.id BETWEEN $base + 1 AND $base + $count
                       AND (EXISTS (SELECT FROM m365.username AS u WHERE u.configuration_id = $cfg
                                      AND u.person_kind = 'student' AND u.person_id = s.id)
                            OR EXISTS (SELECT FROM m365.username_request AS r
                                        WHERE r.person_kind = 'student' AND r.person_id = s.id))"; }
# Nobody twice, no name twice, the ledger untouched (no name left its owner).
sound() { sql -c "SELECT count(*) = count(DISTINCT person_id) AND count(*) = count(DISTINCT local_part)
                         AND (SELECT count(*) FROM m365.issued_username WHERE configuration_id = $cfg) = 0
                    FROM m365.username WHERE configuration_id = $cfg"; }
[ "$(logged)" = $count ]
ok $? "$count students in the log (enrolled in one statement)"

psql -X -q -d "$db" -c "CALL m365.generate_usernames()" >/dev/null 2>&1 &
pid=$(job_pid 0)
[ -n "$pid" ] && kill -9 "$pid"
ok $? "the backend running the job is killed with SIGKILL after its first chunk committed (pid ${pid:-none})"
wait
wait_ready
ok $? "the cluster recovers"
after_kill=$(stored)
[ "$after_kill" -ge 50000 ] && [ "$after_kill" -lt $count ] && [ "$(covered)" = $count ] && [ "$(sound)" = t ]
ok $? "the committed chunk stayed ($after_kill usernames), the rest is still in the log, nobody twice, the ledger untouched"

psql -X -q -d "$db" -c "CALL m365.generate_usernames()" >/dev/null 2>&1 &
pid=$(job_pid "$after_kill")
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$M365_CLUSTER/data" -m immediate -w stop >/dev/null 2>&1
ok $? "the cluster is shut down immediately in the middle of another run"
wait
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$M365_CLUSTER/data" -l "$M365_CLUSTER/server.log" -w start >/dev/null 2>&1 && wait_ready
ok $? "and starts again (crash recovery)"
[ "$(stored)" -ge "$after_kill" ] && [ "$(covered)" = $count ] && [ "$(sound)" = t ]
ok $? "again: what was committed stayed ($(stored) usernames), the rest is in the log, nobody twice"

sql -c "CALL m365.generate_usernames()" >/dev/null &&
	[ "$(sql -c "SELECT outcome FROM m365.job_run ORDER BY id DESC LIMIT 1")" = done ] &&
	[ "$(sql -c "SELECT count(*) FROM m365.job_run WHERE outcome = 'interrupted'")" -ge 1 ]
ok $? "a last run is done; the killed runs are recorded as interrupted"
[ "$(stored)" = $count ] && [ "$(logged)" = 0 ] && [ "$(sound)" = t ]
ok $? "every student has exactly one username, no name twice, the ledger untouched, the log empty"

sql -c "SELECT count(*) FROM m365.schedule_jobs()" >/dev/null
[ "$failed" = 0 ]
