-- Attached sources (issue 15): the application's own tables, with Dutch names,
-- feed the school data. Everything runs in this test's transaction and is
-- rolled back; rows of earlier tests in the copies are not in these sources,
-- so the checks look at this test's ids (950000 on) only.
BEGIN;
SELECT plan(33);

CREATE FUNCTION pg_temp.outcome(statement text, role name DEFAULT NULL) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    IF role IS NOT NULL THEN
        EXECUTE format('SET LOCAL ROLE %I', role);
    END IF;
    EXECUTE statement;
    RESET ROLE;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RESET ROLE;
    RETURN SQLSTATE;
END
$$;
-- This test's rows of the drift: (entity, first key, problem).
CREATE FUNCTION pg_temp.drift() RETURNS TABLE (entity text, key bigint, problem text) LANGUAGE sql AS $$
    SELECT d.entity, d.key[1], d.problem FROM m365.source_drift() AS d
     WHERE d.key IS NULL OR d.key[1] >= 950000 ORDER BY 1, 2
$$;

-- The application's schema, owned by the application's role.
CREATE SCHEMA app AUTHORIZATION m365_app;
SET LOCAL ROLE m365_app;
CREATE TABLE app.vestiging (vestiging_nr bigint PRIMARY KEY, school_nr bigint NOT NULL, naam text NOT NULL);
CREATE TABLE app.leerling (leerling_nr bigint PRIMARY KEY, voornaam text, familienaam text, extra text);
CREATE TABLE app.inschrijving (inschrijving_nr integer PRIMARY KEY, leerling_nr bigint, vestiging_nr bigint,
                               begindatum date, einddatum date);
CREATE VIEW app.leerling_view AS SELECT * FROM app.leerling;
CREATE TABLE app.leerling_tekst (code text PRIMARY KEY, voornaam text, familienaam text);
-- What the administrator who attaches needs on them (docs/attach.md).
GRANT USAGE ON SCHEMA app TO m365_admin;
GRANT SELECT, TRIGGER ON ALL TABLES IN SCHEMA app TO m365_admin;
RESET ROLE;
INSERT INTO m365.configuration (id, name, username_format) VALUES (950000, 'attach', 'voornaam.naam');
INSERT INTO m365.school (id, name, configuration_id) VALUES (950000, 'School', 950000);
INSERT INTO app.vestiging VALUES (950001, 950000, 'Campus Noord');
INSERT INTO app.leerling VALUES (950001, 'Jan', 'Peeters', 'x'), (950002, 'An', '', NULL), (950003, '  ', '', NULL);
INSERT INTO app.inschrijving VALUES (950001, 950001, 950001, CURRENT_DATE, NULL),
                                    (950002, 950002, 950001, CURRENT_DATE, CURRENT_DATE - 1),
                                    (950003, 950009, 950001, CURRENT_DATE, NULL);

-- Bad mappings get their own SQLSTATE.
SELECT is(pg_temp.outcome($$SELECT m365.attach_source('leerling', 'app.leerling')$$), '22023', 'an unknown entity: 22023');
SELECT is(pg_temp.outcome($$SELECT m365.attach_source('student', 'app.leerling_view', '{"id": "leerling_nr"}')$$), '42809',
          'a view: 42809');
SELECT is(pg_temp.outcome($$SELECT m365.attach_source('student', 'app.leerling', '{"id": "leerling_nr", "first_name": "roepnaam"}')$$),
          '42703', 'a column the table does not have: 42703');
SELECT is(pg_temp.outcome($$SELECT m365.attach_source('student', 'app.leerling', '{"id": "leerling_nr"}')$$), '42703',
          'a required column left unmapped (no first_name in the table): 42703');
SELECT is(pg_temp.outcome($$SELECT m365.attach_source('student', 'app.leerling_tekst', '{"id": "code", "first_name": "voornaam", "last_name": "familienaam"}')$$),
          '42804', 'a text key: 42804');
SELECT is(pg_temp.outcome($$SELECT m365.attach_source('location', 'app.vestiging', '{"id": "vestiging_nr", "school_id": "school_nr", "name": "naam", "configuration_id": "school_nr"}')$$),
          '42703', 'a location''s configuration is not mappable: it stays the administrators''');
SELECT is(pg_temp.outcome($$SELECT m365.attach_source('student', 'app.leerling', '{"id": "leerling_nr", "first_name": "voornaam", "last_name": "familienaam"}')$$, 'm365_app'),
          '42501', 'the application''s role may not attach');

