--------------------------------------------------------------------------------
-- The sync feed: SDS v2.1 CSV files as views in schema m365_sds, one per file,
-- columns named and ordered exactly as the file's header.
--
--   \copy (SELECT * FROM m365_sds.users) TO 'users.csv' CSV HEADER
--
-- Source ids never collide between kinds: student-<id>, staff-<id>,
-- location-<id>, class-<id>, sy-<year the school year starts in>.
--
-- Which configuration: an SDS reader role (m365.create_sds_reader) sees its
-- own; a member of m365_admin may choose one with SET m365.sds_configuration.
-- Which day: today, or SET m365.sds_on_date = 'YYYY-MM-DD'.
--------------------------------------------------------------------------------

-- Owned by the extension, so that nobody can plant a view in it.
CREATE SCHEMA m365_sds;
COMMENT ON SCHEMA m365_sds IS 'The SDS v2.1 feed of m365_usernames: one view per CSV file';

-- Bound by role OID (regrole): a reader dropped and re-created under the
-- same name reads nothing until it is made a reader again; pg_dump writes the
-- role's name, so a restore binds the restored cluster's role.
CREATE TABLE m365.sds_reader (
    role_id          regrole PRIMARY KEY,
    configuration_id bigint NOT NULL REFERENCES m365.configuration (id) ON DELETE CASCADE,
    created_at       timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE m365.sds_reader IS 'The read-only SDS roles, each bound to one configuration';
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.sds_reader');
SELECT m365.allow('reader', 'USAGE', 'SCHEMA m365_sds');
SELECT m365.allow('admin', 'USAGE', 'SCHEMA m365_sds');

-- The configuration and day the feed is about, for whoever is asking: a
-- reader's own configuration; for a role with the admin level, the one it
-- chose with m365.sds_configuration. The day is today in the configuration's
-- time zone, or m365.sds_on_date.
CREATE VIEW m365.sds_scope AS
SELECT c.id AS configuration_id,
       coalesce(NULLIF(pg_catalog.current_setting('m365.sds_on_date', true), '')::date,
                m365.local_date(c.time_zone)) AS on_date
  FROM m365.configuration AS c
 WHERE c.id OPERATOR(pg_catalog.=) coalesce(
           -- By OID: to_regrole() would read the name as an identifier and fold its case.
           (SELECT r.configuration_id FROM m365.sds_reader AS r
             WHERE r.role_id::oid OPERATOR(pg_catalog.=) (SELECT o.oid FROM pg_catalog.pg_roles AS o
                                                          WHERE o.rolname OPERATOR(pg_catalog.=) CURRENT_USER)),
           CASE WHEN (SELECT o.rolsuper FROM pg_catalog.pg_roles AS o WHERE o.rolname OPERATOR(pg_catalog.=) CURRENT_USER)
                   OR EXISTS (SELECT FROM m365.access_role AS a
                               WHERE a.level OPERATOR(pg_catalog.=) 'admin'
                                 AND pg_catalog.pg_has_role(CURRENT_USER, a.role_id::oid, 'MEMBER'))
                THEN NULLIF(pg_catalog.current_setting('m365.sds_configuration', true), '')::bigint END);

-- Which configuration and day the asking role gets (not an SDS file): no row
-- when it gets none (a reader whose configuration was deleted, an admin that
-- chose none), which the export command refuses to write as an empty feed.
CREATE VIEW m365_sds.scope WITH (security_barrier) AS
SELECT s.configuration_id, s.on_date FROM m365.sds_scope AS s;
COMMENT ON VIEW m365_sds.scope IS 'The configuration and day the feed is about for the asking role (not an SDS file); no row: none';
SELECT m365.allow('reader', 'SELECT', 'TABLE m365_sds.scope');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365_sds.scope');

-- The users SDS gets, and the ones it cannot get (with the reason).
CREATE VIEW m365.sds_user_candidate AS
WITH scope AS (SELECT * FROM m365.sds_scope),
student_enrolment AS (
    -- The enrolment active today in a location of the configuration; the
    -- latest started one when there are several.
    SELECT DISTINCT ON (e.student_id) e.student_id, e.location_id, l.student_domain
      FROM m365.enrolment AS e
      JOIN m365.location AS l ON l.id OPERATOR(pg_catalog.=) e.location_id
      JOIN scope ON l.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id
     WHERE e.start_date OPERATOR(pg_catalog.<=) scope.on_date
       AND (e.end_date IS NULL OR e.end_date OPERATOR(pg_catalog.>=) scope.on_date)
     ORDER BY e.student_id, e.start_date DESC, e.location_id
)
SELECT 'student-' OPERATOR(pg_catalog.||) s.id AS sourced_id, 'student'::text AS person_kind, s.id AS person_id,
       CASE WHEN pg_catalog.strpos(u.username, '@') OPERATOR(pg_catalog.>) 0 THEN u.username
            WHEN se.student_domain IS NOT NULL THEN u.username OPERATOR(pg_catalog.||) '@' OPERATOR(pg_catalog.||) se.student_domain
       END AS username,
       m365.feed_text(s.first_name) AS first_name, m365.feed_text(s.last_name) AS last_name, true AS in_a_location,
       h.username_id IS NOT NULL OR fh.person_id IS NOT NULL OR th.username_id IS NOT NULL AS held
  FROM scope
  JOIN m365.username AS u ON u.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id
                         AND u.person_kind OPERATOR(pg_catalog.=) 'student' AND u.sync
  JOIN m365.student AS s ON s.id OPERATOR(pg_catalog.=) u.person_id
  JOIN student_enrolment AS se ON se.student_id OPERATOR(pg_catalog.=) s.id
  -- Held: joins, not EXISTS per row (twice 200,000 subplan runs cost a
  -- quarter of a second of every file's user set).
  LEFT JOIN m365.username_hold AS h ON h.username_id OPERATOR(pg_catalog.=) u.id
  LEFT JOIN (SELECT DISTINCT f.person_id FROM m365.forgotten_person AS f
              WHERE f.person_kind OPERATOR(pg_catalog.=) 'student' AND f.hold_if_back AND f.back_confirmed_at IS NULL) AS fh
         ON fh.person_id OPERATOR(pg_catalog.=) s.id
  LEFT JOIN m365.tenant_collision_held AS th ON th.username_id OPERATOR(pg_catalog.=) u.id
UNION ALL
SELECT 'staff-' OPERATOR(pg_catalog.||) st.id, 'staff', st.id,
       CASE WHEN pg_catalog.strpos(u.username, '@') OPERATOR(pg_catalog.>) 0 THEN u.username END,
       m365.feed_text(st.first_name), m365.feed_text(st.last_name),
       -- A teacher's roles and groups are the locations of the configuration
       -- in their schools; a school none of whose locations is in it gives none.
       EXISTS (SELECT FROM m365.staff_school AS ss
                 JOIN m365.school AS sc ON sc.id OPERATOR(pg_catalog.=) ss.school_id
                 JOIN m365.location AS l ON l.school_id OPERATOR(pg_catalog.=) sc.id
                WHERE ss.staff_id OPERATOR(pg_catalog.=) st.id
                  AND sc.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id
                  AND l.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id),
       h.username_id IS NOT NULL OR fh.person_id IS NOT NULL OR th.username_id IS NOT NULL
  FROM scope
  JOIN m365.username AS u ON u.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id
                         AND u.person_kind OPERATOR(pg_catalog.=) 'staff' AND u.sync
  JOIN m365.staff AS st ON st.id OPERATOR(pg_catalog.=) u.person_id AND st.active
  LEFT JOIN m365.username_hold AS h ON h.username_id OPERATOR(pg_catalog.=) u.id
  LEFT JOIN (SELECT DISTINCT f.person_id FROM m365.forgotten_person AS f
              WHERE f.person_kind OPERATOR(pg_catalog.=) 'staff' AND f.hold_if_back AND f.back_confirmed_at IS NULL) AS fh
         ON fh.person_id OPERATOR(pg_catalog.=) st.id
  LEFT JOIN m365.tenant_collision_held AS th ON th.username_id OPERATOR(pg_catalog.=) u.id
 WHERE EXISTS (SELECT FROM m365.staff_school AS ss
                 JOIN m365.school AS sc ON sc.id OPERATOR(pg_catalog.=) ss.school_id
                WHERE ss.staff_id OPERATOR(pg_catalog.=) st.id
                  AND sc.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id);

-- Why a candidate is left out of users.csv; NULL when it goes in.
-- No SET search_path here, on purpose: a SQL function with a SET clause is
-- never inlined, and this one runs for every user of every file. Its body is
-- schema-qualified throughout, so the caller's search_path cannot change it.
CREATE FUNCTION m365.sds_problem(username text, first_name text, last_name text, in_a_location boolean, held boolean)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN held THEN 'held: the person''s id came back, maybe as someone else (m365.username_hold; m365.forgotten_person), or the username is a tenant account of someone else that SDS never received (m365.tenant_collision)'
    WHEN NOT in_a_location THEN 'no location of the staff member''s schools belongs to this configuration'
    WHEN username IS NULL THEN 'no domain: SDS needs local@domain'
    WHEN pg_catalog.strpos(username, '@') OPERATOR(pg_catalog.=) 0 OR NOT m365.username_is_valid(username)
        THEN 'invalid username'
    WHEN coalesce(first_name, '') OPERATOR(pg_catalog.=) '' AND coalesce(last_name, '') OPERATOR(pg_catalog.=) ''
        THEN 'no name: the official first and last name are blank'
END;

-- The users SDS gets (the candidates it can take): what the record of what
-- SDS received and the brake compare (m365.sds_feed makes users.csv of the
-- same candidates and rule).
CREATE VIEW m365.sds_user AS
SELECT c.* FROM m365.sds_user_candidate AS c WHERE m365.sds_problem(c.username, c.first_name, c.last_name, c.in_a_location, c.held) IS NULL;

-- Roles: a student per location of their active enrolments, teachers in each
-- location of their schools. One row per user, org and role: a class change
-- inside a location (one enrolment ends the day the next starts) is one role,
-- from the first start to the last end (open when one is open).
-- The rule without the feed's user set (m365.sds_feed joins it): the record
-- of what SDS received computes that set once for both (87_sds_records.sql),
-- and without the primary flag, which the record does not keep (its sort
-- cost a quarter of a second there for 200,000 students): the columns it is
-- ordered by instead.
CREATE VIEW m365.sds_role_place AS
-- The day's school year computed once (per enrolment it cost 0.45 s of a
-- 200,000-student feed); materialized, so that no scan recomputes the day.
WITH scope AS MATERIALIZED (SELECT s.configuration_id, s.on_date, m365.school_year(s.on_date) AS school_year FROM m365.sds_scope AS s),
-- A student's active enrolments, one row per location (no join outside it
-- without an equality: with nested loops switched off, as the export does,
-- such a join costs 1e10 and JIT-compiles the feed for seconds).
student_location AS (
    SELECT e.student_id, e.location_id, scope.school_year AS school_year,
           pg_catalog.min(e.start_date) AS start_date, pg_catalog.max(e.start_date) AS latest_start,
           CASE WHEN pg_catalog.bool_or(e.end_date IS NULL) THEN NULL ELSE pg_catalog.max(e.end_date) END AS end_date
      FROM scope
      JOIN m365.enrolment AS e ON e.start_date OPERATOR(pg_catalog.<=) scope.on_date
                              AND (e.end_date IS NULL OR e.end_date OPERATOR(pg_catalog.>=) scope.on_date)
      JOIN m365.location AS l ON l.id OPERATOR(pg_catalog.=) e.location_id
                             AND l.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id
     GROUP BY e.student_id, e.location_id, scope.school_year
)
-- primary_*: a student's primary location is the one of the latest start; a
-- teacher's the first linked school's first location.
SELECT 'student'::text AS person_kind, g.student_id AS person_id,
       'student-' OPERATOR(pg_catalog.||) g.student_id AS user_sourced_id, g.location_id,
       'student'::text AS role, g.school_year, g.start_date, g.end_date,
       g.latest_start AS primary_latest_start, NULL::timestamptz AS primary_linked_at, NULL::bigint AS primary_school_id
  FROM student_location AS g
