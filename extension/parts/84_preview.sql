--------------------------------------------------------------------------------
-- Preview of a format change: what every username of a configuration would
-- be under another format, and which would clash. Writes nothing.
--------------------------------------------------------------------------------

CREATE FUNCTION m365.preview_format(configuration_id bigint, format text)
RETURNS TABLE (person_kind text, person_id bigint, first_name text, last_name text, current_username text,
               preview_username text, clash text)
LANGUAGE sql STABLE
-- As the owner: "never reused" reads the forgotten names' key.
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH people AS (
        SELECT u.person_kind, u.person_id, u.username,
               coalesce(st.first_name, sf.first_name) AS first_name,
               coalesce(st.last_name, sf.last_name) AS last_name
          FROM m365.username AS u
          LEFT JOIN m365.student AS st
                 ON u.person_kind OPERATOR(pg_catalog.=) 'student' AND st.id OPERATOR(pg_catalog.=) u.person_id
          LEFT JOIN m365.staff AS sf
                 ON u.person_kind OPERATOR(pg_catalog.=) 'staff' AND sf.id OPERATOR(pg_catalog.=) u.person_id
         WHERE u.configuration_id OPERATOR(pg_catalog.=) preview_format.configuration_id
           AND m365.check_username_format(preview_format.format)
    ), previewed AS (
        SELECT p.*, m365.make_username(preview_format.format, p.first_name, p.last_name) AS preview,
               pg_catalog.count(*) OVER (PARTITION BY m365.make_username(preview_format.format, p.first_name, p.last_name)) AS sharing
          FROM people AS p
    )
    SELECT p.person_kind, p.person_id, p.first_name, p.last_name, p.username, p.preview,
           CASE
               WHEN p.preview IS NULL THEN 'the names yield no username'
               WHEN p.sharing OPERATOR(pg_catalog.>) 1 THEN pg_catalog.format('%s people would get this name', p.sharing)
               WHEN EXISTS (SELECT FROM m365.reserved_username AS r
                             WHERE r.configuration_id OPERATOR(pg_catalog.=) preview_format.configuration_id
                               AND r.local_part OPERATOR(pg_catalog.=) p.preview) THEN 'reserved'
               WHEN EXISTS (SELECT FROM m365.tenant_account AS t
                             WHERE t.configuration_id OPERATOR(pg_catalog.=) preview_format.configuration_id
                               AND t.local_part OPERATOR(pg_catalog.=) p.preview
                               AND m365.tenant_account_is_not_theirs(t.owner_kind, t.owner_id, p.person_kind, p.person_id))
                    THEN 'an account in the tenant'
               WHEN NOT (SELECT f.is_free FROM m365.username_freedom(preview_format.configuration_id, p.preview,
                                                                     p.person_kind, p.person_id) AS f)
                    THEN 'issued before to someone else'
           END
      FROM previewed AS p
     ORDER BY p.person_kind, p.person_id
$$;
COMMENT ON FUNCTION m365.preview_format(bigint, text) IS
'What the configuration''s usernames would be under another format, and which would clash; writes nothing';
REVOKE ALL ON FUNCTION m365.preview_format(bigint, text) FROM PUBLIC;
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.preview_format(bigint, text)');

