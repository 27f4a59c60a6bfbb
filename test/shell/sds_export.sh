#!/usr/bin/env bash
# The export command, end to end: run as an SDS reader, the six files have
# SDS's exact headers, parse back to exactly what the views hold, and a failed
# export leaves the previous folder as it was. Prints TAP (run with prove).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
db=${PGDATABASE:-m365_test}
out=$(mktemp -d /tmp/m365_export_test.XXXXXX)
trap 'rm -rf "$out"' EXIT
source test/shell/lib/tap.sh
sql() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }

echo "1..60"
base=$(( $(date +%s) % 100000 * 1000 + 930000000 ))
sql >/dev/null <<SQL
INSERT INTO m365.configuration (id, name) VALUES ($base, 'export test $base');
INSERT INTO m365.school (id, name, configuration_id, staff_domain) VALUES ($base, 'School', $base, 'school.be');
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain)
VALUES ($base, $base, 'Campus "Zuid", oost', $base, 'leerling.school.be'), ($base + 1, $base, 'Zonder domein', $base, NULL);
INSERT INTO m365.class (id, location_id, name, school_year) VALUES ($base, $base, '1A, "B"', m365.school_year(CURRENT_DATE));
INSERT INTO m365.student (id, first_name, last_name)
SELECT $base + i, (ARRAY['Zoë', 'Jan', 'Дмитрий'])[1 + i % 3], (ARRAY['D''Hondt, "de" jonge', 'Peeters', 'Иванов'])[1 + i % 3]
  FROM generate_series(1, 60) AS i;
INSERT INTO m365.enrolment (id, student_id, location_id, class_id, start_date)
SELECT $base + i, $base + i, CASE WHEN i % 10 = 0 THEN $base + 1 ELSE $base END, CASE WHEN i % 2 = 0 AND i % 10 <> 0 THEN $base END,
       CURRENT_DATE - 30 FROM generate_series(1, 60) AS i;
INSERT INTO m365.staff (id, first_name, last_name) VALUES ($base, 'Els', 'Maes');
INSERT INTO m365.staff_school (staff_id, school_id) VALUES ($base, $base);
INSERT INTO m365.class_teacher (class_id, staff_id) VALUES ($base, $base);
SELECT m365.generate_usernames_in_transaction();
SELECT m365.set_sync(array_agg(id), true) FROM m365.username WHERE configuration_id = $base;
SELECT m365.create_sds_reader('sds_export_$base', $base);
SQL
ok $? "a configuration with 60 students, a teacher and a reader"

admin_user=${PGUSER:-postgres}
export PGUSER="sds_export_$base"
bin/m365-sds-export -d "dbname=$db" "$out/sds" 2>"$out/stderr"
ok $? "the export runs as the reader"

declare -A header=(
	[orgs]='sourcedId,name,type,parentSourcedId'
	[users]='sourcedId,username,givenName,familyName,password,activeDirectoryMatchId,email,phone,sms'
	[roles]='userSourcedId,orgSourcedId,role,sessionSourcedId,grade,isPrimary,roleStartDate,roleEndDate'
	[classes]='sourcedId,orgSourcedId,title,sessionSourcedIds,courseSourcedId'
	[enrollments]='classSourcedId,userSourcedId,role'
	[academicSessions]='sourcedId,title,type,schoolYear,startDate,endDate'
)
bad=0
for f in "${!header[@]}"; do
	[ "$(head -n 1 "$out/sds/$f.csv")" = "${header[$f]}" ] || { echo "# $f.csv header: $(head -n 1 "$out/sds/$f.csv")"; bad=1; }
done
ok $bad "the six files have SDS v2.1's headers, byte for byte"
# The feed's versions beside the link (.sds.v<time>.<random>).
versions() { ls -A "$out" | grep '^\.sds\.v' | sort | tr '\n' ' '; }
[ "$(ls "$out/sds/" | wc -l)" = 6 ] && [ -L "$out/sds" ] && [ -z "$(ls -A "$out" | grep -v -e '^sds$' -e '^stderr$' -e '^\.sds\.v' -e '^\.sds\.lock$' -e '^\.sds\.sds-configuration$')" ] &&
	[ "$(versions)" = "$(readlink "$out/sds") " ] && [ "$(cat "$out/.sds.sds-configuration")" = "$base" ]