UNION ALL
SELECT 'staff', ss.staff_id, 'staff-' OPERATOR(pg_catalog.||) ss.staff_id, l.id, 'teacher', scope.school_year,
       NULL::date, NULL::date, NULL::date, ss.linked_at, ss.school_id
  FROM scope
  JOIN m365.school AS sc ON sc.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id
  JOIN m365.staff_school AS ss ON ss.school_id OPERATOR(pg_catalog.=) sc.id
  JOIN m365.location AS l ON l.school_id OPERATOR(pg_catalog.=) sc.id
                         AND l.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id;

-- A person's rows are numbered among their own, so leaving out whole people
-- afterwards numbers the rest the same; per kind (the other kind's half of
-- m365.sds_role_place is pruned), so that the sort is by number, not text.
CREATE VIEW m365.sds_role_candidate AS
SELECT p.person_kind, p.person_id, p.user_sourced_id, p.location_id, p.role, p.school_year,
       pg_catalog.row_number() OVER (PARTITION BY p.person_id ORDER BY p.primary_latest_start DESC, p.location_id)
           OPERATOR(pg_catalog.=) 1 AS is_primary,
       p.start_date, p.end_date
  FROM m365.sds_role_place AS p
 WHERE p.person_kind OPERATOR(pg_catalog.=) 'student'
