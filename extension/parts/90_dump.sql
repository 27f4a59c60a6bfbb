--------------------------------------------------------------------------------
-- pg_dump: these tables hold user data.
--------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('m365.configuration', '');
SELECT pg_catalog.pg_extension_config_dump('m365.configuration_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365.username', '');
SELECT pg_catalog.pg_extension_config_dump('m365.username_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365.issued_username', '');
SELECT pg_catalog.pg_extension_config_dump('m365.reserved_username', '');

SELECT pg_catalog.pg_extension_config_dump('m365.school', '');
SELECT pg_catalog.pg_extension_config_dump('m365.location', '');
SELECT pg_catalog.pg_extension_config_dump('m365.student', '');
SELECT pg_catalog.pg_extension_config_dump('m365.class', '');
SELECT pg_catalog.pg_extension_config_dump('m365.enrolment', '');
SELECT pg_catalog.pg_extension_config_dump('m365.staff', '');
SELECT pg_catalog.pg_extension_config_dump('m365.staff_school', '');
SELECT pg_catalog.pg_extension_config_dump('m365.class_teacher', '');
SELECT pg_catalog.pg_extension_config_dump('m365.username_history', '');
SELECT pg_catalog.pg_extension_config_dump('m365.username_history_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365.sds_reader', '');
SELECT pg_catalog.pg_extension_config_dump('m365.access_role', '');
SELECT pg_catalog.pg_extension_config_dump('m365.job_run', '');
SELECT pg_catalog.pg_extension_config_dump('m365.job_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365.sds_snapshot', '');
SELECT pg_catalog.pg_extension_config_dump('m365.sds_snapshot_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365.sds_snapshot_user', '');
SELECT pg_catalog.pg_extension_config_dump('m365.sds_snapshot_membership', '');
-- Not m365.username_queue: it is derived state (who still needs a username),
-- and restoring table data fires the queueing triggers, so a dumped queue
-- would collide with the one the restore rebuilds. After a restore run
-- SELECT m365.queue_missing_usernames(); see docs/backup.md.