ok $? "exactly six files, in a versioned folder that the link sds names, and nothing else left (but the lock file, and the mark of the configuration whose SDS folder it is)"

# Parse every file back (as the reader) and compare with the view.
bad=0
for f in "${!header[@]}"; do
	cols=$(echo "${header[$f]}" | sed 's/\([^,]*\)/"\1" text/g')
	diff=$(sql <<SQL
CREATE TEMP TABLE back ($cols);
\copy back FROM '$out/sds/$f.csv' WITH (FORMAT csv, HEADER true, ENCODING 'UTF8')
SELECT (SELECT count(*) FROM (TABLE back EXCEPT ALL SELECT * FROM m365_sds."$f") AS a)
     + (SELECT count(*) FROM (SELECT * FROM m365_sds."$f" EXCEPT ALL TABLE back) AS b);
SQL
)
	[ "$diff" = 0 ] || { echo "# $f.csv differs from m365_sds.$f in $diff rows"; bad=1; }
done
ok $bad "every file parses back to exactly what its view holds"

[ "$(($(wc -l <"$out/sds/users.csv") - 1))" = 55 ]
ok $? "users.csv: the 54 students with a domain and the teacher"
grep -qxF 'm365-sds-export: left out 6 user(s): no domain: SDS needs local@domain (see m365_sds.left_out)' "$out/stderr"
ok $? "the 6 students without a domain are reported as left out" "$out/stderr"
grep -q '"D'"'"'Hondt, ""de"" jonge"' "$out/sds/users.csv"
ok $? "commas and quotes are quoted as RFC 4180 says"
grep -q 'Дмитрий' "$out/sds/users.csv" && grep -q 'Zoë' "$out/sds/users.csv"
ok $? "names stay UTF-8"
! grep -q $'\r' "$out/sds/"*.csv
ok $? "no carriage return anywhere"
[ "$(grep -c ',teacher$' "$out/sds/enrollments.csv")" = 1 ] && [ "$(grep -c ',student$' "$out/sds/enrollments.csv")" = 24 ]
ok $? "enrollments.csv: the teacher, and the 24 class members with a domain"

# Another export replaces the folder; a failed one leaves it alone.
before=$(cat "$out/sds/"*.csv | md5sum) versions_before=$(versions)
PGUSER=no_such_role bin/m365-sds-export -d "dbname=$db" "$out/sds" 2>/dev/null
[ $? -ne 0 ]
ok $? "an export that cannot connect fails"
[ "$(cat "$out/sds/"*.csv | md5sum)" = "$before" ] && [ "$(versions)" = "$versions_before" ]
ok $? "and leaves the previous folder as it was, with no half-written one"
PGUSER=postgres sql -c "SELECT m365.set_sync(array_agg(id), false) FROM m365.username WHERE configuration_id = $base AND person_kind = 'staff'" >/dev/null
bin/m365-sds-export -d "dbname=$db" "$out/sds" 2>/dev/null && [ "$(($(wc -l <"$out/sds/users.csv") - 1))" = 54 ]
ok $? "a new export replaces the folder (the teacher's sync is off now)"

# A reader allowed a single connection: the parallel export cannot open its
# sessions and leaves the folder alone; --one-session writes the same files.
PGUSER=postgres sql -c "ALTER ROLE sds_export_$base CONNECTION LIMIT 1" >/dev/null
before=$(cat "$out/sds/"*.csv | md5sum) versions_before=$(versions)
bin/m365-sds-export -d "dbname=$db" "$out/sds" 2>/dev/null
[ $? -ne 0 ] && [ "$(cat "$out/sds/"*.csv | md5sum)" = "$before" ] && [ "$(versions)" = "$versions_before" ]
ok $? "with one connection allowed, the parallel export fails and leaves the folder as it was"
# (The failed export's sessions end as it does; the server may take a moment to see it.)
for i in $(seq 1 50); do
	[ "$(PGUSER=postgres sql -c "SELECT count(*) FROM pg_stat_activity WHERE usename = 'sds_export_$base'")" = 0 ] && break
	sleep 0.1
done
bin/m365-sds-export --one-session -d "dbname=$db" "$out/one" 2>/dev/null
ok $? "--one-session exports with one connection"
diff -r "$out/sds/" "$out/one/" >/dev/null
ok $? "and writes the very same six files"
PGUSER=postgres sql -c "ALTER ROLE sds_export_$base CONNECTION LIMIT -1" >/dev/null