UNION ALL
SELECT p.person_kind, p.person_id, p.user_sourced_id, p.location_id, p.role, p.school_year,
       pg_catalog.row_number() OVER (PARTITION BY p.person_id ORDER BY p.primary_linked_at, p.primary_school_id, p.location_id)
           OPERATOR(pg_catalog.=) 1,
       p.start_date, p.end_date
  FROM m365.sds_role_place AS p
 WHERE p.person_kind OPERATOR(pg_catalog.=) 'staff';

-- Class members: students by active enrolment, assigned teachers. The rule
-- without the feed's user set first (see m365.sds_role_candidate).
CREATE VIEW m365.sds_class_member_candidate AS
WITH scope AS MATERIALIZED (SELECT s.configuration_id, s.on_date, m365.school_year(s.on_date) AS school_year FROM m365.sds_scope AS s)
SELECT c.id AS class_id, c.location_id, c.name, c.school_year, 'student'::text AS person_kind, e.student_id AS person_id,
       'student-' OPERATOR(pg_catalog.||) e.student_id AS user_sourced_id, 'student'::text AS role
  FROM scope
  JOIN m365.class AS c ON c.school_year OPERATOR(pg_catalog.=) scope.school_year
  JOIN m365.location AS l ON l.id OPERATOR(pg_catalog.=) c.location_id
                         AND l.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id
  JOIN m365.enrolment AS e ON e.class_id OPERATOR(pg_catalog.=) c.id
                          AND e.start_date OPERATOR(pg_catalog.<=) scope.on_date
                          AND (e.end_date IS NULL OR e.end_date OPERATOR(pg_catalog.>=) scope.on_date)
