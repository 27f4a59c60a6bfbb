-- The brake on mass changes: an export whose feed takes out or renames more
-- users than max(sds_brake_percent of the newest record's users,
-- sds_brake_minimum) is held (nothing recorded, the hold kept and shown in
-- m365.status); m365.pending_sds_changes says who and why; only an admin
-- approves, once, that very set of changes (its digest). Group changes are
-- listed, not counted. No flag of record_feed skips it.
-- REPEATABLE READ, as the export's holder session.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT plan(35);
\ir lib/session.psql

INSERT INTO m365.configuration (id, name) VALUES (925001, 'brake'), (925002, 'brake, other tenant');
INSERT INTO m365.school (id, name, configuration_id, staff_domain) VALUES (925001, 'B', 925001, 'b.be');
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain)
VALUES (925001, 925001, 'B1', 925001, 'leerling.b.be'), (925002, 925001, 'B2 (no domain)', 925001, NULL);
INSERT INTO m365.class (id, location_id, name, school_year)
SELECT 925000 + i, 925001, 'K' || i, m365.school_year(CURRENT_DATE) FROM generate_series(1, 2) AS i;
INSERT INTO m365.student (id, first_name, last_name)
SELECT 925000 + i, 'Kind', 'Rem' || i FROM generate_series(1, 200) AS i;
INSERT INTO m365.enrolment (id, student_id, location_id, class_id, start_date)
SELECT 925000 + i, 925000 + i, 925001, 925001 + i % 2, CURRENT_DATE - 10 FROM generate_series(1, 200) AS i;
INSERT INTO m365.staff (id, first_name, last_name, active)
SELECT 925000 + i, 'Juf', 'Rem' || i, true FROM generate_series(1, 4) AS i;
INSERT INTO m365.staff_school (staff_id, school_id) SELECT 925000 + i, 925001 FROM generate_series(1, 4) AS i;
SELECT m365.generate_usernames_in_transaction();
SELECT m365.set_sync(array_agg(id), true) FROM m365.username WHERE configuration_id = 925001;
-- Staff usernames carry their domain (b.be), students get the location's.

CREATE FUNCTION pg_temp.export() RETURNS text LANGUAGE sql
RETURN (SELECT r.outcome FROM m365_sds.record_feed('/srv/sds/brake', 925001) AS r);
CREATE FUNCTION pg_temp.records() RETURNS bigint LANGUAGE sql
RETURN (SELECT count(*) FROM m365.sds_record WHERE configuration_id = 925001);
CREATE FUNCTION pg_temp.students(n integer, skip integer DEFAULT 0) RETURNS SETOF bigint LANGUAGE sql
AS $$ SELECT 925000 + i FROM generate_series(skip + 1, skip + n) AS i $$;

-- 1. The first export is never held (there is nothing to compare with).
SELECT is(pg_temp.export(), 'recorded', 'the first export of 204 users is recorded');

-- 2. Up to the limit it goes through: max(5 % of 204 = 10.2, 25) = 25.
UPDATE m365.enrolment SET end_date = CURRENT_DATE - 1 WHERE student_id IN (SELECT pg_temp.students(25));
SELECT is(pg_temp.export(), 'recorded', '25 leaving (the limit, not more) is recorded');

-- 3. 26 leaving or renamed, for every reason the pending list knows: held.
--    (179 users now: the limit is still 25.)
UPDATE m365.enrolment SET end_date = CURRENT_DATE - 1 WHERE student_id IN (SELECT pg_temp.students(9, 25));
SELECT m365.set_sync(array_agg(u.id), false) FROM m365.username AS u WHERE u.person_kind = 'student' AND u.person_id IN (SELECT pg_temp.students(5, 34));
UPDATE m365.staff SET active = false WHERE id IN (925001, 925002);
DELETE FROM m365.enrolment WHERE student_id IN (SELECT pg_temp.students(3, 39));
DELETE FROM m365.student WHERE id IN (SELECT pg_temp.students(3, 39));
UPDATE m365.enrolment SET location_id = 925002, class_id = NULL WHERE student_id IN (SELECT pg_temp.students(3, 42));
SELECT m365.set_username(u.id, 'nieuw.' || u.person_id) FROM m365.username AS u
 WHERE u.person_kind = 'student' AND u.person_id IN (SELECT pg_temp.students(3, 45));
