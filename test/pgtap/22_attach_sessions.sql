-- Attached sources across sessions (issue 15), in a database of their own
-- (attachments are committed here): an enrolment written in one transaction
-- while another commits its student is taken in by the next run at the
-- latest, and the application's two sessions never fail.
BEGIN;
SELECT plan(23);
\ir lib/session.psql

CREATE TEMP TABLE db AS SELECT 'm365_attach_' || pg_backend_pid() AS name;
SELECT dblink_connect('server', (SELECT info FROM conn));
SELECT dblink_exec('server', format('DROP DATABASE IF EXISTS %I', (SELECT name FROM db)));
SELECT dblink_exec('server', format('CREATE DATABASE %I', (SELECT name FROM db)));
CREATE TEMP TABLE there AS
SELECT replace((SELECT info FROM conn), 'dbname=' || current_database(), 'dbname=' || (SELECT name FROM db)) AS info;
SELECT dblink_connect('owner', (SELECT info FROM there));
SELECT dblink_connect('a', (SELECT info FROM there));
SELECT dblink_connect('b', (SELECT info FROM there));
SELECT dblink_exec('owner', $$
    CREATE EXTENSION m365_usernames;
    SELECT m365.grant_access('m365_app', 'app');
    CREATE SCHEMA app AUTHORIZATION m365_app;
    SET ROLE m365_app;
    CREATE TABLE app.vestiging (nr bigint PRIMARY KEY, school bigint NOT NULL, naam text NOT NULL);
    CREATE TABLE app.leerling (nr bigint PRIMARY KEY, voornaam text NOT NULL, naam text NOT NULL);
    CREATE TABLE app.inschrijving (nr bigint PRIMARY KEY, leerling bigint NOT NULL, vestiging bigint NOT NULL, van date NOT NULL);
    RESET ROLE;
    INSERT INTO m365.configuration (id, name) VALUES (1, 'sessions');
    INSERT INTO m365.school (id, name, configuration_id) VALUES (1, 'School', 1);
    INSERT INTO app.vestiging VALUES (11, 1, 'Noord');
$$);
SELECT * FROM dblink('owner', $$SELECT m365.attach_source('location', 'app.vestiging', '{"id": "nr", "school_id": "school", "name": "naam"}')::text$$) AS t(r text);
SELECT dblink_exec('owner', 'UPDATE m365.location SET configuration_id = 1');
SELECT * FROM dblink('owner', $$SELECT m365.attach_source('student', 'app.leerling', '{"id": "nr", "first_name": "voornaam", "last_name": "naam"}')::text$$) AS t(r text);
SELECT * FROM dblink('owner', $$SELECT m365.attach_source('enrolment', 'app.inschrijving',
                                   '{"id": "nr", "student_id": "leerling", "location_id": "vestiging", "start_date": "van"}')::text$$) AS t(r text);

-- A writes the enrolment; B commits the student meanwhile; then A commits.
SELECT dblink_exec('a', 'BEGIN');
SELECT is(dblink_exec('a', 'INSERT INTO app.inschrijving VALUES (7, 7, 11, CURRENT_DATE)'), 'INSERT 0 1',
          'session A writes an enrolment whose student is not there yet');
SELECT is(dblink_exec('b', $$INSERT INTO app.leerling VALUES (7, 'Lena', 'Maes')$$), 'INSERT 0 1',
          'session B commits the student meanwhile');
SELECT dblink_exec('a', 'COMMIT');
SELECT is((SELECT problem FROM dblink('owner', 'SELECT problem FROM m365.source_drift() WHERE entity = ''enrolment''') AS t(problem text)),
          'insert or update on table "enrolment" violates foreign key constraint "enrolment_student_id_fkey"',
          'neither saw the other: the enrolment waits');
SELECT is((SELECT n FROM dblink('owner', 'SELECT m365.generate_usernames_in_transaction()') AS t(n int)), 1,
          'the next run takes it in first, and makes Lena''s username');
SELECT is((SELECT n FROM dblink('owner', 'SELECT count(*) FROM m365.source_drift()') AS t(n bigint)), 0::bigint, 'nothing waits any more');