# A folder whose name carries a quote, SQL and a line break with a psql shell
# command (a red-team find: the path went into \copy ... TO '<path>', so the
# export overwrote "$out/x", ran the command and, as an admin, committed SQL).
echo victim >"$out/x"
evil="$out/x' (FORMAT csv); COMMIT; --"$'\n''\! touch '"$out/SHELL_RAN"' #'
bin/m365-sds-export -d "dbname=$db" "$evil/feed" 2>"$out/evil.err" && [ "$(($(wc -l <"$evil/feed/users.csv") - 1))" = 54 ]
status=$?
[ $status = 0 ] || sed 's/^/# /' "$out/evil.err" | head -3
ok $status "an export into a folder whose name holds a quote, SQL and a line break writes its files there" "$out/evil.err"
[ "$(cat "$out/x")" = victim ] && [ ! -e "$out/SHELL_RAN" ]
ok $? "and the name is only a name: no file outside it overwritten, no command run"

# Never an empty or unscoped feed over a good one (issue 14, point 2).
before=$(cat "$out/sds/"*.csv | md5sum) versions_before=$(versions)
PGUSER=postgres bin/m365-sds-export -d "dbname=$db" "$out/sds" 2>"$out/noconf.err"
status=$?
[ $status = 3 ] && [ "$(cat "$out/sds/"*.csv | md5sum)" = "$before" ] && [ "$(versions)" = "$versions_before" ] &&
	grep -q 'gets no configuration' "$out/noconf.err"
ok $? "an admin without -c gets no configuration: exit 3 (was $status), the folder as it was" "$out/noconf.err"
PGUSER=postgres sql >/dev/null <<SQL
INSERT INTO m365.configuration (id, name) VALUES ($base + 7, 'export test deleted $base');
SELECT m365.create_sds_reader('sds_export_gone_$base', $base + 7);
SQL
PGUSER="sds_export_gone_$base" bin/m365-sds-export -d "dbname=$db" "$out/gone" 2>/dev/null &&
	PGUSER=postgres sql -c "DELETE FROM m365.configuration WHERE id = $base + 7" >/dev/null
PGUSER="sds_export_gone_$base" bin/m365-sds-export -d "dbname=$db" "$out/gone" 2>/dev/null
status=$?
[ $status = 3 ] && [ -f "$out/gone/users.csv" ]
ok $? "a reader whose configuration was deleted: exit 3 (was $status), its last feed left in place"
PGUSER=postgres sql -c "SELECT m365.set_sync(array_agg(id), false) FROM m365.username WHERE configuration_id = $base" >/dev/null
bin/m365-sds-export -d "dbname=$db" "$out/sds" 2>"$out/empty.err"
status=$?
[ $status = 4 ] && [ "$(cat "$out/sds/"*.csv | md5sum)" = "$before" ] && grep -q 'would be empty where' "$out/empty.err"
ok $? "users.csv would be empty where the folder has users: refused with exit 4 (was $status), the folder as it was" "$out/empty.err"
# No flag skips the brake on mass changes: 54 users leaving is more than 25.
bin/m365-sds-export --allow-empty -d "dbname=$db" "$out/sds" 2>"$out/empty.err"
status=$?
[ $status = 6 ] && [ "$(cat "$out/sds/"*.csv | md5sum)" = "$before" ] && grep -q 'held by the brake on mass changes: 54 user(s) would leave' "$out/empty.err"
ok $? "--allow-empty does not skip the brake: held with exit 6 (was $status), the folder as it was" "$out/empty.err"
PGUSER=$admin_user sql -c "SELECT approval_id FROM m365.approve_sds_changes($base, (SELECT digest FROM m365.sds_hold WHERE configuration_id = $base))" >/dev/null &&
	bin/m365-sds-export --allow-empty -d "dbname=$db" "$out/sds" 2>/dev/null && [ "$(wc -l <"$out/sds/users.csv")" = 1 ]
ok $? "--allow-empty writes the empty feed when that is meant (and an administrator approved it)"
PGUSER=postgres sql -c "SELECT m365.set_sync(array_agg(id), true) FROM m365.username WHERE configuration_id = $base AND person_kind = 'student'" >/dev/null

