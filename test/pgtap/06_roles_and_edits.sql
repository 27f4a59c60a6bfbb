-- Roles can do their job and nothing beyond it; bulk sync on 10,000 rows;
-- two sessions racing for one name with set_username.
BEGIN;
SELECT plan(34);
\ir lib/session.psql


SELECT has_role('m365_app');
SELECT has_role('m365_admin');
SELECT is((SELECT level FROM m365.access_role WHERE role_id = 'm365_admin'::regrole), 'admin',
          'm365_admin has the admin level, which includes everything m365_app may');

-- m365_admin: configurations, reserved names, the job.
SELECT is(pg_temp.as_role('m365_admin', $$ INSERT INTO m365.configuration (id, name) VALUES (900001, 'roles test') $$), 'ok',
          'admin creates a configuration');
SELECT is(pg_temp.as_role('m365_admin', $$ INSERT INTO m365.reserved_username (configuration_id, username) VALUES (900001, 'beheer') $$),
          'ok', 'admin reserves a name');
-- m365_app: school data, and the functions of the username pages.
SELECT is(pg_temp.as_role('m365_app', $$
    INSERT INTO m365.school (id, name, configuration_id) VALUES (900001, 'School', 900001);
    INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain) VALUES (900001, 900001, 'Campus', 900001, 'roles.be');
    INSERT INTO m365.student (id, first_name, last_name) SELECT 900000 + i, 'Kind', 'Nummer' || i FROM generate_series(1, 10000) AS i;
    INSERT INTO m365.enrolment (id, student_id, location_id, start_date) SELECT 900000 + i, 900000 + i, 900001, DATE '2026-09-01' FROM generate_series(1, 10000) AS i;
    INSERT INTO m365.staff (id, first_name, last_name) VALUES (900001, 'Ann', 'Leraar');
    INSERT INTO m365.staff_school (staff_id, school_id) VALUES (900001, 900001) $$), 'ok',
          'the application writes school data (and its triggers queue people)');
SELECT is((SELECT count(DISTINCT (person_kind, person_id))::int FROM m365.username_request WHERE person_id BETWEEN 900001 AND 910000),
          10001, '10,001 people logged for the job');
SELECT is(pg_temp.as_role('m365_app', 'SELECT m365.generate_usernames_in_transaction()'), '42501', 'the application cannot run the job');
SELECT is(pg_temp.as_role('m365_admin', 'SELECT m365.generate_usernames_in_transaction()'), 'ok', 'admin runs the job');
SELECT is((SELECT count(*)::int FROM m365.username WHERE configuration_id = 900001), 10001, '10,001 usernames');

SELECT is(pg_temp.as_role('m365_app', 'SELECT count(*) FROM m365.student_usernames(900001)'), 'ok', 'the application reads the lists');
SELECT is(pg_temp.as_role('m365_app', format('SELECT m365.set_username(%s, %L)',
          (SELECT id FROM m365.username WHERE person_kind = 'staff' AND person_id = 900001), 'ann.leraar')), 'ok',
          'the application edits a username');
SELECT is(pg_temp.as_role('m365_app', 'SELECT * FROM m365.diagnose_student(900001, 900001)'), 'ok', 'the application runs diagnostics');
SELECT is(pg_temp.as_role('m365_app', $$ SELECT * FROM m365.preview_format(900001, 'v.naam') $$), 'ok', 'the application previews a format');

-- ...and nothing beyond.
SELECT is(pg_temp.as_role('m365_app', $$ UPDATE m365.username SET username = 'x' WHERE configuration_id = 900001 $$), '42501',
          'the application cannot write usernames around set_username');
SELECT is(pg_temp.as_role('m365_app', $$ UPDATE m365.username SET sync = true WHERE configuration_id = 900001 $$), '42501',
          'nor sync flags around set_sync');
SELECT is(pg_temp.as_role('m365_app', $$ DELETE FROM m365.issued_username $$), '42501', 'nor forget issued names');
SELECT is(pg_temp.as_role('m365_app', $$ INSERT INTO m365.username_request (person_kind, person_id) VALUES ('student', 1) $$),
          '42501', 'nor write the log');