-- Rows other transactions left waiting are the job's to try again: a write
-- does not (a red-team find: 2,000 of them made every one-row write of a
-- related entity take seconds). Counted by the calls of the copy's writer.
SELECT dblink_exec('b', $$INSERT INTO app.inschrijving SELECT g, 7, 99, CURRENT_DATE FROM generate_series(1000, 1299) AS g$$);
SELECT dblink_exec('a', 'BEGIN');
SELECT dblink_exec('a', $$SET LOCAL track_functions = 'all'$$);
SELECT dblink_exec('a', $$INSERT INTO app.leerling VALUES (18, 'Mo', 'Claes')$$);
SELECT is((SELECT n FROM dblink('a', $$SELECT calls FROM pg_stat_xact_user_functions WHERE schemaname = 'm365' AND funcname = 'source_write'$$) AS t(n bigint)),
          1::bigint, 'a new student does not try again the 300 enrolments another transaction left waiting (before: hundreds of calls)');
SELECT dblink_exec('a', 'COMMIT');
SELECT is((SELECT n FROM dblink('owner', 'SELECT count(*) FROM m365.source_waiting WHERE entity = ''enrolment''') AS t(n bigint)), 300::bigint,
          'they still wait, with their reason, for the job or a resync');
SELECT dblink_exec('b', 'DELETE FROM app.inschrijving WHERE nr BETWEEN 1000 AND 1299');

-- Red-team finds, each as the application's role.
SELECT dblink_exec('a', 'SET ROLE m365_app');
SELECT dblink_exec('b', 'SET ROLE m365_app');
SELECT dblink_exec('a', $$INSERT INTO app.leerling VALUES (1, 'Ann', 'Een'), (3, '  ', ''); INSERT INTO app.inschrijving VALUES (1, 1, 11, CURRENT_DATE), (2, 7, 11, CURRENT_DATE)$$);

-- 1. A deadlock the application would not have without the extension: B
-- holds an enrolment row, A deletes a student and waits for B's row, then B
-- writes an enrolment of that student. B's trigger used to wait for A on the
-- copy.
SELECT dblink_exec('b', 'BEGIN');
SELECT dblink_exec('b', 'UPDATE app.inschrijving SET van = van WHERE nr = 2');
SELECT dblink_exec('a', 'BEGIN');
SELECT dblink_exec('a', 'DELETE FROM app.leerling WHERE nr = 1');
SELECT dblink_send_query('a', 'UPDATE app.inschrijving SET van = van WHERE nr = 2');   -- waits for B
SELECT pg_sleep(0.3);
SELECT dblink_send_query('b', 'INSERT INTO app.inschrijving VALUES (5, 1, 11, CURRENT_DATE)');
SELECT pg_sleep(0.3);
CREATE TEMP TABLE b_answer AS SELECT * FROM dblink_get_result('b', false) AS t(r text);
SELECT * FROM dblink_get_result('b', false) AS t(r text);
SELECT is(dblink_exec('b', 'COMMIT'), 'COMMIT', 'B''s insert of an enrolment of the student A deletes returns and commits');
SELECT pg_sleep(0.2);
CREATE TEMP TABLE a_answer AS SELECT * FROM dblink_get_result('a', false) AS t(r text);
SELECT * FROM dblink_get_result('a', false) AS t(r text);
SELECT is(dblink_exec('a', 'COMMIT'), 'COMMIT', 'and A''s update, which waited for B, commits: no deadlock (before: 40P01 for one of them)');

-- 2. A retype racing a read: an administrator's resync waits for the
-- application's ALTER TABLE, and then must not read the new type, whose cast
-- the application wrote (it records who ran it).
SELECT dblink_exec('a', $$
    CREATE TABLE app.ran_as (who name);
    CREATE TYPE app.evil AS (v text);
    CREATE FUNCTION app.evil_to_text(app.evil) RETURNS text LANGUAGE plpgsql AS $f$
    BEGIN INSERT INTO app.ran_as VALUES (current_user); RETURN 'Evil'; END $f$;
    CREATE CAST (app.evil AS text) WITH FUNCTION app.evil_to_text(app.evil) AS ASSIGNMENT;
$$);
SELECT dblink_exec('a', 'BEGIN');
SELECT dblink_exec('a', 'ALTER TABLE app.leerling ALTER COLUMN voornaam TYPE app.evil USING ROW(voornaam)::app.evil');
SELECT dblink_send_query('owner', $$SELECT m365.resync_source('student')::text$$);
SELECT pg_sleep(0.3);
SELECT dblink_exec('a', 'COMMIT');
SELECT pg_sleep(0.2);
SELECT * FROM dblink_get_result('owner', false) AS t(r text);
SELECT * FROM dblink_get_result('owner', false) AS t(r text);
SELECT is((SELECT n FROM dblink('owner', 'SELECT count(*) FROM app.ran_as') AS t(n bigint)), 0::bigint,
          'the application''s cast never ran inside the extension (before: it ran as the superuser owner)');