# The swap is atomic: stat() on the folder during 25 exports never misses it,
# and at most the current and the previous version stay.
( while [ ! -e "$out/stop" ]; do [ -f "$out/sds/users.csv" ] || echo miss >>"$out/misses"; done ) &
watcher=$!
bad=0
for i in $(seq 1 25); do bin/m365-sds-export --one-session -d "dbname=$db" "$out/sds" 2>/dev/null || bad=1; done
touch "$out/stop"; wait "$watcher"
[ $bad = 0 ] && [ ! -e "$out/misses" ] && [ "$(versions | wc -w)" = 2 ] && [ "$(($(wc -l <"$out/sds/users.csv") - 1))" = 54 ]
ok $? "25 swaps while another process stats the folder: never missing ($(cat "$out/misses" 2>/dev/null | wc -l) misses), two versions kept"

# A plain folder from before becomes the link once; its files are kept aside.
mkdir -p "$out/plain" && echo old >"$out/plain/users.csv"
bin/m365-sds-export -d "dbname=$db" "$out/plain" 2>/dev/null && [ -L "$out/plain" ] &&
	[ "$(cat "$out"/.plain.v*-migrated.*/feed/users.csv)" = old ] && [ "$(($(wc -l <"$out/plain/users.csv") - 1))" = 54 ]
ok $? "a plain folder is migrated once: moved aside, the target made a link to the new version"

# The checker the export runs before each swap: the six files form a whole,
# and a dangling reference (an org removed from orgs.csv, a user from
# users.csv) is named.
bin/m365-sds-check "$out/sds" 2>"$out/check.err"
ok $? "m365-sds-check: the exported files form a whole" "$out/check.err"
cp -rL "$out/sds" "$out/broken" && sed -i '2d' "$out/broken/orgs.csv" && sed -i '/^student-/{p;d}; 2d' "$out/broken/users.csv"
bin/m365-sds-check "$out/broken" 2>"$out/check.err"
status=$?
[ $status = 1 ] && grep -q 'refers to org "location-' "$out/check.err" && grep -q 'dangling reference' "$out/check.err"
ok $? "m365-sds-check: a folder with an org missing fails (exit $status) and names the dangling references" "$out/check.err"

# Red-team finds against the first symlink swap, kept as tests.
# Two exports of one folder at once: one at a time (a lock beside it), both
# succeed, and a reader never misses the folder (each export's clean-up
# removed the version the other was writing or had linked).
rm -f "$out/misses" "$out/stop"
( while [ ! -e "$out/stop" ]; do [ -f "$out/sds/users.csv" ] || echo miss >>"$out/misses"; done ) &
watcher=$!
bad=0
for round in 1 2 3 4 5; do
	bin/m365-sds-export -d "dbname=$db" "$out/sds" 2>/dev/null & first=$!
	bin/m365-sds-export -d "dbname=$db" "$out/sds" 2>/dev/null || bad=1
	wait "$first" || bad=1
done
touch "$out/stop"; wait "$watcher"
[ $bad = 0 ] && [ ! -e "$out/misses" ] && [ -f "$out/sds/users.csv" ] && [ "$(versions | wc -w)" = 2 ]
ok $? "two exports of one folder at once, five times: both succeed, the folder never missing ($(cat "$out/misses" 2>/dev/null | wc -l) misses)"
# A folder whose name starts like another's keeps its feed (the clean-up
# matched .feed.v* and removed feed.v2's versions).
bin/m365-sds-export -d "dbname=$db" "$out/feed.v2" 2>/dev/null && bin/m365-sds-export -d "dbname=$db" "$out/feed" 2>/dev/null &&
	[ -f "$out/feed.v2/users.csv" ] && [ -f "$out/feed/users.csv" ]
ok $? "exporting feed leaves the feed of feed.v2 alone"
# A line break that ends a folder's name is part of it ($(dirname) dropped it
# and wrote beside another folder); "." and ".." are not a folder's name.
mkdir -p "$out/nl"$'\n' "$out/plainnl"
bin/m365-sds-export -d "dbname=$db" "$out/nl"$'\n'"/feed" 2>/dev/null && [ -f "$out/nl"$'\n'"/feed/users.csv" ] && [ ! -e "$out/nl" ] &&
	bin/m365-sds-export -d "dbname=$db" "$out/plainnl/feed"$'\n' 2>/dev/null && [ -f "$out/plainnl/feed"$'\n'"/users.csv" ] && [ ! -e "$out/plainnl/feed" ]
