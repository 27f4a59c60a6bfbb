-- Forgetting a person (issue 16, part 3): once the school data no longer
-- holds them, m365.forget_person removes their usernames, history, failures
-- and record rows; a scan of every table of the extension then finds their
-- names nowhere, and the names are still never handed to anyone else (keyed
-- hashes only). Refused while the school data holds them; admin only;
-- audited without the name. The next export still counts them as leaving.
-- REPEATABLE READ, as the export's holder session (record_feed).
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT plan(29);
\ir lib/session.psql

INSERT INTO m365.configuration (id, name) VALUES (926001, 'forget');
INSERT INTO m365.school (id, name, configuration_id, staff_domain) VALUES (926001, 'F', 926001, 'f.be');
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain) VALUES (926001, 926001, 'F1', 926001, 'leerling.f.be');
INSERT INTO m365.class (id, location_id, name, school_year) VALUES (926001, 926001, '1A', m365.school_year(CURRENT_DATE));
-- The one to forget has names found nowhere else; the others keep theirs.
INSERT INTO m365.student (id, first_name, last_name)
VALUES (926001, 'Quirijntje', 'Zwartebroekx'), (926002, 'Jan', 'Peeters'), (926003, 'Mila', 'Wouters');
INSERT INTO m365.enrolment (id, student_id, location_id, class_id, start_date)
SELECT 926000 + i, 926000 + i, 926001, 926001, CURRENT_DATE - 10 FROM generate_series(1, 3) AS i;
INSERT INTO m365.staff (id, first_name, last_name) VALUES (926001, 'Els', 'Maes');
INSERT INTO m365.staff_school (staff_id, school_id) VALUES (926001, 926001);
SELECT m365.generate_usernames_in_transaction();
SELECT m365.set_sync(array_agg(id), true) FROM m365.username WHERE configuration_id = 926001;
SELECT username AS generated FROM m365.username WHERE person_kind = 'student' AND person_id = 926001 \gset
SELECT is(:'generated'::text, 'zwartebroekx.quirijntje', 'the pupil''s generated username');
SELECT record AS first FROM m365_sds.record_feed('/srv/sds/forget', 926001) \gset
-- Renamed by hand: the generated name goes to the ledger, the history has both.
SET m365.app_user = 'secretariaat';
SELECT m365.set_username(id, 'q.zwartebroekx') FROM m365.username WHERE person_kind = 'student' AND person_id = 926001;
RESET m365.app_user;
SELECT record AS second FROM m365_sds.record_feed('/srv/sds/forget', 926001) \gset

-- Every row of the extension's tables (and its work tables) that holds one of the names.
CREATE FUNCTION pg_temp.rows_naming(pattern text) RETURNS TABLE (tbl text, n bigint) LANGUAGE plpgsql AS $$
DECLARE
    t regclass;
BEGIN
    FOR t IN SELECT c.oid::regclass FROM pg_class AS c
              WHERE c.relnamespace IN ('m365'::regnamespace, 'm365_work'::regnamespace) AND c.relkind = 'r' LOOP
        tbl := t::text;
        EXECUTE format('SELECT count(*) FROM %s AS x WHERE x::text ~* %L', t, pattern) INTO n;
        IF n > 0 THEN
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;
SELECT cmp_ok((SELECT count(*) FROM pg_temp.rows_naming('zwartebroekx|quirijntje')), '>=', 5::bigint,
              'before: the names are in the school data, usernames, ledger, history and records (the scan finds them)');

-- 1. Refused while the school data holds them.
SELECT throws_ok($$ SELECT m365.forget_person('student', 926001) $$, 'M3P01', NULL,
                 'a pupil still in the school data cannot be forgotten: M3P01');
SELECT throws_ok($$ SELECT m365.forget_person('staff', 926001) $$, 'M3P01', NULL, 'nor a staff member');
SELECT throws_ok($$ SELECT m365.forget_person('parent', 926001) $$, '22023', NULL, 'an unknown kind: 22023');
SELECT throws_ok($$ SELECT m365.forget_person('student', NULL) $$, '22023', NULL, 'no id: 22023');

-- 2. The school deletes them (the person identity rule keeps their names in
--    m365.departed_person until then); an admin forgets them.
DELETE FROM m365.enrolment WHERE student_id = 926001;
DELETE FROM m365.student WHERE id = 926001;
SELECT throws_ok($$ SELECT m365.forget_person('student', 926001) $$, 'M3P01', NULL,
                 'nor while the feed SDS received last holds them: the next export takes them out first (the brake counts them)');
SELECT is((SELECT reason FROM m365.pending_sds_changes(926001) WHERE change = 'user removed' AND user_sourced_id = 'student-926001'),
          'person deleted', 'the export would take them out: person deleted');
