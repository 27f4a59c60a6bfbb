--------------------------------------------------------------------------------
-- Diagnostics: why is this person not (yet) in the list, or in Microsoft 365?
-- The rows of the procedure's troubleshooting table that apply, in the
-- language of m365.language.
--------------------------------------------------------------------------------

-- When pg_cron will next run the generation job, if it is scheduled here
-- every 15 minutes (NULL otherwise). As the owner: the application has no
-- rights on schema cron, and pg_cron shows each user only their own jobs.
CREATE FUNCTION m365.next_generation_run()
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    scheduled boolean := false;
BEGIN
    IF m365.pg_cron_is_here() THEN
        EXECUTE 'SELECT EXISTS (SELECT FROM cron.job WHERE jobname = $1 AND schedule = $2 AND active
                                   AND database = pg_catalog.current_database())'
           INTO scheduled USING m365.job_name('m365_generate_usernames'), '*/15 * * * *';
    END IF;
    IF NOT scheduled THEN
        RETURN NULL;
    END IF;
    RETURN pg_catalog.date_trunc('hour', pg_catalog.now())
           OPERATOR(pg_catalog.+) pg_catalog.make_interval(mins =>
               (pg_catalog.floor(pg_catalog.date_part('minute', pg_catalog.now()) OPERATOR(pg_catalog./) 15)::integer
                OPERATOR(pg_catalog.+) 1) OPERATOR(pg_catalog.*) 15);
END
$$;
REVOKE ALL ON FUNCTION m365.next_generation_run() FROM PUBLIC;
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.next_generation_run()');