UPDATE m365.enrolment SET end_date = CURRENT_DATE - 1 WHERE student_id IN (SELECT pg_temp.students(1, 48));
CREATE TEMP TABLE before AS
SELECT pg_temp.records() AS records,
       (SELECT count(*) FROM m365.sds_record_user WHERE configuration_id = 925001) AS versions;
SELECT is(pg_temp.export(), 'held', '26 leaving or renamed since the last record: held');
SELECT is(pg_temp.records(), (SELECT records FROM before), 'a held export records nothing');
SELECT is((SELECT count(*) FROM m365.sds_record_user WHERE configuration_id = 925001), (SELECT versions FROM before),
          'and ends or adds no row version');
SELECT is((SELECT leaving || ' ' || renamed || ' ' || previous_users || ' ' || change_limit FROM m365.sds_hold WHERE configuration_id = 925001),
          '23 3 179 25.00', 'the hold says 23 leave and 3 are renamed, of 179, limit 25');
SELECT matches((SELECT sds_held FROM m365.status WHERE configuration_id = 925001), '^held at .*23 user\(s\) would leave and 3 be renamed',
               'm365.status shows the configuration as held');
SELECT is((SELECT sds_held FROM m365.status WHERE configuration_id = 925002), NULL, 'and another configuration as not held');

-- 4. Who and why.
SELECT set_eq($$ SELECT reason, count(*) FROM m365.pending_sds_changes(925001) WHERE change IN ('user removed', 'user renamed') GROUP BY reason $$,
              $$ VALUES ('enrolment ended', 10::bigint), ('sync turned off', 5), ('staff inactive', 2), ('person deleted', 3),
                        ('left out by the feed rules: no domain: SDS needs local@domain', 3), ('renamed', 3) $$,
              'pending_sds_changes lists the 23 leaving and the 3 renamed, each with its reason');
SELECT set_eq($$ SELECT username, new_username FROM m365.pending_sds_changes(925001) WHERE change = 'user renamed' $$,
              $$ SELECT v.username, u.username || '@leerling.b.be' FROM m365.sds_record_user AS v
                   JOIN m365.username AS u ON 'student-' || u.person_id = v.sourced_id AND u.configuration_id = 925001
                  WHERE v.configuration_id = 925001 AND v.last_record IS NULL AND u.username LIKE 'nieuw.%' $$,
              'a rename shows the old and the new username');
SELECT ok((SELECT bool_and(reason = 'the user leaves') AND count(*) >= 23 FROM m365.pending_sds_changes(925001)
            WHERE change = 'membership lost' AND user_sourced_id LIKE 'student-%'
              AND user_sourced_id IN (SELECT user_sourced_id FROM m365.pending_sds_changes(925001) WHERE change = 'user removed')),
          'the groups a leaver loses are listed: the user leaves');

-- 5. Approving: an admin only, bound to the set, once.
SELECT is(pg_temp.as_role('m365_app', 'SELECT * FROM m365.approve_sds_changes(925001)'), '42501', 'm365_app cannot approve');
SELECT is(pg_temp.as_role('m365_app', 'SELECT * FROM m365.pending_sds_changes(925001)'), '42501', 'nor see the pending changes');
SELECT is(pg_temp.as_role('m365_app', 'SELECT * FROM m365.sds_approval'), '42501', 'nor read the approvals');
SELECT is(pg_temp.as_role('m365_app', 'UPDATE m365.configuration SET sds_brake_minimum = 1000000 WHERE id = 925001'), '42501',
          'nor loosen the brake');
SELECT throws_ok($$ SELECT * FROM m365.approve_sds_changes(925001, 'not the digest') $$, 'M3B04', NULL,
                 'an approval of another set than the one now pending is refused: M3B04');
SELECT is(pg_temp.as_role('m365_admin', $$SELECT * FROM m365.approve_sds_changes(925001, (SELECT digest FROM m365.sds_hold WHERE configuration_id = 925001))$$),
          'ok', 'an admin approves what the held export saw');
SELECT is((SELECT approved_by || ' ' || leaving || ' ' || renamed || ' ' || (used_by_record IS NULL) FROM m365.sds_approval WHERE configuration_id = 925001),
          session_user || ' 23 3 true', 'the approval is kept: who (the session''s login), what, not used yet');
