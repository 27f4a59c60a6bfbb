-- Retention per configuration (issue 16, part 3), applied nightly by
-- m365.apply_retention(): history rows and the usernames of people who left,
-- after history_school_years and leaver_school_years (off by default). A
-- leaver's names are forgotten as forget_person forgets them (hashes stay);
-- never someone who still needs a username, nor someone the newest record
-- of what SDS received holds (the brake compares with it).
-- REPEATABLE READ, as the export's holder session (record_feed).
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT plan(16);
\ir lib/session.psql

-- Two school years ago, and last month (the current school year).
CREATE TEMP TABLE day AS
SELECT make_date(m365.school_year(CURRENT_DATE) - 2, 10, 1) AS long_ago, CURRENT_DATE - 30 AS lately;
INSERT INTO m365.configuration (id, name) VALUES (927001, 'retention'), (927002, 'retention off');
INSERT INTO m365.school (id, name, configuration_id, staff_domain) VALUES (927001, 'R', 927001, 'r.be'), (927002, 'O', 927002, 'o.be');
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain)
VALUES (927001, 927001, 'R1', 927001, 'leerling.r.be'), (927002, 927002, 'O1', 927002, 'leerling.o.be');
-- 1 left long ago; 2 left lately; 3 still enrolled; 4 left long ago but the
-- newest record still holds them; 5 left long ago, in the configuration that keeps everything.
INSERT INTO m365.student (id, first_name, last_name) SELECT 927000 + i, 'Kind', 'Ret' || i FROM generate_series(1, 5) AS i;
INSERT INTO m365.enrolment (id, student_id, location_id, start_date)
SELECT 927000 + i, 927000 + i, CASE WHEN i = 5 THEN 927002 ELSE 927001 END, (SELECT long_ago FROM day) - 400 FROM generate_series(1, 5) AS i;
-- Staff: 1 inactive long ago, 2 inactive lately, 3 active.
INSERT INTO m365.staff (id, first_name, last_name) SELECT 927000 + i, 'Juf', 'Ret' || i FROM generate_series(1, 3) AS i;
INSERT INTO m365.staff_school (staff_id, school_id) SELECT 927000 + i, 927001 FROM generate_series(1, 3) AS i;
SELECT m365.generate_usernames_in_transaction();
SELECT m365.set_sync(array_agg(id), true) FROM m365.username WHERE configuration_id IN (927001, 927002);
SELECT is((SELECT count(*) FROM m365.username WHERE configuration_id IN (927001, 927002)), 8::bigint, 'eight usernames');
-- An older record holds them all; the newest student 4 only.
SELECT is((SELECT outcome FROM m365_sds.record_feed('/srv/sds/retention', 927001)), 'recorded', 'a record holding them all');
SELECT m365.set_sync(array_agg(id), false) FROM m365.username WHERE configuration_id = 927001 AND NOT (person_kind = 'student' AND person_id = 927004);
SELECT is((SELECT outcome FROM m365_sds.record_feed('/srv/sds/retention', 927001)), 'recorded', 'the newest holding student 4');

UPDATE m365.enrolment SET end_date = (SELECT long_ago FROM day) WHERE student_id IN (927001, 927004, 927005);
UPDATE m365.enrolment SET end_date = (SELECT lately FROM day) WHERE student_id = 927002;
UPDATE m365.staff SET active = false, inactive_since = (SELECT long_ago FROM day) WHERE id = 927001;
UPDATE m365.staff SET active = false, inactive_since = (SELECT lately FROM day) WHERE id = 927002;
-- The usernames and their history as they were then (no trigger may touch the day).
SET LOCAL session_replication_role = replica;
UPDATE m365.username SET updated_at = (SELECT long_ago FROM day) WHERE configuration_id IN (927001, 927002);
UPDATE m365.username_history SET changed_at = (SELECT long_ago FROM day)
 WHERE configuration_id IN (927001, 927002) AND person_id IN (927001, 927003);
SET LOCAL session_replication_role = origin;
CREATE TEMP TABLE names_before AS SELECT configuration_id, username, person_kind, person_id FROM m365.username WHERE configuration_id IN (927001, 927002);

-- Off by default: nothing happens.
SELECT is((SELECT m365.apply_retention() -> 'leavers_forgotten'), '0'::jsonb, 'off by default: nobody forgotten');
UPDATE m365.configuration SET leaver_school_years = 1, history_school_years = 1 WHERE id = 927001;
SELECT throws_ok($$ UPDATE m365.configuration SET leaver_school_years = 0 WHERE id = 927001 $$, '23514', NULL, 'a retention of 0 school years is refused');
SELECT is(pg_temp.as_role('m365_app', 'SELECT m365.apply_retention()'), '42501', 'm365_app cannot apply retention');

SELECT is((SELECT m365.apply_retention() -> 'leavers_forgotten'), '2'::jsonb, 'kept: the current school year; forgotten: two leavers');
SELECT set_eq($$ SELECT person_kind, person_id FROM names_before EXCEPT SELECT person_kind, person_id FROM m365.username $$,
              $$ VALUES ('student', 927001::bigint), ('staff', 927001) $$,
              'the student and the staff member who left before the kept school year lose their usernames');
SELECT ok(NOT EXISTS (SELECT FROM m365.username_history WHERE configuration_id = 927001 AND changed_at < make_date(m365.school_year(CURRENT_DATE), 9, 1)),
          'the history from before the kept school year is gone');
SELECT ok(EXISTS (SELECT FROM m365.username_history WHERE configuration_id = 927001 AND person_id = 927004),
          'the history since stays');
SELECT ok((SELECT bool_and(m365.username_is_taken(b.configuration_id, b.username)) FROM names_before AS b
            WHERE b.person_id = 927001 AND b.configuration_id = 927001),
          'their names are never handed to anyone else (hashed, not in the ledger)');
SELECT is((SELECT count(*) FROM m365.issued_username AS i JOIN names_before AS b
            ON b.configuration_id = i.configuration_id AND b.person_id = 927001 AND i.person_id = 927001), 0::bigint,
          'and not kept as names');
SELECT is((SELECT count(*) FROM m365.forgotten_person WHERE removed ->> 'retention' = 'leaver_school_years' AND person_id = 927001), 2::bigint,
          'each forgetting is audited');
SELECT is((SELECT count(*) FROM m365.sds_record_user WHERE sourced_id IN ('student-927001', 'staff-927001')), 0::bigint,
          'their rows in the older record go too (red-team find: their usernames stayed there)');
SELECT is((SELECT count(*) FROM m365.sds_record_user WHERE sourced_id = 'student-927004'), 1::bigint,
          'the newest record''s student 4 stays');
SELECT is((SELECT m365.apply_retention() -> 'leavers_forgotten'), '0'::jsonb, 'a second run has nothing more to do');

SELECT * FROM finish();
ROLLBACK;
