-- The smaller promises of the security model, each tried as the role that
-- would break it (each failed on 0.2.0 as noted):
--   * create_sds_reader takes only a plain login role (0.2.0 took groups with
--     members, predefined roles, owners of objects);
--   * staff roles and orgs only for locations of the feed's configuration
--     (0.2.0 put a teacher in every location of the school);
--   * the diagnostics work for the application in the pg_cron database
--     (0.2.0: permission denied for schema cron whenever the person was queued);
--   * retryable errors keep their SQLSTATE (0.2.0 turned 55P03 into M3U05/M3S01);
--   * dates follow the configuration's time zone, not the session's TimeZone
--     (0.2.0 listed by CURRENT_DATE in the caller's zone).
BEGIN;
SELECT plan(32);
\ir lib/session.psql

INSERT INTO m365.configuration (id, name, time_zone) VALUES (913001, 'promises A', 'Pacific/Kiritimati'), (913002, 'promises B', 'Europe/Brussels');
INSERT INTO m365.school (id, name, configuration_id, staff_domain)
VALUES (913001, 'Gedeelde school', 913001, 'staff.a.be'), (913002, 'School zonder A-vestiging', 913001, 'staff.a.be');
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain)
VALUES (913001, 913001, 'Vestiging A', 913001, 'leerling.a.be'),
       (913002, 913001, 'Vestiging van B', 913002, 'leerling.b.be'),
       (913003, 913002, 'Ook van B', 913002, 'leerling.b.be');
INSERT INTO m365.student (id, first_name, last_name) VALUES (913001, 'Tijd', 'Zone'), (913002, 'Wacht', 'Rij');
-- Enrolled from "today" where the configuration is (UTC+14).
INSERT INTO m365.enrolment (id, student_id, location_id, start_date)
VALUES (913001, 913001, 913001, m365.configuration_today(913001));
INSERT INTO m365.staff (id, first_name, last_name) VALUES (913001, 'Leraar', 'Gedeeld'), (913002, 'Leraar', 'Elders');
INSERT INTO m365.staff_school (staff_id, school_id) VALUES (913001, 913001), (913002, 913002);
SELECT m365.generate_usernames_in_transaction();
SELECT m365.set_sync(array_agg(id), true) FROM m365.username WHERE configuration_id = 913001;

-- 1. Readers: only a plain login role.
CREATE ROLE promises_group LOGIN;
CREATE ROLE promises_member LOGIN IN ROLE promises_group;
CREATE ROLE promises_reads_all LOGIN IN ROLE pg_read_all_data;
CREATE ROLE promises_owner LOGIN;
CREATE TABLE public.promises_owned ();
ALTER TABLE public.promises_owned OWNER TO promises_owner;
CREATE ROLE promises_createdb LOGIN CREATEDB;
CREATE ROLE promises_nologin NOLOGIN;
CREATE ROLE promises_app_user LOGIN IN ROLE m365_app;
SELECT throws_ok($$ SELECT m365.create_sds_reader('promises_group', 913001) $$, '0LP01', NULL,
                 'a role with members cannot be a reader (each member could SET ROLE to it)');
SELECT throws_ok($$ SELECT m365.create_sds_reader('pg_monitor', 913001) $$, '0LP01', NULL, 'nor a predefined role');
SELECT throws_ok($$ SELECT m365.create_sds_reader('promises_reads_all', 913001) $$, '0LP01', NULL, 'nor a member of pg_read_all_data');
SELECT throws_ok($$ SELECT m365.create_sds_reader('promises_owner', 913001) $$, '0LP01', NULL, 'nor a role that owns objects');
SELECT throws_ok($$ SELECT m365.create_sds_reader('promises_createdb', 913001) $$, '0LP01', NULL, 'nor a CREATEDB role');
SELECT throws_ok($$ SELECT m365.create_sds_reader('promises_nologin', 913001) $$, '0LP01', NULL, 'nor a NOLOGIN role');
SELECT throws_ok($$ SELECT m365.create_sds_reader('m365_app', 913001) $$, '0LP01', NULL, 'nor a role with an access level');
SELECT throws_ok($$ SELECT m365.create_sds_reader('promises_app_user', 913001) $$, '0LP01', NULL, 'nor a member of one');
SELECT is_empty($$ SELECT role_id FROM m365.sds_reader WHERE role_id::text LIKE 'promises\_%' OR role_id::text IN ('pg_monitor', 'm365_app') $$,
                'none of them was bound to a configuration');
