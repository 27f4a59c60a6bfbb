#!/usr/bin/env bash
# pg_cron and backups. CREATE EXTENSION changes nothing outside the extension
# (no job, no role, no right, no setting), and a database with pg_cron, the
# extension (fresh, or installed as 0.2.0 and updated) and a job of its own,
# dumped with pg_dump -Fc and restored with pg_restore --exit-on-error into a
# database of the same name, ends with every job, id, name and command as
# before. A schema m365 that already exists is never adopted. pg_cron only
# lives in the database named by cron.database_name, so this test runs its own
# throwaway cluster (scripts/lib.sh, cron.database_name = 'school', port
# $CRON_RESTORE_PGPORT, default 54399). Prints TAP (run with prove).
# M365_VERSION=0.2.0 installs that version instead of the default one in the
# fresh-install cases.
#
# On 0.2.0 (M365_VERSION=0.2.0, with 0.2.0's control file: schema = m365) it
# fails. Seen:
#   not ok 1 - CREATE EXTENSION schedules no pg_cron job (cron.job holds: 1|m365_generate_usernames|*/15 * * * *|...
#              2|m365_sds_snapshot|0 */12 * * *|SELECT m365.take_sds_snapshots() )
#   # new:  cron job 1 m365_generate_usernames */15 * * * * SELECT m365.generate_usernames_in_transaction()
#   # new:  cron job 2 m365_sds_snapshot 0 */12 * * * SELECT m365.take_sds_snapshots()
#   # new:  membership m365_app -> m365_admin
#   # new:  role m365_admin ... login=false    # new:  role m365_app ...    # new:  role m365_sds_reader ...
#   not ok 2 - CREATE EXTENSION changes nothing outside the extension (roles, rights, settings, other schemas, jobs)
#   # 9; 2615 16423 SCHEMA - m365 postgres
#   not ok 5 - pg_restore -l has no separate SCHEMA m365 entry (the schema is the extension's)
#   # pg_restore: error: COPY failed for table "job": ERROR:  duplicate key value violates unique constraint "job_pkey"
#   # DETAIL:  Key (jobid)=(1) already exists.
#   not ok 6 - fresh install: pg_dump -Fc, DROP and CREATE DATABASE school, pg_restore --exit-on-error succeeds
#     (the restored CREATE EXTENSION found pg_cron already restored and scheduled its jobs again)
#   # before only: 5|nightly-analyze|0 3 * * *|ANALYZE|school|postgres|t
#   not ok 7 - fresh install: every pg_cron job is back ... (3 jobs)
#   not ok 8 - fresh install: the same 2060 usernames
#   not ok 9 - fresh install: m365.generate_usernames() runs after the restore ...
#   not ok 11..14 - 0.2.0 updated to 0.3.0 (then the same code as 0.2.0): the same duplicate jobid (1) on COPY job
#   not ok 15 - CREATE EXTENSION m365_usernames fails when a schema m365 exists (owned by another role): it adopted it
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/lib.sh
KEEP_CLUSTER=0  # this cluster is the test's own: it always goes away
work=$(mktemp -d /tmp/m365_cron_restore_test.XXXXXX)
started=0
cleanup() {
	[ "$started" = 1 ] || sed 's/^/# /' "$work/cluster.log" >&2
	m365_cluster_stop
	rm -rf "$work"
}
source test/shell/lib/tap.sh
skip() { n=$((n + 1)); echo "ok $n # skip $1"; }
sql() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
version_clause=""
[ -z "${M365_VERSION:-}" ] || version_clause=" VERSION '$M365_VERSION'"

echo "1..17"
trap cleanup EXIT
M365_PGPORT=${CRON_RESTORE_PGPORT:-54399} m365_cluster_start school 2>"$work/cluster.log"
trap cleanup EXIT  # replaces lib.sh's trap; cleanup stops the cluster too
started=1
default_version=$(sql -d postgres -c "SELECT default_version FROM pg_available_extensions WHERE name = 'm365_usernames'")

