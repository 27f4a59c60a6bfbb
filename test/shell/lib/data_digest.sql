-- One md5 per table of user data (not the queue or log: derived state), in
-- one line: equal lines mean equal data. Shared by the backup and upgrade
-- tests, so columns a later version adds are left out, columns are named
-- (a version may re-create one at the end), a reader is its role's
-- name whether bound by name (0.2.0) or OID, and "issued" is every name ever
-- issued with its owner, wherever a version keeps it (0.2.0: all in the
-- ledger; 0.3.0: in use in username, the others in the ledger).
\set ON_ERROR_STOP on
-- What SDS received, as one row per record and one per user of a record,
-- whether kept as 0.2.0's snapshots or as 0.3.0's records stored by change.
SELECT to_regclass('m365.sds_record') IS NOT NULL AS has_record \gset
\if :has_record
CREATE TEMP VIEW recorded AS SELECT id, configuration_id, on_date, counts FROM m365.sds_record;
CREATE TEMP VIEW recorded_user AS
SELECT r.id AS record_id, v.sourced_id, v.username FROM m365.sds_record AS r
  JOIN m365.sds_record_user AS v ON v.configuration_id = r.configuration_id AND v.first_record <= r.id
                                 AND (v.last_record IS NULL OR v.last_record >= r.id);
CREATE TEMP VIEW recorded_membership AS
SELECT r.id AS record_id, v.group_id, v.user_sourced_id, v.role FROM m365.sds_record AS r
  JOIN m365.sds_record_membership AS v ON v.configuration_id = r.configuration_id AND v.first_record <= r.id
                                       AND (v.last_record IS NULL OR v.last_record >= r.id);
\else
CREATE TEMP VIEW recorded AS SELECT id, configuration_id, on_date, counts FROM m365.sds_snapshot;
CREATE TEMP VIEW recorded_user AS SELECT snapshot_id AS record_id, sourced_id, username FROM m365.sds_snapshot_user;
CREATE TEMP VIEW recorded_membership AS SELECT snapshot_id AS record_id, group_id, user_sourced_id, role FROM m365.sds_snapshot_membership;
\endif
-- The brake on mass changes (0.3.0): holds and approvals.
SELECT to_regclass('m365.sds_approval') IS NOT NULL AS has_brake \gset
\if :has_brake
CREATE TEMP VIEW brake AS
SELECT 'sds_hold' AS t, md5(string_agg(x::text, '|' ORDER BY x.configuration_id)) AS d FROM m365.sds_hold AS x
UNION ALL SELECT 'sds_approval', md5(string_agg(x::text, '|' ORDER BY x.id)) FROM m365.sds_approval AS x
-- Forgotten people (0.3.0): the hashes, their key, the audit.
UNION ALL SELECT 'forgotten_username', md5(string_agg(x::text, '|' ORDER BY x.configuration_id, x.name_hash)) FROM m365.forgotten_username AS x
-- (the key in use, where hashes need it: the oldest; a restore adds the
-- dumped one beside the new install's, and an update makes one)
UNION ALL SELECT 'forget_key', md5(x::text) FROM (SELECT k.inner_pad, k.outer_pad FROM m365.forget_key AS k ORDER BY k.made_at, k.inner_pad LIMIT 1) AS x
           WHERE EXISTS (SELECT FROM m365.forgotten_username)
UNION ALL SELECT 'forgotten_person', md5(string_agg(x::text, '|' ORDER BY x.id)) FROM m365.forgotten_person AS x
-- The tenant's accounts and their adoptions (0.3.0).
UNION ALL SELECT 'tenant_account', md5(string_agg(x::text, '|' ORDER BY x.configuration_id, x.local_part, x.domain)) FROM m365.tenant_account AS x
UNION ALL SELECT 'tenant_adoption', md5(string_agg(x::text, '|' ORDER BY x.id)) FROM m365.tenant_adoption AS x;
\else
CREATE TEMP VIEW brake AS SELECT NULL::text AS t, NULL::text AS d WHERE false;
\endif
SELECT string_agg(t || ':' || d, ' ' ORDER BY t) FROM (
    SELECT 'configuration' AS t, md5(string_agg((to_jsonb(x) - 'time_zone' - 'sds_folder' - 'sds_record_school_years' - 'sds_brake_percent' - 'sds_brake_minimum' - 'history_school_years' - 'leaver_school_years' - 'rename_policy')::text, '|' ORDER BY x.id)) AS d FROM m365.configuration AS x
    UNION ALL SELECT 'username', md5(string_agg((to_jsonb(x) - 'base' - 'suffix' - 'format' - 'names_digest')::text, '|' ORDER BY x.id)) FROM m365.username AS x
    UNION ALL SELECT 'issued', md5(string_agg(concat_ws(' ', x.configuration_id, x.local_part, x.person_kind, x.person_id), '|'
                                              ORDER BY x.configuration_id, x.local_part)) FROM (
        SELECT i.configuration_id, i.local_part, i.person_kind, i.person_id FROM m365.issued_username AS i
        UNION SELECT u.configuration_id, u.local_part, u.person_kind, u.person_id FROM m365.username AS u) AS x
    UNION ALL SELECT 'reserved', md5(string_agg(to_jsonb(x)::text, '|' ORDER BY x.configuration_id, x.local_part)) FROM m365.reserved_username AS x
    UNION ALL SELECT 'history', md5(string_agg(x::text, '|' ORDER BY x.id)) FROM m365.username_history AS x
    UNION ALL SELECT 'school', md5(string_agg(x::text, '|' ORDER BY x.id)) FROM m365.school AS x
    UNION ALL SELECT 'location', md5(string_agg(x::text, '|' ORDER BY x.id)) FROM m365.location AS x
    UNION ALL SELECT 'student', md5(string_agg(x::text, '|' ORDER BY x.id)) FROM m365.student AS x
    UNION ALL SELECT 'class', md5(string_agg(x::text, '|' ORDER BY x.id)) FROM m365.class AS x
    UNION ALL SELECT 'enrolment', md5(string_agg(x::text, '|' ORDER BY x.id)) FROM m365.enrolment AS x
    UNION ALL SELECT 'staff', md5(string_agg(x::text, '|' ORDER BY x.id)) FROM m365.staff AS x
    UNION ALL SELECT 'staff_school', md5(string_agg(x::text, '|' ORDER BY x.staff_id, x.school_id)) FROM m365.staff_school AS x
    UNION ALL SELECT 'sds_reader', md5(string_agg(r, '|' ORDER BY r)) FROM (
        SELECT concat_ws(' ', coalesce(to_jsonb(x) ->> 'role_name', to_jsonb(x) ->> 'role_id'), x.configuration_id, x.created_at) AS r
          FROM m365.sds_reader AS x) AS x
    UNION ALL SELECT 'sds_record', md5(string_agg(x::text, '|' ORDER BY x.id)) FROM recorded AS x
    UNION ALL SELECT 'sds_record_user', md5(string_agg(x::text, '|' ORDER BY x.record_id, x.sourced_id)) FROM recorded_user AS x
    UNION ALL SELECT 'sds_record_membership', md5(string_agg(x::text, '|' ORDER BY x::text)) FROM recorded_membership AS x
    UNION ALL SELECT t, d FROM brake
) AS digests;