-- One more leaver: another set, the approval does not fit it.
UPDATE m365.enrolment SET end_date = CURRENT_DATE - 1 WHERE student_id IN (SELECT pg_temp.students(1, 49));
SELECT is(pg_temp.export(), 'held', 'one more leaver after the approval: held again (the approval is bound to its set)');
UPDATE m365.enrolment SET end_date = NULL WHERE student_id IN (SELECT pg_temp.students(1, 49));
SELECT is(pg_temp.export(), 'recorded', 'back to the approved set: recorded');
SELECT is((SELECT used_by_record FROM m365.sds_approval WHERE configuration_id = 925001),
          (SELECT max(id) FROM m365.sds_record WHERE configuration_id = 925001), 'the record used the approval');
SELECT is((SELECT count(*) FROM m365.sds_hold WHERE configuration_id = 925001), 0::bigint, 'the hold is gone');
SELECT is((SELECT sds_held FROM m365.status WHERE configuration_id = 925001), NULL, 'm365.status no longer shows it');

-- 6. Once: the next mass change is held anew, whatever was approved before.
UPDATE m365.enrolment SET end_date = CURRENT_DATE - 1 WHERE student_id IN (SELECT pg_temp.students(30, 60));
SELECT is(pg_temp.export(), 'held', 'an approval is used once: the next mass change is held');
-- Red-team find: changes made after the review were approved with it.
UPDATE m365.enrolment SET end_date = CURRENT_DATE - 1 WHERE student_id IN (SELECT pg_temp.students(10, 90));
SELECT throws_ok($$ SELECT * FROM m365.approve_sds_changes(925001) $$, 'M3B04', NULL,
                 'while an export is held, an approval without a digest is of what it saw: ten more leavers since make it fail');
UPDATE m365.enrolment SET end_date = NULL WHERE student_id IN (SELECT pg_temp.students(10, 90));
SELECT throws_ok($$ SELECT * FROM m365.approve_sds_changes(925002) $$, 'M3B03', NULL,
                 'a configuration without a record has nothing to approve: M3B03');

-- 7. Group changes are listed, not counted.
UPDATE m365.enrolment SET end_date = NULL WHERE student_id IN (SELECT pg_temp.students(30, 60));
UPDATE m365.enrolment SET class_id = 925001 + (class_id - 925000) % 2 WHERE student_id BETWEEN 925050 AND 925200;
SELECT cmp_ok((SELECT count(*) FROM m365.pending_sds_changes(925001) WHERE change LIKE 'membership%'), '>', 250::bigint,
              'more than 250 class memberships change');
SELECT throws_ok($$ SELECT * FROM m365.approve_sds_changes(925001) $$, 'M3B03', NULL,
                 'they need no approval: M3B03 (nothing to approve)');
SELECT is(pg_temp.export(), 'recorded', 'and the export is recorded');

-- 8. The limit is the configuration's.
UPDATE m365.configuration SET sds_brake_percent = 0, sds_brake_minimum = 0 WHERE id = 925001;
UPDATE m365.enrolment SET end_date = CURRENT_DATE - 1 WHERE student_id IN (SELECT pg_temp.students(1, 100));
SELECT is(pg_temp.export(), 'held', 'a limit of 0: one leaver is held');
UPDATE m365.configuration SET sds_brake_percent = 100 WHERE id = 925001;
SELECT is(pg_temp.export(), 'recorded', 'a limit of 100 %: recorded');
SELECT throws_ok($$ UPDATE m365.configuration SET sds_brake_percent = 101 WHERE id = 925001 $$, '23514', NULL,
                 'a percentage above 100 is refused');

-- 9. No flag skips it: a preview is never written to the SDS folder.
SELECT throws_ok($$ SELECT * FROM m365_sds.record_feed('/srv/sds/brake', 925001, true) $$, 'M3B01', NULL,
                 'a preview into the SDS folder is refused: M3B01');
SELECT is((SELECT outcome FROM m365_sds.record_feed('/srv/sds/preview', 925001, true)), 'preview', 'a preview elsewhere is a preview');

-- 10. The digest is the set's, sorted bytewise: the same in every locale.
SELECT is(m365.sds_change_digest(ARRAY['b', 'İvo', 'I', 'a', 'B']),
          encode(sha256(convert_to(E'B\nI\na\nb\nİvo', 'UTF8')), 'hex'),
          'the digest hashes the lines in byte order, whatever the database''s collation');

SELECT * FROM finish();
ROLLBACK;