SELECT is(pg_temp.as_role('m365_app', $$ DELETE FROM m365.username_request $$), '42501', 'nor empty it');
SELECT is(pg_temp.as_role('m365_app', $$ UPDATE m365.job_lease SET pause_in_chunk = '1 hour' $$), '42501',
          'nor set the job''s test hook');
SELECT is(pg_temp.as_role('m365_admin', $$ UPDATE m365.job_lease SET pause_in_chunk = '1 hour' $$), '42501',
          'an administrator neither: only the owner holds a run open');
SELECT is(pg_temp.as_role('m365_app', $$ INSERT INTO m365.configuration (name) VALUES ('app made this') $$), '42501',
          'nor create configurations');
SELECT is(pg_temp.as_role('m365_app', $$ DELETE FROM m365.reserved_username $$), '42501', 'nor release reserved names');
SELECT is(pg_temp.as_role('m365_app', $$ SELECT m365.generation_begin() $$), '42501',
          'nor call the job''s steps');
SELECT is(pg_temp.as_role('m365_app', $$ CREATE TABLE m365.planted (x int) $$), '42501', 'nor create objects in schema m365');
SELECT is(pg_temp.as_role('m365_app', $$ SELECT m365.schedule_jobs() $$), '42501', 'nor schedule jobs');
SELECT is(pg_temp.as_role('m365_admin', $$ CREATE TABLE m365.planted (x int) $$), '42501', 'admin creates no objects in m365 either');

-- Bulk sync on 10,000 rows, audited.
SELECT is(pg_temp.as_role('m365_app', 'SELECT m365.set_location_sync(900001, true)'), 'ok', 'bulk sync of a location');
SELECT is((SELECT count(*)::int FROM m365.username WHERE configuration_id = 900001 AND sync), 10000, '10,000 flags set');
SELECT is((SELECT count(*)::int FROM m365.username_history AS h WHERE h.configuration_id = 900001 AND field = 'sync'), 10000,
          'and 10,000 history rows');
SELECT is(m365.set_location_sync(900001, false, 'nummer99'), 111, 'a filtered selection: Nummer99, Nummer990-999, Nummer9900-9999');

-- Two sessions racing for one name through set_username: exactly one wins.
SELECT dblink_connect('a', (SELECT info FROM conn));
SELECT dblink_connect('b', (SELECT info FROM conn));
CREATE TEMP TABLE racers AS
SELECT * FROM dblink('a', $$
    INSERT INTO m365.configuration (name) VALUES ('race ' || clock_timestamp()) RETURNING id
$$) AS t(cfg bigint);
SELECT dblink_exec('a', format($$
    INSERT INTO m365.username (configuration_id, person_kind, person_id, username)
    VALUES (%1$s, 'student', 1, 'eerste'), (%1$s, 'student', 2, 'tweede')
$$, (SELECT cfg FROM racers)));
CREATE TEMP TABLE ids AS
SELECT * FROM dblink('a', format('SELECT id, person_id FROM m365.username WHERE configuration_id = %s', (SELECT cfg FROM racers)))
    AS t(id bigint, person_id bigint);
SELECT dblink_exec('a', 'BEGIN');
SELECT * FROM dblink('a', format('SELECT username FROM m365.set_username(%s, %L)', (SELECT id FROM ids WHERE person_id = 1), 'gewilde.naam'))
    AS t(u text);
SELECT dblink_send_query('b', format('SELECT username FROM m365.set_username(%s, %L)', (SELECT id FROM ids WHERE person_id = 2), 'Gewilde.Naam'));
SELECT pg_sleep(0.3);
SELECT is(dblink_is_busy('b'), 1, 'the second edit waits for the first');
SELECT dblink_exec('a', 'COMMIT');
SELECT * FROM dblink_get_result('b', false) AS t(u text);
SELECT alike(dblink_error_message('b'), '%Gebruikersnaam fout ''Gewilde.Naam'' is al in gebruik%', 'and loses with the procedure''s message');
SELECT * FROM dblink_get_result('b', false) AS t(u text);
SELECT results_eq(format('SELECT username FROM m365.username WHERE configuration_id = %s ORDER BY person_id', (SELECT cfg FROM racers)),
                  ARRAY['gewilde.naam', 'tweede'], 'one winner, the loser keeps the old name');
SELECT dblink_disconnect('a');
SELECT dblink_disconnect('b');

SELECT * FROM finish();
ROLLBACK;
