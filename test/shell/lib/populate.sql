-- After test/shell/lib/school_data.sql: part of the people get usernames (560 stay queued),
-- one whose name yields nothing, sync flags, an edit with its history row,
-- an SDS reader and two records of the feed (0.2.0: snapshots). Shared by the backup and upgrade tests.
\set ON_ERROR_STOP on
ANALYZE;  -- as a DBA does after a bulk load
-- The first 1,500 people get their username, 560 stay waiting: 0.1.0 and
-- 0.2.0 bound a run; 0.3.0 serves its whole log, so the others leave the
-- log for that run and come back after it.
SELECT to_regprocedure('m365.generate_usernames_in_transaction()') IS NOT NULL AS has_log \gset
\if :has_log
CREATE TEMP TABLE later AS
SELECT person_kind, person_id FROM m365.username_request GROUP BY 1, 2 ORDER BY min(id) OFFSET 1500;
DELETE FROM m365.username_request AS r USING later AS l
 WHERE r.person_kind = l.person_kind AND r.person_id = l.person_id;
SELECT m365.generate_usernames_in_transaction();
INSERT INTO m365.username_request (person_kind, person_id) SELECT person_kind, person_id FROM later;
\else
SELECT m365.generate_usernames(1500);
\endif
INSERT INTO m365.student (id, first_name, last_name) VALUES (99999, '😀', '🎉');
INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (99999, 99999, 11, CURRENT_DATE);
SELECT m365.set_location_sync(11, true);
SET m365.app_user = 'backup.test';
SELECT m365.set_username((SELECT username_id FROM m365.student_usernames(11) ORDER BY student_id LIMIT 1), 'hernoemd.kind');
SELECT m365.create_sds_reader('sds_backup_test', 1);
-- Two records of what SDS received, with a change between them (0.2.0: snapshots).
-- (0.3.0: and an export held by the brake on mass changes, an approval.)
SELECT to_regprocedure('m365_sds.record_feed(text, bigint, boolean)') IS NOT NULL AS has_record \gset
\if :has_record
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT m365_sds.record_feed('/srv/sds/test', 1);
COMMIT;
UPDATE m365.username SET sync = false WHERE id = (SELECT min(id) FROM m365.username WHERE sync AND configuration_id = 1);
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT m365_sds.record_feed('/srv/sds/test', 1);
COMMIT;
INSERT INTO m365.sds_hold (configuration_id, since_record, previous_users, leaving, renamed, change_limit, digest)
SELECT 1, max(id), 100, 30, 2, 25, repeat('a', 64) FROM m365.sds_record WHERE configuration_id = 1;
INSERT INTO m365.sds_approval (configuration_id, since_record, leaving, renamed, digest, approved_by)
SELECT 1, max(id), 30, 2, repeat('b', 64), 'populate.sql' FROM m365.sds_record WHERE configuration_id = 1;
\else
SELECT m365.take_sds_snapshots();
UPDATE m365.username SET sync = false WHERE id = (SELECT min(id) FROM m365.username WHERE sync AND configuration_id = 1);
SELECT m365.take_sds_snapshots();
\endif
