--------------------------------------------------------------------------------
-- Official names corrected after the username was made: approved renames.
-- The job keeps on each username the format that made it and a digest of the
-- names it was made from. A new name is suggested only when the person's
-- names differ from those and make another base with that format: a change
-- of the configuration's format, an ICU upgrade or a suffix never suggests
-- one, and a name typed by hand (no format on its row) is never suggested
-- over. The configuration's rename_policy decides (20_configuration.sql):
--   suggest                the lists show suggested_username; an administrator
--                          applies it (m365.apply_suggested_usernames)
--   automatic_before_sync  a username never in a feed SDS received follows the
--                          correction at the job's next run (Microsoft 365 has
--                          not seen it); once in a feed, it is only suggested
--   never                  nothing is suggested
--------------------------------------------------------------------------------

-- The people whose username has been in a feed SDS received, from the first
-- record that held them (m365_sds.record_feed writes it). By person, not by
-- username row: a username deleted and given back (the ledger returns the
-- same name) is the same account in Microsoft 365 (a red-team find). Kept
-- when sync is turned off and when the records are removed: "never in a
-- feed" stays true only of people Microsoft 365 never received.
CREATE TABLE m365.person_in_feed (
    configuration_id bigint NOT NULL REFERENCES m365.configuration (id) ON DELETE CASCADE,
    person_kind      text NOT NULL,
    person_id        bigint NOT NULL,
    first_record     bigint NOT NULL,
    -- The name SDS received last for them (its key): a username that is a
    -- tenant account of someone else goes out only if it is this one
    -- (67_tenant_accounts.sql).
    local_part       text,
    PRIMARY KEY (configuration_id, person_kind, person_id)
);
COMMENT ON TABLE m365.person_in_feed IS
'The people whose username has been in a feed SDS received (from which record, and the name it received last): renamed only by an approved suggestion';
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.person_in_feed');

-- The base a person's names make now, when that is a correction: the job
-- made the username (format and names digest on its row), the names differ
-- from the ones it was made from, and the format that made it gives another
-- base from them. NULL otherwise. Plain SQL without SET, inlined where the
-- lists ask it of every row (the transliteration runs only for changed names).
CREATE FUNCTION m365.corrected_base(username text, format text, base text, suffix integer, names_digest bytea,
                                    first_name text, last_name text)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN format IS NOT NULL AND base IS NOT NULL AND names_digest IS NOT NULL
             -- Still the name the job made (a direct UPDATE of the name leaves
             -- its row's format: a red-team find).
             AND m365.local_part_key(username) OPERATOR(pg_catalog.=)
                 m365.local_part_key(CASE WHEN suffix IS NULL THEN base ELSE m365.username_with_suffix(base, suffix) END)
             AND names_digest OPERATOR(pg_catalog.<>) m365.names_digest(first_name, last_name)
             AND m365.local_part_key(m365.make_username(format, first_name, last_name))
                 OPERATOR(pg_catalog.<>) m365.local_part_key(base)
            THEN m365.make_username(format, first_name, last_name) END;
COMMENT ON FUNCTION m365.corrected_base(text, text, text, integer, bytea, text, text) IS
'The base corrected names make with the format that made a username (NULL: no correction: names unchanged, the same base, or a name not made by the job)';

-- A username's suggestion as things are now: the first name free for its
-- person from the corrected base (their own old names included), with the
-- domain the username has, and what its row would then say. No row: no
-- suggestion (policy never, names unchanged, typed by hand, no such username,
-- or held because its id came back with other names: that may be someone
-- else, whom a rename would hand the account). The owner's code only (it
-- asks m365.first_free_name).
CREATE FUNCTION m365.name_suggestion(username_id bigint,
                                     OUT username text, OUT base text, OUT suffix integer, OUT names_digest bytea)
RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT f.local_part OPERATOR(pg_catalog.||)
           coalesce('@' OPERATOR(pg_catalog.||) NULLIF(pg_catalog.split_part(c.username, '@', 2), ''), ''),
           m365.local_part_key(c.corrected), f.suffix, m365.names_digest(c.first_name, c.last_name)
      FROM (SELECT u.configuration_id, u.person_kind, u.person_id, u.username, p.first_name, p.last_name,
                   m365.corrected_base(u.username, u.format, u.base, u.suffix, u.names_digest, p.first_name, p.last_name) AS corrected
              FROM m365.username AS u
              JOIN m365.configuration AS cf ON cf.id OPERATOR(pg_catalog.=) u.configuration_id
              JOIN (SELECT 'student'::text AS kind, s.id, s.first_name, s.last_name FROM m365.student AS s
                    UNION ALL
                    SELECT 'staff', st.id, st.first_name, st.last_name FROM m365.staff AS st) AS p
                ON p.kind OPERATOR(pg_catalog.=) u.person_kind AND p.id OPERATOR(pg_catalog.=) u.person_id
             WHERE u.id OPERATOR(pg_catalog.=) name_suggestion.username_id
               AND cf.rename_policy OPERATOR(pg_catalog.<>) 'never'
               AND NOT EXISTS (SELECT FROM m365.username_hold AS h WHERE h.username_id OPERATOR(pg_catalog.=) u.id)) AS c
     CROSS JOIN LATERAL m365.first_free_name(c.configuration_id, c.corrected, c.person_kind, c.person_id) AS f
     WHERE c.corrected IS NOT NULL AND m365.username_is_valid(c.corrected)
       -- (Not the name it has: a digit in a corrected name can make that.)
       AND f.local_part OPERATOR(pg_catalog.<>) m365.local_part_key(c.username)