-- Attach: the rows the copies can take are copied, the others wait with their reason.
SELECT is(pg_temp.outcome($$SELECT m365.attach_source('location', 'app.vestiging', '{"id": "vestiging_nr", "school_id": "school_nr", "name": "naam"}')$$, 'm365_admin'),
          'ok', 'an administrator attaches the locations');
SELECT is(pg_temp.outcome($$UPDATE m365.location SET configuration_id = 950000 WHERE id = 950001$$, 'm365_admin'), 'ok',
          'an administrator puts the attached location in its configuration (before: 55000, the copy refused every update)');
SELECT is(pg_temp.outcome($$UPDATE m365.location SET name = 'Elders' WHERE id = 950001$$, 'm365_admin'), '55000',
          'but a column the application''s table feeds is refused: write that table');
SELECT is(pg_temp.outcome($$SELECT m365.attach_source('student', 'app.leerling', '{"id": "leerling_nr", "first_name": "voornaam", "last_name": "familienaam"}')$$, 'm365_admin'),
          'ok', 'the students');
SELECT is(pg_temp.outcome($$SELECT m365.attach_source('student', 'app.leerling', '{"id": "leerling_nr", "first_name": "voornaam", "last_name": "familienaam"}')$$),
          '42710', 'an entity attached twice: 42710');
SELECT is(pg_temp.outcome($$SELECT m365.attach_source('enrolment', 'app.inschrijving', '{"id": "inschrijving_nr", "student_id": "leerling_nr", "location_id": "vestiging_nr", "start_date": "begindatum", "end_date": "einddatum"}')$$, 'm365_admin'),
          'ok', 'and the enrolments');
SELECT set_eq($$SELECT id, first_name, last_name FROM m365.student WHERE id >= 950000$$,
              $$VALUES (950001::bigint, 'Jan', 'Peeters'), (950002, 'An', '')$$, 'the students the copy can take are in it');
SELECT set_eq($$SELECT entity, key, split_part(problem, '"', 4) FROM pg_temp.drift()$$,
              $$VALUES ('enrolment', 950002::bigint, 'enrolment_end_not_before_start'), ('enrolment', 950003, 'enrolment_student_id_fkey'),
                       ('student', 950003, 'student_has_a_name')$$,
              'the others wait, each with the constraint it breaks: an end before the start, an unknown student, no name');

-- From now on the application writes only its own tables.
SET LOCAL ROLE m365_app;
INSERT INTO app.inschrijving VALUES (950004, 950004, 950001, CURRENT_DATE, NULL);   -- before its student
INSERT INTO app.leerling VALUES (950004, 'Piet', 'Maes');
UPDATE app.leerling SET familienaam = 'Peeters-Maes' WHERE leerling_nr = 950001;
RESET ROLE;
SELECT is((SELECT student_id FROM m365.enrolment WHERE id = 950004), 950004::bigint,
          'an enrolment written before its student is taken in when the student comes');
SELECT is((SELECT last_name FROM m365.student WHERE id = 950001), 'Peeters-Maes', 'an update reaches the copy in the same transaction');
SELECT is(pg_temp.outcome($$INSERT INTO m365.student (id, first_name, last_name) VALUES (950099, 'Direct', 'Write')$$, 'm365_app'),
          '55000', 'a direct write to an attached copy is refused');

-- A key change is a delete and an insert: the enrolment waits for its student.
SET LOCAL ROLE m365_app;
UPDATE app.leerling SET leerling_nr = 950040 WHERE leerling_nr = 950004;
RESET ROLE;
SELECT is((SELECT count(*) FROM m365.enrolment WHERE id = 950004) || ' ' || (SELECT count(*) FROM pg_temp.drift() WHERE key = 950004),
          '0 1', 'a student''s key changed: the old copy row goes, and its enrolment leaves the copy and waits');
SET LOCAL ROLE m365_app;
UPDATE app.inschrijving SET leerling_nr = 950040 WHERE inschrijving_nr = 950004;
RESET ROLE;
SELECT is((SELECT student_id FROM m365.enrolment WHERE id = 950004), 950040::bigint, 'the application follows: the enrolment is back');

-- A reload of the locations (delete, insert) keeps the administrators' decisions.
SELECT is(pg_temp.outcome($$UPDATE m365.location SET student_domain = 'leerling.attach.be' WHERE id = 950001$$, 'm365_admin'), 'ok',
          'an administrator sets the attached location''s domain');