-- Shared by both diagnoses: a person's username, failure and log state.
CREATE FUNCTION m365.diagnose_generation(configuration_id bigint, person_kind text, person_id bigint)
RETURNS TABLE (code text, message text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    failure   m365.username_failure;
    logged_at timestamptz;
    next_run  timestamptz;
BEGIN
    IF EXISTS (SELECT FROM m365.username AS u
                WHERE u.configuration_id OPERATOR(pg_catalog.=) diagnose_generation.configuration_id
                  AND u.person_kind OPERATOR(pg_catalog.=) diagnose_generation.person_kind
                  AND u.person_id OPERATOR(pg_catalog.=) diagnose_generation.person_id) THEN
        RETURN;
    END IF;
    SELECT pg_catalog.min(r.requested_at) INTO logged_at FROM m365.username_request AS r
     WHERE r.person_kind OPERATOR(pg_catalog.=) diagnose_generation.person_kind
       AND r.person_id OPERATOR(pg_catalog.=) diagnose_generation.person_id;
    SELECT * INTO failure FROM m365.username_failure AS f
     WHERE f.configuration_id OPERATOR(pg_catalog.=) diagnose_generation.configuration_id
       AND f.person_kind OPERATOR(pg_catalog.=) diagnose_generation.person_kind
       AND f.person_id OPERATOR(pg_catalog.=) diagnose_generation.person_id;
    IF logged_at IS NOT NULL THEN
        next_run := m365.next_generation_run();
        RETURN QUERY SELECT 'queued', m365.message('queued', NULL,
            pg_catalog.to_char(logged_at, 'YYYY-MM-DD HH24:MI')
            OPERATOR(pg_catalog.||) coalesce(' (' OPERATOR(pg_catalog.||) pg_catalog.to_char(next_run, 'HH24:MI')
                                             OPERATOR(pg_catalog.||) ')', ''));
    ELSIF failure.reason IS NOT NULL THEN
        RETURN QUERY SELECT 'generation_failed', m365.message('generation_failed', NULL, failure.reason);
    ELSIF EXISTS (SELECT FROM m365.people_needing_username(
                                  CASE WHEN diagnose_generation.person_kind OPERATOR(pg_catalog.=) 'student'
                                       THEN ARRAY[diagnose_generation.person_id] END,
                                  CASE WHEN diagnose_generation.person_kind OPERATOR(pg_catalog.=) 'staff'
                                       THEN ARRAY[diagnose_generation.person_id] END) AS n
                   WHERE n.configuration_id OPERATOR(pg_catalog.=) diagnose_generation.configuration_id) THEN
        -- Needs one, and nothing tells the job (data loaded with triggers off).
        RETURN QUERY SELECT 'not_queued', m365.message('not_queued');
    END IF;
END
$$;
REVOKE ALL ON FUNCTION m365.diagnose_generation(bigint, text, bigint) FROM PUBLIC;
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.diagnose_generation(bigint, text, bigint)');

-- A held username (its person's id came back with other names), and whose it was.
CREATE FUNCTION m365.diagnose_hold(username_id bigint, OUT code text, OUT message text)
RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'held', m365.message('username_held', NULL, h.old_first_name OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) h.old_last_name)
      FROM m365.username_hold AS h
     WHERE h.username_id OPERATOR(pg_catalog.=) diagnose_hold.username_id
$$;
COMMENT ON FUNCTION m365.diagnose_hold(bigint) IS 'The diagnosis row of a held username (code held), naming whose it was; no row when it is not held';
REVOKE ALL ON FUNCTION m365.diagnose_hold(bigint) FROM PUBLIC;
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.diagnose_hold(bigint)');

CREATE FUNCTION m365.diagnose_student(student_id bigint, location_id bigint, on_date date DEFAULT NULL)
RETURNS TABLE (code text, message text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    loc      m365.location;
    d        date;
    listed   record;
    upcoming date;
    ended    date;
BEGIN
    SELECT * INTO loc FROM m365.location AS l WHERE l.id OPERATOR(pg_catalog.=) diagnose_student.location_id;
    IF NOT FOUND OR loc.configuration_id IS NULL THEN
        RETURN QUERY SELECT 'no_configuration', m365.message('no_configuration');
        RETURN;
    END IF;
    d := coalesce(on_date, m365.configuration_today(loc.configuration_id));
    RETURN QUERY SELECT * FROM m365.diagnose_generation(loc.configuration_id, 'student', student_id);

    SELECT * INTO listed FROM m365.student_usernames(loc.id, d) AS s WHERE s.student_id OPERATOR(pg_catalog.=) diagnose_student.student_id;
    IF NOT FOUND THEN
        SELECT pg_catalog.min(e.start_date) INTO upcoming FROM m365.enrolment AS e
         WHERE e.student_id OPERATOR(pg_catalog.=) diagnose_student.student_id
           AND e.location_id OPERATOR(pg_catalog.=) loc.id AND e.start_date OPERATOR(pg_catalog.>) d;
        SELECT pg_catalog.max(e.end_date) INTO ended FROM m365.enrolment AS e
         WHERE e.student_id OPERATOR(pg_catalog.=) diagnose_student.student_id
           AND e.location_id OPERATOR(pg_catalog.=) loc.id AND e.end_date OPERATOR(pg_catalog.<) d;
        IF upcoming IS NOT NULL THEN
            RETURN QUERY SELECT 'enrolment_in_future', m365.message('enrolment_in_future', NULL, upcoming::text);
        END IF;
        IF ended IS NOT NULL AND m365.school_year(ended) OPERATOR(pg_catalog.=) m365.school_year(d) THEN
            RETURN QUERY SELECT 'enrolment_ended', m365.message('enrolment_ended', NULL, ended::text);
        END IF;
        -- No enrolment overlapping this school year (1 September - 30 June).
        IF NOT EXISTS (SELECT FROM m365.enrolment AS e
                        WHERE e.student_id OPERATOR(pg_catalog.=) diagnose_student.student_id
                          AND e.location_id OPERATOR(pg_catalog.=) loc.id
                          AND e.start_date OPERATOR(pg_catalog.<=) pg_catalog.make_date(m365.school_year(d) OPERATOR(pg_catalog.+) 1, 6, 30)
                          AND (e.end_date IS NULL
                               OR e.end_date OPERATOR(pg_catalog.>=) pg_catalog.make_date(m365.school_year(d), 9, 1))) THEN
            RETURN QUERY SELECT 'no_enrolment_this_school_year',
                                m365.message('no_enrolment_this_school_year', NULL,
                                             m365.school_year(d)::text OPERATOR(pg_catalog.||) '-'
                                             OPERATOR(pg_catalog.||) (m365.school_year(d) OPERATOR(pg_catalog.+) 1)::text);
        END IF;
        RETURN;
    END IF;

    -- Listed: what keeps the username from Microsoft 365?
    RETURN QUERY SELECT * FROM m365.diagnose_hold(listed.username_id);
    IF NOT listed.sync THEN
        RETURN QUERY SELECT 'sync_off', m365.message('sync_off');
    END IF;
    IF listed.domain IS NULL THEN
        RETURN QUERY SELECT 'no_domain', m365.message('no_domain');
    END IF;
    IF NOT EXISTS (SELECT FROM m365.student_usernames(loc.id, d) AS s WHERE s.sync) THEN
        RETURN QUERY SELECT 'no_synced_user_in_location', m365.message('no_synced_user_in_location');
    END IF;
    IF listed.sync AND listed.domain IS NOT NULL THEN
        RETURN QUERY SELECT 'listed_and_synced', m365.message('listed_and_synced');
    END IF;
END
$$;
COMMENT ON FUNCTION m365.diagnose_student(bigint, bigint, date) IS
'Why a student is not (yet) in a location''s list or in Microsoft 365: the reasons that apply, as (code, message)';
REVOKE ALL ON FUNCTION m365.diagnose_student(bigint, bigint, date) FROM PUBLIC;
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.diagnose_student(bigint, bigint, date)');

CREATE FUNCTION m365.diagnose_staff(staff_id bigint, school_id bigint, on_date date DEFAULT NULL)
RETURNS TABLE (code text, message text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sch    m365.school;
    person m365.staff;
    d      date;
    listed record;
BEGIN
    SELECT * INTO sch FROM m365.school AS s WHERE s.id OPERATOR(pg_catalog.=) diagnose_staff.school_id;
    IF NOT FOUND OR sch.configuration_id IS NULL THEN
        RETURN QUERY SELECT 'no_configuration', m365.message('no_configuration');
        RETURN;
    END IF;
    d := coalesce(on_date, m365.configuration_today(sch.configuration_id));
    SELECT * INTO person FROM m365.staff AS s WHERE s.id OPERATOR(pg_catalog.=) diagnose_staff.staff_id;
    IF NOT EXISTS (SELECT FROM m365.staff_school AS ss
                    WHERE ss.staff_id OPERATOR(pg_catalog.=) diagnose_staff.staff_id
                      AND ss.school_id OPERATOR(pg_catalog.=) sch.id) THEN
        RETURN QUERY SELECT 'not_linked_to_school', m365.message('not_linked_to_school');
        RETURN;
    END IF;
    IF NOT person.active THEN
        IF m365.staff_is_listed(person.active, person.inactive_since, d) THEN
            RETURN QUERY SELECT 'inactive_listed', m365.message('inactive_listed', NULL, person.inactive_since::text);
        ELSE
            RETURN QUERY SELECT 'inactive_not_listed', m365.message('inactive_not_listed', NULL, person.inactive_since::text);
        END IF;
    END IF;
    RETURN QUERY SELECT * FROM m365.diagnose_generation(sch.configuration_id, 'staff', staff_id);

    SELECT * INTO listed FROM m365.staff_usernames(sch.id, d) AS s WHERE s.staff_id OPERATOR(pg_catalog.=) diagnose_staff.staff_id;
    IF FOUND AND person.active THEN
        RETURN QUERY SELECT * FROM m365.diagnose_hold(listed.username_id);
        IF NOT listed.sync THEN
            RETURN QUERY SELECT 'sync_off', m365.message('sync_off');
        END IF;
        IF listed.domain IS NULL AND sch.staff_domain IS NOT NULL THEN
            -- The school has one: the username's was edited away.
            RETURN QUERY SELECT 'no_domain', m365.message('domain_removed', NULL, sch.staff_domain);
        ELSIF listed.domain IS NULL THEN
            RETURN QUERY SELECT 'no_domain', m365.message('no_domain');
        END IF;
        IF listed.sync AND listed.domain IS NOT NULL THEN
            RETURN QUERY SELECT 'listed_and_synced', m365.message('listed_and_synced');
        END IF;
    END IF;
END
$$;
COMMENT ON FUNCTION m365.diagnose_staff(bigint, bigint, date) IS
'Why a staff member is not (yet) in a school''s list or in Microsoft 365: the reasons that apply, as (code, message)';
REVOKE ALL ON FUNCTION m365.diagnose_staff(bigint, bigint, date) FROM PUBLIC;
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.diagnose_staff(bigint, bigint, date)');


-- Usernames with a fixed domain the configuration no longer accepts (its
-- accepted_domains changed, or the location or school that set the domain
-- no longer does): reported, never changed.
CREATE VIEW m365.username_domain_not_accepted AS
SELECT u.id AS username_id, u.configuration_id, u.person_kind, u.person_id, u.username,
       pg_catalog.split_part(u.username, '@', 2) AS domain
  FROM m365.username AS u
 WHERE pg_catalog.strpos(u.username, '@') OPERATOR(pg_catalog.>) 0
   AND NOT pg_catalog.split_part(u.username, '@', 2) OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT m365.accepted_domains(u.configuration_id)));
COMMENT ON VIEW m365.username_domain_not_accepted IS
'Usernames whose domain is not (or no longer) among the configuration''s accepted domains: to be looked at, never changed by the extension';
SELECT m365.allow('app', 'SELECT', 'TABLE m365.username_domain_not_accepted');