UNION
SELECT c.id, c.location_id, c.name, c.school_year, 'staff', ct.staff_id, 'staff-' OPERATOR(pg_catalog.||) ct.staff_id, 'teacher'
  FROM scope
  JOIN m365.class AS c ON c.school_year OPERATOR(pg_catalog.=) scope.school_year
  JOIN m365.location AS l ON l.id OPERATOR(pg_catalog.=) c.location_id
                         AND l.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id
  JOIN m365.class_teacher AS ct ON ct.class_id OPERATOR(pg_catalog.=) c.id;

-- The whole feed in one result: each row is a line of one file (file), its
-- fields in the file's column order (c1 ... c9; NULL past the file's last
-- column). One definition: the user set, the roles and the class members
-- are computed once and every file is made from them, so an export that
-- reads this view computes the feed once (the views of the six files read
-- it too, each pruned to its own rows: a condition on file reaches every
-- branch of the UNION ALL, and a branch that cannot match reads nothing).
-- 'left_out' rows are the candidates SDS would reject, with the reason.
CREATE VIEW m365.sds_feed AS
WITH candidate AS MATERIALIZED (
    SELECT c.*, m365.sds_problem(c.username, c.first_name, c.last_name, c.in_a_location, c.held) AS problem
      FROM m365.sds_user_candidate AS c
), feed_user AS NOT MATERIALIZED (
    SELECT c.* FROM candidate AS c WHERE c.problem IS NULL
), role AS MATERIALIZED (
    SELECT r.user_sourced_id, r.location_id, r.role, r.school_year, r.is_primary, r.start_date, r.end_date
      FROM m365.sds_role_candidate AS r
      JOIN feed_user AS u ON u.person_kind OPERATOR(pg_catalog.=) r.person_kind AND u.person_id OPERATOR(pg_catalog.=) r.person_id
), class_member AS MATERIALIZED (
    SELECT m.class_id, m.location_id, m.name, m.school_year, m.user_sourced_id, m.role
      FROM m365.sds_class_member_candidate AS m
      JOIN feed_user AS u ON u.person_kind OPERATOR(pg_catalog.=) m.person_kind AND u.person_id OPERATOR(pg_catalog.=) m.person_id
)
-- users.csv. SDS needs both names to create a user: a person with one name
-- (a blank first or last name) has it in both.
SELECT 'users'::text AS file, u.sourced_id AS c1, u.username AS c2,
       coalesce(NULLIF(u.first_name, ''), u.last_name) AS c3, coalesce(NULLIF(u.last_name, ''), u.first_name) AS c4,
       NULL::text AS c5, NULL::text AS c6, NULL::text AS c7, NULL::text AS c8, NULL::text AS c9
  FROM feed_user AS u