$$;
REVOKE ALL ON FUNCTION m365.name_suggestion(bigint) FROM PUBLIC;

-- What the lists show: the suggested username, NULL when there is none. As
-- the owner ("free" reads the forgotten names' key).
CREATE FUNCTION m365.suggested_username(username_id bigint)
RETURNS text
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
RETURN (SELECT s.username FROM m365.name_suggestion(suggested_username.username_id) AS s);
COMMENT ON FUNCTION m365.suggested_username(bigint) IS
'The username a correction of the person''s official names suggests (NULL: none), as m365.apply_suggested_usernames would save it';
REVOKE ALL ON FUNCTION m365.suggested_username(bigint) FROM PUBLIC;
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.suggested_username(bigint)');

-- Renames usernames to their suggestions, validated as one set: per id
-- 'done' or the message set_username would give (unknown id; no suggestion;
-- two suggestions of one name: the lower id gets it, the other "in use").
-- The old name goes to the ledger as its owner's (they may take it back,
-- nobody else), the history records who (m365.username_audit), and a rename
-- of a name SDS received counts for the brake like any other. Rows locked in
-- id order, as set_username locks its one. Should a session take one of the
-- names between the check and the update, nothing of the call is saved and
-- each id it would have renamed answers "in use" (one subtransaction for the
-- call, not one per id).
CREATE FUNCTION m365.rename_to_suggestions(username_ids bigint[])
RETURNS TABLE (username_id bigint, outcome text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ids         bigint[];
    suggestions text[];
    bases       text[];
    suffixes    integer[];
    digests     bytea[];
    problems    text[];
BEGIN
    PERFORM FROM m365.username AS u WHERE u.id OPERATOR(pg_catalog.=) ANY (username_ids) ORDER BY u.id FOR UPDATE;
    WITH asked AS (
        SELECT DISTINCT a.id FROM pg_catalog.unnest(username_ids) AS a(id) WHERE a.id IS NOT NULL
    ), suggested AS (
        SELECT a.id, u.username AS current, u.configuration_id, s.username AS suggestion, s.base, s.suffix, s.names_digest
          FROM asked AS a
          LEFT JOIN m365.username AS u ON u.id OPERATOR(pg_catalog.=) a.id
          LEFT JOIN LATERAL m365.name_suggestion(u.id) AS s ON true
    ), judged AS (
        SELECT g.*,
               CASE WHEN g.current IS NULL
                    THEN m365.message('username_not_saved', NULL, m365.message('unknown_username_id', NULL, g.id::text))
                    WHEN g.suggestion IS NULL
                    THEN m365.message('username_not_saved', g.current, m365.message('no_suggested_username', NULL, NULL))
                    WHEN pg_catalog.row_number() OVER (PARTITION BY g.configuration_id, m365.local_part_key(g.suggestion)
                                                       ORDER BY g.id) OPERATOR(pg_catalog.>) 1
                    THEN m365.message('username_in_use', g.suggestion, NULL)
               END AS problem
          FROM suggested AS g
    )
    SELECT pg_catalog.array_agg(j.id ORDER BY j.id), pg_catalog.array_agg(j.suggestion ORDER BY j.id),
           pg_catalog.array_agg(j.base ORDER BY j.id), pg_catalog.array_agg(j.suffix ORDER BY j.id),
           pg_catalog.array_agg(j.names_digest ORDER BY j.id), pg_catalog.array_agg(j.problem ORDER BY j.id)
      INTO ids, suggestions, bases, suffixes, digests, problems
      FROM judged AS j;
    BEGIN
        UPDATE m365.username AS u
           SET username = r.suggestion, base = r.base, suffix = r.suffix, names_digest = r.digest
          FROM ROWS FROM (pg_catalog.unnest(ids), pg_catalog.unnest(suggestions), pg_catalog.unnest(bases),
                          pg_catalog.unnest(suffixes), pg_catalog.unnest(digests), pg_catalog.unnest(problems))
               AS r(id, suggestion, base, suffix, digest, problem)
         WHERE r.problem IS NULL AND u.id OPERATOR(pg_catalog.=) r.id;
    EXCEPTION
        WHEN unique_violation THEN
            SELECT pg_catalog.array_agg(coalesce(r.problem, m365.message('username_in_use', r.suggestion, NULL)) ORDER BY r.n)
              INTO problems
              FROM ROWS FROM (pg_catalog.unnest(suggestions), pg_catalog.unnest(problems)) WITH ORDINALITY AS r(suggestion, problem, n);
    END;
    RETURN QUERY SELECT r.id, coalesce(r.problem, 'done')
                   FROM ROWS FROM (pg_catalog.unnest(ids), pg_catalog.unnest(problems)) AS r(id, problem);
END
$$;
REVOKE ALL ON FUNCTION m365.rename_to_suggestions(bigint[]) FROM PUBLIC;

-- An administrator applies suggestions (the application's "rename" button).
CREATE FUNCTION m365.apply_suggested_usernames(username_ids bigint[])
RETURNS TABLE (username_id bigint, outcome text)
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.username_id, r.outcome FROM m365.rename_to_suggestions(apply_suggested_usernames.username_ids) AS r
$$;
COMMENT ON FUNCTION m365.apply_suggested_usernames(bigint[]) IS
'Renames the given usernames to their suggestions (m365.suggested_username): per id ''done'' or the message set_username would give, in the language of m365.language';
REVOKE ALL ON FUNCTION m365.apply_suggested_usernames(bigint[]) FROM PUBLIC;
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.apply_suggested_usernames(bigint[])');

-- rename_policy automatic_before_sync: the usernames never in a feed SDS
-- received whose person's names were corrected (the job follows them).
CREATE VIEW m365.name_correction_to_follow AS
SELECT u.id AS username_id, u.configuration_id
  FROM m365.username AS u
  JOIN m365.configuration AS c ON c.id OPERATOR(pg_catalog.=) u.configuration_id
                              AND c.rename_policy OPERATOR(pg_catalog.=) 'automatic_before_sync'
  LEFT JOIN m365.student AS s ON u.person_kind OPERATOR(pg_catalog.=) 'student' AND s.id OPERATOR(pg_catalog.=) u.person_id
  LEFT JOIN m365.staff AS st ON u.person_kind OPERATOR(pg_catalog.=) 'staff' AND st.id OPERATOR(pg_catalog.=) u.person_id
 WHERE NOT EXISTS (SELECT FROM m365.person_in_feed AS f
                    WHERE f.configuration_id OPERATOR(pg_catalog.=) u.configuration_id
                      AND f.person_kind OPERATOR(pg_catalog.=) u.person_kind AND f.person_id OPERATOR(pg_catalog.=) u.person_id)
   AND m365.corrected_base(u.username, u.format, u.base, u.suffix, u.names_digest, coalesce(s.first_name, st.first_name),
                           coalesce(s.last_name, st.last_name)) IS NOT NULL;

-- Renames them (the job calls this at the end of each run); answers how
-- many. An export recording one of their configurations meanwhile would hand
-- SDS the old name while the job renames it, silently: so the job first
-- writes those configurations' record heads (87_sds_records.sql), as a
-- recording does. A recording that holds a head is waited for, and the names
-- it recorded are then no longer followed (the candidates are read again
-- after the lock); one whose snapshot is older than this run's commit fails
-- with 40001 and swaps nothing. A row or head held longer than lock_timeout
-- waits for the next run (a red-team find: the run waited, and the next one
-- was skipped).
CREATE FUNCTION m365.follow_name_corrections()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s'
AS $$
DECLARE
    renamed integer;
BEGIN
    IF NOT EXISTS (SELECT FROM m365.name_correction_to_follow) THEN
        RETURN 0;
    END IF;
    INSERT INTO m365.sds_record_head AS h (configuration_id)
    SELECT DISTINCT c.configuration_id FROM m365.name_correction_to_follow AS c ORDER BY c.configuration_id
    ON CONFLICT ON CONSTRAINT sds_record_head_pkey DO UPDATE SET newest_record = h.newest_record;
    SELECT pg_catalog.count(*)::integer INTO renamed
      FROM m365.rename_to_suggestions(ARRAY(SELECT c.username_id FROM m365.name_correction_to_follow AS c)) AS r
     WHERE r.outcome OPERATOR(pg_catalog.=) 'done';
    RETURN renamed;
END
$$;
REVOKE ALL ON FUNCTION m365.follow_name_corrections() FROM PUBLIC;