# What the extension must leave alone: roles, memberships, rights and settings
# of databases, default privileges, other schemas and their objects with their
# rights, event triggers and casts that are not its members, other
# extensions, pg_cron's jobs. One line per fact, sorted.
outside() {
	sql -d school <<'SQL'
WITH own AS (SELECT oid FROM pg_namespace WHERE nspname IN ('m365', 'm365_sds', 'm365_work')),
member AS (SELECT d.classid, d.objid FROM pg_depend AS d JOIN pg_extension AS e ON e.oid = d.refobjid
            WHERE e.extname = 'm365_usernames' AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e')
SELECT fact FROM (
    SELECT 'role ' || rolname || ' super=' || rolsuper || ' inherit=' || rolinherit || ' createrole=' || rolcreaterole
           || ' createdb=' || rolcreatedb || ' login=' || rolcanlogin || ' bypassrls=' || rolbypassrls AS fact FROM pg_roles
    UNION ALL SELECT 'membership ' || roleid::regrole || ' -> ' || member::regrole FROM pg_auth_members
    UNION ALL SELECT 'database ' || datname || ' owner=' || datdba::regrole || ' acl=' || coalesce(datacl::text, '-') FROM pg_database
    UNION ALL SELECT 'setting ' || setdatabase || '/' || setrole || ' ' || setconfig::text FROM pg_db_role_setting
    UNION ALL SELECT 'default acl ' || defaclrole::regrole || ' ' || defaclnamespace || ' ' || defaclobjtype::text || ' ' || defaclacl::text FROM pg_default_acl
    UNION ALL SELECT 'schema ' || nspname || ' owner=' || nspowner::regrole || ' acl=' || coalesce(nspacl::text, '-')
      FROM pg_namespace WHERE oid NOT IN (SELECT oid FROM own) AND nspname !~ '^pg_(toast_)?temp_'
    UNION ALL SELECT 'relation ' || c.oid::regclass || ' owner=' || c.relowner::regrole || ' acl=' || coalesce(c.relacl::text, '-')
      FROM pg_class AS c JOIN pg_namespace AS s ON s.oid = c.relnamespace
     WHERE c.relnamespace NOT IN (SELECT oid FROM own) AND s.nspname <> 'pg_toast' AND s.nspname !~ '^pg_(toast_)?temp_'
       AND c.oid NOT IN (SELECT objid FROM member WHERE classid = 'pg_class'::regclass)
    UNION ALL SELECT 'function ' || p.oid::regprocedure || ' owner=' || p.proowner::regrole || ' acl=' || coalesce(p.proacl::text, '-')
      FROM pg_proc AS p WHERE p.pronamespace NOT IN (SELECT oid FROM own)
       AND p.oid NOT IN (SELECT objid FROM member WHERE classid = 'pg_proc'::regclass)
    UNION ALL SELECT 'type ' || t.oid::regtype FROM pg_type AS t JOIN pg_namespace AS s ON s.oid = t.typnamespace
     WHERE t.typnamespace NOT IN (SELECT oid FROM own) AND s.nspname <> 'pg_toast' AND s.nspname !~ '^pg_(toast_)?temp_'
       AND t.oid NOT IN (SELECT objid FROM member WHERE classid = 'pg_type'::regclass)
    UNION ALL SELECT 'event trigger ' || evtname FROM pg_event_trigger
     WHERE oid NOT IN (SELECT objid FROM member WHERE classid = 'pg_event_trigger'::regclass)
    UNION ALL SELECT 'cast ' || castsource::regtype || ' -> ' || casttarget::regtype FROM pg_cast
     WHERE oid NOT IN (SELECT objid FROM member WHERE classid = 'pg_cast'::regclass)
    UNION ALL SELECT 'extension ' || extname || ' ' || extversion FROM pg_extension WHERE extname <> 'm365_usernames'
    UNION ALL SELECT 'cron job ' || j.jobid || ' ' || j.jobname || ' ' || j.schedule || ' ' || j.command FROM cron.job AS j
) AS facts ORDER BY fact;
SQL
}
jobs() { sql -d school -c "SELECT jobid, jobname, schedule, command, database, username, active FROM cron.job ORDER BY jobid" 2>/dev/null; }
usernames() { sql -d school -c "SELECT count(*) FROM m365.username" 2>/dev/null; }
fill() {  # the demo data, its usernames, the extension's jobs and one of the database's own,
	# a login role with the app level (0.2.0: a member of m365_app) and an SDS reader
	sql -d school -c "SET client_min_messages = error" -f test/shell/lib/school_data.sql \
		-c "DO \$\$ BEGIN IF to_regprocedure('m365.generate_usernames_in_transaction()') IS NOT NULL THEN PERFORM m365.generate_usernames_in_transaction(); ELSE PERFORM m365.generate_usernames(); END IF; END \$\$" \
		-c "SELECT m365.schedule_jobs()" \
		-c "SELECT cron.schedule('nightly-analyze', '0 3 * * *', 'ANALYZE')" \
		-c "DO \$\$ BEGIN IF to_regprocedure('m365.grant_access(regrole,text)') IS NOT NULL THEN PERFORM m365.grant_access('restore_app', 'app'); ELSE GRANT m365_app TO restore_app; END IF; END \$\$" \
		-c "SELECT m365.set_location_sync(11, true)" -c "SELECT m365.create_sds_reader('restore_reader', 1)" >/dev/null 2>"$work/fill.err"
	local status=$?
	[ $status = 0 ] || sed 's/^/# /' "$work/fill.err" | head -5
	return $status
}
recreate() { sql -d postgres -c "DROP DATABASE school WITH (FORCE)" -c "CREATE DATABASE school" >/dev/null; }

# Dumps school, drops it, creates it again empty, restores it; checks that the
# restore succeeds and the jobs, the usernames and the job are as before.
dump_and_restore() {  # label
	local jobs_before count_before status
	jobs_before=$(jobs)
	count_before=$(usernames)
	"$PG_BIN/pg_dump" -Fc -d school -f "$work/dump" 2>"$work/dump.err" &&
		recreate &&
		"$PG_BIN/pg_restore" --exit-on-error -d school "$work/dump" 2>"$work/restore.err"
	status=$?
	[ $status = 0 ] || sed 's/^/# /' "$work/dump.err" "$work/restore.err" | head -8
	ok $status "$1: pg_dump -Fc, DROP and CREATE DATABASE school, pg_restore --exit-on-error succeeds"
	[ -n "$jobs_before" ] && [ "$(jobs)" = "$jobs_before" ]
	status=$?
	[ $status = 0 ] || diff <(echo "$jobs_before") <(jobs) | sed -n -e 's/^< /# before only: /p' -e 's/^> /# after only:  /p' | head -12
	ok $status "$1: every pg_cron job is back with its id, name, schedule, command, database, user and state ($(wc -l <<<"$jobs_before") jobs)"
	[ -n "$count_before" ] && [ "$(usernames)" = "$count_before" ]
	ok $? "$1: the same $count_before usernames"
	sql -d school -c "INSERT INTO m365.student (id, first_name, last_name) VALUES (77777, 'Na', 'Herstel')" \
		-c "INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (77777, 77777, 11, CURRENT_DATE)" >/dev/null 2>"$work/job.err" &&
		[ "$(sql -d school -c "SELECT m365.generate_usernames_in_transaction()" 2>"$work/job.err")" = 1 ]
	status=$?
	[ $status = 0 ] || sed 's/^/# /' "$work/job.err" | head -3
	ok $status "$1: m365.generate_usernames() runs after the restore and makes the new student's username"
	# Rights given after CREATE EXTENSION (or by an update) are dumped and restored:
	# an update that recorded them as initial privileges would lose them here.
	[ "$(sql -U restore_app -d school -c "SELECT count(*) > 0 FROM m365.student_usernames(11)" 2>"$work/rights.err")" = t ] &&
		[ "$(sql -U restore_reader -d school -c "SELECT count(*) > 0 FROM m365_sds.users" 2>>"$work/rights.err")" = t ]
	status=$?
	[ $status = 0 ] || sed 's/^/# /' "$work/rights.err" | head -3
	ok $status "$1: the role with the app level and the SDS reader still read after the restore"
}

# 1. A fresh install in the pg_cron database.
sql -d postgres -c "CREATE ROLE restore_app LOGIN" >/dev/null
sql -d school -c "CREATE EXTENSION pg_cron" >/dev/null
before=$(outside)
sql -d school -c "SET client_min_messages = error" -c "CREATE EXTENSION m365_usernames$version_clause" >/dev/null 2>"$work/create.err" ||
	{ sed 's/^/# /' "$work/create.err"; echo "Bail out! CREATE EXTENSION m365_usernames$version_clause failed"; exit 1; }
held=$(sql -d school -c "SELECT jobid, jobname, schedule, command FROM cron.job")
[ -z "$held" ]
ok $? "CREATE EXTENSION schedules no pg_cron job${held:+ (cron.job holds: $(tr '\n' ' ' <<<"$held"))}"
diff <(echo "$before") <(outside) >"$work/outside.diff"
status=$?
[ $status = 0 ] || sed -n -e 's/^< /# gone: /p' -e 's/^> /# new:  /p' "$work/outside.diff" | head -12
ok $status "CREATE EXTENSION changes nothing outside the extension (roles, rights, settings, other schemas, jobs)"

fill
ok $? "demo data, m365.generate_usernames(), m365.schedule_jobs() and a job of the database's own (nightly-analyze)"
[ "$(sql -d school -c "SELECT count(*) FROM cron.job WHERE jobname = 'nightly-analyze'")" = 1 ] &&
	[ "$(sql -d school -c "SELECT count(*) FROM cron.job WHERE jobname <> 'nightly-analyze' AND database = 'school'")" -ge 2 ]
ok $? "cron.job holds the extension's jobs and nightly-analyze"
"$PG_BIN/pg_dump" -Fc -d school -f "$work/dump" && "$PG_BIN/pg_restore" -l "$work/dump" >"$work/toc"
! grep -E '^[0-9]+; [0-9]+ [0-9]+ SCHEMA - m365 ' "$work/toc" >"$work/schema.toc"
status=$?
[ $status = 0 ] || sed 's/^/# /' "$work/schema.toc"
ok $status "pg_restore -l has no separate SCHEMA m365 entry (the schema is the extension's)"
dump_and_restore "fresh install"

# 2. Installed as 0.2.0, updated to the default version, then dumped and restored.
if [ "$default_version" = 0.2.0 ]; then
	for _ in 1 2 3 4 5 6; do skip "the default version is 0.2.0: no update to restore"; done
else
	{
		recreate &&
			sql -d school -c "SET client_min_messages = error" -c "CREATE EXTENSION pg_cron" \
				-c "CREATE EXTENSION m365_usernames VERSION '0.2.0'" >/dev/null &&
			fill &&
			sql -d school -c "SET client_min_messages = error" -c "ALTER EXTENSION m365_usernames UPDATE" \
				-c "SELECT m365.schedule_jobs()" >/dev/null &&
			[ "$(sql -d school -c "SELECT extversion FROM pg_extension WHERE extname = 'm365_usernames'")" = "$default_version" ] &&
			[ "$(sql -d school -c "SELECT command FROM cron.job WHERE jobname = m365.job_name('m365_generate_usernames')")" = "CALL m365.generate_usernames()" ]
	} 2>"$work/update.err"
	status=$?
	[ $status = 0 ] || sed 's/^/# /' "$work/update.err" | head -5
	ok $status "0.2.0 installed and filled, ALTER EXTENSION m365_usernames UPDATE to $default_version (the job's command becomes CALL), m365.schedule_jobs()"
	if [ $status = 0 ]; then
		dump_and_restore "0.2.0 updated to $default_version"
	else
		for _ in 1 2 3 4 5; do ok 1 "0.2.0 updated to $default_version: no dump and restore, the update failed"; done
	fi
fi

# 3. A schema m365 that exists already, owned by another role, is not adopted.
sql -d postgres -c "CREATE ROLE squatter" -c "CREATE DATABASE squatted" >/dev/null &&
	sql -d squatted -c "CREATE SCHEMA m365 AUTHORIZATION squatter" >/dev/null
sql -d squatted -c "SET client_min_messages = error" -c "CREATE EXTENSION m365_usernames$version_clause" >/dev/null 2>"$work/squat.err"
status=$?
[ $status != 0 ] && [ "$(sql -d squatted -c "SELECT count(*) FROM pg_extension WHERE extname = 'm365_usernames'")" = 0 ]
ok $? "CREATE EXTENSION m365_usernames fails when a schema m365 exists (owned by another role)$([ $status = 0 ] && echo ": it adopted it")"
[ $status = 0 ] || sed 's/^/# /' "$work/squat.err" | head -2

[ "$failed" = 0 ]