UNION ALL
SELECT 'left_out', c.sourced_id, c.person_kind, c.problem, NULL, NULL, NULL, NULL, NULL, NULL
  FROM candidate AS c
 WHERE c.problem IS NOT NULL
UNION ALL
-- roles.csv
SELECT 'roles', r.user_sourced_id, 'location-' OPERATOR(pg_catalog.||) r.location_id, r.role,
       'sy-' OPERATOR(pg_catalog.||) r.school_year, NULL, CASE WHEN r.is_primary THEN 'true' ELSE 'false' END,
       pg_catalog.to_char(r.start_date, 'YYYY-MM-DD'), pg_catalog.to_char(r.end_date, 'YYYY-MM-DD'), NULL
  FROM role AS r
UNION ALL
-- orgs.csv: each location with a synced user (a role: one security group
-- each) or a class in classes.csv (even where nobody has a role: a teacher
-- of another school of the configuration). Names normalised like person
-- names: a line break never removes a location.
SELECT 'orgs', 'location-' OPERATOR(pg_catalog.||) l.id,
       coalesce(NULLIF(m365.feed_text(l.name), ''), 'location-' OPERATOR(pg_catalog.||) l.id), 'school', NULL,
       NULL, NULL, NULL, NULL, NULL
  FROM m365.location AS l
 WHERE l.id OPERATOR(pg_catalog.=) ANY (SELECT r.location_id FROM role AS r UNION ALL SELECT m.location_id FROM class_member AS m)