SET LOCAL ROLE m365_app;
DELETE FROM app.inschrijving WHERE vestiging_nr = 950001;
DELETE FROM app.vestiging WHERE vestiging_nr = 950001;
INSERT INTO app.vestiging VALUES (950001, 950000, 'Campus Noord (herladen)');
INSERT INTO app.inschrijving VALUES (950001, 950001, 950001, CURRENT_DATE, NULL), (950004, 950040, 950001, CURRENT_DATE, NULL);
RESET ROLE;
SELECT is((SELECT concat_ws(' ', configuration_id, student_domain, name) FROM m365.location WHERE id = 950001),
          '950000 leerling.attach.be Campus Noord (herladen)',
          'a location deleted and inserted again by the application keeps its configuration and domain (before: NULL, out of its tenant)');

-- Savepoints and TRUNCATE.
SAVEPOINT before_truncate;
SET LOCAL ROLE m365_app;
TRUNCATE app.leerling;
RESET ROLE;
SELECT is((SELECT count(*) FROM m365.student WHERE id >= 950000) || ' ' || (SELECT count(*) FROM m365.enrolment WHERE id >= 950000),
          '0 0', 'TRUNCATE of the students: their copies go, and the enrolments that refer to them leave and wait');
ROLLBACK TO SAVEPOINT before_truncate;
SELECT is((SELECT count(*) FROM m365.student WHERE id >= 950000) || ' ' || (SELECT count(*) FROM m365.enrolment WHERE id >= 950000),
          '3 2', 'rolled back to the savepoint, the copies are as before');

-- The job, on the copies.
SELECT m365.generate_usernames_in_transaction();
SELECT set_eq($$SELECT username FROM m365.username WHERE configuration_id = 950000$$, $$VALUES ('jan.peeters-maes'), ('piet.maes')$$,
              'the job makes the usernames of the attached students with an enrolment that has not ended');

-- The application's table changes shape: its DML goes on, the attachment says it is broken.
SET LOCAL ROLE m365_app;
ALTER TABLE app.leerling RENAME COLUMN voornaam TO roepnaam;
INSERT INTO app.leerling VALUES (950005, 'Els', 'Wouters');
RESET ROLE;
SELECT is((SELECT problem FROM pg_temp.drift() WHERE entity = 'student'), 'the attachment is broken: column voornaam is gone (renamed or dropped)',
          'a renamed column: the application''s insert succeeds and the attachment reports itself broken');
SET LOCAL ROLE m365_app;
ALTER TABLE app.leerling RENAME COLUMN roepnaam TO voornaam;
RESET ROLE;
SELECT is(m365.resync_source('student'), 1::bigint, 'renamed back, resync takes the new student in (one row still waits: the nameless one)');
SELECT is((SELECT first_name FROM m365.student WHERE id = 950005), 'Els', 'Els is in the copy');

-- An attack: the application's role owns its table and its types. It turns a
-- mapped column into a type of its own whose cast to text would make it a
-- superuser if it ran with the extension's rights.
SET LOCAL ROLE m365_app;
CREATE TYPE app.naam AS ENUM ('Mia');
CREATE FUNCTION app.naam_text(app.naam) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
    EXECUTE 'ALTER ROLE m365_app SUPERUSER';
    RETURN $1::text;
END
$f$;
CREATE CAST (app.naam AS text) WITH FUNCTION app.naam_text(app.naam) AS IMPLICIT;
DROP VIEW app.leerling_view;
ALTER TABLE app.leerling ALTER COLUMN voornaam TYPE app.naam USING 'Mia';
INSERT INTO app.leerling VALUES (950006, 'Mia', 'Claes');
RESET ROLE;
SELECT is((SELECT rolsuper FROM pg_roles WHERE rolname = 'm365_app'), false, 'the planted cast never ran with the extension''s rights');
SELECT matches((SELECT problem FROM pg_temp.drift() WHERE entity = 'student'), 'voornaam is of type app.naam, which does not fit',
               'the attachment is broken, and says why');

-- Detach, and DROP EXTENSION while attached.
SELECT throws_ok('DROP EXTENSION m365_usernames', '2BP01', NULL, 'DROP EXTENSION is refused while tables are attached (the application''s triggers depend on it)');
SELECT is(pg_temp.outcome($$SELECT m365.detach_source('student')$$, 'm365_admin'), 'ok', 'an administrator detaches the students');
SELECT is((SELECT count(*) FROM pg_trigger WHERE tgrelid = 'app.leerling'::regclass AND tgname LIKE 'm365%'), 0::bigint,
          'the triggers are off the application''s table');

SELECT * FROM finish();
ROLLBACK;
