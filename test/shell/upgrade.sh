#!/usr/bin/env bash
# Upgrades: for every released version (a frozen extension/m365_usernames--X.sql),
# install it, fill it with data, ALTER EXTENSION ... UPDATE to the current
# version, and check that no row was lost, that the schema is exactly a fresh
# install's (objects, bodies, rights, comments, what pg_dump keeps), and that it
# still works. Prints TAP (run with prove).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
current=$(sed -n "s/^default_version = '\(.*\)'/\1/p" m365_usernames.control)
released=$(ls extension/m365_usernames--*.sql | sed -n 's|^extension/m365_usernames--\([0-9.]*\)\.sql$|\1|p' |
	grep -vx "$current" | sort -V)
fresh="upgrade_fresh_$$"
work=$(mktemp -d /tmp/m365_upgrade_test.XXXXXX)
dbs=("$fresh")
trap 'rm -rf "$work"; for db in "${dbs[@]}"; do psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1; done' EXIT
source test/shell/lib/tap.sh
sql() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
# Who waits for the job: 0.1.0's queue, 0.2.0's queue and deferred calls, 0.3.0's log.
waiting_digest() {
	local waiting="SELECT DISTINCT r.person_kind || ' ' || r.person_id AS k FROM m365.username_request AS r"
	if [ "$(sql -d "$1" -c "SELECT to_regclass('m365.username_queue') IS NOT NULL")" = t ]; then
		waiting="SELECT q.person_kind || ' ' || q.person_id AS k FROM m365.username_queue AS q"
		[ "$(sql -d "$1" -c "SELECT to_regclass('m365.username_queue_deferred') IS NOT NULL")" = t ] &&
			waiting="$waiting UNION SELECT d.person_kind || ' ' || p FROM m365.username_queue_deferred AS d, unnest(d.person_ids) AS p"
	fi
	sql -d "$1" -c "SELECT md5(string_agg(k, '|' ORDER BY k)) FROM ($waiting) AS w"
}

[ -n "$released" ] || { echo "1..0 # SKIP no released version before $current"; exit 0; }
echo "1..$((4 + 10 * $(echo "$released" | wc -l)))"

# The fresh install gets what an updated 0.2.0 database has kept: its roles'
# access levels and its SDS reader.
sql -d postgres -c "CREATE DATABASE $fresh" >/dev/null &&
	sql -d "$fresh" -c "SET client_min_messages = error" -c "CREATE EXTENSION m365_usernames" \
		-c "SELECT m365.grant_access('m365_app', 'app'), m365.grant_access('m365_admin', 'admin')" \
		-c "INSERT INTO m365.configuration (id, name) VALUES (1, 'fresh')" \
		-c "SELECT m365.create_sds_reader('sds_backup_test', 1)" >/dev/null &&
	sql -d "$fresh" -f test/shell/lib/schema_fingerprint.sql >"$work/fresh.schema"
ok $? "a fresh install of $current, for comparison"