UNION ALL
-- classes.csv: one class per class of the current school year with a synced member.
SELECT 'classes', 'class-' OPERATOR(pg_catalog.||) m.class_id, 'location-' OPERATOR(pg_catalog.||) m.location_id,
       coalesce(NULLIF(m365.feed_text(m.name), ''), 'class-' OPERATOR(pg_catalog.||) m.class_id),
       'sy-' OPERATOR(pg_catalog.||) m.school_year, NULL, NULL, NULL, NULL, NULL
  FROM (SELECT DISTINCT cm.class_id, cm.location_id, cm.name, cm.school_year FROM class_member AS cm) AS m
UNION ALL
-- enrollments.csv
SELECT 'enrollments', 'class-' OPERATOR(pg_catalog.||) m.class_id, m.user_sourced_id, m.role,
       NULL, NULL, NULL, NULL, NULL, NULL
  FROM class_member AS m
UNION ALL
-- academicSessions.csv. Roles and classes only ever use the school year of
-- the day, so that is the one in use (when the configuration has a synced
-- username at all); deriving it from roles and classes would compute both
-- again. As in OneRoster, schoolYear is the year the school year ends in.
SELECT 'academicSessions', 'sy-' OPERATOR(pg_catalog.||) y.y,
       y.y OPERATOR(pg_catalog.||) '-' OPERATOR(pg_catalog.||) (y.y OPERATOR(pg_catalog.+) 1), 'schoolYear',
       (y.y OPERATOR(pg_catalog.+) 1)::text, pg_catalog.to_char(pg_catalog.make_date(y.y, 9, 1), 'YYYY-MM-DD'),
       pg_catalog.to_char(pg_catalog.make_date(y.y OPERATOR(pg_catalog.+) 1, 6, 30), 'YYYY-MM-DD'), NULL, NULL, NULL
  FROM (SELECT m365.school_year(s.on_date) AS y
          FROM m365.sds_scope AS s
         WHERE EXISTS (SELECT FROM m365.username AS u
                        WHERE u.configuration_id OPERATOR(pg_catalog.=) s.configuration_id AND u.sync)) AS y;

-- The files' views: their columns named as the file's header. Each ends in
-- a fence (OFFSET 0): no condition of the reader's, not even a leakproof one
-- (text =, <, ^@), is pushed below it into the scans of every
-- configuration's people, whose row counts EXPLAIN ANALYZE would show.
CREATE VIEW m365_sds.feed WITH (security_barrier) AS
SELECT f.file, f.c1, f.c2, f.c3, f.c4, f.c5, f.c6, f.c7, f.c8, f.c9 FROM m365.sds_feed AS f
OFFSET 0;
COMMENT ON VIEW m365_sds.feed IS 'The whole feed computed once, a row per line of a file (file; its fields c1..c9 in the file''s column order, NULL past its last): what the export writes';
SELECT m365.allow('reader', 'SELECT', 'TABLE m365_sds.feed');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365_sds.feed');

CREATE VIEW m365_sds.left_out WITH (security_barrier) AS
SELECT f.c1 AS "sourcedId", f.c2 AS "kind", f.c3 AS "reason"
  FROM m365.sds_feed AS f WHERE f.file OPERATOR(pg_catalog.=) 'left_out'
OFFSET 0;
COMMENT ON VIEW m365_sds.left_out IS 'Synced users that SDS would reject, left out of users.csv, with the reason (not an SDS file)';
SELECT m365.allow('reader', 'SELECT', 'TABLE m365_sds.left_out');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365_sds.left_out');

