--------------------------------------------------------------------------------
-- Who needs a username, and the log that tells the job whom to look at.
--
-- Triggers only append: one row per person a statement touched, written by
-- the statement itself, with no existence check, so that a write of the
-- application never waits for, nor conflicts with, a run of the job. The job
-- decides with m365.people_needing_username, the one rule, and deletes
-- exactly the log rows it read.
--------------------------------------------------------------------------------

-- The one rule. Needs a username in a configuration:
--  * a student with an enrolment that has not ended (future starters too: the
--    August list shows them) in a location of the configuration;
--  * an active staff member linked to a school of the configuration;
-- "has not ended" by today in the configuration's time zone. For the given
-- people (NULL array: nobody of that kind). Plain SQL without SET, fully
-- qualified: inlined into the caller's query, so the job's 50,000 people are
-- one join, not 50,000 calls. (IN (unnest), not = ANY: a cached plan compares
-- every enrolment with every element of an = ANY array; this is a join.)
CREATE FUNCTION m365.people_needing_username(student_ids bigint[], staff_ids bigint[])
RETURNS TABLE (configuration_id bigint, person_kind text, person_id bigint)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT DISTINCT l.configuration_id, 'student'::text, e.student_id
      FROM m365.enrolment AS e
      JOIN m365.location AS l ON l.id OPERATOR(pg_catalog.=) e.location_id
      JOIN m365.configuration AS cf ON cf.id OPERATOR(pg_catalog.=) l.configuration_id
     WHERE e.student_id IN (SELECT pg_catalog.unnest(people_needing_username.student_ids))
       AND (e.end_date IS NULL OR e.end_date OPERATOR(pg_catalog.>=) m365.local_date(cf.time_zone))
    UNION ALL
    SELECT DISTINCT sc.configuration_id, 'staff'::text, s.id
      FROM m365.staff AS s
      JOIN m365.staff_school AS ss ON ss.staff_id OPERATOR(pg_catalog.=) s.id
      JOIN m365.school AS sc ON sc.id OPERATOR(pg_catalog.=) ss.school_id
     WHERE s.id IN (SELECT pg_catalog.unnest(people_needing_username.staff_ids))
       AND s.active
       AND sc.configuration_id IS NOT NULL;
END;
COMMENT ON FUNCTION m365.people_needing_username(bigint[], bigint[]) IS
'The rule: of the given students and staff, who needs a username in which configuration (an enrolment that has not ended in a linked location; active staff of a linked school)';

