--------------------------------------------------------------------------------
-- The username lists ("Gebruikersnamen MS365").
--------------------------------------------------------------------------------

-- The school year a date belongs to, by the year it starts in: 1 September
-- starts a new one, so 2027-08-31 belongs to 2026 (2026-2027).
-- Without SET search_path so that it is inlined (it runs per row in the
-- lists and the SDS feed); the body is schema-qualified throughout.
CREATE FUNCTION m365.school_year(on_date date)
RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN CASE WHEN pg_catalog.date_part('month', on_date) OPERATOR(pg_catalog.>=) 9
            THEN pg_catalog.date_part('year', on_date)::integer
            ELSE pg_catalog.date_part('year', on_date)::integer OPERATOR(pg_catalog.-) 1 END;
COMMENT ON FUNCTION m365.school_year(date) IS
'The school year of a date, as the year it starts in (1 September); July and August close the year before';

-- Whether an enrolment shows in its location's list on a date: active that
-- day; in August also when it starts on 1 September; in July also when it
-- ended on 30 June.
CREATE FUNCTION m365.enrolment_is_listed(start_date date, end_date date, on_date date)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN (start_date OPERATOR(pg_catalog.<=) on_date
        AND (end_date IS NULL OR end_date OPERATOR(pg_catalog.>=) on_date))
    OR (pg_catalog.date_part('month', on_date) OPERATOR(pg_catalog.=) 8
        AND start_date OPERATOR(pg_catalog.=) pg_catalog.make_date(pg_catalog.date_part('year', on_date)::integer, 9, 1))
    OR (pg_catalog.date_part('month', on_date) OPERATOR(pg_catalog.=) 7
        AND end_date OPERATOR(pg_catalog.=) pg_catalog.make_date(pg_catalog.date_part('year', on_date)::integer, 6, 30));
COMMENT ON FUNCTION m365.enrolment_is_listed(date, date, date) IS
'Whether an enrolment shows in the student list on a date (active; in August also starting 1/9; in July also ended 30/6)';

-- Whether a staff member shows in a school's list on a date: active, or
-- inactive since a day of the same school year (listed until 31 August).
CREATE FUNCTION m365.staff_is_listed(active boolean, inactive_since date, on_date date)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN active
    OR inactive_since IS NULL
    OR on_date OPERATOR(pg_catalog.<) inactive_since
    OR m365.school_year(on_date) OPERATOR(pg_catalog.<=) m365.school_year(inactive_since);
COMMENT ON FUNCTION m365.staff_is_listed(boolean, date, date) IS
'Whether a staff member shows in the staff list on a date (active, or inactive since a day of that school year)';

CREATE FUNCTION m365.student_usernames(location_id bigint, on_date date DEFAULT NULL)
RETURNS TABLE (student_id bigint, first_name text, last_name text, username_id bigint, username text,
               domain text, sync boolean, suggested_username text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT DISTINCT ON (s.id) s.id, s.first_name, s.last_name, u.id, u.username,
           CASE WHEN pg_catalog.strpos(u.username, '@') OPERATOR(pg_catalog.>) 0
                THEN pg_catalog.split_part(u.username, '@', 2) ELSE l.student_domain END,
           u.sync,
           -- (Asked only where the names were corrected: 65_renames.sql.)
           CASE WHEN m365.corrected_base(u.username, u.format, u.base, u.suffix, u.names_digest, s.first_name, s.last_name) IS NOT NULL
                THEN m365.suggested_username(u.id) END
      FROM m365.location AS l
      JOIN m365.enrolment AS e ON e.location_id OPERATOR(pg_catalog.=) l.id
      JOIN m365.student AS s ON s.id OPERATOR(pg_catalog.=) e.student_id
      JOIN m365.username AS u
        ON u.configuration_id OPERATOR(pg_catalog.=) l.configuration_id
       AND u.person_kind OPERATOR(pg_catalog.=) 'student'
       AND u.person_id OPERATOR(pg_catalog.=) s.id
     WHERE l.id OPERATOR(pg_catalog.=) student_usernames.location_id
       AND m365.enrolment_is_listed(e.start_date, e.end_date, coalesce(student_usernames.on_date, m365.configuration_today(l.configuration_id)))
     ORDER BY s.id
$$;
COMMENT ON FUNCTION m365.student_usernames(bigint, date) IS
'The students of a location listed on a date (NULL: today in the configuration''s time zone), with username, the domain that applies, the sync flag and the username a correction of their names suggests';
REVOKE ALL ON FUNCTION m365.student_usernames(bigint, date) FROM PUBLIC;
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.student_usernames(bigint, date)');

CREATE FUNCTION m365.staff_usernames(school_id bigint, on_date date DEFAULT NULL)
RETURNS TABLE (staff_id bigint, first_name text, last_name text, active boolean, inactive_since date,
               username_id bigint, username text, domain text, sync boolean, suggested_username text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT st.id, st.first_name, st.last_name, st.active, st.inactive_since, u.id, u.username,
           CASE WHEN pg_catalog.strpos(u.username, '@') OPERATOR(pg_catalog.>) 0
                THEN pg_catalog.split_part(u.username, '@', 2) END,
           u.sync,
           CASE WHEN m365.corrected_base(u.username, u.format, u.base, u.suffix, u.names_digest, st.first_name, st.last_name) IS NOT NULL
                THEN m365.suggested_username(u.id) END
      FROM m365.school AS sc
      JOIN m365.staff_school AS ss ON ss.school_id OPERATOR(pg_catalog.=) sc.id
      JOIN m365.staff AS st ON st.id OPERATOR(pg_catalog.=) ss.staff_id
      JOIN m365.username AS u
        ON u.configuration_id OPERATOR(pg_catalog.=) sc.configuration_id
       AND u.person_kind OPERATOR(pg_catalog.=) 'staff'
       AND u.person_id OPERATOR(pg_catalog.=) st.id
     WHERE sc.id OPERATOR(pg_catalog.=) staff_usernames.school_id
       AND m365.staff_is_listed(st.active, st.inactive_since, coalesce(staff_usernames.on_date, m365.configuration_today(sc.configuration_id)))
     ORDER BY st.id
$$;
COMMENT ON FUNCTION m365.staff_usernames(bigint, date) IS
'The staff of a school listed on a date (NULL: today in the configuration''s time zone), with username, domain, sync flag, whether they are active and the username a correction of their names suggests';
REVOKE ALL ON FUNCTION m365.staff_usernames(bigint, date) FROM PUBLIC;
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.staff_usernames(bigint, date)');

