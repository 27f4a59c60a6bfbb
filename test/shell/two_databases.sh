#!/usr/bin/env bash
# Two databases, two installs: no role carries rights from one database's
# install into another's. In database A the login roles app_one (access 'app'),
# admin_one (access 'admin') and an SDS reader of A's configuration; in B
# app_two and admin_two. Connected to B as each of A's roles, every read and
# every write must be refused with 42501 and B's data must stay as it was;
# the same roles keep working in A, and B's own roles in B (the controls).
# Prints TAP (run with prove). M365_VERSION=0.2.0 installs that version instead
# of the default one.
#
# On 0.2.0 (M365_VERSION=0.2.0) it fails: access is membership in the
# cluster-wide roles m365_app / m365_admin / m365_sds_reader, so A's roles hold
# B's rights too. Seen:
#   not ok 1 - app of A in B: read m365.student (got 00000: 2 )
#   not ok 2 - app of A in B: read m365.username (got 00000: 1 )
#   not ok 3 - app of A in B: m365.student_usernames(location) (got 00000: 1|Geheim|Kind|1|kind.geheim|leerling.b.be|t )
#   not ok 4 - app of A in B: m365.set_username (got 00000: (1,1,student,1,overgenomen.kind,overgenomen.kind,t,...))
#   not ok 5 - app of A in B: m365.set_sync (got 00000: 1 )
#   not ok 6 - app of A in B: insert into m365.student (got 00000: )
#   ok 7 - app of A in B: read m365_sds.users          (0.2.0 gives the feed to readers and admins only)
#   ok 8 - app of A in B: m365.generate_usernames()    (admins only)
#   ok 9 # skip m365.grant_access() does not exist in this version
#   not ok 10 - admin of A in B: read m365.student (got 00000: 3 )
#   not ok 11 - admin of A in B: insert into m365.configuration (got 00000: )
#   not ok 12 - admin of A in B: insert into m365.reserved_username (got 00000: )
#   not ok 13 - admin of A in B: m365.generate_usernames() (got 00000: 1 )
#   not ok 14 - admin of A in B: read m365_sds.users of a configuration of B (got 00000: 0 )
#   not ok 15 - admin of A in B: m365.create_sds_reader (got 00000:  )
#   not ok 16 - admin of A in B: m365.take_sds_snapshots() (got 00000: 2 ), since m365.remove_old_sds_records()
#   not ok 17 - admin of A in B: m365.schedule_jobs() (got 00000: NOTICE:  pg_cron is not installed in database ...)
#   ok 18 # skip m365.grant_access() does not exist in this version
#   not ok 19 - the SDS reader of A in B: read m365_sds.users (got 00000: 0 )
#   not ok 20 - B's app in A: read m365.student (got 00000: 2 )
#   not ok 21 - B's data, queue, readers and the cluster's roles are exactly as before the attempts
#              (its digest then; now: every row and sequence of B's schema m365, and the cluster's roles)
#   ok 22..30 - the controls
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
v=$$
db_a="m365_two_a_$v" db_b="m365_two_b_$v"
app_one="app_one_$v" admin_one="admin_one_$v" reader_one="reader_one_$v"
app_two="app_two_$v" admin_two="admin_two_$v" evil_reader="evil_reader_$v"
version_clause=""
[ -z "${M365_VERSION:-}" ] || version_clause=" VERSION '$M365_VERSION'"
cleanup() {
	psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db_a WITH (FORCE)" -c "DROP DATABASE IF EXISTS $db_b WITH (FORCE)" \
		-c "DROP ROLE IF EXISTS $app_one, $admin_one, $reader_one, $app_two, $admin_two, $evil_reader" >/dev/null 2>&1
}
trap cleanup EXIT
source test/shell/lib/tap.sh
skip() { n=$((n + 1)); echo "ok $n # skip $1"; }
sql() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }

# Runs one statement as a role in a database: $state is its SQLSTATE (00000
# when it worked), $said what psql printed.
attempt() {
	said=$(psql -X -q -At -U "$1" -d "$2" -c "$3" -c '\echo :LAST_ERROR_SQLSTATE' 2>&1)
	state=$(tail -n 1 <<<"$said")
	said=$(sed '$d' <<<"$said" | tr '\n' ' ' | cut -c 1-160)
}
refused() {  # role database statement description
	attempt "$1" "$2" "$3"
	[ "$state" = 42501 ]
	ok $? "$4$([ "$state" = 42501 ] || echo " (got $state: $said)")"
}
works() {  # role database statement description
	attempt "$1" "$2" "$3"
	[ "$state" = 00000 ]
	ok $? "$4$([ "$state" = 00000 ] || echo " (got $state: $said)")"
}

echo "1..30"