for old in $released; do
	db="upgrade_from_${old//./_}_$$"
	dbs+=("$db")
	sql -d postgres -c "CREATE DATABASE $db" >/dev/null &&
		sql -d "$db" -c "SET client_min_messages = error" -c "CREATE EXTENSION m365_usernames VERSION '$old'" \
			-f test/shell/lib/school_data.sql -f test/shell/lib/populate.sql >/dev/null 2>&1
	ok $? "$old installed and filled: 1,500 usernames, 560 queued, edits, history, a reader, a snapshot"
	data_before=$(sql -d "$db" -f test/shell/lib/data_digest.sql)
	waiting_before=$(waiting_digest "$db")

	[ "$(sql -d "$db" -c "SELECT count(*) FROM pg_extension_update_paths('m365_usernames') WHERE source = '$old' AND target = '$current' AND path IS NOT NULL")" = 1 ]
	ok $? "an update path leads from $old to $current"
	sql -d "$db" -c "ALTER EXTENSION m365_usernames UPDATE" 2>"$work/update.err" >/dev/null &&
		[ "$(sql -d "$db" -c "SELECT extversion FROM pg_extension WHERE extname = 'm365_usernames'")" = "$current" ]
	status=$?
	[ $status = 0 ] || sed 's/^/# /' "$work/update.err" | head -5
	ok $status "ALTER EXTENSION m365_usernames UPDATE: $old -> $current"

	[ "$(sql -d "$db" -f test/shell/lib/data_digest.sql)" = "$data_before" ] && [ "$(waiting_digest "$db")" = "$waiting_before" ]
	ok $? "every username, flag, issued name, history row, school row and snapshot is still there; the queue is the log"

	# Written once: a generated name's base and suffix moved onto its row; the
	# ledger keeps only names their owner no longer holds.
	[ "$(sql -d "$db" -c "SELECT count(*) FROM m365.username WHERE base IS NOT NULL")" -gt 1000 ] &&
		[ "$(sql -d "$db" -c "SELECT count(*) FROM m365.username WHERE suffix IS NOT NULL AND local_part <> m365.username_with_suffix(base, suffix)")" = 0 ] &&
		[ "$(sql -d "$db" -c "SELECT count(*) FROM m365.username AS u JOIN m365.issued_username AS i USING (configuration_id, local_part)")" = 0 ] &&
		[ "$(sql -d "$db" -c "SELECT count(*) FROM m365.issued_username")" -gt 0 ] &&
		[ "$(sql -d "$db" -c "SELECT count(*) FROM m365.username WHERE (format IS NOT NULL) <> (names_digest IS NOT NULL)")" = 0 ] &&
		[ "$(sql -d "$db" -c "SELECT count(*) FROM m365.username WHERE names_digest IS NOT NULL")" -gt 1000 ] &&
		[ "$(sql -d "$db" -c "SELECT count(*) FROM m365.person_in_feed")" -gt 0 ]
	ok $? "generated names carry base, suffix and their names' digest on their row (renames); the ledger holds only names that left their owner; the snapshots' usernames count as in a feed"

	sql -d "$db" -f test/shell/lib/schema_fingerprint.sql >"$work/updated.schema"
	diff -u "$work/fresh.schema" "$work/updated.schema" >"$work/schema.diff"
	status=$?
	[ $status = 0 ] || sed 's/^/# /' "$work/schema.diff" | head -40
	ok $status "the updated schema is exactly a fresh $current install's (objects, bodies, rights, comments, dumped tables)"

	# It still works: the job serves the log, edits answer in Dutch, the feed reads.
	sql -d "$db" -c "CALL m365.generate_usernames()" >/dev/null 2>&1 &&
		[ "$(sql -d "$db" -c "SELECT outcome || ' ' || created FROM m365.job_run ORDER BY id DESC LIMIT 1")" = "done 560" ] &&
		[ "$(sql -d "$db" -c "SELECT count(*) FROM m365.username_request")" = 0 ]
	ok $? "the job (CALL, a chunk per transaction) makes the 560 queued usernames after the update"
	taken=$(sql -d "$db" -c "SELECT username FROM m365.username WHERE configuration_id = 1 AND person_kind = 'student' ORDER BY id DESC LIMIT 1")
	answer=$(sql -d "$db" -c "SELECT m365.set_username((SELECT min(id) FROM m365.username WHERE person_kind = 'student'), '$taken')" 2>&1 | head -n 1)
	[[ "$answer" == *"is al in gebruik"* ]]
	ok $? "set_username still answers with the procedure's Dutch text (${answer##*ERROR:  })"
	sql -d "$db" -c "INSERT INTO m365.student (id, first_name, last_name) VALUES (88888, 'Émile', 'Nieuw')" \
		-c "INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (88888, 88888, 11, CURRENT_DATE)" >/dev/null &&
		[ "$(sql -d "$db" -c "SELECT m365.generate_usernames_in_transaction()")" = 1 ] &&
		[ "$(sql -d "$db" -c "SELECT username FROM m365.username WHERE person_kind = 'student' AND person_id = 88888")" = "nieuw.emile" ]
	ok $? "a new enrolment after the update is logged and gets its username"
	[ "$(sql -d "$db" -c "SET ROLE sds_backup_test" -c "SELECT count(*) > 0 FROM m365_sds.users")" = t ]
	ok $? "the SDS reader created before the update still reads its feed"
