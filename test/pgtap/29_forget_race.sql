-- A forgotten name taken by a transaction older than the forgetting (a
-- red-team find: under REPEATABLE READ, before the database's first
-- forgetting, set_username gave a name out that had just been hashed). Two
-- sessions (dblink), committed under a configuration of this run's own.
BEGIN;
SELECT plan(5);
\ir lib/session.psql

SELECT dblink_connect('a', (SELECT info FROM conn));
SELECT dblink_connect('b', (SELECT info FROM conn));
CREATE TEMP TABLE race AS
SELECT id, 929000000 + id * 10 AS base
  FROM dblink('a', $$INSERT INTO m365.configuration (name) VALUES ('forget race ' || pg_backend_pid()) RETURNING id$$) AS t(id bigint);
SELECT dblink_exec('a', format($$
    INSERT INTO m365.school (id, name, configuration_id) VALUES (%2$s, 'race', %1$s);
    INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain) VALUES (%2$s, %2$s, 'L', %1$s, 'race.be');
    INSERT INTO m365.student (id, first_name, last_name) VALUES (%2$s, 'Vergeten', 'Racer'), (%2$s + 1, 'Ander', 'Kind');
    INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (%2$s, %2$s, %2$s, CURRENT_DATE), (%2$s + 1, %2$s + 1, %2$s, CURRENT_DATE);
    INSERT INTO m365.username (configuration_id, person_kind, person_id, username)
    VALUES (%1$s, 'student', %2$s, 'racer.vergeten.%1$s'), (%1$s, 'student', %2$s + 1, 'kind.ander.%1$s');
$$, (SELECT id FROM race), (SELECT base FROM race)));

-- Session b's snapshot is older than the forgetting.
SELECT dblink_exec('b', 'BEGIN ISOLATION LEVEL REPEATABLE READ');
SELECT * FROM dblink('b', 'SELECT 1') AS t(x int);
-- Then the pupil is renamed by hand, deleted and forgotten, all committed.
SELECT dblink_exec('a', format($$
    DO $r$ BEGIN PERFORM m365.set_username((SELECT id FROM m365.username WHERE configuration_id = %1$s AND person_id = %2$s), 'r.vergeten.%1$s'); END $r$;
    DELETE FROM m365.enrolment WHERE student_id = %2$s;
    DELETE FROM m365.student WHERE id = %2$s;
    DO $f$ BEGIN PERFORM m365.forget_person('student', %2$s); END $f$;
$$, (SELECT id FROM race), (SELECT base FROM race)));
CREATE FUNCTION pg_temp.sqlstate_of(statement text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;
SELECT ok(pg_temp.sqlstate_of(format($$ SELECT * FROM dblink('b', 'SELECT m365.set_username((SELECT id FROM m365.username WHERE configuration_id = %1$s AND person_id = %2$s + 1), ''r.vergeten.%1$s'')') AS t(x text) $$,
                                     (SELECT id FROM race), (SELECT base FROM race))) = '40001',
          'REPEATABLE READ, older than the rename and the forgetting (the name looks free there): refused with 40001');
SELECT dblink_exec('b', 'ROLLBACK');
SELECT throws_ok(format($$ SELECT * FROM dblink('b', 'SELECT m365.set_username((SELECT id FROM m365.username WHERE configuration_id = %1$s AND person_id = %2$s + 1), ''r.vergeten.%1$s'')') AS t(x text) $$,
                        (SELECT id FROM race), (SELECT base FROM race)),
                 'M3U03', NULL, 'the retry: in use (M3U03)');
SELECT is((SELECT x FROM dblink('a', format('SELECT count(*) FROM m365.username WHERE configuration_id = %s AND username LIKE ''%%vergeten%%''', (SELECT id FROM race))) AS t(x bigint)),
          0::bigint, 'nobody holds the forgotten name');

-- An export whose snapshot is older than a forgetting does not record the
-- forgotten pupil again (a red-team find: it did, name and all).
SELECT dblink_exec('a', format($$
    UPDATE m365.username SET sync = true WHERE configuration_id = %1$s;
    INSERT INTO m365.student (id, first_name, last_name) VALUES (%2$s + 2, 'Nog', 'Vergeten');
    INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (%2$s + 2, %2$s + 2, %2$s, CURRENT_DATE);
    INSERT INTO m365.username (configuration_id, person_kind, person_id, username, sync) VALUES (%1$s, 'student', %2$s + 2, 'vergeten.nog.%1$s', true);
$$, (SELECT id FROM race), (SELECT base FROM race)));
SELECT dblink_exec('b', 'BEGIN ISOLATION LEVEL REPEATABLE READ');
SELECT * FROM dblink('b', 'SELECT 1') AS t(x int);
SELECT dblink_exec('a', format($$
    DELETE FROM m365.enrolment WHERE student_id = %2$s + 2;
    DELETE FROM m365.student WHERE id = %2$s + 2;
    DO $r$ BEGIN PERFORM m365.forget_person('student', %2$s + 2); END $r$;
$$, (SELECT id FROM race), (SELECT base FROM race)));
SELECT is(pg_temp.sqlstate_of(format($$ SELECT * FROM dblink('b', 'SELECT outcome FROM m365_sds.record_feed(''/srv/sds/forget-race-%1$s'', %1$s)') AS t(x text) $$,
                                     (SELECT id FROM race))), '40001',
          'an export whose snapshot is older than a forgetting fails with 40001 (it swaps nothing)');
SELECT dblink_exec('b', 'ROLLBACK');
SELECT is((SELECT x FROM dblink('a', format('SELECT count(*) FROM m365.sds_record_user WHERE configuration_id = %s AND username LIKE ''vergeten.nog%%''', (SELECT id FROM race))) AS t(x bigint)),
          0::bigint, 'no record holds the forgotten pupil');

-- (Its people leave the log: a later test's job counts its own chunk.)
SELECT dblink_exec('a', format('DELETE FROM m365.username_request WHERE person_kind = ''student'' AND person_id BETWEEN %1$s AND %1$s + 9',
                               (SELECT base FROM race)));
SELECT dblink_disconnect('a');
SELECT dblink_disconnect('b');
SELECT * FROM finish();
ROLLBACK;