SELECT record AS third FROM m365_sds.record_feed('/srv/sds/forget', 926001) \gset
SELECT is(pg_temp.as_role('m365_app', $$SELECT m365.forget_person('student', 926001)$$), '42501', 'm365_app cannot forget anyone');
SELECT is(pg_temp.as_role('m365_app', 'SELECT * FROM m365.forget_key'), '42501', 'nor read the key of the hashes');
SELECT is(pg_temp.as_role('m365_admin', $$SELECT m365.forget_person('student', 926001)$$), 'ok', 'an admin forgets the pupil');
SELECT is_empty($$ SELECT * FROM pg_temp.rows_naming('zwartebroekx|quirijntje') $$,
                'after: no table of the extension holds the names or a username made of them');
SELECT ok((SELECT removed ->> 'usernames' = '1' AND (removed ->> 'history_rows')::int >= 2 AND forgotten_by = session_user
             FROM m365.forgotten_person WHERE person_kind = 'student' AND person_id = 926001),
          'the forgetting is audited: who, how many rows (no name)');
SELECT set_eq($$ SELECT person_kind, person_id FROM m365.username WHERE configuration_id = 926001 $$,
              $$ VALUES ('student', 926002::bigint), ('student', 926003), ('staff', 926001) $$,
              'the others keep their usernames, the staff member with the same id included');

-- 3. The names are never handed to anyone else.
SELECT ok(m365.username_is_taken(926001, :'generated') AND m365.username_is_taken(926001, 'Q.Zwartebroekx'),
          'both names of the forgotten pupil are still taken');
INSERT INTO m365.student (id, first_name, last_name) VALUES (926004, 'Quirijntje', 'Zwartebroekx');
INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (926004, 926004, 926001, CURRENT_DATE);
SELECT m365.generate_usernames_in_transaction();
SELECT is((SELECT username FROM m365.username WHERE person_kind = 'student' AND person_id = 926004), 'zwartebroekx.quirijntje2',
          'a new pupil of the same name gets the next free one, not the forgotten pupil''s');
SELECT throws_ok($$ SELECT m365.set_username((SELECT id FROM m365.username WHERE person_kind = 'student' AND person_id = 926002), 'q.zwartebroekx') $$,
                 'M3U03', NULL, 'set_username refuses the forgotten name for someone else: M3U03 (in use)');
SELECT throws_ok($$ INSERT INTO m365.username (configuration_id, person_kind, person_id, username)
                    VALUES (926001, 'staff', 926099, 'zwartebroekx.quirijntje') $$,
                 '23505', NULL, 'and so does a direct write (the username trigger)');
-- The application's entry points read the hashes as the owner (the probe
-- reads the key): their answers for the forgotten names.
SELECT is(pg_temp.count_as('m365_app', $$SELECT (m365.username_is_taken(926001, 'q.zwartebroekx')
                                                 AND m365.first_free_username(926001, 'Q.Zwartebroekx') = 'q.zwartebroekx2')::int$$), 1::bigint,
          'm365_app may still ask whether a name is taken, and the first free name skips the forgotten one');
SELECT is(pg_temp.count_as('m365_app', $$SELECT count(*) FROM m365.preview_format(926001, 'naam.voornaam')
                                          WHERE person_id = 926004 AND clash = 'issued before to someone else'$$), 1::bigint,
          'and the preview of a format says the forgotten name was issued before');
SELECT is(pg_temp.as_role('m365_app', $$SELECT m365.forgotten_name_hash('q.zwartebroekx')$$), '42501',
          'but m365_app cannot hash a name itself (it could test guessed names against the hashes at once)');

SELECT is((SELECT count(*) FROM m365.sds_record_rows(r) WHERE user_sourced_id = 'student-926001'), 0::bigint,
          'no record of what SDS received holds them any more')
  FROM (VALUES (:first::bigint), (:second), (:third)) AS x(r);
SELECT is_empty($$ SELECT * FROM m365.pending_sds_changes(926001) WHERE user_sourced_id = 'student-926001' $$,
                'so the next export has no change of theirs to list: no "forgotten" reason, they left before (docs/sds.md)');

-- 4. The id comes back, for someone else: SDS knows a user by that id, so the
--    new username stays out of the feed until an administrator confirms.
INSERT INTO m365.student (id, first_name, last_name) VALUES (926001, 'Nieuwe', 'Leerling');
INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (926005, 926001, 926001, CURRENT_DATE);
SELECT m365.generate_usernames_in_transaction();
SELECT m365.set_sync(array_agg(id), true) FROM m365.username WHERE person_kind = 'student' AND person_id = 926001;
SET LOCAL m365.sds_configuration = '926001';
SELECT matches((SELECT reason FROM m365_sds.left_out WHERE "sourcedId" = 'student-926001'), '^held: .*m365.forgotten_person',
               'the forgotten id back: held out of the feed (it would take over the forgotten pupil''s account)');
SELECT is(pg_temp.as_role('m365_app', $$SELECT m365.confirm_returning_id('student', 926001)$$), '42501', 'm365_app cannot let it in');
SELECT ok(m365.confirm_returning_id('student', 926001), 'an administrator confirms it');
SELECT is((SELECT username FROM m365_sds.users WHERE "sourcedId" = 'student-926001'), 'leerling.nieuwe@leerling.f.be', 'then it is in the feed');
RESET m365.sds_configuration;

SELECT * FROM finish();
ROLLBACK;