done

# A reader 0.2.0 accepted and 0.3.0 refuses (a role with members: each could
# SET ROLE to it) reads no more after the update, and the update says so (a
# red-team find: the first 0.3.0 kept it).
db="upgrade_reader_$$"
dbs+=("$db")
sql -d postgres -c "CREATE DATABASE $db" -c "CREATE ROLE team_$$ LOGIN" -c "CREATE ROLE member_$$ LOGIN IN ROLE team_$$" >/dev/null &&
	sql -d "$db" -c "SET client_min_messages = error" -c "CREATE EXTENSION m365_usernames VERSION '0.2.0'" -f test/shell/lib/school_data.sql \
		-c "SELECT m365.generate_usernames()" -c "SELECT m365.set_location_sync(11, true)" \
		-c "SELECT m365.create_sds_reader('team_$$', 1)" >/dev/null 2>&1 &&
	[ "$(sql -d "$db" -c "SET ROLE team_$$" -c "SELECT count(*) > 0 FROM m365_sds.users")" = t ] &&
	sql -d "$db" -c "ALTER EXTENSION m365_usernames UPDATE" 2>"$work/refused.err" >/dev/null &&
	grep -q "team_$$ no longer reads the SDS feed: other roles are members of it" "$work/refused.err" &&
	[ "$(sql -d "$db" -c "SET ROLE team_$$" -c "SELECT count(*) FROM m365_sds.users" 2>/dev/null)" != "$(sql -d "$db" -c "SELECT 1")" ] &&
	[ "$(sql -d "$db" -c "SELECT count(*) FROM m365.sds_reader")" = 0 ]
status=$?
[ $status = 0 ] && sql -d "$db" -c "SET ROLE team_$$" -c "SELECT count(*) FROM m365_sds.users" >/dev/null 2>&1 &&
	[ "$(sql -d "$db" -c "SET ROLE team_$$" -c "SELECT count(*) FROM m365_sds.users")" != 0 ] && status=1
[ $status = 0 ] || sed 's/^/# /' "$work/refused.err" | head -3
ok $status "a 0.2.0 reader with members reads nothing after the update, which names it and says why"
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "DROP ROLE IF EXISTS member_$$" -c "DROP OWNED BY team_$$" -c "DROP ROLE IF EXISTS team_$$" >/dev/null 2>&1

# Domains 0.2.0 stored as typed (issue 14): the update lower-cases them on
# schools, locations, configurations, reserved names and the usernames the
# job made from them, and records the usernames' change in the history.
db="upgrade_domains_$$"
dbs+=("$db")
sql -d postgres -c "CREATE DATABASE $db" >/dev/null &&
	sql -d "$db" -c "SET client_min_messages = error" -c "CREATE EXTENSION m365_usernames VERSION '0.2.0'" >/dev/null 2>&1 &&
	sql -d "$db" >/dev/null 2>&1 <<'SQL' &&
INSERT INTO m365.configuration (id, name, accepted_domains) VALUES (1, 'Hoofdletters', '{Staff.School.BE, Andere.BE}');
INSERT INTO m365.school (id, name, configuration_id, staff_domain) VALUES (1, 'School', 1, 'Staff.School.BE');
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain) VALUES (1, 1, 'Campus', 1, 'Leerling.School.BE');
INSERT INTO m365.reserved_username (configuration_id, username) VALUES (1, 'Directie@Staff.School.BE');
INSERT INTO m365.staff (id, first_name, last_name) VALUES (1, 'Els', 'Maes');
INSERT INTO m365.staff_school (staff_id, school_id) VALUES (1, 1);
SELECT m365.generate_usernames();
SQL
	[ "$(sql -d "$db" -c "SELECT username FROM m365.username")" = "maes.els@Staff.School.BE" ] &&
	sql -d "$db" -c "ALTER EXTENSION m365_usernames UPDATE" >/dev/null 2>"$work/domains.err" &&
	[ "$(sql -d "$db" -c "SELECT concat_ws(' ', (SELECT username FROM m365.username), (SELECT staff_domain FROM m365.school),
	                                        (SELECT student_domain FROM m365.location), (SELECT accepted_domains::text FROM m365.configuration),
	                                        (SELECT username FROM m365.reserved_username))")" = \
		"maes.els@staff.school.be staff.school.be leerling.school.be {staff.school.be,andere.be} Directie@staff.school.be" ] &&
	[ "$(sql -d "$db" -c "SELECT old_value || ' -> ' || new_value FROM m365.username_history WHERE field = 'username'")" = \
		"maes.els@Staff.School.BE -> maes.els@staff.school.be" ]