SELECT is(has_table_privilege('promises_group', 'm365_sds.users', 'SELECT'), false, 'nor given the feed');
SELECT lives_ok($$ SELECT m365.create_sds_reader('promises_reader', 913001) $$, 'a new role is made a reader');
SELECT throws_ok($$ SELECT m365.grant_access('promises_reader', 'app') $$, '0LP01', NULL, 'and cannot be given an access level');
-- Red-team findings against the first 0.3.0:
CREATE ROLE promises_readers_group NOLOGIN;
GRANT promises_readers_group TO promises_reader;
SELECT throws_ok($$ SELECT m365.grant_access('promises_readers_group', 'app') $$, '0LP01', NULL,
                 'nor can a group a reader belongs to (the reader would read every configuration)');
CREATE ROLE promises_granted LOGIN;
GRANT SELECT ON m365.username TO promises_granted;
SELECT throws_ok($$ SELECT m365.create_sds_reader('promises_granted', 913001) $$, '0LP01', NULL,
                 'a role granted rights of its own cannot be a reader');
-- Bound by OID, not by a name folded to lower case: "Promises_Upper" reads A,
-- though promises_upper reads B.
SELECT lives_ok($$ SELECT m365.create_sds_reader('Promises_Upper', 913001), m365.create_sds_reader('promises_upper', 913002) $$,
                'readers "Promises_Upper" (A) and promises_upper (B)');
SELECT cmp_ok(pg_temp.count_as('Promises_Upper', 'SELECT count(*) FROM m365_sds.users'), '>', 0::bigint,
              '"Promises_Upper" reads its own configuration (the first 0.3.0 read promises_upper''s)');

-- A dropped reader leaves no row behind for long: pg_dump would write its OID
-- as a bare number, which a restore binds to whatever role has that OID (a
-- red-team find). The next change of readers or levels forgets it.
CREATE ROLE promises_dropped LOGIN;
SELECT m365.create_sds_reader('promises_dropped', 913001);
DROP OWNED BY promises_dropped;
DROP ROLE promises_dropped;
SELECT m365.create_sds_reader('promises_after_drop', 913001);
SELECT is_empty($$ SELECT role_id FROM m365.sds_reader WHERE NOT EXISTS (SELECT FROM pg_roles AS o WHERE o.oid = role_id::oid) $$,
                'a dropped reader''s binding is forgotten');

-- (A record holds what SDS reads today, not the day the caller's session
-- chose: test/pgtap/24_sds_record.sql.)

-- 2. Teachers only in the configuration's locations (read as the admin may).
SET LOCAL m365.sds_configuration = '913001';
SELECT set_eq($$ SELECT "orgSourcedId" FROM m365_sds.roles WHERE "userSourcedId" = 'staff-913001' $$,
              ARRAY['location-913001'],
              'a teacher of a school with locations in two configurations has a role in this one''s only (0.2.0: both)');
SELECT is(pg_temp.count_as('promises_reader', $$ SELECT count(*) FROM m365_sds.orgs WHERE "sourcedId" IN ('location-913002', 'location-913003') $$),
          0::bigint, 'no org of another configuration''s location reaches this feed');
SELECT is(pg_temp.count_as('promises_reader', $$ SELECT count(*) FROM m365_sds.users WHERE "sourcedId" = 'staff-913002' $$),
          0::bigint, 'a teacher whose school has no location in the configuration is not in users.csv');
SELECT results_eq($$ SELECT reason FROM m365_sds.left_out WHERE "sourcedId" = 'staff-913002' $$,
                  $$ VALUES ('no location of the staff member''s schools belongs to this configuration') $$,
                  'it is in left_out, with the reason');
RESET m365.sds_configuration;

-- 2b. No trigger function of the extension can be put on a table of the
--     caller's own (a red-team finding against the first 0.3.0: the app put
--     username_check_ledger on a temp table and wrote the ledger as the owner).
CREATE FUNCTION pg_temp.hijackable() RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_proc AS p
               JOIN pg_depend AS d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
               JOIN pg_extension AS e ON e.oid = d.refobjid AND e.extname = 'm365_usernames'
              WHERE p.prorettype = 'trigger'::regtype LOOP
        IF pg_temp.as_role('m365_app', format('CREATE TEMP TABLE IF NOT EXISTS hijack (x int); '
                                              'CREATE TRIGGER hijack AFTER INSERT ON pg_temp.hijack '
                                              'FOR EACH STATEMENT EXECUTE FUNCTION %s()', f::oid::regproc)) <> '42501' THEN
            RETURN NEXT f::text;
        END IF;
    END LOOP;
