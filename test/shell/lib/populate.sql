-- After demo/load.sql: part of the people get usernames (560 stay queued),
-- one whose name yields nothing, sync flags, an edit with its history row,
-- an SDS reader and a snapshot. Shared by the backup and upgrade tests.
\set ON_ERROR_STOP on
ANALYZE;  -- as a DBA does after a bulk load
SELECT m365.generate_usernames(1500);                       -- 560 still queued
INSERT INTO m365.student (id, first_name, last_name) VALUES (99999, '😀', '🎉');
INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (99999, 99999, 11, CURRENT_DATE);
SELECT m365.set_location_sync(11, true);
SET m365.app_user = 'backup.test';
SELECT m365.set_username((SELECT username_id FROM m365.student_usernames(11) ORDER BY student_id LIMIT 1), 'hernoemd.kind');
SELECT m365.create_sds_reader('sds_backup_test', 1);
SELECT m365.take_sds_snapshots();