status=$?
[ $status = 0 ] || sed 's/^/# /' "$work/domains.err" | head -3
ok $status "domains typed in capitals in 0.2.0 come out lower-cased (schools, locations, accepted, reserved, usernames; history kept)"

# The uniqueness key (issue 14): 0.2.0 keyed names with lower(), so a Turkish
# database held "IVO.X" and "ivo.x" as two names (and its ledger "ıvo.z" for
# "IVO.Z"). The update stops and lists such names; once one of each is kept it
# re-keys everything with m365.local_part_key.
db="upgrade_turkish_$$"
dbs+=("$db")
sql -d postgres -c "CREATE DATABASE $db TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C.UTF-8' LOCALE_PROVIDER icu ICU_LOCALE 'tr-TR'" >/dev/null &&
	sql -d "$db" -c "SET client_min_messages = error" -c "CREATE EXTENSION m365_usernames VERSION '0.2.0'" >/dev/null 2>&1 &&
	sql -d "$db" >/dev/null 2>&1 <<'SQL' &&
INSERT INTO m365.configuration (id, name) VALUES (1, 'Turks');
INSERT INTO m365.reserved_username (configuration_id, username) VALUES (1, 'IVO.X'), (1, 'ivo.x');
INSERT INTO m365.issued_username (configuration_id, local_part, person_kind, person_id) VALUES (1, lower('IVO.Z'), 'student', 7);
-- Reserved IVO.Y was "ıvo.y" to 0.2.0, so its job gave a student ivo.y (red-team find).
INSERT INTO m365.reserved_username (configuration_id, username) VALUES (1, 'IVO.Y');
INSERT INTO m365.username (configuration_id, person_kind, person_id, username) VALUES (1, 'student', 8, 'ivo.y');
SQL
	[ "$(sql -d "$db" -c "SELECT string_agg(local_part, ',' ORDER BY local_part COLLATE \"C\") FROM m365.reserved_username")" = "ivo.x,ıvo.x,ıvo.y" ] &&
	! sql -d "$db" -c "ALTER EXTENSION m365_usernames UPDATE" >/dev/null 2>"$work/turkish.err" &&
	grep -q "m365.reserved_username in configuration 1: IVO.X, ivo.x" "$work/turkish.err" &&
	grep -q "m365.username and m365.reserved_username in configuration 1: ivo.y, IVO.Y" "$work/turkish.err" &&
	[ "$(sql -d "$db" -c "SELECT extversion FROM pg_extension WHERE extname = 'm365_usernames'")" = 0.2.0 ] &&
	sql -d "$db" -c "DELETE FROM m365.reserved_username WHERE username IN ('IVO.X', 'IVO.Y')" -c "ALTER EXTENSION m365_usernames UPDATE" >/dev/null 2>>"$work/turkish.err" &&
	[ "$(sql -d "$db" -c "SELECT concat_ws(' ', (SELECT local_part FROM m365.reserved_username), (SELECT local_part FROM m365.issued_username))")" = "ivo.x ivo.z" ] &&
	! sql -d "$db" -c "INSERT INTO m365.reserved_username (configuration_id, username) VALUES (1, 'IVO.X')" >/dev/null 2>&1 &&
	[ "$(sql -d "$db" -c "SELECT m365.username_is_taken(1, 'IVO.Z')")" = t ]
status=$?
[ $status = 0 ] || sed 's/^/# /' "$work/turkish.err" | head -3
ok $status "in a Turkish database the update stops on IVO.X beside ivo.x and on ivo.y held but IVO.Y reserved, naming them; with one kept it re-keys the names and the ledger"

[ "$failed" = 0 ]