END
$$;
SELECT cmp_ok((SELECT count(*)::int FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
                WHERE p.prorettype = 'trigger'::regtype AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'm365_usernames')),
              '>=', 8, 'the extension has its trigger functions');
SELECT is_empty('SELECT * FROM pg_temp.hijackable()', 'm365_app can put none of them on a table of its own');

-- 3. Diagnostics for the application, with pg_cron in this database.
INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (913002, 913002, 913001, m365.configuration_today(913001));
SELECT is(pg_temp.as_role('m365_app', 'SELECT * FROM m365.diagnose_student(913002, 913001)'), 'ok',
          'm365_app diagnoses a queued student where pg_cron lives (0.2.0: 42501 on schema cron)');
SELECT is((SELECT code FROM m365.diagnose_student(913002, 913001) LIMIT 1), 'queued', 'and is told it is queued');

-- 4. Retryable errors keep their SQLSTATE: a lock not granted within
--    lock_timeout is 55P03, which the application retries. (Committed rows,
--    so that another session can hold them: ids of this run's own.)
SELECT dblink_connect('holder', (SELECT info FROM conn));
CREATE TEMP TABLE retry AS SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 100000 + 90000 AS base;
CREATE TEMP TABLE retry_cfg AS
SELECT id FROM dblink('holder', format('INSERT INTO m365.configuration (name) VALUES (%L) RETURNING id',
                                       'retry ' || (SELECT base FROM retry))) AS t(id bigint);
CREATE TEMP TABLE held AS
SELECT id FROM dblink('holder', format($$ INSERT INTO m365.username (configuration_id, person_kind, person_id, username)
                                          VALUES (%s, 'student', %s, 'retry.%s') RETURNING id $$,
                                       (SELECT id FROM retry_cfg), (SELECT base FROM retry), (SELECT base FROM retry))) AS t(id bigint);
SELECT dblink_exec('holder', 'BEGIN');
SELECT dblink_exec('holder', format($$ INSERT INTO m365.username (configuration_id, person_kind, person_id, username)
                                        VALUES (%s, 'staff', 1, 'bezet.door.wachter') $$, (SELECT id FROM retry_cfg)));
SELECT is(pg_temp.as_role('m365_app', format($$ SET LOCAL lock_timeout = '200ms';
                                                SELECT m365.set_username(%s, 'bezet.door.wachter') $$, (SELECT id FROM held))),
          '55P03', 'set_username waiting on a name another session is taking: 55P03, not M3U05');
SELECT dblink_exec('holder', 'ROLLBACK');
SELECT dblink_exec('holder', 'BEGIN');
SELECT * FROM dblink('holder', format('SELECT 1 FROM m365.username WHERE id = %s FOR UPDATE', (SELECT id FROM held))) AS t(x int);
SELECT is(pg_temp.as_role('m365_app', format($$ SET LOCAL lock_timeout = '200ms';
                                                SELECT m365.set_sync(ARRAY[%s]::bigint[], true) $$, (SELECT id FROM held))),
          '55P03', 'set_sync waiting on a row another session holds: 55P03, not M3S01');
SELECT dblink_exec('holder', 'ROLLBACK');

-- 5. Dates in the configuration's time zone (UTC+14), whatever the session's.
SET LOCAL TimeZone = 'Pacific/Pago_Pago';   -- UTC-11: CURRENT_DATE is a day or two earlier
SELECT cmp_ok(CURRENT_DATE, '<', m365.configuration_today(913001), 'the session''s today is before the configuration''s');
SELECT is((SELECT count(*)::int FROM m365.student_usernames(913001) WHERE student_id = 913001), 1,
          'the list shows a student enrolled from the configuration''s today (0.2.0: hidden until the session''s today)');
UPDATE m365.staff SET active = false WHERE id = 913001;
SELECT is((SELECT inactive_since FROM m365.staff WHERE id = 913001), m365.configuration_today(913001),
          'a staff member becomes inactive on the configuration''s today');
RESET TimeZone;
-- An abbreviation would follow the session's timezone_abbreviations, which any
-- session may set (a red-team finding against the first 0.3.0: 'IST').
SELECT throws_ok($$ UPDATE m365.configuration SET time_zone = 'IST' WHERE id = 913001 $$, '23514', NULL,
                 'a time zone abbreviation is refused');
SELECT throws_ok($$ UPDATE m365.configuration SET time_zone = 'EST' WHERE id = 913001 $$, '23514', NULL,
                 'and so is a zone name that is also an abbreviation');

SELECT dblink_disconnect('holder');
SELECT * FROM finish();
ROLLBACK;
