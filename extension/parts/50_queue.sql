--------------------------------------------------------------------------------
-- The queue: people who need a username in a configuration. Filled by
-- triggers, emptied by m365.generate_usernames().
--------------------------------------------------------------------------------

CREATE TABLE m365.username_queue (
    configuration_id bigint NOT NULL REFERENCES m365.configuration (id) ON DELETE CASCADE,
    person_kind      text NOT NULL
                     CONSTRAINT username_queue_person_kind_known CHECK (person_kind OPERATOR(pg_catalog.=) ANY ('{student,staff}'::text[])),
    person_id        bigint NOT NULL,
    queued_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- Filled when the job could not make the username; the entry stays.
    attempts         integer NOT NULL DEFAULT 0,
    last_attempt_at  timestamptz,
    last_error       text,
    PRIMARY KEY (configuration_id, person_kind, person_id)
);
SELECT m365.allow('app', 'SELECT', 'TABLE m365.username_queue');
CREATE INDEX username_queue_order ON m365.username_queue ((last_error IS NOT NULL), queued_at);
COMMENT ON TABLE m365.username_queue IS
'People waiting for a username; an entry whose generation failed stays, with last_error';

-- Queues the given people where they have no username and no entry yet.
-- The existence checks come first, so that a trigger never waits on a job
-- that is deleting the same entry: the job makes that username anyway.
CREATE FUNCTION m365.queue_people(configuration_ids bigint[], person_kind text, person_ids bigint[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off  -- bulk statements would JIT-compile these small set queries
AS $$
DECLARE
    queued integer;
BEGIN
    INSERT INTO m365.username_queue (configuration_id, person_kind, person_id)
    SELECT DISTINCT p.configuration_id, queue_people.person_kind, p.person_id
      FROM unnest(configuration_ids, person_ids) AS p(configuration_id, person_id)
     WHERE p.configuration_id IS NOT NULL
       AND NOT EXISTS (SELECT FROM m365.username AS u
                        WHERE u.configuration_id OPERATOR(pg_catalog.=) p.configuration_id
                          AND u.person_kind OPERATOR(pg_catalog.=) queue_people.person_kind
                          AND u.person_id OPERATOR(pg_catalog.=) p.person_id)
       AND NOT EXISTS (SELECT FROM m365.username_queue AS q
                        WHERE q.configuration_id OPERATOR(pg_catalog.=) p.configuration_id
                          AND q.person_kind OPERATOR(pg_catalog.=) queue_people.person_kind
                          AND q.person_id OPERATOR(pg_catalog.=) p.person_id)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS queued = ROW_COUNT;
    RETURN queued;
END
$$;
REVOKE ALL ON FUNCTION m365.queue_people(bigint[], text, bigint[]) FROM PUBLIC;

-- A bulk statement (10,000 people or more: a school year loaded at once) does
-- not queue them in the writing transaction: it records the very same call,
-- and the job makes it first thing in its next run. The queue ends up the
-- same; the load does not pay for it (twice as fast for 200,000 enrolments).
CREATE TABLE m365.username_queue_deferred (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_kind       text NOT NULL
                      CONSTRAINT username_queue_deferred_person_kind_known CHECK (person_kind OPERATOR(pg_catalog.=) ANY ('{student,staff}'::text[])),
    configuration_ids bigint[] NOT NULL,
    person_ids        bigint[] NOT NULL,
    deferred_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT username_queue_deferred_pairs CHECK (pg_catalog.cardinality(configuration_ids) OPERATOR(pg_catalog.=) pg_catalog.cardinality(person_ids))
);
COMMENT ON TABLE m365.username_queue_deferred IS
'Bulk statements whose people the next run of the job queues (m365.queue_people with these arrays)';
SELECT m365.allow('app', 'SELECT', 'TABLE m365.username_queue_deferred');

CREATE FUNCTION m365.queue_or_defer(configuration_ids bigint[], person_kind text, person_ids bigint[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- NULL (nobody) goes the small way: queue_people queues no one for it.
    IF coalesce(pg_catalog.cardinality(person_ids), 0) OPERATOR(pg_catalog.<) 10000 THEN
        RETURN m365.queue_people(configuration_ids, queue_or_defer.person_kind, person_ids);
    END IF;
    INSERT INTO m365.username_queue_deferred (person_kind, configuration_ids, person_ids)
    VALUES (queue_or_defer.person_kind, configuration_ids, person_ids);
    RETURN 0;
END
$$;
REVOKE ALL ON FUNCTION m365.queue_or_defer(bigint[], text, bigint[]) FROM PUBLIC;

-- The job's first step: the deferred calls. A bulk statement still running
-- (uncommitted) is not seen, and its row stays for the next run.
CREATE FUNCTION m365.queue_deferred()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    deferred m365.username_queue_deferred;
    queued   integer := 0;
BEGIN
    FOR deferred IN DELETE FROM m365.username_queue_deferred RETURNING * LOOP
        queued := queued OPERATOR(pg_catalog.+)
                  m365.queue_people(deferred.configuration_ids, deferred.person_kind, deferred.person_ids);
    END LOOP;
    RETURN queued;
END
$$;
REVOKE ALL ON FUNCTION m365.queue_deferred() FROM PUBLIC;

-- Statement-level triggers with transition tables: a bulk load of 200,000
-- enrolments runs the queueing once, as one set (or defers it, above).

CREATE FUNCTION m365.enrolment_queue_students()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM m365.queue_or_defer(pg_catalog.array_agg(l.configuration_id), 'student', pg_catalog.array_agg(n.student_id))
       FROM new_enrolments AS n
       JOIN m365.location AS l ON l.id OPERATOR(pg_catalog.=) n.location_id
      WHERE l.configuration_id IS NOT NULL
     HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION m365.enrolment_queue_students() FROM PUBLIC;

CREATE TRIGGER enrolment_queue_students_insert
    AFTER INSERT ON m365.enrolment
    REFERENCING NEW TABLE AS new_enrolments
    FOR EACH STATEMENT EXECUTE FUNCTION m365.enrolment_queue_students();
CREATE TRIGGER enrolment_queue_students_update
    AFTER UPDATE ON m365.enrolment
    REFERENCING NEW TABLE AS new_enrolments
    FOR EACH STATEMENT EXECUTE FUNCTION m365.enrolment_queue_students();

-- Active staff, for every configuration of the schools they are linked to.
CREATE FUNCTION m365.queue_staff(staff_ids bigint[])
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(m365.queue_people(pg_catalog.array_agg(sc.configuration_id), 'staff', pg_catalog.array_agg(s.id)), 0)
      FROM m365.staff AS s
      JOIN m365.staff_school AS ss ON ss.staff_id OPERATOR(pg_catalog.=) s.id
      JOIN m365.school AS sc ON sc.id OPERATOR(pg_catalog.=) ss.school_id
     WHERE s.id OPERATOR(pg_catalog.=) ANY (staff_ids)
       AND s.active
       AND sc.configuration_id IS NOT NULL
    HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0
$$;
REVOKE ALL ON FUNCTION m365.queue_staff(bigint[]) FROM PUBLIC;

CREATE FUNCTION m365.staff_queue()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM m365.queue_staff((SELECT pg_catalog.array_agg(n.id) FROM new_staff AS n WHERE n.active));
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION m365.staff_queue() FROM PUBLIC;

CREATE TRIGGER staff_queue_insert
    AFTER INSERT ON m365.staff
    REFERENCING NEW TABLE AS new_staff
    FOR EACH STATEMENT EXECUTE FUNCTION m365.staff_queue();
CREATE TRIGGER staff_queue_update
    AFTER UPDATE ON m365.staff
    REFERENCING NEW TABLE AS new_staff
    FOR EACH STATEMENT EXECUTE FUNCTION m365.staff_queue();

CREATE FUNCTION m365.staff_school_queue()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM m365.queue_staff((SELECT pg_catalog.array_agg(DISTINCT n.staff_id) FROM new_links AS n));
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION m365.staff_school_queue() FROM PUBLIC;

CREATE TRIGGER staff_school_queue_insert
    AFTER INSERT ON m365.staff_school
    REFERENCING NEW TABLE AS new_links
    FOR EACH STATEMENT EXECUTE FUNCTION m365.staff_school_queue();
CREATE TRIGGER staff_school_queue_update
    AFTER UPDATE ON m365.staff_school
    REFERENCING NEW TABLE AS new_links
    FOR EACH STATEMENT EXECUTE FUNCTION m365.staff_school_queue();

-- Linking a location or school to a configuration later queues its people:
-- students with an enrolment there that has not ended, active staff.
CREATE FUNCTION m365.location_queue()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM m365.queue_or_defer(pg_catalog.array_agg(n.configuration_id), 'student', pg_catalog.array_agg(e.student_id))
       FROM new_locations AS n
       JOIN m365.enrolment AS e ON e.location_id OPERATOR(pg_catalog.=) n.id
      WHERE n.configuration_id IS NOT NULL
        AND (e.end_date IS NULL OR e.end_date OPERATOR(pg_catalog.>=) m365.configuration_today(n.configuration_id))
     HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION m365.location_queue() FROM PUBLIC;

CREATE TRIGGER location_queue_update
    AFTER UPDATE ON m365.location
    REFERENCING NEW TABLE AS new_locations
    FOR EACH STATEMENT EXECUTE FUNCTION m365.location_queue();

CREATE FUNCTION m365.school_queue()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM m365.queue_staff((SELECT pg_catalog.array_agg(DISTINCT ss.staff_id)
                                FROM new_schools AS n
                                JOIN m365.staff_school AS ss ON ss.school_id OPERATOR(pg_catalog.=) n.id
                               WHERE n.configuration_id IS NOT NULL));
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION m365.school_queue() FROM PUBLIC;

CREATE TRIGGER school_queue_update
    AFTER UPDATE ON m365.school
    REFERENCING NEW TABLE AS new_schools
    FOR EACH STATEMENT EXECUTE FUNCTION m365.school_queue();

-- A corrected name gives a failed entry a fresh start.
CREATE FUNCTION m365.person_name_changed()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE m365.username_queue AS q
       SET last_error = NULL, last_attempt_at = NULL
      FROM new_people AS n
     WHERE q.person_kind OPERATOR(pg_catalog.=) TG_ARGV[0]
       AND q.person_id OPERATOR(pg_catalog.=) n.id
       AND q.last_error IS NOT NULL;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION m365.person_name_changed() FROM PUBLIC;

CREATE TRIGGER student_name_changed
    AFTER UPDATE ON m365.student
    REFERENCING NEW TABLE AS new_people
    FOR EACH STATEMENT EXECUTE FUNCTION m365.person_name_changed('student');
CREATE TRIGGER staff_name_changed
    AFTER UPDATE ON m365.staff
    REFERENCING NEW TABLE AS new_people
    FOR EACH STATEMENT EXECUTE FUNCTION m365.person_name_changed('staff');

-- Queues everyone who should have a username and has none: students with an
-- enrolment that has not ended in a linked location, active staff of linked
-- schools. For after a restore, or after loading data with triggers disabled.
CREATE FUNCTION m365.queue_missing_usernames()
RETURNS integer
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
    SELECT coalesce((SELECT m365.queue_people(pg_catalog.array_agg(l.configuration_id), 'student', pg_catalog.array_agg(e.student_id))
                       FROM m365.enrolment AS e
                       JOIN m365.location AS l ON l.id OPERATOR(pg_catalog.=) e.location_id
                      WHERE l.configuration_id IS NOT NULL
                        AND (e.end_date IS NULL OR e.end_date OPERATOR(pg_catalog.>=) m365.configuration_today(l.configuration_id))
                     HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0), 0)
         OPERATOR(pg_catalog.+)
           -- (queue_staff answers NULL when no staff member qualifies.)
           coalesce(m365.queue_staff((SELECT pg_catalog.array_agg(s.id) FROM m365.staff AS s WHERE s.active)), 0)
$$;
COMMENT ON FUNCTION m365.queue_missing_usernames() IS
'Queues everyone who should have a username and has none (after a restore, or a load with triggers disabled); returns how many';
REVOKE ALL ON FUNCTION m365.queue_missing_usernames() FROM PUBLIC;
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.queue_missing_usernames()');