CREATE TABLE m365.username_request (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_kind  text NOT NULL
                 CONSTRAINT username_request_person_kind_known CHECK (person_kind OPERATOR(pg_catalog.=) ANY ('{student,staff}'::text[])),
    person_id    bigint NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE m365.username_request IS
'People a write touched, for the next run of the job to look at (appended by triggers, deleted by the run that read them)';
SELECT m365.allow('app', 'SELECT', 'TABLE m365.username_request');

-- People the job could not make a username for, with the reason. Only the
-- job writes here; a correction of the name appends to the log, and the run
-- that reads it tries again.
CREATE TABLE m365.username_failure (
    configuration_id bigint NOT NULL REFERENCES m365.configuration (id) ON DELETE CASCADE,
    person_kind      text NOT NULL,
    person_id        bigint NOT NULL,
    reason           text NOT NULL,
    attempts         integer NOT NULL DEFAULT 1,
    first_failed_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_failed_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (configuration_id, person_kind, person_id)
);
COMMENT ON TABLE m365.username_failure IS
'People who need a username the job could not make, with the reason (tried again when their data changes)';
SELECT m365.allow('app', 'SELECT', 'TABLE m365.username_failure');

-- The appending triggers: statement-level, with transition tables, so a
-- load of 200,000 enrolments appends its rows in one INSERT ... SELECT. (A
-- trigger with transition tables cannot name columns: an UPDATE compares the
-- old and new rows itself.)
CREATE FUNCTION m365.request_students()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'enrolment' THEN
        INSERT INTO m365.username_request (person_kind, person_id)
        SELECT 'student', n.student_id FROM new_rows AS n;
    ELSE  -- student: a corrected name
        INSERT INTO m365.username_request (person_kind, person_id)
        SELECT 'student', n.id
          FROM new_rows AS n JOIN old_rows AS o ON o.id OPERATOR(pg_catalog.=) n.id
         WHERE (n.first_name, n.last_name) IS DISTINCT FROM (o.first_name, o.last_name);
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION m365.request_students() FROM PUBLIC;

CREATE TRIGGER enrolment_request_insert
    AFTER INSERT ON m365.enrolment
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.request_students();
CREATE TRIGGER enrolment_request_update
    AFTER UPDATE ON m365.enrolment
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.request_students();
CREATE TRIGGER student_request_update
    AFTER UPDATE ON m365.student
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.request_students();

CREATE FUNCTION m365.request_staff()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'staff_school' THEN
        INSERT INTO m365.username_request (person_kind, person_id)
        SELECT 'staff', n.staff_id FROM new_rows AS n;
    ELSIF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
        INSERT INTO m365.username_request (person_kind, person_id)
        SELECT 'staff', n.id FROM new_rows AS n;
    ELSE  -- staff: (de)activated, or a corrected name
        INSERT INTO m365.username_request (person_kind, person_id)
        SELECT 'staff', n.id
          FROM new_rows AS n JOIN old_rows AS o ON o.id OPERATOR(pg_catalog.=) n.id
         WHERE (n.active, n.first_name, n.last_name) IS DISTINCT FROM (o.active, o.first_name, o.last_name);
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION m365.request_staff() FROM PUBLIC;

CREATE TRIGGER staff_request_insert
    AFTER INSERT ON m365.staff
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.request_staff();
CREATE TRIGGER staff_request_update
    AFTER UPDATE ON m365.staff
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.request_staff();
CREATE TRIGGER staff_school_request_insert
    AFTER INSERT ON m365.staff_school
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.request_staff();
CREATE TRIGGER staff_school_request_update
    AFTER UPDATE ON m365.staff_school
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.request_staff();

-- A location or school linked to a configuration later: its people. At
-- commit (a deferred constraint trigger, per linked row): an enrolment or link
-- committed while the linking transaction was open is seen then, and its
-- person logged (at statement time it was not, and a run that read that
-- enrolment's own row before the link committed found nothing to do: a
-- red-team find against the first redesign).
CREATE FUNCTION m365.request_linked_people()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.configuration_id IS NULL OR NEW.configuration_id IS NOT DISTINCT FROM OLD.configuration_id THEN
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'location' THEN
        INSERT INTO m365.username_request (person_kind, person_id)
        SELECT DISTINCT 'student', e.student_id
          FROM m365.enrolment AS e
         WHERE e.location_id OPERATOR(pg_catalog.=) NEW.id;
    ELSE
        INSERT INTO m365.username_request (person_kind, person_id)
        SELECT DISTINCT 'staff', ss.staff_id
          FROM m365.staff_school AS ss
         WHERE ss.school_id OPERATOR(pg_catalog.=) NEW.id;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION m365.request_linked_people() FROM PUBLIC;

CREATE CONSTRAINT TRIGGER location_request_update
    AFTER UPDATE OF configuration_id ON m365.location
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION m365.request_linked_people();
CREATE CONSTRAINT TRIGGER school_request_update
    AFTER UPDATE OF configuration_id ON m365.school
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION m365.request_linked_people();

-- A configuration changed (other formats, say): whoever failed there is tried again.
CREATE FUNCTION m365.request_failed_people()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO m365.username_request (person_kind, person_id)
    SELECT f.person_kind, f.person_id
      FROM new_rows AS n
      JOIN m365.username_failure AS f ON f.configuration_id OPERATOR(pg_catalog.=) n.id;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION m365.request_failed_people() FROM PUBLIC;

CREATE TRIGGER configuration_request_update
    AFTER UPDATE ON m365.configuration
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.request_failed_people();

-- Logs everyone who needs a username and has none: after a restore without
-- the log, after loading data with triggers disabled. Returns how many.
CREATE FUNCTION m365.queue_missing_usernames()
RETURNS integer
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
    WITH missing AS (
        SELECT DISTINCT n.person_kind, n.person_id
          FROM m365.people_needing_username((SELECT pg_catalog.array_agg(s.id) FROM m365.student AS s),
                                            (SELECT pg_catalog.array_agg(s.id) FROM m365.staff AS s)) AS n
         WHERE NOT EXISTS (SELECT FROM m365.username AS u
                            WHERE u.configuration_id OPERATOR(pg_catalog.=) n.configuration_id
                              AND u.person_kind OPERATOR(pg_catalog.=) n.person_kind
                              AND u.person_id OPERATOR(pg_catalog.=) n.person_id)
    ), logged AS (
        INSERT INTO m365.username_request (person_kind, person_id)
        SELECT m.person_kind, m.person_id FROM missing AS m
        RETURNING 1
    )
    SELECT pg_catalog.count(*)::integer FROM logged
$$;
COMMENT ON FUNCTION m365.queue_missing_usernames() IS
'Logs for the job everyone who needs a username and has none (after a load with triggers disabled); returns how many';
REVOKE ALL ON FUNCTION m365.queue_missing_usernames() FROM PUBLIC;
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.queue_missing_usernames()');