ok $? "a line break that ends a name stays part of it: nothing written beside another folder"
before=$(ls -A "$out/sds/" | md5sum) versions_before=$(versions)
bin/m365-sds-export -d "dbname=$db" "$out/sds/." 2>/dev/null
status=$?
[ $status = 2 ] && [ "$(ls -A "$out/sds/" | md5sum)" = "$before" ] && [ "$(versions)" = "$versions_before" ]
ok $? "sds/. is refused (exit $status) and leaves nothing in the feed or beside it"
bin/m365-sds-export -d "dbname=$db" -- "$out/-dash" 2>/dev/null && [ -f "$out/-dash/users.csv" ]
ok $? "-- ends the options: a folder named -dash"
# The checker: an org's parentSourcedId is a reference too.
cp -rL "$out/sds" "$out/parent" && sed -i '2s/,$/,location-404/' "$out/parent/orgs.csv"
bin/m365-sds-check "$out/parent" 2>"$out/check.err"
status=$?
[ $status = 1 ] && grep -q 'refers to org "location-404"' "$out/check.err"
ok $? "m365-sds-check: a dangling parentSourcedId is found (exit $status)" "$out/check.err"

# The record of what SDS received: the reader's first export claimed its
# folder; an unchanged feed adds a record and no row version; a preview
# (--on-date, another folder) records nothing; a reader records its own
# configuration only.
asadmin() { PGUSER=$admin_user psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }
records() { asadmin -c "SELECT count(*) FROM m365.sds_record WHERE configuration_id = $base"; }
version_rows() { asadmin -c "SELECT (SELECT count(*) FROM m365.sds_record_user WHERE configuration_id = $base) + (SELECT count(*) FROM m365.sds_record_membership WHERE configuration_id = $base)"; }
[ "$(asadmin -c "SELECT sds_folder FROM m365.configuration WHERE id = $base")" = "$(cd "$out" && pwd -P)/sds" ] &&
	[ "$(asadmin -c "SELECT count(*) FROM m365.sds_record WHERE configuration_id = $base AND recorded_by = 'sds_export_$base' AND (counts ->> 'users')::int > 0")" -ge 1 ]
ok $? "the reader's first export recorded its feed and made its folder the configuration's SDS folder"
records_before=$(records) rows_before=$(version_rows)
bin/m365-sds-export -d "dbname=$db" "$out/sds" 2>"$out/again.err"
[ "$(records)" = $((records_before + 1)) ] && [ "$(version_rows)" = "$rows_before" ] && grep -q 'recorded as SDS record' "$out/again.err"
ok $? "an unchanged feed exported again: one record more, no row version more" "$out/again.err"
before=$(cat "$out/sds/"*.csv | md5sum)
bin/m365-sds-export -d "dbname=$db" --on-date "$(date -d '+3 days' +%F)" "$out/sds" 2>"$out/preview.err"
status=$?
[ $status = 1 ] && [ "$(cat "$out/sds/"*.csv | md5sum)" = "$before" ] && grep -q 'a preview is never written to the SDS folder' "$out/preview.err"
ok $? "--on-date into the SDS folder is refused (exit $status): SDS would take a preview for the truth, past the brake" "$out/preview.err"
bin/m365-sds-export -d "dbname=$db" --on-date "$(date -d '+3 days' +%F)" "$out/preview" 2>"$out/preview.err"
[ "$(records)" = $((records_before + 1)) ] && grep -q 'a preview' "$out/preview.err" && [ -s "$out/preview/users.csv" ]
ok $? "--on-date elsewhere is a preview: written, not recorded" "$out/preview.err"
bin/m365-sds-export -d "dbname=$db" "$out/elsewhere" 2>"$out/elsewhere.err"
[ "$(records)" = $((records_before + 1)) ] && grep -q 'a preview' "$out/elsewhere.err" && grep -q 'is not the SDS folder of configuration' "$out/elsewhere.err"
ok $? "an export to another folder is a preview: written, not recorded" "$out/elsewhere.err"
cp -rL "$out/sds" "$out/before_options"
PGOPTIONS="-c m365.sds_on_date=$(date -d '+400 days' +%F)" bin/m365-sds-export -d "dbname=$db" "$out/sds" 2>"$out/options.err"
[ "$(records)" = $((records_before + 2)) ] && diff -r "$out/before_options" "$out/sds" >/dev/null
ok $? "a day the session brings along (PGOPTIONS) is overridden: today's files, recorded as today's (red-team find: files of another day recorded as today's)" "$out/options.err"
PGUSER=$admin_user bin/m365-sds-export -c "$base" -d "dbname=$db" "$out/sds" 2>"$out/admin.err"
[ "$(records)" = $((records_before + 3)) ] && grep -q 'recorded as SDS record' "$out/admin.err"
ok $? "an admin's export with -c into the configuration's folder records too (red-team find: it was taken for a preview)" "$out/admin.err"
# Killed right after the swap (a stand-in mv that sends TERM to the export
# once the link is in place): the new version stays whole and linked.
mkdir -p "$out/wrap"
cat >"$out/wrap/mv" <<'MV'
#!/usr/bin/env bash
/bin/mv "$@"; status=$?
case "$*" in *.sds.link.*) kill -TERM "$PPID" ;; esac
exit $status
MV
chmod +x "$out/wrap/mv"
PATH="$out/wrap:$PATH" bin/m365-sds-export -d "dbname=$db" "$out/sds" 2>/dev/null
[ -L "$out/sds" ] && [ -s "$out/sds/users.csv" ] && diff -r "$out/before_options" "$out/sds" >/dev/null
ok $? "an export killed right after the swap leaves the new feed whole and linked (red-team find: its clean-up removed it)"
psql -X -q -At -d "$db" -c "BEGIN ISOLATION LEVEL REPEATABLE READ" -c "SELECT m365_sds.record_feed('/srv/sds/other', 1)" 2>"$out/other.err"
[ $? != 0 ] && grep -q 'may not record the SDS feed of configuration 1' "$out/other.err"
ok $? "a reader may not record another configuration's feed" "$out/other.err"

