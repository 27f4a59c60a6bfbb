--------------------------------------------------------------------------------
-- pg_dump: these tables hold user data.
--------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('m365.configuration', '');
SELECT pg_catalog.pg_extension_config_dump('m365.configuration_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365.username', '');
SELECT pg_catalog.pg_extension_config_dump('m365.username_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365.issued_username', '');
SELECT pg_catalog.pg_extension_config_dump('m365.reserved_username', '');
SELECT pg_catalog.pg_extension_config_dump('m365.forget_key', '');
SELECT pg_catalog.pg_extension_config_dump('m365.forgotten_username', '');
SELECT pg_catalog.pg_extension_config_dump('m365.forgotten_person', '');
SELECT pg_catalog.pg_extension_config_dump('m365.forgotten_person_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365.person_in_feed', '');
SELECT pg_catalog.pg_extension_config_dump('m365.tenant_account', '');
SELECT pg_catalog.pg_extension_config_dump('m365.tenant_adoption', '');
SELECT pg_catalog.pg_extension_config_dump('m365.tenant_adoption_id_seq', '');

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
SELECT pg_catalog.pg_extension_config_dump('m365.departed_person', '');
SELECT pg_catalog.pg_extension_config_dump('m365.source', '');
SELECT pg_catalog.pg_extension_config_dump('m365.source_waiting', '');
SELECT pg_catalog.pg_extension_config_dump('m365.source_decided', '');
SELECT pg_catalog.pg_extension_config_dump('m365.username_hold', '');
SELECT pg_catalog.pg_extension_config_dump('m365.sds_reader', '');
SELECT pg_catalog.pg_extension_config_dump('m365.access_role', '');
SELECT pg_catalog.pg_extension_config_dump('m365.job_run', '');
SELECT pg_catalog.pg_extension_config_dump('m365.job_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365.sds_record', '');
SELECT pg_catalog.pg_extension_config_dump('m365.sds_record_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365.sds_record_head', '');
SELECT pg_catalog.pg_extension_config_dump('m365.sds_record_user', '');
SELECT pg_catalog.pg_extension_config_dump('m365.sds_record_membership', '');
SELECT pg_catalog.pg_extension_config_dump('m365.sds_hold', '');
SELECT pg_catalog.pg_extension_config_dump('m365.sds_approval', '');
SELECT pg_catalog.pg_extension_config_dump('m365.sds_approval_id_seq', '');
-- Not m365.username_request nor m365.username_failure: they are derived
-- state (whom the job still has to look at). Restoring the school data fires
-- the logging triggers, so the restore logs everyone again; the next run
-- drains those rows without creating or changing a username (a restored
-- username is kept) and records the failures anew.