SELECT matches((SELECT problem FROM dblink('owner', 'SELECT problem FROM m365.source_drift() WHERE entity = ''student''') AS t(problem text)),
               'voornaam is of type app.evil', 'the attachment is broken, and says why');
SELECT is(dblink_exec('b', $$INSERT INTO app.leerling VALUES (8, ROW('Mia')::app.evil, 'Claes')$$), 'INSERT 0 1',
          'the application writes on; its cast ran only for itself');
SELECT is((SELECT string_agg(DISTINCT who::text, ',') FROM dblink('owner', 'SELECT who FROM app.ran_as') AS t(who name)), NULL,
          'and never with the extension''s rights');

-- 3. A nondeterministic collation of the application's made every drift
-- query and resync fail.
SELECT dblink_exec('a', $$CREATE COLLATION app.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
                          ALTER TABLE app.vestiging ALTER COLUMN naam TYPE text COLLATE app.ci$$);
SELECT is((SELECT n FROM dblink('owner', $$SELECT m365.resync_source('location')$$) AS t(n bigint)), 0::bigint,
          'a column in a nondeterministic collation: resync and drift still work (before: could not determine which collation)');

-- 4. Round two: a REPEATABLE READ snapshot older than a retype showed the
-- check the old type while the read was planned with the new one.
SELECT dblink_exec('b', $$
    CREATE TYPE app.comp AS (v text);
    CREATE FUNCTION app.comp_text(app.comp) RETURNS text LANGUAGE plpgsql AS $f$
    BEGIN INSERT INTO app.ran_as VALUES (current_user); RETURN 'Evil'; END $f$;
    CREATE CAST (app.comp AS text) WITH FUNCTION app.comp_text(app.comp) AS ASSIGNMENT;
$$);
SELECT dblink_exec('a', 'BEGIN ISOLATION LEVEL REPEATABLE READ');
SELECT * FROM dblink('a', 'SELECT count(*) FROM app.ran_as') AS t(n bigint);
SELECT dblink_exec('b', 'ALTER TABLE app.vestiging ALTER COLUMN naam TYPE app.comp USING ROW(naam)::app.comp');
SELECT is(dblink_exec('a', $$INSERT INTO app.vestiging VALUES (12, 1, ROW('Zuid')::app.comp)$$), 'INSERT 0 1',
          'the application inserts at REPEATABLE READ after the retype');
SELECT dblink_exec('a', 'COMMIT');
SELECT is((SELECT n FROM dblink('owner', 'SELECT count(*) FROM app.ran_as') AS t(n bigint)), 0::bigint,
          'its cast never ran inside the extension (before: as the superuser owner)');

-- 5. Round two: the trigger's record of a failure waited on a waiting row
-- another transaction held, and failed the application's statement.
SELECT dblink_exec('b', $$INSERT INTO app.inschrijving VALUES (9, 7, 11, CURRENT_DATE)$$);
SELECT dblink_exec('b', 'ALTER TABLE app.inschrijving ADD COLUMN tot date');
SELECT * FROM dblink('owner', $$SELECT m365.detach_source('enrolment')$$) AS t(detached boolean);
SELECT * FROM dblink('owner', $$SELECT m365.attach_source('enrolment', 'app.inschrijving',
                                   '{"id": "nr", "student_id": "leerling", "location_id": "vestiging", "start_date": "van", "end_date": "tot"}')::text$$) AS t(r text);
SELECT dblink_exec('b', 'UPDATE app.inschrijving SET tot = van - 1 WHERE nr = 9');
SELECT dblink_exec('owner', 'BEGIN');
SELECT * FROM dblink('owner', 'SELECT m365.retry_waiting_sources()') AS t(n bigint);
SELECT is(dblink_exec('b', 'UPDATE app.inschrijving SET tot = van - 2 WHERE nr = 9'), 'UPDATE 1',
          'the application''s update of a waiting row succeeds while a retry holds it');
SELECT dblink_exec('owner', 'COMMIT');