# Two installs, each with a configuration, a location, a student with a
# username (sync on) and a student still queued.
sql -d postgres -c "CREATE DATABASE $db_a" -c "CREATE DATABASE $db_b" \
	-c "CREATE ROLE $app_one LOGIN" -c "CREATE ROLE $admin_one LOGIN" -c "CREATE ROLE $reader_one LOGIN" \
	-c "CREATE ROLE $app_two LOGIN" -c "CREATE ROLE $admin_two LOGIN" >/dev/null || { echo "Bail out! setup"; exit 1; }
install() {  # database tenant domain first_name last_name app admin
	sql -d "$1" >/dev/null <<SQL
SET client_min_messages = error;
CREATE EXTENSION m365_usernames$version_clause;
INSERT INTO m365.configuration (name, username_format, fallback_formats) VALUES ('$2', 'naam.voornaam', '{}');
INSERT INTO m365.school (id, name, configuration_id) VALUES (1, '$2 school', (SELECT id FROM m365.configuration WHERE name = '$2'));
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain)
VALUES (11, 1, '$2 campus', (SELECT id FROM m365.configuration WHERE name = '$2'), '$3');
INSERT INTO m365.student (id, first_name, last_name) VALUES (1, '$4', '$5');
INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (1, 1, 11, CURRENT_DATE - 1);
SELECT m365.generate_usernames_in_transaction();
SELECT m365.set_location_sync(11, true);
INSERT INTO m365.student (id, first_name, last_name) VALUES (2, 'Nog', 'Wachtend');
INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (2, 2, 11, CURRENT_DATE - 1);
-- Access as the version documents it: m365.grant_access() (0.3.0), the group roles (0.2.0).
DO \$\$
BEGIN
    IF EXISTS (SELECT FROM pg_proc WHERE proname = 'grant_access' AND pronamespace = 'm365'::regnamespace) THEN
        PERFORM m365.grant_access('$6', 'app');
        PERFORM m365.grant_access('$7', 'admin');
    ELSE
        EXECUTE 'GRANT m365_app TO $6';
        EXECUTE 'GRANT m365_admin TO $7';
    END IF;
END
\$\$;
SQL
}
install "$db_a" "Tenant A" leerling.a.be Open Baar "$app_one" "$admin_one" &&
	install "$db_b" "Tenant B" leerling.b.be Geheim Kind "$app_two" "$admin_two" &&
	sql -d "$db_a" -c "SELECT m365.create_sds_reader('$reader_one', (SELECT id FROM m365.configuration))" >/dev/null ||
	{ echo "Bail out! could not install m365_usernames$version_clause in two databases"; exit 1; }
grant_access=$(sql -d "$db_b" -c "SELECT EXISTS (SELECT FROM pg_proc WHERE proname = 'grant_access' AND pronamespace = 'm365'::regnamespace)")
cfg_b=$(sql -d "$db_b" -c "SELECT id FROM m365.configuration")
uid_b=$(sql -d "$db_b" -c "SELECT id FROM m365.username")
uid_a=$(sql -d "$db_a" -c "SELECT id FROM m365.username")
# Every row of every table and every sequence of B's schema m365, and the
# test's roles (name ending in _$v) and their memberships: one line each.
digest_b() {
	sql -d "$db_b" <<'SQL' &&
SELECT CASE c.relkind
         WHEN 'S' THEN format('SELECT %L || '': '' || last_value || '' '' || is_called FROM %s', c.oid::regclass, c.oid::regclass)
         ELSE format('SELECT %L || '': '' || count(*) || '' '' || coalesce(md5(string_agg(x::text, ''|'' ORDER BY x::text)), ''-'') FROM %s AS x',
                     c.oid::regclass, c.oid::regclass)
       END
  FROM pg_class AS c
 WHERE c.relnamespace = 'm365'::regnamespace AND c.relkind IN ('r', 'p', 'S')
 ORDER BY c.relname
\gexec
SQL
		sql -d postgres -c "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolname LIKE '%\\_$v'" \
			-c "SELECT string_agg(roleid::regrole || '>' || member::regrole, ',' ORDER BY 1) FROM pg_auth_members
			     WHERE roleid::regrole::text LIKE '%\\_$v' OR member::regrole::text LIKE '%\\_$v'"
}
before=$(digest_b)

# The application of A, connected to B.
refused "$app_one" "$db_b" "SELECT count(*) FROM m365.student" "app of A in B: read m365.student"
refused "$app_one" "$db_b" "SELECT count(*) FROM m365.username" "app of A in B: read m365.username"
refused "$app_one" "$db_b" "SELECT * FROM m365.student_usernames(11)" "app of A in B: m365.student_usernames(location)"
refused "$app_one" "$db_b" "SELECT m365.set_username($uid_b, 'overgenomen.kind')" "app of A in B: m365.set_username"
refused "$app_one" "$db_b" "SELECT m365.set_sync(ARRAY[$uid_b]::bigint[], false)" "app of A in B: m365.set_sync"
refused "$app_one" "$db_b" "INSERT INTO m365.student (id, first_name, last_name) VALUES (666, 'Inbreker', 'Kind')" \
	"app of A in B: insert into m365.student"
