-- What a DBA would write without the extension: unaccent, lower,
-- regexp_replace, and a loop that probes base, base2, ... one query at a time.
\set ON_ERROR_STOP on
CREATE TABLE bench.naive_username (person_id bigint PRIMARY KEY, username text NOT NULL UNIQUE);
CREATE FUNCTION bench.naive_base(first_name text, last_name text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT regexp_replace(lower(public.unaccent(split_part(btrim(first_name), ' ', 1))), '[^a-z0-9-]', '', 'g')
           || '.' || regexp_replace(lower(public.unaccent(last_name)), '[^a-z0-9-]', '', 'g')
$$;
CREATE FUNCTION bench.naive_generate() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    p record;
    base text;
    candidate text;
    n integer;
    made integer := 0;
BEGIN
    FOR p IN SELECT * FROM bench.person ORDER BY n LOOP
        base := bench.naive_base(p.first_name, p.last_name);
        candidate := base;
        n := 1;
        WHILE EXISTS (SELECT 1 FROM bench.naive_username WHERE username = candidate) LOOP
            n := n + 1;
            candidate := base || n;
        END LOOP;
        INSERT INTO bench.naive_username VALUES (p.n, candidate);
        made := made + 1;
    END LOOP;
    RETURN made;
END
$$;
