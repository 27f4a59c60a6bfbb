--------------------------------------------------------------------------------
-- School data, with the application's own keys.
--------------------------------------------------------------------------------

CREATE TABLE m365.school (
    id               bigint PRIMARY KEY,
    name             text NOT NULL
                     CONSTRAINT school_name_not_blank CHECK (pg_catalog.btrim(name) OPERATOR(pg_catalog.<>) ''),
    -- NULL: the school's staff get no usernames.
    configuration_id bigint REFERENCES m365.configuration (id),
    -- NULL: Microsoft 365 assigns the staff's domain.
    staff_domain     text CONSTRAINT school_staff_domain_valid CHECK (m365.check_domain(staff_domain))
);
COMMENT ON TABLE m365.school IS 'A school (legal unit); its staff get usernames when it is linked to a configuration';
SELECT m365.allow('app', 'SELECT, INSERT, UPDATE, DELETE', 'TABLE m365.school');
CREATE TRIGGER school_domains_in_lower_case
    BEFORE INSERT OR UPDATE OF staff_domain ON m365.school
    FOR EACH ROW EXECUTE FUNCTION m365.domains_in_lower_case();

CREATE TABLE m365.location (
    id               bigint PRIMARY KEY,
    school_id        bigint NOT NULL REFERENCES m365.school (id),
    name             text NOT NULL
                     CONSTRAINT location_name_not_blank CHECK (pg_catalog.btrim(name) OPERATOR(pg_catalog.<>) ''),
    -- NULL: the location's students get no usernames.
    configuration_id bigint REFERENCES m365.configuration (id),
    -- NULL: Microsoft 365 assigns the students' domain.
    student_domain   text CONSTRAINT location_student_domain_valid CHECK (m365.check_domain(student_domain))
);
SELECT m365.allow('app', 'SELECT, INSERT, UPDATE, DELETE', 'TABLE m365.location');
CREATE TRIGGER location_domains_in_lower_case
    BEFORE INSERT OR UPDATE OF student_domain ON m365.location
    FOR EACH ROW EXECUTE FUNCTION m365.domains_in_lower_case();
CREATE INDEX location_school ON m365.location (school_id);
CREATE INDEX location_configuration ON m365.location (configuration_id);
COMMENT ON TABLE m365.location IS 'A school location (vestiging); its students get usernames when it is linked to a configuration';

-- The domains a username of the configuration may carry: its
-- accepted_domains when set, else the domains set on its locations and
-- schools, as they are now. Microsoft 365 only takes a tenant's verified
-- domains; gmail.com or school.local never are.
CREATE FUNCTION m365.accepted_domains(configuration_id bigint)
RETURNS SETOF text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d FROM m365.configuration AS c, pg_catalog.unnest(c.accepted_domains) AS d
     WHERE c.id OPERATOR(pg_catalog.=) accepted_domains.configuration_id
    UNION
    SELECT s.domain
      FROM (SELECT l.student_domain FROM m365.location AS l
             WHERE l.configuration_id OPERATOR(pg_catalog.=) accepted_domains.configuration_id
            UNION ALL
            SELECT sc.staff_domain FROM m365.school AS sc
             WHERE sc.configuration_id OPERATOR(pg_catalog.=) accepted_domains.configuration_id) AS s(domain)
     WHERE s.domain IS NOT NULL
       -- Only when the configuration lists none.
       AND NOT EXISTS (SELECT FROM m365.configuration AS c
                        WHERE c.id OPERATOR(pg_catalog.=) accepted_domains.configuration_id
                          AND pg_catalog.cardinality(c.accepted_domains) OPERATOR(pg_catalog.>) 0)
$$;
COMMENT ON FUNCTION m365.accepted_domains(bigint) IS
'The domains a username of the configuration may carry: accepted_domains when set, else the domains of its locations and schools (live)';
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.accepted_domains(bigint)');
REVOKE ALL ON FUNCTION m365.accepted_domains(bigint) FROM PUBLIC;

CREATE TABLE m365.student (
    id               bigint PRIMARY KEY,
    first_name       text NOT NULL,
    last_name        text NOT NULL,
    CONSTRAINT student_has_a_name CHECK (pg_catalog.btrim(first_name) OPERATOR(pg_catalog.<>) ''
                                         OR pg_catalog.btrim(last_name) OPERATOR(pg_catalog.<>) '')
);
COMMENT ON TABLE m365.student IS 'A student, with the official first and last name';
SELECT m365.allow('app', 'SELECT, INSERT, UPDATE, DELETE', 'TABLE m365.student');

