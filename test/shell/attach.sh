#!/usr/bin/env bash
# Attached sources through a backup and a DROP EXTENSION (issue 15): pg_dump +
# pg_restore of a database whose school data comes from the application's own
# tables restores without an error and without a row twice, the first run
# after it creates and changes no username, and DROP EXTENSION leaves the
# application's tables as they were; a school reloaded in one transaction
# brings its locations and their enrolments back. Prints TAP (run with prove).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PG_BIN=/usr/lib/postgresql/15/bin
src="attach_src_$$" dst="attach_dst_$$"
work=$(mktemp -d /tmp/m365_attach_test.XXXXXX)
trap 'rm -rf "$work"; psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $src" -c "DROP DATABASE IF EXISTS $dst" >/dev/null 2>&1' EXIT
source test/shell/lib/tap.sh
sql() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
copies() {
	sql -d "$1" -c "SELECT md5(string_agg(t, '|' ORDER BY t)) FROM (
	    SELECT 's' || s::text AS t FROM m365.student AS s UNION ALL SELECT 'e' || e::text FROM m365.enrolment AS e
	    UNION ALL SELECT 'l' || l::text FROM m365.location AS l UNION ALL SELECT 'u' || (to_jsonb(u) - 'updated_at')::text FROM m365.username AS u
	    UNION ALL SELECT 'w' || w.entity || w.key::text FROM m365.source_waiting AS w) AS x"
}

echo "1..7"
sql -d postgres -c "CREATE DATABASE $src" -c "CREATE DATABASE $dst" >/dev/null &&
	sql -d "$src" -c "SET client_min_messages = error" -c "CREATE EXTENSION m365_usernames" >/dev/null &&
	sql -d "$src" >/dev/null <<'SQL'
CREATE SCHEMA app;
CREATE TABLE app.vestiging (vestiging_nr bigint PRIMARY KEY, school_nr bigint NOT NULL, naam text NOT NULL DEFAULT 'Campus');
CREATE TABLE app.leerling (leerling_nr bigint PRIMARY KEY, voornaam text NOT NULL, familienaam text NOT NULL,
                           aangemaakt timestamptz NOT NULL DEFAULT now());
CREATE TABLE app.inschrijving (inschrijving_nr bigint PRIMARY KEY, leerling_nr bigint NOT NULL, vestiging_nr bigint NOT NULL,
                               begindatum date NOT NULL, einddatum date);
CREATE INDEX ON app.inschrijving (leerling_nr);
INSERT INTO m365.configuration (id, name) VALUES (1, 'attach');
INSERT INTO m365.school (id, name, configuration_id) VALUES (1, 'School', 1);
INSERT INTO app.vestiging VALUES (11, 1, 'Noord');
CREATE TEMP TABLE person (n serial, first_name text, last_name text);
\copy person (first_name, last_name) FROM 'data/persons.csv' CSV HEADER
INSERT INTO app.leerling (leerling_nr, voornaam, familienaam) SELECT n, first_name, last_name FROM person WHERE n <= 3000;
INSERT INTO app.leerling (leerling_nr, voornaam, familienaam) VALUES (9001, ' ', '');   -- no name: waits
INSERT INTO app.inschrijving SELECT n, n, 11, DATE '2026-09-01', NULL FROM person WHERE n <= 3000;
SELECT m365.attach_source('location', 'app.vestiging', '{"id": "vestiging_nr", "school_id": "school_nr", "name": "naam"}');
UPDATE m365.location SET configuration_id = 1;
SELECT m365.attach_source('student', 'app.leerling', '{"id": "leerling_nr", "first_name": "voornaam", "last_name": "familienaam"}');
SELECT m365.attach_source('enrolment', 'app.inschrijving',
       '{"id": "inschrijving_nr", "student_id": "leerling_nr", "location_id": "vestiging_nr", "start_date": "begindatum", "end_date": "einddatum"}');
SQL
sql -d "$src" -c "CALL m365.generate_usernames()" >/dev/null &&
	[ "$(sql -d "$src" -c "SELECT count(*) FROM m365.username")" = 3000 ] &&
	[ "$(sql -d "$src" -c "SELECT count(*) FROM m365.source_drift()")" = 1 ]
ok $? "3,000 students attached from the application's tables, their usernames made, the nameless one waiting"

"$PG_BIN/pg_dump" -Fc -d "$src" -f "$work/dump" 2>"$work/err" && "$PG_BIN/pg_restore" -d "$dst" "$work/dump" 2>>"$work/err"
status=$?
[ $status = 0 ] || sed 's/^/# /' "$work/err" | head -5
ok $status "pg_dump and pg_restore without an error"
[ "$(copies "$src")" = "$(copies "$dst")" ] &&
	[ "$(sql -d "$dst" -c "SELECT count(*) FROM app.leerling")" = 3001 ] &&
	[ "$(sql -d "$dst" -c "SELECT count(*) FROM m365.student")" = 3000 ] &&
	[ "$(sql -d "$dst" -c "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'm365_%' AND tgrelid::regclass::text LIKE 'app.%'")" = 12 ]