CREATE VIEW m365_sds.users WITH (security_barrier) AS
SELECT f.c1 AS "sourcedId", f.c2 AS "username", f.c3 AS "givenName", f.c4 AS "familyName", f.c5 AS "password",
       f.c6 AS "activeDirectoryMatchId", f.c7 AS "email", f.c8 AS "phone", f.c9 AS "sms"
  FROM m365.sds_feed AS f WHERE f.file OPERATOR(pg_catalog.=) 'users'
OFFSET 0;
COMMENT ON VIEW m365_sds.users IS 'users.csv: every synced, active user with a full local@domain username';
SELECT m365.allow('reader', 'SELECT', 'TABLE m365_sds.users');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365_sds.users');

CREATE VIEW m365_sds.roles WITH (security_barrier) AS
SELECT f.c1 AS "userSourcedId", f.c2 AS "orgSourcedId", f.c3 AS "role", f.c4 AS "sessionSourcedId", f.c5 AS "grade",
       f.c6 AS "isPrimary", f.c7 AS "roleStartDate", f.c8 AS "roleEndDate"
  FROM m365.sds_feed AS f WHERE f.file OPERATOR(pg_catalog.=) 'roles'
OFFSET 0;
COMMENT ON VIEW m365_sds.roles IS 'roles.csv: a student role per active enrolment, a teacher role per location of the staff member''s schools';
SELECT m365.allow('reader', 'SELECT', 'TABLE m365_sds.roles');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365_sds.roles');

CREATE VIEW m365_sds.orgs WITH (security_barrier) AS
SELECT f.c1 AS "sourcedId", f.c2 AS "name", f.c3 AS "type", f.c4 AS "parentSourcedId"
  FROM m365.sds_feed AS f WHERE f.file OPERATOR(pg_catalog.=) 'orgs'
OFFSET 0;
COMMENT ON VIEW m365_sds.orgs IS 'orgs.csv: one org (type school) per location with a synced user or a class';
SELECT m365.allow('reader', 'SELECT', 'TABLE m365_sds.orgs');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365_sds.orgs');

CREATE VIEW m365_sds.classes WITH (security_barrier) AS
SELECT f.c1 AS "sourcedId", f.c2 AS "orgSourcedId", f.c3 AS "title", f.c4 AS "sessionSourcedIds", f.c5 AS "courseSourcedId"
  FROM m365.sds_feed AS f WHERE f.file OPERATOR(pg_catalog.=) 'classes'
OFFSET 0;
COMMENT ON VIEW m365_sds.classes IS 'classes.csv: one class per class of the current school year with a synced member';
SELECT m365.allow('reader', 'SELECT', 'TABLE m365_sds.classes');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365_sds.classes');

CREATE VIEW m365_sds.enrollments WITH (security_barrier) AS
SELECT f.c1 AS "classSourcedId", f.c2 AS "userSourcedId", f.c3 AS "role"
  FROM m365.sds_feed AS f WHERE f.file OPERATOR(pg_catalog.=) 'enrollments'
OFFSET 0;
COMMENT ON VIEW m365_sds.enrollments IS 'enrollments.csv: students as student, assigned teachers as teacher';
SELECT m365.allow('reader', 'SELECT', 'TABLE m365_sds.enrollments');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365_sds.enrollments');

CREATE VIEW m365_sds."academicSessions" WITH (security_barrier) AS
SELECT f.c1 AS "sourcedId", f.c2 AS "title", f.c3 AS "type", f.c4 AS "schoolYear", f.c5 AS "startDate", f.c6 AS "endDate"
  FROM m365.sds_feed AS f WHERE f.file OPERATOR(pg_catalog.=) 'academicSessions'
OFFSET 0;
COMMENT ON VIEW m365_sds."academicSessions" IS 'academicSessions.csv: the school years in use (1 September - 30 June)';
SELECT m365.allow('reader', 'SELECT', 'TABLE m365_sds."academicSessions"');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365_sds."academicSessions"');