CREATE TABLE m365.class (
    id               bigint PRIMARY KEY,
    location_id      bigint NOT NULL REFERENCES m365.location (id),
    name             text NOT NULL
                     CONSTRAINT class_name_not_blank CHECK (pg_catalog.btrim(name) OPERATOR(pg_catalog.<>) ''),
    -- The year the school year starts in: 2026 for 2026-2027.
    school_year      integer NOT NULL CONSTRAINT class_school_year_plausible CHECK (school_year BETWEEN 1900 AND 2999),
    CONSTRAINT class_in_location UNIQUE (id, location_id)
);
SELECT m365.allow('app', 'SELECT, INSERT, UPDATE, DELETE', 'TABLE m365.class');
CREATE INDEX class_location ON m365.class (location_id, school_year);
COMMENT ON TABLE m365.class IS 'A class of a location in one school year';

CREATE TABLE m365.enrolment (
    id               bigint PRIMARY KEY,
    student_id       bigint NOT NULL REFERENCES m365.student (id),
    location_id      bigint NOT NULL REFERENCES m365.location (id),
    class_id         bigint,
    start_date       date NOT NULL,
    end_date         date,
    CONSTRAINT enrolment_end_not_before_start CHECK (end_date IS NULL OR end_date OPERATOR(pg_catalog.>=) start_date),
    -- The class, when given, belongs to the enrolment's location.
    CONSTRAINT enrolment_class_in_location FOREIGN KEY (class_id, location_id) REFERENCES m365.class (id, location_id)
);
SELECT m365.allow('app', 'SELECT, INSERT, UPDATE, DELETE', 'TABLE m365.enrolment');
CREATE INDEX enrolment_student ON m365.enrolment (student_id);
CREATE INDEX enrolment_location ON m365.enrolment (location_id, start_date);
CREATE INDEX enrolment_class ON m365.enrolment (class_id) WHERE class_id IS NOT NULL;
COMMENT ON TABLE m365.enrolment IS 'A student''s enrolment in a location (and class) from start_date to end_date (inclusive, NULL: open)';

CREATE TABLE m365.staff (
    id               bigint PRIMARY KEY,
    first_name       text NOT NULL,
    last_name        text NOT NULL,
    active           boolean NOT NULL DEFAULT true,
    -- Set when active turns false (today, unless given).
    inactive_since   date,
    CONSTRAINT staff_has_a_name CHECK (pg_catalog.btrim(first_name) OPERATOR(pg_catalog.<>) ''
                                       OR pg_catalog.btrim(last_name) OPERATOR(pg_catalog.<>) ''),
    CONSTRAINT staff_inactive_since_only_when_inactive CHECK (NOT active OR inactive_since IS NULL)
);
COMMENT ON TABLE m365.staff IS 'A staff member, with the official names; all active staff get a username';
SELECT m365.allow('app', 'SELECT, INSERT, UPDATE, DELETE', 'TABLE m365.staff');

CREATE TABLE m365.staff_school (
    staff_id         bigint NOT NULL REFERENCES m365.staff (id),
    school_id        bigint NOT NULL REFERENCES m365.school (id),
    -- The staff domain comes from the school a staff member was linked to first.
    linked_at        timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    PRIMARY KEY (staff_id, school_id)
);
SELECT m365.allow('app', 'SELECT, INSERT, UPDATE, DELETE', 'TABLE m365.staff_school');
CREATE INDEX staff_school_school ON m365.staff_school (school_id);
COMMENT ON TABLE m365.staff_school IS 'Which schools a staff member works for';

CREATE TABLE m365.class_teacher (
    class_id         bigint NOT NULL REFERENCES m365.class (id),
    staff_id         bigint NOT NULL REFERENCES m365.staff (id),
    PRIMARY KEY (class_id, staff_id)
);
SELECT m365.allow('app', 'SELECT, INSERT, UPDATE, DELETE', 'TABLE m365.class_teacher');
CREATE INDEX class_teacher_staff ON m365.class_teacher (staff_id);
COMMENT ON TABLE m365.class_teacher IS 'The teachers assigned to a class (owners of its class team)';

CREATE FUNCTION m365.staff_before_write()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.active THEN
        NEW.inactive_since := NULL;
    ELSIF NEW.inactive_since IS NULL THEN
        -- Today where the staff member's first school is (not the session's TimeZone).
        NEW.inactive_since := m365.configuration_today(
            (SELECT sc.configuration_id
               FROM m365.staff_school AS ss
               JOIN m365.school AS sc ON sc.id OPERATOR(pg_catalog.=) ss.school_id
              WHERE ss.staff_id OPERATOR(pg_catalog.=) NEW.id
              ORDER BY ss.linked_at, ss.school_id
              LIMIT 1));
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION m365.staff_before_write() FROM PUBLIC;

CREATE TRIGGER staff_before_write
    BEFORE INSERT OR UPDATE OF active, inactive_since ON m365.staff
    FOR EACH ROW EXECUTE FUNCTION m365.staff_before_write();