refused "$app_one" "$db_b" "SELECT count(*) FROM m365_sds.users" "app of A in B: read m365_sds.users"
refused "$app_one" "$db_b" "SELECT m365.generate_usernames_in_transaction()" "app of A in B: m365.generate_usernames()"
if [ "$grant_access" = t ]; then
	refused "$app_one" "$db_b" "SELECT m365.grant_access('$app_one', 'app')" "app of A in B: m365.grant_access() to itself"
else skip "m365.grant_access() does not exist in this version"; fi

# The administrator of A, connected to B.
refused "$admin_one" "$db_b" "SELECT count(*) FROM m365.student" "admin of A in B: read m365.student"
refused "$admin_one" "$db_b" "INSERT INTO m365.configuration (name) VALUES ('inbraak')" "admin of A in B: insert into m365.configuration"
refused "$admin_one" "$db_b" "INSERT INTO m365.reserved_username (configuration_id, username) VALUES ($cfg_b, 'kind.geheim2')" \
	"admin of A in B: insert into m365.reserved_username"
refused "$admin_one" "$db_b" "SELECT m365.generate_usernames_in_transaction()" "admin of A in B: m365.generate_usernames()"
refused "$admin_one" "$db_b" "SET m365.sds_configuration = '$cfg_b'; SELECT count(*) FROM m365_sds.users" \
	"admin of A in B: read m365_sds.users of a configuration of B"
refused "$admin_one" "$db_b" "SELECT m365.create_sds_reader('$evil_reader', $cfg_b)" "admin of A in B: m365.create_sds_reader"
refused "$admin_one" "$db_b" "SELECT m365.remove_old_sds_records()" "admin of A in B: m365.remove_old_sds_records()"
refused "$admin_one" "$db_b" "SELECT m365.schedule_jobs()" "admin of A in B: m365.schedule_jobs()"
if [ "$grant_access" = t ]; then
	refused "$admin_one" "$db_b" "SELECT m365.grant_access('$admin_one', 'admin')" "admin of A in B: m365.grant_access() to itself"
else skip "m365.grant_access() does not exist in this version"; fi

# The SDS reader of A, and the other way round: B's application in A.
refused "$reader_one" "$db_b" "SELECT count(*) FROM m365_sds.users" "the SDS reader of A in B: read m365_sds.users"
refused "$app_two" "$db_a" "SELECT count(*) FROM m365.student" "B's app in A: read m365.student"

after=$(digest_b)
[ -n "$before" ] && [ "$before" = "$after" ]
status=$?
[ $status = 0 ] || diff <(echo "$before") <(echo "$after") | sed -n -e 's/^< /# before: /p' -e 's/^> /# after:  /p' | cut -c 1-150
ok $status "every row and sequence of B's schema m365, and this test's roles and memberships, are exactly as before the attempts"

# Controls: each role still works where it was given access.
works "$app_one" "$db_a" "SELECT count(*) FROM m365.student" "control: app of A in A reads m365.student"
works "$app_one" "$db_a" "SELECT * FROM m365.student_usernames(11)" "control: app of A in A: m365.student_usernames(location)"
works "$app_one" "$db_a" "SELECT m365.set_username($uid_a, 'hernoemd.kind')" "control: app of A in A: m365.set_username"
works "$app_one" "$db_a" "SELECT m365.set_sync(ARRAY[$uid_a]::bigint[], false)" "control: app of A in A: m365.set_sync"
works "$app_one" "$db_a" "INSERT INTO m365.student (id, first_name, last_name) VALUES (3, 'Nieuw', 'Kind')" \
	"control: app of A in A: insert into m365.student"
works "$admin_one" "$db_a" "SELECT m365.generate_usernames_in_transaction()" "control: admin of A in A: m365.generate_usernames()"
works "$admin_one" "$db_a" "SET m365.sds_configuration = '$(sql -d "$db_a" -c "SELECT id FROM m365.configuration")'; SELECT count(*) FROM m365_sds.users" \
	"control: admin of A in A reads m365_sds.users"
works "$reader_one" "$db_a" "SELECT count(*) FROM m365_sds.users" "control: the SDS reader of A in A reads m365_sds.users"
works "$app_two" "$db_b" "SELECT * FROM m365.student_usernames(11)" "control: B's app in B: m365.student_usernames(location)"

[ "$failed" = 0 ]
