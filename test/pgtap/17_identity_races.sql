-- Person identity across sessions (red-team finds against the first version
-- of issue 14, point 7), each side committed through dblink:
--   1. a student deleted while a run makes their username, and the id then
--      inserted as someone else: the username is held (the delete trigger
--      saw no username yet, so nothing was recorded);
--   2. an administrator's release racing the application's insert of the
--      same id: the insert succeeds (a foreign key from the hold to the
--      username made it fail) and the newcomer gets a name of their own.
BEGIN;
SELECT plan(5);
\ir lib/session.psql

SELECT dblink_connect('job', (SELECT info FROM conn));
SELECT dblink_connect('app', (SELECT info FROM conn));
SELECT dblink_connect('owner', (SELECT info FROM conn));
SELECT * FROM dblink('owner', 'SELECT m365.unschedule_jobs()') AS t(n int);

CREATE TEMP TABLE run AS SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 100000 + 70000 AS base;
CREATE TEMP TABLE cfg AS
SELECT id FROM dblink('owner', format('INSERT INTO m365.configuration (name) VALUES (%L) RETURNING id',
                                      'identity races ' || (SELECT base FROM run))) AS t(id bigint);
SELECT dblink_exec('owner', format($$
    INSERT INTO m365.school (id, name, configuration_id) VALUES (%1$s, 'S', %2$s);
    INSERT INTO m365.location (id, school_id, name, configuration_id) VALUES (%1$s, %1$s, 'L', %2$s);
$$, (SELECT base FROM run), (SELECT id FROM cfg)));
CREATE FUNCTION pg_temp.username_of(person bigint) RETURNS m365.username LANGUAGE sql AS $$
    SELECT * FROM m365.username WHERE configuration_id = (SELECT id FROM cfg)
       AND person_kind = 'student' AND person_id = (SELECT base FROM run) + person
$$;

-- 1. Deleted while the run makes the username.
SELECT dblink_exec('app', format($$
    INSERT INTO m365.student (id, first_name, last_name) VALUES (%1$s + 1, 'Jan', 'Peeters');
    INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (%1$s + 1, %1$s + 1, %1$s, CURRENT_DATE - 1);
$$, (SELECT base FROM run)));
SELECT dblink_exec('job', 'BEGIN');
SELECT * FROM dblink('job', 'SELECT m365.generate_usernames_in_transaction()') AS t(n int);
SELECT dblink_exec('app', format($$
    DELETE FROM m365.enrolment WHERE student_id = %1$s + 1;
    DELETE FROM m365.student WHERE id = %1$s + 1;
$$, (SELECT base FROM run)));
SELECT dblink_exec('job', 'COMMIT');
SELECT isnt((pg_temp.username_of(1)).id, NULL, 'the run committed a username for the student deleted meanwhile');
SELECT dblink_exec('app', format($$
    INSERT INTO m365.student (id, first_name, last_name) VALUES (%1$s + 1, 'Piet', 'Maes');
    INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (%1$s + 1, %1$s + 1, %1$s, CURRENT_DATE - 1);
$$, (SELECT base FROM run)));
SELECT is((SELECT new_first_name || ' ' || new_last_name FROM m365.username_hold WHERE username_id = (pg_temp.username_of(1)).id),
          'Piet Maes', 'the id back as someone else: that username is held (0.3.0 before the fix: handed over)');

-- 2. A release racing the application's insert of the same id.
SELECT dblink_exec('app', format($$
    DELETE FROM m365.enrolment WHERE student_id = %1$s + 1;
    DELETE FROM m365.student WHERE id = %1$s + 1;
$$, (SELECT base FROM run)));
CREATE TEMP TABLE held AS SELECT (pg_temp.username_of(1)).id AS id, (pg_temp.username_of(1)).local_part AS local_part;
SELECT dblink_exec('owner', 'BEGIN');
SELECT * FROM dblink('owner', format('SELECT m365.release_held_username(%s)', (SELECT id FROM held))) AS t(released boolean);
SELECT dblink_send_query('app', format($$
    INSERT INTO m365.student (id, first_name, last_name) VALUES (%1$s + 1, 'Karel', 'Janssens') RETURNING 'inserted'
$$, (SELECT base FROM run)));
SELECT pg_sleep(0.3);
SELECT dblink_exec('owner', 'COMMIT');
SELECT is((SELECT r FROM dblink_get_result('app') AS t(r text)), 'inserted',
          'the application''s insert of the id succeeds while the release commits');
SELECT * FROM dblink_get_result('app') AS t(r text);
SELECT dblink_exec('app', format($$
    INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (%1$s + 1, %1$s + 1, %1$s, CURRENT_DATE - 1)
$$, (SELECT base FROM run)));
SELECT * FROM dblink('job', 'SELECT m365.generate_usernames_in_transaction()') AS t(n int);
SELECT isnt((pg_temp.username_of(1)).local_part, (SELECT local_part FROM held), 'the newcomer gets a name of their own');
SELECT is(m365.username_is_free((SELECT id FROM cfg), (SELECT local_part FROM held), 'student', (SELECT base FROM run) + 1), false,
          'and the released name stays issued to its former owner');

SELECT count(*) AS rescheduled FROM dblink('owner', 'SELECT m365.schedule_jobs()') AS t(jobid bigint);
SELECT dblink_disconnect('job');
SELECT dblink_disconnect('app');
SELECT dblink_disconnect('owner');
SELECT * FROM finish();
ROLLBACK;