# The brake on mass changes: 30 of 55 users leaving (more than max(5 %, 25))
# holds the export; m365.status says so; an administrator sees who and why,
# approves that very set, and the next export goes through.
records_before=$(records) before=$(cat "$out/sds/"*.csv | md5sum)
asadmin -c "SELECT m365.set_sync(array_agg(id ORDER BY id), false) FROM (SELECT u.id FROM m365.username AS u JOIN m365.enrolment AS e ON e.student_id = u.person_id AND e.location_id = $base WHERE u.configuration_id = $base AND u.person_kind = 'student' ORDER BY u.id LIMIT 30) AS u" >/dev/null
bin/m365-sds-export -d "dbname=$db" "$out/sds" 2>"$out/held.err"
status=$?
[ $status = 6 ] && [ "$(cat "$out/sds/"*.csv | md5sum)" = "$before" ] && [ "$(records)" = "$records_before" ] &&
	grep -q '30 user(s) would leave and 0 be renamed' "$out/held.err"
ok $? "30 users leaving at once: held with exit 6 (was $status), nothing written, nothing recorded" "$out/held.err"
asadmin -c "SELECT sds_held FROM m365.status WHERE configuration_id = $base" | grep -q '^held at .*: 30 user(s) would leave'
ok $? "m365.status shows the configuration as held"
[ "$(asadmin -c "SELECT count(*) FILTER (WHERE change = 'user removed' AND reason = 'sync turned off') || '/' || count(*) FILTER (WHERE change = 'user removed') FROM m365.pending_sds_changes($base)")" = 30/30 ]
ok $? "m365.pending_sds_changes lists the 30 who would leave, each with the reason: sync turned off"
psql -X -q -At -d "$db" -c "SELECT * FROM m365.approve_sds_changes($base)" 2>"$out/approve.err"
[ $? != 0 ] && grep -q 'permission denied' "$out/approve.err"
ok $? "the SDS reader cannot approve" "$out/approve.err"
asadmin -c "SELECT approval_id FROM m365.approve_sds_changes($base, (SELECT digest FROM m365.sds_hold WHERE configuration_id = $base))" >/dev/null &&
	bin/m365-sds-export -d "dbname=$db" "$out/sds" 2>"$out/approved.err" && [ "$(records)" = $((records_before + 1)) ] &&
	[ -z "$(asadmin -c "SELECT sds_held FROM m365.status WHERE configuration_id = $base")" ] &&
	[ "$(asadmin -c "SELECT approved_by || ' ' || (used_by_record = (SELECT max(id) FROM m365.sds_record WHERE configuration_id = $base)) FROM m365.sds_approval WHERE configuration_id = $base ORDER BY id DESC LIMIT 1")" = "$admin_user true" ]
