-- Retention of leavers racing the application (a red-team find): a pupil who
-- left years ago is re-enrolled in a transaction that commits while the
-- nightly retention waits for the configuration's row. The retention must
-- not forget them: they need their username again. Two sessions (dblink),
-- committed under a configuration of this run's own.
BEGIN;
SELECT plan(3);
\ir lib/session.psql

SELECT dblink_connect('app', (SELECT info FROM conn));
SELECT dblink_connect('ret', (SELECT info FROM conn));
CREATE TEMP TABLE race AS
SELECT id, 928000000 + id * 10 AS base FROM dblink('app', $$INSERT INTO m365.configuration (name, leaver_school_years)
                               VALUES ('retention race ' || pg_backend_pid(), 1) RETURNING id$$) AS t(id bigint);
SELECT dblink_exec('app', format($$
    INSERT INTO m365.school (id, name, configuration_id) VALUES (%2$s, 'race', %1$s);
    INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain) VALUES (%2$s, %2$s, 'old', %1$s, 'race.be');
    INSERT INTO m365.student (id, first_name, last_name) VALUES (%2$s, 'Terug', 'Keerder');
    INSERT INTO m365.enrolment (id, student_id, location_id, start_date, end_date)
    VALUES (%2$s, %2$s, %2$s, make_date(m365.school_year(CURRENT_DATE) - 3, 9, 1), make_date(m365.school_year(CURRENT_DATE) - 2, 6, 30));
    INSERT INTO m365.username (configuration_id, person_kind, person_id, username) VALUES (%1$s, 'student', %2$s, 'keerder.terug');
    SET session_replication_role = replica;
    UPDATE m365.username SET updated_at = make_date(m365.school_year(CURRENT_DATE) - 2, 6, 30) WHERE configuration_id = %1$s;
    RESET session_replication_role;
$$, (SELECT id FROM race), (SELECT base FROM race)));

-- The application re-enrols them in a new location of the configuration
-- (which locks its row), and has not committed yet.
SELECT dblink_exec('app', 'BEGIN');
SELECT dblink_exec('app', format($$
    INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain) VALUES (%2$s + 1, %2$s, 'new', %1$s, 'race.be');
    INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (%2$s + 1, %2$s, %2$s + 1, CURRENT_DATE);
$$, (SELECT id FROM race), (SELECT base FROM race)));
-- The nightly retention chooses its leavers and waits for the configuration's row.
SELECT dblink_send_query('ret', 'SELECT m365.apply_retention() ->> ''leavers_forgotten''');
SELECT pg_sleep(0.5);
SELECT dblink_exec('app', 'COMMIT');
SELECT is((SELECT x FROM dblink_get_result('ret') AS t(x text)), '0', 'the retention forgets nobody: the leaver came back while it waited');
SELECT * FROM dblink_get_result('ret') AS t(x text);
SELECT is((SELECT x FROM dblink('app', format('SELECT username FROM m365.username WHERE configuration_id = %s', (SELECT id FROM race))) AS t(x text)),
          'keerder.terug', 'they keep their username');
SELECT is((SELECT x FROM dblink('app', format('SELECT m365.apply_retention() ->> ''leavers_forgotten''')) AS t(x text)), '0',
          'and the next night leaves them alone (they need it)');

SELECT dblink_exec('app', format($$
    UPDATE m365.configuration SET leaver_school_years = NULL WHERE id = %1$s;
    -- (Its people leave the log: a later test's job counts its own chunk.)
    DELETE FROM m365.username_request WHERE person_kind = 'student' AND person_id BETWEEN %2$s AND %2$s + 9;
$$, (SELECT id FROM race), (SELECT base FROM race)));
SELECT dblink_disconnect('app');
SELECT dblink_disconnect('ret');
SELECT * FROM finish();
ROLLBACK;