-- 6. The source's rows are found through its own key column (its index), so
-- that column is compared as it is: a retype of the key to a type of the
-- application's with an implicit cast to bigint, committed after a
-- REPEATABLE READ snapshot, must not run that cast as the owner.
SELECT dblink_exec('b', $$
    CREATE TYPE app.knr AS ENUM ('1', '2', '3', '4', '5', '6', '7', '8', '9', '20');   -- (reads as an integer)
    CREATE FUNCTION app.knr_int(app.knr) RETURNS bigint LANGUAGE plpgsql AS $f$
    BEGIN INSERT INTO app.ran_as VALUES (current_user); RETURN $1::text::bigint; END $f$;
    CREATE CAST (app.knr AS bigint) WITH FUNCTION app.knr_int(app.knr) AS IMPLICIT;
$$);
SELECT dblink_exec('a', 'BEGIN ISOLATION LEVEL REPEATABLE READ');
SELECT * FROM dblink('a', 'SELECT count(*) FROM app.ran_as') AS t(n bigint);
SELECT dblink_exec('b', 'ALTER TABLE app.inschrijving ALTER COLUMN nr TYPE app.knr USING nr::text::app.knr');
SELECT is(dblink_exec('a', $$INSERT INTO app.inschrijving VALUES ('20', 7, 11, CURRENT_DATE)$$), 'INSERT 0 1',
          'the application inserts at REPEATABLE READ after its key column was retyped');
SELECT dblink_exec('a', 'COMMIT');
SELECT is((SELECT string_agg(DISTINCT who::text, ',') FROM dblink('owner', 'SELECT who FROM app.ran_as') AS t(who name)), NULL,
          'its cast to bigint left nothing behind: it ran as the table''s owner, in a read that is rolled back, never as the extension''s');
SELECT matches((SELECT problem FROM dblink('owner', 'SELECT problem FROM m365.source_drift() WHERE entity = ''enrolment''') AS t(problem text)),
               'nr is of type app.knr', 'and the attachment says it is broken');

-- 7. Round three: a name read through a REPEATABLE READ snapshot older than a
-- rename. The application renames its attached table and puts a view with
-- a function of its own under the old name; the trigger of a session whose
-- snapshot is older read the view as the owner.
SELECT dblink_exec('b', $$
    CREATE FUNCTION app.evil() RETURNS boolean LANGUAGE plpgsql AS $f$
    BEGIN
        INSERT INTO app.ran_as VALUES (current_user);
        IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN EXECUTE 'ALTER ROLE m365_app SUPERUSER'; END IF;
        RETURN true;
    END $f$;
    DELETE FROM app.ran_as;
    CREATE TABLE app.klas (nr bigint PRIMARY KEY, vestiging bigint NOT NULL, naam text NOT NULL, jaar integer NOT NULL);
$$);
SELECT * FROM dblink('owner', $$SELECT m365.attach_source('class', 'app.klas',
                                   '{"id": "nr", "location_id": "vestiging", "name": "naam", "school_year": "jaar"}')::text$$) AS t(r text);
SELECT dblink_exec('a', 'BEGIN ISOLATION LEVEL REPEATABLE READ');
SELECT * FROM dblink('a', 'SELECT count(*) FROM app.ran_as') AS t(n bigint);
SELECT dblink_exec('b', $$ALTER TABLE app.klas RENAME TO klas_echt;
                          CREATE VIEW app.klas AS SELECT * FROM app.klas_echt WHERE app.evil()$$);
SELECT dblink_exec('a', $$INSERT INTO app.klas_echt VALUES (30, 11, '3B', 2026)$$);
SELECT dblink_exec('a', 'COMMIT');
SELECT is((SELECT n FROM dblink('owner', 'SELECT count(*) FROM app.ran_as') AS t(n bigint)), 0::bigint,
          'the trigger read the table by its OID''s current name, not the view (before: the view''s function ran as the superuser owner)');
SELECT is((SELECT s FROM dblink('owner', $$SELECT rolsuper::text || ' ' || (SELECT count(*) FROM m365.class WHERE id = 30) FROM pg_roles WHERE rolname = 'm365_app'$$) AS t(s text)),
          'false 1', 'the application''s role is no superuser, and the class is in the copy');

-- 8. exit_on_error, which any session may set, turned the error the trigger
-- catches (a row the copy cannot take) into the end of the session.
SELECT dblink_exec('a', 'SET exit_on_error = on');
SELECT dblink_exec('a', $$INSERT INTO app.klas_echt VALUES (31, 98, '3C', 2026)$$);
SELECT is((SELECT n FROM dblink('a', 'SELECT 1') AS t(n int)), 1,
          'a session with exit_on_error on writes a row the copy cannot take, and lives on');

SELECT dblink_disconnect('a');
SELECT dblink_disconnect('b');
SELECT dblink_disconnect('owner');
SELECT dblink_exec('server', format('DROP DATABASE %I WITH (FORCE)', (SELECT name FROM db)));
SELECT dblink_disconnect('server');

SELECT * FROM finish();
ROLLBACK;
