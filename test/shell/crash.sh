#!/usr/bin/env bash
# Crash safety: the backend running the job is killed (SIGKILL) in the middle of
# a large batch, then the cluster is shut down immediately in the middle of
# another; after each restart nothing was stored half and nothing was lost, and
# a last run gives every queued person exactly one username. Prints TAP.
# Needs the cluster of scripts/test (M365_CLUSTER) and root, as the tests run.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PG_BIN=/usr/lib/postgresql/15/bin
db=${PGDATABASE:-m365_test}
n=0 failed=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=$((failed + 1)); fi; }
sql() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }
wait_ready() { for _ in $(seq 1 60); do "$PG_BIN/pg_isready" -q && sql -c "SELECT 1" >/dev/null 2>&1 && return 0; sleep 0.5; done; return 1; }
# Waits until the job is working, and a little more, so that it is mid-batch.
job_pid() {
	for _ in $(seq 1 100); do
		pid=$(sql -c "SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT m365.generate_usernames()%' AND state = 'active' AND pid <> pg_backend_pid()")
		[ -n "$pid" ] && { sleep 1.5; echo "$pid"; return 0; }
		sleep 0.1
	done
	return 1
}

echo "1..9"
[ -n "${M365_CLUSTER:-}" ] || { echo "# M365_CLUSTER is not set: run me from scripts/test"; exit 1; }
cfg=$(( $(date +%s) % 100000 + 700000 ))
base=$(( cfg * 100000 ))  # room for $count ids per run: runs never collide
count=60000
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
# Waiting: in the queue, or in a bulk statement's deferred call (m365.queue_or_defer).
queued() { sql -c "SELECT (SELECT count(*) FROM m365.username_queue WHERE configuration_id = $cfg)
                        + (SELECT count(*) FROM m365.username_queue_deferred AS d, unnest(d.configuration_ids) AS c WHERE c = $cfg)"; }
stored() { sql -c "SELECT (SELECT count(*) FROM m365.username WHERE configuration_id = $cfg) + (SELECT count(*) FROM m365.issued_username WHERE configuration_id = $cfg)"; }
[ "$(queued)" = $count ]
ok $? "$count students waiting (enrolled in one statement: one deferred call)"

psql -X -q -d "$db" -c "SELECT m365.generate_usernames()" >/dev/null 2>&1 &
pid=$(job_pid)
[ -n "$pid" ] && kill -9 "$pid"
ok $? "the backend running the job is killed with SIGKILL mid-batch (pid ${pid:-none})"
wait
wait_ready
ok $? "the cluster recovers"
[ "$(queued)" = $count ] && [ "$(stored)" = 0 ]
ok $? "nothing of the killed run was stored, nothing was lost from the queue"

psql -X -q -d "$db" -c "SELECT m365.generate_usernames()" >/dev/null 2>&1 &
pid=$(job_pid)
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$M365_CLUSTER/data" -m immediate -w stop >/dev/null 2>&1
ok $? "the cluster is shut down immediately mid-batch"
wait
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$M365_CLUSTER/data" -l "$M365_CLUSTER/server.log" -w start >/dev/null 2>&1 && wait_ready
ok $? "and starts again (crash recovery)"
[ "$(queued)" = $count ] && [ "$(stored)" = 0 ]
ok $? "again nothing stored, nothing lost"

# (At least: the run serves every configuration, and others may have people waiting.)
[ "$(sql -c "SELECT m365.generate_usernames()")" -ge $count ]
ok $? "a last run makes all $count usernames"
[ "$(sql -c "SELECT count(*) = $count AND count(DISTINCT person_id) = $count AND count(DISTINCT local_part) = $count
               FROM m365.username WHERE configuration_id = $cfg")" = t ] &&
[ "$(sql -c "SELECT count(*) FROM m365.issued_username WHERE configuration_id = $cfg")" = $count ] && [ "$(queued)" = 0 ]
ok $? "every queued student has exactly one username, no name twice, the ledger agrees, the queue is empty"

sql -c "SELECT count(*) FROM m365.schedule_jobs()" >/dev/null
[ "$failed" = 0 ]
