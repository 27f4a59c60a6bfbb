-- rename_policy automatic_before_sync racing an export: the job follows a
-- corrected name only while SDS has never received it. An export recording
-- that very name at the same moment must either make the job leave it (the
-- recording committed first) or fail and swap nothing (its snapshot is older
-- than the rename). Two sessions (dblink), committed under a configuration
-- of this run's own.
BEGIN;
SELECT plan(6);
\ir lib/session.psql

SELECT dblink_connect('exp', (SELECT info FROM conn));
SELECT dblink_connect('job', (SELECT info FROM conn));
CREATE TEMP TABLE race AS
SELECT id, 931000000 + id * 10 AS base FROM dblink('exp', $$INSERT INTO m365.configuration (name, rename_policy)
                               VALUES ('rename race ' || pg_backend_pid(), 'automatic_before_sync') RETURNING id$$) AS t(id bigint);
SELECT dblink_exec('exp', format($$
    INSERT INTO m365.school (id, name, configuration_id) VALUES (%2$s, 'race', %1$s);
    INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain) VALUES (%2$s, %2$s, 'race', %1$s, 'race.be');
    INSERT INTO m365.student (id, first_name, last_name) VALUES (%2$s, 'Bram', 'Wuyts'), (%2$s + 1, 'Noor', 'Dewitte'), (%2$s + 2, 'Lien', 'Aerts');
    INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (%2$s, %2$s, %2$s, CURRENT_DATE - 1), (%2$s + 1, %2$s + 1, %2$s, CURRENT_DATE - 1), (%2$s + 2, %2$s + 2, %2$s, CURRENT_DATE - 1);
$$, (SELECT id FROM race), (SELECT base FROM race)));
SELECT * FROM dblink('exp', 'SELECT m365.generate_usernames_in_transaction()') AS t(n integer);
SELECT dblink_exec('exp', format($$
    SELECT m365.set_sync(array_agg(id), true) FROM m365.username WHERE configuration_id = %1$s AND person_id = %2$s;
    UPDATE m365.student SET last_name = 'Wuytack' WHERE id = %2$s;
$$, (SELECT id FROM race), (SELECT base FROM race)));
CREATE FUNCTION pg_temp.name_of(person bigint) RETURNS text LANGUAGE sql AS
$$ SELECT x FROM dblink('job', format('SELECT username FROM m365.username WHERE person_kind = ''student'' AND person_id = %s', person)) AS t(x text) $$;

-- 1. The export records first (holds its configuration's record head) while
-- the job would follow the correction: the job waits, then leaves the name.
SELECT dblink_exec('exp', 'BEGIN ISOLATION LEVEL REPEATABLE READ');
SELECT * FROM dblink('exp', format($$SELECT outcome FROM m365_sds.record_feed('/srv/sds/rename-race-%s', %s)$$,
                                   (SELECT id FROM race), (SELECT id FROM race))) AS t(outcome text);
SELECT dblink_send_query('job', 'SELECT m365.follow_name_corrections()');
SELECT pg_sleep(0.5);
SELECT dblink_exec('exp', 'COMMIT');
SELECT is((SELECT n FROM dblink_get_result('job') AS t(n integer)), 0,
          'the job waited for the recording, then renamed nothing: SDS has received the name');
SELECT * FROM dblink_get_result('job') AS t(n integer);
SELECT is(pg_temp.name_of((SELECT base FROM race)), 'wuyts.bram', 'the name SDS received stays (only suggested)');

-- 2. A name synced since but never in a recorded feed is corrected; the
-- export's snapshot (with the old name) is older than the job's rename: the
-- recording fails (40001) and swaps nothing; the next export sends the new name.
SELECT dblink_exec('exp', format($$
    SELECT m365.set_sync(array_agg(id), true) FROM m365.username WHERE configuration_id = %1$s AND person_id = %2$s + 1;
    UPDATE m365.student SET last_name = 'Dewit' WHERE id = %2$s + 1;
$$, (SELECT id FROM race), (SELECT base FROM race)));
SELECT dblink_exec('exp', 'BEGIN ISOLATION LEVEL REPEATABLE READ');
SELECT * FROM dblink('exp', 'SELECT 1') AS t(x integer);
SELECT * FROM dblink('job', 'SELECT m365.follow_name_corrections()') AS t(n integer);
SELECT * FROM dblink('exp', format($$SELECT outcome FROM m365_sds.record_feed('/srv/sds/rename-race-%s', %s)$$,
                                   (SELECT id FROM race), (SELECT id FROM race)), false) AS t(x text);
SELECT matches(dblink_error_message('exp'), 'could not serialize',
               'an export whose snapshot (the old name) predates the job''s rename fails to record (40001): SDS never gets the old name as received');
SELECT dblink_exec('exp', 'ROLLBACK');
SELECT is(pg_temp.name_of((SELECT base FROM race) + 1), 'dewit.noor', 'and the renamed name, never received, is the one the next export sends');

-- 3. The job runs in a REPEATABLE READ snapshot older than an export that
-- records the name (a red-team find: it renamed it): its head write fails.
SELECT dblink_exec('exp', format($$
    SELECT m365.set_sync(array_agg(id), true) FROM m365.username WHERE configuration_id = %1$s AND person_id = %2$s + 2;
    UPDATE m365.student SET last_name = 'Aertssen' WHERE id = %2$s + 2;
$$, (SELECT id FROM race), (SELECT base FROM race)));
SELECT dblink_exec('job', 'BEGIN ISOLATION LEVEL REPEATABLE READ');
SELECT * FROM dblink('job', 'SELECT 1') AS t(x integer);
SELECT dblink_exec('exp', 'BEGIN ISOLATION LEVEL REPEATABLE READ');
SELECT * FROM dblink('exp', format($$SELECT outcome FROM m365_sds.record_feed('/srv/sds/rename-race-%s', %s)$$,
                                   (SELECT id FROM race), (SELECT id FROM race))) AS t(outcome text);
SELECT dblink_exec('exp', 'COMMIT');
SELECT * FROM dblink('job', 'SELECT m365.follow_name_corrections()', false) AS t(n integer);
SELECT matches(dblink_error_message('job'), 'could not serialize',
               'a job whose snapshot predates the recording of the name fails to follow it (40001)');
SELECT dblink_exec('job', 'ROLLBACK');
SELECT is(pg_temp.name_of((SELECT base FROM race) + 2), 'aerts.lien', 'and the name SDS received stays');

SELECT dblink_exec('exp', format($$
    -- (Its people leave the log: a later test's job counts its own chunk.)
    DELETE FROM m365.username_request WHERE person_kind = 'student' AND person_id BETWEEN %2$s AND %2$s + 9;
$$, (SELECT id FROM race), (SELECT base FROM race)));
SELECT dblink_disconnect('exp');
SELECT dblink_disconnect('job');
SELECT * FROM finish();
ROLLBACK;