ok $? "approved by an administrator: the next export goes through and uses the approval, the hold is gone" "$out/approved.err"

# Red-team finds: a held feed went out as a "preview" whenever the folder
# was named another way than the configuration's SDS folder. Each now
# writes nothing.
asadmin -c "SELECT m365.set_sync(array_agg(id), true) FROM m365.username WHERE configuration_id = $base" >/dev/null
bin/m365-sds-export -d "dbname=$db" "$out/sds" 2>/dev/null
records_before=$(records) before=$(cat "$out/sds/"*.csv | md5sum)
asadmin -c "SELECT m365.set_sync(array_agg(id ORDER BY id), false) FROM (SELECT u.id FROM m365.username AS u JOIN m365.enrolment AS e ON e.student_id = u.person_id AND e.location_id = $base WHERE u.configuration_id = $base AND u.person_kind = 'student' AND u.sync ORDER BY u.id LIMIT 26) AS u" >/dev/null
bin/m365-sds-export -d "dbname=$db" "$out/sds" 2>/dev/null
[ $? = 6 ]
ok $? "back to 55, then 26 leave: held"
ln -sfn "$out/sds" "$out/through"
bin/m365-sds-export -d "dbname=$db" "$out/through/../sds" 2>"$out/dotdot.err"
status=$?
[ $status = 6 ] && [ "$(cat "$out/sds/"*.csv | md5sum)" = "$before" ]
ok $? "the SDS folder named through a symbolic link and .. (link/../sds): held too (exit $status)" "$out/dotdot.err"
bin/m365-sds-export -d "dbname=$db" --on-date "$(date -d '+3 days' +%F)" "$out/through/../sds" 2>/dev/null
status=$?
[ $status = 1 ] && [ "$(cat "$out/sds/"*.csv | md5sum)" = "$before" ]
ok $? "and a preview of another day named that way is refused (exit $status)"
mkdir -p "$out/decoy/sds"
(cd "$out" && CDPATH="$out/decoy" "$OLDPWD/bin/m365-sds-export" -d "dbname=$db" sds 2>/dev/null)
status=$?
[ $status = 6 ] && [ "$(cat "$out/sds/"*.csv | md5sum)" = "$before" ]
ok $? "a CDPATH pointing elsewhere changes nothing: held (exit $status)"
mkdir -p "$out/moved"
ln -s "$out/.sds.sds-configuration" "$out/moved/.sds.sds-configuration"
ln -s "$(readlink "$out/sds")" "$out/moved/sds" && ln -s "$out/$(readlink "$out/sds")" "$out/moved/$(readlink "$out/sds")"
bin/m365-sds-export -d "dbname=$db" "$out/moved/sds" 2>"$out/moved.err"
status=$?
[ $status = 1 ] && grep -q "is the SDS folder of configuration $base" "$out/moved.err" && grep -q 'UPDATE m365.configuration SET sds_folder' "$out/moved.err"
ok $? "the SDS folder under another path (a mount, a moved parent: its mark says whose it is) is no preview: nothing written, the fix said (exit $status)" "$out/moved.err"
asadmin -c "INSERT INTO m365.configuration (id, name) VALUES ($base + 8, 'export test other $base')" -c "SELECT m365.create_sds_reader('sds_export_other_$base', $base + 8)" >/dev/null
before=$(cat "$out/sds/"*.csv | md5sum)
PGUSER="sds_export_other_$base" bin/m365-sds-export -d "dbname=$db" --allow-empty "$out/sds" 2>"$out/other_config.err"
status=$?
[ $status = 1 ] && [ "$(cat "$out/sds/"*.csv | md5sum)" = "$before" ] &&
	grep -q -e "is the SDS folder of configuration $base" -e configuration_sds_folder_unique "$out/other_config.err"
