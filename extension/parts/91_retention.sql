--------------------------------------------------------------------------------
-- Retention, per configuration: the records of what SDS received
-- (sds_record_school_years, 87_sds_records.sql), the history
-- (history_school_years) and the usernames of people who left
-- (leaver_school_years, forgotten as 58_forgetting.sql forgets names); the
-- last two off (NULL) by default. pg_cron runs m365.apply_retention nightly.
--------------------------------------------------------------------------------

-- The first day of the oldest school year a retention of `years` school
-- years keeps (the current one and years - 1 before it), in a time zone.
CREATE FUNCTION m365.kept_from(time_zone text, years integer)
RETURNS date
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN pg_catalog.make_date(m365.school_year(m365.local_date(time_zone)) OPERATOR(pg_catalog.-) years OPERATOR(pg_catalog.+) 1, 9, 1);
REVOKE ALL ON FUNCTION m365.kept_from(text, integer) FROM PUBLIC;

-- Retention of the history: rows from before the school years a
-- configuration keeps (history_school_years; NULL, the default: all).
CREATE FUNCTION m365.remove_old_history()
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH gone AS (
        DELETE FROM m365.username_history AS h
         USING m365.configuration AS c
         WHERE h.configuration_id OPERATOR(pg_catalog.=) c.id AND c.history_school_years IS NOT NULL
           AND h.changed_at OPERATOR(pg_catalog.<)
               pg_catalog.timezone(c.time_zone, m365.kept_from(c.time_zone, c.history_school_years)::timestamp)
        RETURNING 1
    )
    SELECT pg_catalog.count(*) FROM gone;
END;
REVOKE ALL ON FUNCTION m365.remove_old_history() FROM PUBLIC;