ok $? "the copies, the usernames and what waits are the same, no row twice, the triggers on the application's tables are back"
before=$(copies "$dst")
sql -d "$dst" -c "CALL m365.generate_usernames()" >/dev/null &&
	[ "$(copies "$dst")" = "$before" ] &&
	sql -d "$dst" -c "INSERT INTO app.leerling (leerling_nr, voornaam, familienaam) VALUES (5001, 'Nieuw', 'Na Restore')" \
		-c "INSERT INTO app.inschrijving VALUES (5001, 5001, 11, CURRENT_DATE, NULL)" -c "CALL m365.generate_usernames()" >/dev/null &&
	[ "$(sql -d "$dst" -c "SELECT username FROM m365.username WHERE person_id = 5001")" = "narestore.nieuw" ]
status=$?
[ $status = 0 ] || echo "# after the run: $(sql -d "$dst" -c "SELECT count(*) FROM m365.username") usernames, new one: $(sql -d "$dst" -c "SELECT username FROM m365.username WHERE person_id = 5001")"
ok $status "the first run after the restore creates and changes nothing; a student the application adds then gets a username"

! sql -d "$dst" -c "DROP EXTENSION m365_usernames" >/dev/null 2>"$work/drop.err" &&
	grep -q "depends on function m365.source_changed()" "$work/drop.err"
ok $? "DROP EXTENSION is refused while the application's tables are attached"
cols_before=$(sql -d "$dst" -c "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), ''), ', ' ORDER BY attrelid, attnum)
                                FROM pg_attribute AS a LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                               WHERE attrelid IN ('app.leerling'::regclass, 'app.inschrijving'::regclass, 'app.vestiging'::regclass) AND attnum > 0")
rows_before=$(sql -d "$dst" -c "SELECT md5(string_agg(x::text, '|' ORDER BY x::text)) FROM (SELECT l::text AS x FROM app.leerling AS l UNION ALL SELECT i::text FROM app.inschrijving AS i) AS y")
sql -d "$dst" -c "SET client_min_messages = warning" -c "DROP EXTENSION m365_usernames CASCADE" >/dev/null 2>&1 &&
	[ "$(sql -d "$dst" -c "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), ''), ', ' ORDER BY attrelid, attnum)
	                         FROM pg_attribute AS a LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
	                        WHERE attrelid IN ('app.leerling'::regclass, 'app.inschrijving'::regclass, 'app.vestiging'::regclass) AND attnum > 0")" = "$cols_before" ] &&
	[ "$(sql -d "$dst" -c "SELECT md5(string_agg(x::text, '|' ORDER BY x::text)) FROM (SELECT l::text AS x FROM app.leerling AS l UNION ALL SELECT i::text FROM app.inschrijving AS i) AS y")" = "$rows_before" ] &&
	[ "$(sql -d "$dst" -c "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'm365_%'")" = 0 ] &&
	sql -d "$dst" -c "INSERT INTO app.leerling (leerling_nr, voornaam, familienaam) VALUES (5002, 'Na', 'Drop')" >/dev/null
ok $? "DROP EXTENSION CASCADE drops only the triggers: the application's tables keep every row, column and default, and take writes"

# A school the application reloads (delete, insert) in one transaction: its
# locations come back, and their enrolments with them (a red-team find: the
# enrolments waited for the next run).
reload="attach_reload_$$"
trap 'rm -rf "$work"; psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $src" -c "DROP DATABASE IF EXISTS $dst" -c "DROP DATABASE IF EXISTS $reload" >/dev/null 2>&1' EXIT
sql -d postgres -c "CREATE DATABASE $reload" >/dev/null &&
	sql -d "$reload" -c "SET client_min_messages = error" -c "CREATE EXTENSION m365_usernames" >/dev/null &&
	sql -d "$reload" >/dev/null <<'SQL' &&
CREATE SCHEMA app;
CREATE TABLE app.school (nr bigint PRIMARY KEY, naam text NOT NULL);
CREATE TABLE app.vestiging (nr bigint PRIMARY KEY, school bigint NOT NULL, naam text NOT NULL);
CREATE TABLE app.leerling (nr bigint PRIMARY KEY, voornaam text NOT NULL, naam text NOT NULL);
CREATE TABLE app.inschrijving (nr bigint PRIMARY KEY, leerling bigint NOT NULL, vestiging bigint NOT NULL, begin date NOT NULL);
INSERT INTO app.school VALUES (1, 'Sint-Jan');
INSERT INTO app.vestiging VALUES (10, 1, 'Campus A');
INSERT INTO app.leerling VALUES (1, 'Ann', 'Een');
INSERT INTO app.inschrijving VALUES (1, 1, 10, '2020-09-01');
SELECT m365.attach_source('school', 'app.school', '{"id": "nr", "name": "naam"}');
SELECT m365.attach_source('location', 'app.vestiging', '{"id": "nr", "school_id": "school", "name": "naam"}');
SELECT m365.attach_source('student', 'app.leerling', '{"id": "nr", "first_name": "voornaam", "last_name": "naam"}');
SELECT m365.attach_source('enrolment', 'app.inschrijving', '{"id": "nr", "student_id": "leerling", "location_id": "vestiging", "start_date": "begin"}');
BEGIN;
DELETE FROM app.school WHERE nr = 1;
INSERT INTO app.school VALUES (1, 'Sint-Jan');
COMMIT;
SQL
	[ "$(sql -d "$reload" -c "SELECT (SELECT count(*) FROM m365.location) || ' ' || (SELECT count(*) FROM m365.enrolment) || ' ' || (SELECT count(*) FROM m365.source_waiting)")" = "1 1 0" ]
ok $? "a school reloaded in one transaction brings back its location and the location's enrolment; nothing waits"

[ "$failed" = 0 ]