ok $? "another configuration's reader cannot write into this configuration's SDS folder (exit $status)" "$out/other_config.err"
# The same, in the order CI once met by chance: the holder session fails
# after the files were written and before the export reads its answer. The
# export said nothing but "HOLDER[0]: unbound variable" (bash forgets a
# coprocess that has exited). Stand-ins force that order: psql holds
# record_feed back until the three writers' files exist, and rm, asked to
# remove .left_out (the export's last step before it reads the answer),
# waits until the holder has gone. The stand-in psql ends with psql's own
# status: one that ended with 0 hid that the coprocess, which inherits
# set -e, ended at a failed psql and never reached its cat.
mkdir -p "$out/late"
cat >"$out/late/psql" <<PSQL
#!/usr/bin/env bash
case "\$*" in *folder=*) ;; *) exec /usr/bin/psql "\$@" ;; esac
/usr/bin/psql "\$@" < <(while IFS= read -r line; do
	case \$line in *record_feed*) until [ -s roles.csv ] && [ -s orgs.csv ] && [ -s academicSessions.csv ]; do sleep 0.05; done ;; esac
	printf '%s\\n' "\$line"
done)
status=\$?
touch "$out/late/holder-gone"
exit \$status
PSQL
cat >"$out/late/rm" <<RM
#!/usr/bin/env bash
case "\$*" in *.left_out*) for i in \$(seq 200); do [ -e "$out/late/holder-gone" ] && break; sleep 0.05; done; sleep 0.3 ;; esac
exec /bin/rm "\$@"
RM
chmod +x "$out/late/psql" "$out/late/rm"
PATH="$out/late:$PATH" PGUSER="sds_export_other_$base" bin/m365-sds-export -d "dbname=$db" --allow-empty "$out/sds" 2>"$out/late.err"
status=$?
[ $status = 1 ] && [ "$(cat "$out/sds/"*.csv | md5sum)" = "$before" ] && grep -q configuration_sds_folder_unique "$out/late.err" &&
	grep -q 'could not be recorded' "$out/late.err"
ok $? "a holder session that fails after the files were written: nothing written, and its reason said (exit $status)" "$out/late.err"
PGUSER=$admin_user bin/m365-sds-export -d "dbname=$db" -c $((base + 8)) --allow-empty "$out/sds" 2>/dev/null
status=$?
[ $status = 1 ] && [ "$(cat "$out/sds/"*.csv | md5sum)" = "$before" ]
ok $? "nor an admin's export with another -c (exit $status)"
asadmin -c "UPDATE m365.configuration SET sds_folder = (SELECT sds_folder FROM m365.configuration WHERE id = $base) WHERE id = $base + 8" 2>/dev/null
[ $? != 0 ]
ok $? "two configurations cannot share one SDS folder"
live=$(readlink "$out/sds")
bin/m365-sds-export -d "dbname=$db" --allow-empty "$out/$live" 2>/dev/null
status=$?
[ $status = 2 ] && [ "$(readlink "$out/sds")" = "$live" ] && [ -d "$out/$live" ] && [ "$(cat "$out/sds/"*.csv | md5sum)" = "$before" ]
ok $? "the live version's own name is no FOLDER (exit $status): a red-team find moved it aside and swapped a held feed in under the link"
bin/m365-sds-export -d "dbname=$db" "$out/sds/inside" 2>/dev/null
status=$?
[ $status = 2 ] && [ ! -e "$out/sds/inside" ] && [ "$(cat "$out/sds/"*.csv | md5sum)" = "$before" ]
ok $? "nor a folder inside the live version (exit $status)"

# A reason with a comma in it (held): counted and said whole (the summary
# was read as "reason,count" and split inside the reason).
asadmin -c "SET m365.sds_configuration = '$base'" -c "INSERT INTO m365.username_hold (username_id, old_first_name, old_last_name, new_first_name, new_last_name)
            SELECT min(u.id), 'a', 'b', 'c', 'd' FROM m365.username AS u JOIN m365_sds.users AS f ON f.\"sourcedId\" = 'student-' || u.person_id
             WHERE u.configuration_id = $base AND u.person_kind = 'student'" >/dev/null
PGUSER=$admin_user bin/m365-sds-export -d "dbname=$db" -c "$base" --on-date "$(date +%F)" "$out/held_preview" 2>"$out/held_preview.err"
grep -qF "left out 1 user(s): held: the person's id came back, maybe as someone else (m365.username_hold; m365.forgotten_person), or the username" "$out/held_preview.err"
ok $? "a reason with a comma (held) is counted and said whole" "$out/held_preview.err"

[ "$failed" = 0 ]