-- Retention of leavers: the usernames of people who left a configuration
-- before the school years it keeps (leaver_school_years; NULL, the default:
-- kept) are forgotten there, as forget_person forgets names. Left: a
-- student whose every enrolment in its locations ended before then (or who
-- has none), a staff member inactive since before then (or deleted); and
-- the username unchanged since then. Never someone who needs a username (the
-- one rule), nor someone the newest record of what SDS received still holds
-- (the brake compares with it). Their rows in older records go too. Each
-- configuration in a subtransaction: after forgetting, the leavers are asked
-- again (the configuration's row locked, a fresh snapshot); when one needs a
-- username by then (re-enrolled while the run chose: a red-team find), the
-- configuration's retention is undone and waits for the next night.
CREATE FUNCTION m365.forget_leavers()
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c      record;
    cutoff date;
    kinds  text[];
    ids    bigint[];
    total  bigint := 0;
BEGIN
    FOR c IN SELECT x.id, x.time_zone, x.leaver_school_years FROM m365.configuration AS x
              WHERE x.leaver_school_years IS NOT NULL ORDER BY x.id LOOP
      BEGIN
        -- As forget_person: recordings of this configuration are waited for,
        -- or fail with 40001 when their snapshot is older than this.
        INSERT INTO m365.sds_record_head AS h (configuration_id) VALUES (c.id)
        ON CONFLICT ON CONSTRAINT sds_record_head_pkey DO UPDATE SET newest_record = h.newest_record;
        cutoff := m365.kept_from(c.time_zone, c.leaver_school_years);
        WITH holder AS MATERIALIZED (
            SELECT u.person_kind, u.person_id FROM m365.username AS u
             WHERE u.configuration_id OPERATOR(pg_catalog.=) c.id
               AND u.updated_at OPERATOR(pg_catalog.<) pg_catalog.timezone(c.time_zone, cutoff::timestamp)
               AND NOT EXISTS (SELECT FROM m365.sds_record_user AS v
                                WHERE v.configuration_id OPERATOR(pg_catalog.=) c.id AND v.last_record IS NULL
                                  AND v.sourced_id OPERATOR(pg_catalog.=) (u.person_kind OPERATOR(pg_catalog.||) '-' OPERATOR(pg_catalog.||) u.person_id))
        ), needing AS MATERIALIZED (
            SELECT n.person_kind, n.person_id
              FROM m365.people_needing_username(
                       ARRAY(SELECT h.person_id FROM holder AS h WHERE h.person_kind OPERATOR(pg_catalog.=) 'student'),
                       ARRAY(SELECT h.person_id FROM holder AS h WHERE h.person_kind OPERATOR(pg_catalog.=) 'staff')) AS n
             WHERE n.configuration_id OPERATOR(pg_catalog.=) c.id
        )
        SELECT pg_catalog.array_agg(h.person_kind), pg_catalog.array_agg(h.person_id) INTO kinds, ids
          FROM holder AS h
         WHERE NOT EXISTS (SELECT FROM needing AS n
                            WHERE n.person_kind OPERATOR(pg_catalog.=) h.person_kind AND n.person_id OPERATOR(pg_catalog.=) h.person_id)
           AND CASE h.person_kind
                   WHEN 'student' THEN NOT EXISTS (
                       SELECT FROM m365.enrolment AS e JOIN m365.location AS l ON l.id OPERATOR(pg_catalog.=) e.location_id
                        WHERE e.student_id OPERATOR(pg_catalog.=) h.person_id AND l.configuration_id OPERATOR(pg_catalog.=) c.id
                          AND (e.end_date IS NULL OR e.end_date OPERATOR(pg_catalog.>=) cutoff))
                   ELSE NOT EXISTS (
                       SELECT FROM m365.staff AS s
                        WHERE s.id OPERATOR(pg_catalog.=) h.person_id
                          AND (s.active OR s.inactive_since IS NULL OR s.inactive_since OPERATOR(pg_catalog.>=) cutoff))
               END;
        CONTINUE WHEN kinds IS NULL;
        PERFORM m365.forget_names(c.id, kinds, ids);
        IF EXISTS (SELECT FROM m365.people_needing_username(
                                   ARRAY(SELECT p.id FROM ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
                                          WHERE p.kind OPERATOR(pg_catalog.=) 'student'),
                                   ARRAY(SELECT p.id FROM ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
                                          WHERE p.kind OPERATOR(pg_catalog.=) 'staff')) AS n
                    WHERE n.configuration_id OPERATOR(pg_catalog.=) c.id) THEN
            RAISE EXCEPTION USING ERRCODE = 'M3R01';
        END IF;
        DELETE FROM m365.sds_record_user AS v
         USING ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
         WHERE v.configuration_id OPERATOR(pg_catalog.=) c.id
           AND v.sourced_id OPERATOR(pg_catalog.=) (p.kind OPERATOR(pg_catalog.||) '-' OPERATOR(pg_catalog.||) p.id);
        DELETE FROM m365.sds_record_membership AS v
         USING ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
         WHERE v.configuration_id OPERATOR(pg_catalog.=) c.id
           AND v.user_sourced_id OPERATOR(pg_catalog.=) (p.kind OPERATOR(pg_catalog.||) '-' OPERATOR(pg_catalog.||) p.id);
        -- Someone the school data no longer holds, without a username anywhere now: their names go too.
        DELETE FROM m365.departed_person AS d
         USING ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
         WHERE d.person_kind OPERATOR(pg_catalog.=) p.kind AND d.person_id OPERATOR(pg_catalog.=) p.id
           AND NOT EXISTS (SELECT FROM m365.username AS u
                            WHERE u.person_kind OPERATOR(pg_catalog.=) p.kind AND u.person_id OPERATOR(pg_catalog.=) p.id);
        INSERT INTO m365.forgotten_person (person_kind, person_id, removed)
        SELECT p.kind, p.id, pg_catalog.jsonb_build_object('retention', 'leaver_school_years', 'configuration', c.id)
          FROM ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id);
        total := total OPERATOR(pg_catalog.+) pg_catalog.cardinality(ids);
      EXCEPTION WHEN SQLSTATE 'M3R01' THEN
        RAISE NOTICE 'retention of leavers in configuration % waits for tomorrow: one of them needs a username again', c.id;
      END;
    END LOOP;
    RETURN total;
END
$$;
REVOKE ALL ON FUNCTION m365.forget_leavers() FROM PUBLIC;

-- What the nightly job runs (m365_retention@<database>, 70_scheduling.sql):
-- every retention, each per configuration.
CREATE FUNCTION m365.apply_retention()
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    records  integer := m365.remove_old_sds_records();
    history  bigint := m365.remove_old_history();
    leavers  bigint := m365.forget_leavers();
BEGIN
    RETURN pg_catalog.jsonb_build_object('sds_records_removed', records, 'history_rows_removed', history,
                                         'leavers_forgotten', leavers);
END
$$;
COMMENT ON FUNCTION m365.apply_retention() IS
'Applies every retention of each configuration (records of what SDS received, history, usernames of leavers); pg_cron runs it nightly';
REVOKE ALL ON FUNCTION m365.apply_retention() FROM PUBLIC;
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.apply_retention()');
