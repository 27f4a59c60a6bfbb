--------------------------------------------------------------------------------
-- Attached sources: the school application's own tables (leerling,
-- inschrijving, personeel, ...) feed the school data above. Statement
-- triggers on the application's table keep the extension's copy equal to it
-- in the same transaction. A row the copy cannot take waits, with its reason,
-- and never fails the application's write. docs/attach.md.
--------------------------------------------------------------------------------

-- The entities an application table can feed, written once.
CREATE FUNCTION m365.source_entities()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN '{school,location,student,class,enrolment,staff,staff_school,class_teacher}'::text[];
COMMENT ON FUNCTION m365.source_entities() IS 'The entities an application table can be attached to (m365.attach_source)';

-- Every read of an application's table goes through these two (C++,
-- src/pg/source_functions.cpp): the table is locked by its OID and named as
-- the catalog names it now (a name read through an older snapshot can be a
-- view of someone else's by then), and it is read as its owner, in a
-- security-restricted operation with pinned settings: reading a table can
-- run its owner's code (its statistics expressions, its casts), and that
-- must never run with the extension's rights (red-team finds).
CREATE FUNCTION m365.source_lock(source regclass)
RETURNS text
LANGUAGE C VOLATILE STRICT
AS 'MODULE_PATHNAME', 'm365_source_lock';
REVOKE ALL ON FUNCTION m365.source_lock(regclass) FROM PUBLIC;
CREATE FUNCTION m365.source_read(source regclass, query text, k1 bigint[], k2 bigint[])
RETURNS SETOF record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'm365_source_read';
REVOKE ALL ON FUNCTION m365.source_read(regclass, text, bigint[], bigint[]) FROM PUBLIC;
-- Whether code runs inside such a read (or another security-restricted
-- operation): the session's user is not who runs it, so nothing audited
-- happens there (m365.username_audit).
CREATE FUNCTION m365.in_restricted_operation()
RETURNS boolean
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'm365_in_restricted_operation';
REVOKE ALL ON FUNCTION m365.in_restricted_operation() FROM PUBLIC;

CREATE TABLE m365.source (
    entity         text PRIMARY KEY
                   CONSTRAINT source_entity_known CHECK (entity OPERATOR(pg_catalog.=) ANY (m365.source_entities())),
    source         regclass NOT NULL,
    -- The copy's columns and, in the same order, the source's columns that
    -- feed them, by name: a renamed or dropped column breaks the attachment
    -- (by number it would survive a rename, but not a dump and restore).
    copy_columns   name[] NOT NULL,
    source_columns name[] NOT NULL,
    attached_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    attached_by    text NOT NULL DEFAULT SESSION_USER,
    -- Why the copy no longer follows the source (NULL: it does).
    broken         text,
    CONSTRAINT source_columns_paired CHECK (pg_catalog.cardinality(copy_columns) OPERATOR(pg_catalog.=)
                                            pg_catalog.cardinality(source_columns))
);
COMMENT ON TABLE m365.source IS
'The application''s tables attached to the school data (m365.attach_source): which table feeds which entity, column by column';
SELECT m365.allow('app', 'SELECT', 'TABLE m365.source');

-- Rows of a source the copy could not take (or, deleted in the source, could
-- not give up), and why. Each is tried again when its entity or a related one
-- changes, and by m365.resync_source.
CREATE TABLE m365.source_waiting (
    entity text NOT NULL REFERENCES m365.source (entity) ON DELETE CASCADE,
    key    bigint[] NOT NULL,
    reason text NOT NULL,
    since  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (entity, key)
);
-- (A write tries again the rows its own transaction left waiting, if any.)
CREATE INDEX source_waiting_since ON m365.source_waiting (since);
COMMENT ON TABLE m365.source_waiting IS
'Rows of an attached source that the copy does not hold as they are (or still holds), with the reason; tried again on every change';
SELECT m365.allow('app', 'SELECT', 'TABLE m365.source_waiting');

-- What administrators decided for a school or location whose row left the
-- copy (its configuration and domain), given back when the row comes back:
-- an application that reloads its locations (delete, insert) must not move
-- them out of their tenant (a red-team find).
CREATE TABLE m365.source_decided (
    entity           text NOT NULL CONSTRAINT source_decided_entity CHECK (entity OPERATOR(pg_catalog.=) ANY ('{school,location}'::text[])),
    id               bigint NOT NULL,
    configuration_id bigint,
    domain           text,
    PRIMARY KEY (entity, id)
);
COMMENT ON TABLE m365.source_decided IS
'The configuration and domain of schools and locations that left an attached copy, given back when they return';

-- Before a write: what administrators decided for these schools or locations.
CREATE FUNCTION m365.source_keep_decided(entity text, ids bigint[])
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO m365.source_decided AS d (entity, id, configuration_id, domain)
    SELECT 'school', sc.id, sc.configuration_id, sc.staff_domain FROM m365.school AS sc
     WHERE entity OPERATOR(pg_catalog.=) 'school' AND sc.id OPERATOR(pg_catalog.=) ANY (ids)
       AND (sc.configuration_id IS NOT NULL OR sc.staff_domain IS NOT NULL)
    UNION ALL
    SELECT 'location', l.id, l.configuration_id, l.student_domain FROM m365.location AS l
     WHERE entity OPERATOR(pg_catalog.=) 'location' AND l.id OPERATOR(pg_catalog.=) ANY (ids)
       AND (l.configuration_id IS NOT NULL OR l.student_domain IS NOT NULL)
    ON CONFLICT (entity, id) DO UPDATE SET configuration_id = excluded.configuration_id, domain = excluded.domain
$$;
REVOKE ALL ON FUNCTION m365.source_keep_decided(text, bigint[]) FROM PUBLIC;

-- After a write: rows that came back get what was decided for them; rows in
-- the copy need no memory of it any more.
CREATE FUNCTION m365.source_restore_decided(entity text, ids bigint[])
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE m365.school AS sc SET configuration_id = d.configuration_id, staff_domain = d.domain
      FROM m365.source_decided AS d
     WHERE entity OPERATOR(pg_catalog.=) 'school' AND d.entity OPERATOR(pg_catalog.=) 'school'
       AND d.id OPERATOR(pg_catalog.=) sc.id AND sc.id OPERATOR(pg_catalog.=) ANY (ids)
       AND sc.configuration_id IS NULL AND sc.staff_domain IS NULL;
    UPDATE m365.location AS l SET configuration_id = d.configuration_id, student_domain = d.domain
      FROM m365.source_decided AS d
     WHERE entity OPERATOR(pg_catalog.=) 'location' AND d.entity OPERATOR(pg_catalog.=) 'location'
       AND d.id OPERATOR(pg_catalog.=) l.id AND l.id OPERATOR(pg_catalog.=) ANY (ids)
       AND l.configuration_id IS NULL AND l.student_domain IS NULL;
    DELETE FROM m365.source_decided AS d
     WHERE d.entity OPERATOR(pg_catalog.=) source_restore_decided.entity AND d.id OPERATOR(pg_catalog.=) ANY (ids)
       AND (EXISTS (SELECT FROM m365.school AS sc WHERE d.entity OPERATOR(pg_catalog.=) 'school' AND sc.id OPERATOR(pg_catalog.=) d.id)
            OR EXISTS (SELECT FROM m365.location AS l WHERE d.entity OPERATOR(pg_catalog.=) 'location' AND l.id OPERATOR(pg_catalog.=) d.id));
$$;
REVOKE ALL ON FUNCTION m365.source_restore_decided(text, bigint[]) FROM PUBLIC;

-- Rows of a source that wait, with the reason; and rows that no longer do
-- (asked after every write: PL/pgSQL keeps its plan). The one place that
-- writes m365.source_waiting.
CREATE FUNCTION m365.source_wait(entity text, k1 bigint[], k2 bigint[], reason text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO m365.source_waiting AS w (entity, key, reason)
    SELECT entity, CASE WHEN t.k2 IS NULL THEN ARRAY[t.k1] ELSE ARRAY[t.k1, t.k2] END, reason
      FROM ROWS FROM (pg_catalog.unnest(k1), pg_catalog.unnest(k2)) AS t(k1, k2)
    ON CONFLICT ON CONSTRAINT source_waiting_pkey DO UPDATE SET reason = excluded.reason
$$;
REVOKE ALL ON FUNCTION m365.source_wait(text, bigint[], bigint[], text) FROM PUBLIC;

CREATE FUNCTION m365.source_unwait(entity text, k1 bigint[], k2 bigint[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM m365.source_waiting AS w
     USING ROWS FROM (pg_catalog.unnest(k1), pg_catalog.unnest(k2)) AS t(k1, k2)
     WHERE w.entity OPERATOR(pg_catalog.=) source_unwait.entity
       AND w.key OPERATOR(pg_catalog.=) CASE WHEN t.k2 IS NULL THEN ARRAY[t.k1] ELSE ARRAY[t.k1, t.k2] END
       -- (Nothing of the entity waits, as a rule: no join then.)
       AND EXISTS (SELECT FROM m365.source_waiting AS x WHERE x.entity OPERATOR(pg_catalog.=) source_unwait.entity);
END
$$;
REVOKE ALL ON FUNCTION m365.source_unwait(text, bigint[], bigint[]) FROM PUBLIC;

-- The columns an entity takes from a source: every column of its copy but
-- those the extension or its administrators decide (which tenant, which
-- domain, when a staff member was linked). Key columns first, in key order.
-- Inlined on purpose into the queries that read a source's mapping (several
-- per statement of the application's): no SET clause, names bound at CREATE.
CREATE FUNCTION m365.source_columns(entity text)
RETURNS TABLE (column_name name, type_name name, required boolean, key_position integer)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT a.attname,
           -- (A subquery: as a join, every call hashed all of pg_type.)
           (SELECT t.typname FROM pg_catalog.pg_type AS t WHERE t.oid OPERATOR(pg_catalog.=) a.atttypid),
           a.attnotnull AND NOT a.atthasdef,
           (SELECT k.n::integer FROM pg_catalog.unnest(i.indkey::smallint[]) WITH ORDINALITY AS k(attnum, n)
             WHERE k.attnum OPERATOR(pg_catalog.=) a.attnum) AS key_position
      FROM pg_catalog.pg_attribute AS a
      JOIN pg_catalog.pg_index AS i ON i.indrelid OPERATOR(pg_catalog.=) a.attrelid AND i.indisprimary
     WHERE a.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(pg_catalog.concat('m365.', pg_catalog.quote_ident(entity)))
       AND entity OPERATOR(pg_catalog.=) ANY (m365.source_entities())
       AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
       AND NOT a.attname OPERATOR(pg_catalog.=) ANY ('{configuration_id,staff_domain,student_domain,linked_at}'::name[])
     ORDER BY 4 NULLS LAST, a.attnum;
END;
COMMENT ON FUNCTION m365.source_columns(text) IS
'The columns an entity (student, enrolment, ...) takes from an attached source, with their types; key columns first';
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.source_columns(text)');
REVOKE ALL ON FUNCTION m365.source_columns(text) FROM PUBLIC;

-- What a source's column must be to feed a copy column: a type of PostgreSQL
-- itself (a cast or operator of a type someone created would run inside the
-- extension's rights), and one whose every value the copy's type takes as it
-- is: a smaller integer for an integer, varchar or name for text, the same
-- type otherwise. (numeric was taken for bigint: 1.5 made every drift query
-- fail, a red-team find.) An integer for a key.
CREATE FUNCTION m365.source_type_fits(source_type oid, copy_type name, is_key boolean)
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
    SELECT t.typnamespace OPERATOR(pg_catalog.=) 'pg_catalog'::regnamespace
       AND t.typname OPERATOR(pg_catalog.=) ANY (CASE WHEN is_key OR copy_type OPERATOR(pg_catalog.=) 'int8' THEN '{int2,int4,int8}'::name[]
                                                        WHEN copy_type OPERATOR(pg_catalog.=) 'int4' THEN '{int2,int4}'::name[]
                                                        WHEN copy_type OPERATOR(pg_catalog.=) 'text' THEN '{text,varchar,name}'::name[]
                                                        ELSE ARRAY[copy_type] END)
      FROM pg_catalog.pg_type AS t WHERE t.oid OPERATOR(pg_catalog.=) source_type);
END
$$;
REVOKE ALL ON FUNCTION m365.source_type_fits(oid, name, boolean) FROM PUBLIC;

-- Whether a table is a partition, or has a parent or children by
-- inheritance: a write through one fires the statement triggers of the
-- table written, not the other's, so some of its rows' changes would go
-- unseen.
CREATE FUNCTION m365.source_in_hierarchy(t oid)
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN EXISTS (SELECT FROM pg_catalog.pg_inherits AS i
                    WHERE i.inhrelid OPERATOR(pg_catalog.=) t OR i.inhparent OPERATOR(pg_catalog.=) t);
END
$$;
REVOKE ALL ON FUNCTION m365.source_in_hierarchy(oid) FROM PUBLIC;

-- Whether planning a read of the table would run code of its owner's: an
-- index expression or predicate, or an extended statistics expression, that
-- calls a function or operator (or uses an operator class) outside
-- pg_catalog. The planner folds those while it plans any query of the
-- table, in the reading session: such code could read or close that
-- session's cursors, release its locks, or end it with FATAL (red-team
-- round six). Asked with the table locked, right before each read.
CREATE FUNCTION m365.source_runs_code(t oid)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (
        SELECT FROM pg_catalog.pg_depend AS d
         WHERE ((d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                 AND d.objid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT i.indexrelid FROM pg_catalog.pg_index AS i
                                                               WHERE i.indrelid OPERATOR(pg_catalog.=) t)))
             OR (d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass
                 AND d.objid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT x.oid FROM pg_catalog.pg_statistic_ext AS x
                                                               WHERE x.stxrelid OPERATOR(pg_catalog.=) t))))
           AND ((d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
                 AND EXISTS (SELECT FROM pg_catalog.pg_proc AS p WHERE p.oid OPERATOR(pg_catalog.=) d.refobjid
                                AND p.pronamespace OPERATOR(pg_catalog.<>) 'pg_catalog'::pg_catalog.regnamespace))
             OR (d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_operator'::pg_catalog.regclass
                 AND EXISTS (SELECT FROM pg_catalog.pg_operator AS o WHERE o.oid OPERATOR(pg_catalog.=) d.refobjid
                                AND o.oprnamespace OPERATOR(pg_catalog.<>) 'pg_catalog'::pg_catalog.regnamespace))
             OR (d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_opclass'::pg_catalog.regclass
                 AND EXISTS (SELECT FROM pg_catalog.pg_opclass AS c WHERE c.oid OPERATOR(pg_catalog.=) d.refobjid
                                AND c.opcnamespace OPERATOR(pg_catalog.<>) 'pg_catalog'::pg_catalog.regnamespace))))
$$;
REVOKE ALL ON FUNCTION m365.source_runs_code(oid) FROM PUBLIC;

-- Why a source cannot feed its entity as registered (NULL: it can): the
-- table is gone or no longer a plain table, a column was renamed or dropped,
-- or its type changed to one that does not fit. Asked before every use, so
-- that a change to the application's table never runs someone else's code.
CREATE FUNCTION m365.source_problem(s m365.source)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
    SELECT CASE
        WHEN c.oid IS NULL THEN 'the table is gone'
        WHEN c.relkind OPERATOR(pg_catalog.<>) 'r' THEN pg_catalog.format('%s is no longer a plain table', s.source)
        WHEN m365.source_in_hierarchy(c.oid)
            THEN pg_catalog.format('%s is now a partition, a parent or a child of another table (writes through one fire the other''s triggers)', s.source)
        WHEN c.relforcerowsecurity
            THEN pg_catalog.format('%s now forces row-level security: its owner, who reads it for the copy, may not see every row', s.source)
        WHEN m365.source_runs_code(c.oid)
            THEN pg_catalog.format('an index or statistics object of %s now calls code outside pg_catalog, which reading it would run', s.source)
        ELSE (SELECT pg_catalog.string_agg(
                         CASE WHEN a.attname IS NULL THEN pg_catalog.format('column %I is gone (renamed or dropped)', m.source_column)
                              ELSE pg_catalog.format('column %I is of type %s, which does not fit %s', m.source_column,
                                                     a.atttypid::regtype, m.copy_column) END, '; ')
                FROM ROWS FROM (pg_catalog.unnest(s.copy_columns), pg_catalog.unnest(s.source_columns)) AS m(copy_column, source_column)
                JOIN m365.source_columns(s.entity) AS e ON e.column_name OPERATOR(pg_catalog.=) m.copy_column
                LEFT JOIN pg_catalog.pg_attribute AS a
                       ON a.attrelid OPERATOR(pg_catalog.=) s.source AND a.attname OPERATOR(pg_catalog.=) m.source_column
                      AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
               WHERE a.attname IS NULL OR NOT m365.source_type_fits(a.atttypid, e.type_name, e.key_position IS NOT NULL))
        END
      FROM (SELECT s.source) AS x
      LEFT JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) x.source);
END
$$;
REVOKE ALL ON FUNCTION m365.source_problem(m365.source) FROM PUBLIC;

-- source_problem, asked with the table locked: a change of a column's type
-- waits for the lock to be released, or finishes before it (a red-team find:
-- checked before the lock, a retype committed in between made the read run
-- the application's own cast as the owner). The lock is the read's own.
CREATE FUNCTION m365.source_problem_locked(s m365.source)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF m365.source_lock(s.source) IS NULL THEN
        RETURN 'the table is gone';
    END IF;
    RETURN m365.source_problem(s);
END
$$;
REVOKE ALL ON FUNCTION m365.source_problem_locked(m365.source) FROM PUBLIC;

-- The pieces of SQL that read a source as its copy's rows: identifiers only,
-- each through %I (values never enter them). Key columns are k1 (and k2) in
-- a key list t, given as $1 (and $2). The source is read only through
-- m365.source_read, under the name m365.source_lock gives it.
CREATE TYPE m365.source_sql AS (
    select_list text,   -- CAST(... s.voornaam ... AS pg_catalog.text) AS first_name, ...
    columns     text,   -- first_name, ...
    key_columns text,   -- id
    key_join    text,   -- x.id = t.k1
    key_width   integer,
    set_list    text,   -- first_name = excluded.first_name, ... (NULL: only keys)
    changed     text,   -- (c.first_name, ...) IS DISTINCT FROM (excluded.first_name, ...)
    -- The source's rows as a FROM item x: all of them, or those of the keys in
    -- $1 (and $2), found through the source's own key columns and so through
    -- its index (a one-row statement reads one row, not the whole table).
    all_rows    text,   -- m365.source_read(<oid>, 'SELECT <select_list> FROM ONLY app.leerling AS s', NULL, NULL) AS x(id int8, ...)
    keyed_rows  text,   -- m365.source_read(<oid>, '... JOIN <t> ON s.leerling_nr = t.k1', $1, $2) AS x(id int8, ...)
    key_list    text    -- the key of a row of the source (a transition table) as k1, k2: <leerling_nr as int8>, NULL
);
CREATE FUNCTION m365.source_sql_of(s m365.source)
RETURNS m365.source_sql
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    source_name text := m365.source_lock(s.source);
BEGIN
    RETURN (
    SELECT ROW(p.select_list, p.columns, p.key_columns, p.key_join, p.key_width, p.set_list, p.changed,
               pg_catalog.format('m365.source_read(%s::pg_catalog.regclass, %L, NULL, NULL) AS x(%s)', s.source::oid,
                                 pg_catalog.format('SELECT %s FROM ONLY %s AS s', p.select_list, source_name), p.column_types),
               pg_catalog.format('m365.source_read(%s::pg_catalog.regclass, %L, $1, $2) AS x(%s)', s.source::oid,
                                 pg_catalog.format('SELECT %s FROM ONLY %s AS s JOIN ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS t(k1, k2) ON %s',
                                                   p.select_list, source_name, p.source_key_match), p.column_types),
               p.key_list
              )::m365.source_sql
      FROM (
    SELECT -- Each value goes through its type's output function (format's %s,
           -- NULL kept) and the copy type's input, never through a cast, and
           -- with pinned settings (m365.source_read): a type of the
           -- application's could have casts of its own. Text in the
           -- database's collation: a nondeterministic one of the
           -- application's made every comparison fail.
           -- An optional column the table does not have takes the copy's
           -- default (NULL, or true for active), so that nothing written
           -- before the attachment stays (a red-team find: an old end date
           -- stayed, unseen by the drift). Not inactive_since: the copy's
           -- own trigger derives it from active.
           pg_catalog.string_agg(CASE WHEN m.source_column IS NULL
                                      THEN pg_catalog.format('CAST(%s AS pg_catalog.%I) AS %I', coalesce(e.default_value, 'NULL'), e.type_name, e.column_name)
                                      ELSE pg_catalog.format('CAST(CASE WHEN s.%I IS NULL THEN NULL ELSE pg_catalog.format(''%%s'', s.%I) END AS pg_catalog.%I)%s AS %I',
                                                             m.source_column, m.source_column, e.type_name,
                                                             CASE WHEN e.type_name OPERATOR(pg_catalog.=) 'text'
                                                                  THEN ' COLLATE pg_catalog."default"' ELSE '' END, e.column_name) END,
                                 ', ' ORDER BY e.n) AS select_list,
           pg_catalog.string_agg(pg_catalog.format('%I pg_catalog.%I', e.column_name, e.type_name), ', ' ORDER BY e.n) AS column_types,
           pg_catalog.string_agg(pg_catalog.format('%I', e.column_name), ', ' ORDER BY e.n) AS columns,
           pg_catalog.string_agg(pg_catalog.format('%I', e.column_name), ', ' ORDER BY e.key_position)
               FILTER (WHERE e.key_position IS NOT NULL) AS key_columns,
           pg_catalog.string_agg(pg_catalog.format('x.%I OPERATOR(pg_catalog.=) t.%I', e.column_name,
                                                   'k' OPERATOR(pg_catalog.||) e.key_position), ' AND ')
               FILTER (WHERE e.key_position IS NOT NULL) AS key_join,
           (pg_catalog.count(*) FILTER (WHERE e.key_position IS NOT NULL))::integer AS key_width,
           pg_catalog.string_agg(pg_catalog.format('%I = excluded.%I', e.column_name, e.column_name), ', ' ORDER BY e.n)
               FILTER (WHERE e.key_position IS NULL) AS set_list,
           pg_catalog.format('(%s, NULL) IS DISTINCT FROM (%s, NULL)',
               pg_catalog.string_agg(pg_catalog.format('c.%I', e.column_name), ', ' ORDER BY e.n) FILTER (WHERE e.key_position IS NULL),
               pg_catalog.string_agg(pg_catalog.format('excluded.%I', e.column_name), ', ' ORDER BY e.n) FILTER (WHERE e.key_position IS NULL)) AS changed,
           -- The source's key columns as they are (read as the table's owner).
           pg_catalog.string_agg(pg_catalog.format('s.%I OPERATOR(pg_catalog.=) t.%I', m.source_column,
                                                   'k' OPERATOR(pg_catalog.||) e.key_position), ' AND ')
               FILTER (WHERE e.key_position IS NOT NULL) AS source_key_match,
           pg_catalog.string_agg(pg_catalog.format('CAST(CASE WHEN %I IS NULL THEN NULL ELSE pg_catalog.format(''%%s'', %I) END AS pg_catalog.int8)',
                                                   m.source_column, m.source_column), ', ' ORDER BY e.key_position)
               FILTER (WHERE e.key_position IS NOT NULL)
           OPERATOR(pg_catalog.||) CASE WHEN pg_catalog.count(*) FILTER (WHERE e.key_position IS NOT NULL) OPERATOR(pg_catalog.=) 1
                                        THEN ', NULL::pg_catalog.int8' ELSE '' END AS key_list
      FROM (SELECT c.column_name, c.type_name, c.key_position, c.n,
                   (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) FROM pg_catalog.pg_attrdef AS d
                      JOIN pg_catalog.pg_attribute AS a ON a.attrelid OPERATOR(pg_catalog.=) d.adrelid AND a.attnum OPERATOR(pg_catalog.=) d.adnum
                     WHERE d.adrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(pg_catalog.concat('m365.', pg_catalog.quote_ident(s.entity)))
                       AND a.attname OPERATOR(pg_catalog.=) c.column_name) AS default_value
              FROM m365.source_columns(s.entity) WITH ORDINALITY AS c(column_name, type_name, required, key_position, n)) AS e
      LEFT JOIN ROWS FROM (pg_catalog.unnest(s.copy_columns), pg_catalog.unnest(s.source_columns)) AS m(copy_column, source_column)
             ON m.copy_column OPERATOR(pg_catalog.=) e.column_name
     WHERE m.copy_column IS NOT NULL OR e.column_name OPERATOR(pg_catalog.<>) 'inactive_since') AS p);
END
$$;
REVOKE ALL ON FUNCTION m365.source_sql_of(m365.source) FROM PUBLIC;

-- The entities whose copy refers to `entity` (a parent: its key is id), and
-- the column that does: from the foreign keys of the copies themselves.
-- Inlined on purpose (asked on every write): no SET clause, names bound at CREATE.
CREATE FUNCTION m365.source_children(entity text)
RETURNS TABLE (child text, child_column name)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT c.relname::text, a.attname
      FROM pg_catalog.pg_constraint AS r
      JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) r.conrelid
      JOIN pg_catalog.pg_attribute AS pk ON pk.attrelid OPERATOR(pg_catalog.=) r.confrelid AND pk.attname OPERATOR(pg_catalog.=) 'id'
      CROSS JOIN LATERAL ROWS FROM (pg_catalog.unnest(r.conkey), pg_catalog.unnest(r.confkey)) AS u(child_attnum, parent_attnum)
      JOIN pg_catalog.pg_attribute AS a ON a.attrelid OPERATOR(pg_catalog.=) r.conrelid AND a.attnum OPERATOR(pg_catalog.=) u.child_attnum
     WHERE r.contype OPERATOR(pg_catalog.=) 'f'
       AND r.confrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(pg_catalog.concat('m365.', pg_catalog.quote_ident(entity)))
       AND u.parent_attnum OPERATOR(pg_catalog.=) pk.attnum
       AND c.relnamespace OPERATOR(pg_catalog.=) 'm365'::regnamespace
       AND c.relname::text OPERATOR(pg_catalog.=) ANY (m365.source_entities());
END;
REVOKE ALL ON FUNCTION m365.source_children(text) FROM PUBLIC;

-- The reason a row waits whose parent left the copy: written here, and
-- looked for when the parent comes back (m365.source_sync).
CREATE FUNCTION m365.source_parent_gone(child_column name, parent text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
RETURN pg_catalog.format('waits for its %s: not in the copy of %s', child_column, parent);
REVOKE ALL ON FUNCTION m365.source_parent_gone(name, text) FROM PUBLIC;

-- Rows of attached entities that refer to these parents (key: id) leave the
-- copy with them and wait for them.
CREATE FUNCTION m365.source_leave_children(entity text, parents bigint[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    child record;
    keys  text;
    c1    bigint[];
    c2    bigint[];
BEGIN
    FOR child IN SELECT ch.child, ch.child_column FROM m365.source_children(entity) AS ch
                   JOIN m365.source AS a ON a.entity OPERATOR(pg_catalog.=) ch.child LOOP
        SELECT pg_catalog.string_agg(pg_catalog.format('r.%I', k.column_name), ', ' ORDER BY k.key_position) INTO keys
          FROM m365.source_columns(child.child) AS k WHERE k.key_position IS NOT NULL;
        EXECUTE pg_catalog.format(
            'SELECT pg_catalog.array_agg(k[1] ORDER BY k), pg_catalog.array_agg(k[2] ORDER BY k)
               FROM (SELECT DISTINCT ARRAY[%s]::pg_catalog.int8[] AS k FROM m365.%I AS r
                      WHERE r.%I OPERATOR(pg_catalog.=) ANY ($1)) AS x',
            keys, child.child, child.child_column)
        USING parents INTO c1, c2;
        IF c1 IS NOT NULL THEN
            PERFORM m365.source_leave(child.child, c1, c2,
                                      m365.source_parent_gone(child.child_column, entity));
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION m365.source_leave_children(text, bigint[]) FROM PUBLIC;

-- Takes rows out of the copy that can no longer stay (their parent left) and
-- lists them as waiting, with the reason. A row that something not attached
-- still refers to stays, listed too.
CREATE FUNCTION m365.source_leave(entity text, k1 bigint[], k2 bigint[], reason text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    keys text;
BEGIN
    IF k2[1] IS NULL THEN
        PERFORM m365.source_leave_children(entity, k1);
    END IF;
    IF entity OPERATOR(pg_catalog.=) ANY ('{school,location}'::text[]) THEN
        PERFORM m365.source_keep_decided(entity, k1);
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.format('x.%I OPERATOR(pg_catalog.=) t.%I', k.column_name, 'k' OPERATOR(pg_catalog.||) k.key_position),
                                 ' AND ')
      INTO keys FROM m365.source_columns(entity) AS k WHERE k.key_position IS NOT NULL;
    BEGIN
        EXECUTE pg_catalog.format('DELETE FROM m365.%I AS x USING ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS t(k1, k2) WHERE %s', entity, keys)
        USING k1, k2;
    EXCEPTION WHEN OTHERS THEN
        reason := reason OPERATOR(pg_catalog.||) ' (still in the copy: ' OPERATOR(pg_catalog.||) SQLERRM OPERATOR(pg_catalog.||) ')';
    END;
    PERFORM m365.source_wait(entity, k1, k2, reason);
END
$$;
REVOKE ALL ON FUNCTION m365.source_leave(text, bigint[], bigint[], text) FROM PUBLIC;

-- Writes the source's rows for these keys into the copy: rows the source has
-- are inserted or updated, rows it no longer has are deleted. All at once;
-- when that fails, each half again, down to the row that fails, which waits
-- with the reason (a few subtransactions per bad row, not one per row).
CREATE FUNCTION m365.source_write(s m365.source, q m365.source_sql, k1 bigint[], k2 bigint[], inserted boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n    integer := coalesce(pg_catalog.cardinality(k1), 0);
    half integer;
BEGIN
    IF n OPERATOR(pg_catalog.=) 0 THEN
        RETURN;
    END IF;
    -- Rows the application just inserted are new to the copy as a rule: one
    -- plain INSERT, without ON CONFLICT's speculative insertion and without
    -- looking for rows to delete. Anything else takes the full path.
    IF inserted THEN
        BEGIN
            EXECUTE pg_catalog.format('INSERT INTO m365.%I (%s) SELECT %s FROM %s', s.entity, q.columns, q.columns, q.keyed_rows)
            USING k1, k2;
            IF s.entity OPERATOR(pg_catalog.=) ANY ('{school,location}'::text[]) THEN
                PERFORM m365.source_restore_decided(s.entity, k1);
            END IF;
            PERFORM m365.source_unwait(s.entity, k1, k2);
            RETURN;
        EXCEPTION WHEN OTHERS THEN
            NULL;  -- the full path below
        END;
    END IF;
    BEGIN
        IF s.entity OPERATOR(pg_catalog.=) ANY ('{school,location}'::text[]) THEN
            PERFORM m365.source_keep_decided(s.entity, k1);
        END IF;
        -- One statement (one plan per write, one read of the source): the
        -- keys the source no longer has leave the copy, the others are
        -- inserted or updated.
        EXECUTE pg_catalog.format(
            'WITH src AS MATERIALIZED (SELECT * FROM %1$s),
                  gone AS (DELETE FROM m365.%2$I AS x USING ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS t(k1, k2)
                            WHERE %3$s AND NOT EXISTS (SELECT FROM src AS y WHERE %4$s))
             INSERT INTO m365.%2$I AS c (%5$s) SELECT %5$s FROM src AS x ON CONFLICT (%6$s) %7$s',
            q.keyed_rows, s.entity, q.key_join, pg_catalog.replace(q.key_join, 'x.', 'y.'), q.columns, q.key_columns,
            CASE WHEN q.set_list IS NULL THEN 'DO NOTHING'
                 ELSE pg_catalog.format('DO UPDATE SET %s WHERE %s', q.set_list, q.changed) END)
        USING k1, k2;
        IF s.entity OPERATOR(pg_catalog.=) ANY ('{school,location}'::text[]) THEN
            PERFORM m365.source_restore_decided(s.entity, k1);
        END IF;
        PERFORM m365.source_unwait(s.entity, k1, k2);
    EXCEPTION WHEN OTHERS THEN
        -- One row; or a lock that is not free (each half would wait as long
        -- again: 199 waits of 100 ms, a red-team find).
        IF n OPERATOR(pg_catalog.=) 1 OR SQLSTATE OPERATOR(pg_catalog.=) '55P03' THEN
            PERFORM m365.source_wait(s.entity, k1, k2, SQLERRM);
            RETURN;
        END IF;
        half := n OPERATOR(pg_catalog./) 2;
        PERFORM m365.source_write(s, q, k1[1:half], k2[1:half]);
        PERFORM m365.source_write(s, q, k1[half OPERATOR(pg_catalog.+) 1:n], k2[half OPERATOR(pg_catalog.+) 1:n]);
    END;
END
$$;
REVOKE ALL ON FUNCTION m365.source_write(m365.source, m365.source_sql, bigint[], bigint[], boolean) FROM PUBLIC;

-- Makes the copy of `entity` equal to its source for these keys (NULL: every
-- key of both, and every key that waits: a TRUNCATE left those waiting). Rows of attached entities that refer to a row leaving the
-- copy leave with it and wait; then the waiting rows of other entities are
-- tried again (once: `again` is false for those). `checked`: the source's SQL
-- from a caller that has just checked the source with its table locked.
CREATE FUNCTION m365.source_sync(entity text, k1 bigint[], k2 bigint[], again boolean DEFAULT true, inserted boolean DEFAULT false,
                                 checked m365.source_sql DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off  -- (compiling a large copy's plans took longer than running them)
AS $$
DECLARE
    s       m365.source;
    q       m365.source_sql;
    cq      m365.source_sql;
    problem text;
    gone    bigint[];
    child   record;
    parent  record;
    w1      bigint[];
    w2      bigint[];
BEGIN
    SELECT * INTO s FROM m365.source AS x WHERE x.entity OPERATOR(pg_catalog.=) source_sync.entity;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF checked IS NULL THEN
        problem := m365.source_problem_locked(s);
    END IF;
    IF problem IS DISTINCT FROM s.broken THEN
        UPDATE m365.source AS x SET broken = problem WHERE x.entity OPERATOR(pg_catalog.=) s.entity;
    END IF;
    IF problem IS NOT NULL THEN
        RETURN;
    END IF;
    q := coalesce(checked, m365.source_sql_of(s));
    IF k1 IS NULL AND inserted AND NOT s.entity OPERATOR(pg_catalog.=) ANY ('{school,location}'::text[]) THEN
        -- Attaching to an empty copy: the whole table in one INSERT; the keys
        -- are gathered (below) only when some row cannot be taken.
        BEGIN
            EXECUTE pg_catalog.format('INSERT INTO m365.%I (%s) SELECT %s FROM %s', s.entity, q.columns, q.columns, q.all_rows);
            k1 := '{}';
        EXCEPTION WHEN OTHERS THEN
            NULL;
        END;
    END IF;
    IF k1 IS NULL THEN
        EXECUTE pg_catalog.format(
            'SELECT pg_catalog.array_agg(t.k[1] ORDER BY t.k), pg_catalog.array_agg(t.k[2] ORDER BY t.k) FROM (
                 SELECT ARRAY[%s] FROM %s UNION SELECT ARRAY[%s] FROM m365.%I
                 UNION SELECT w.key FROM m365.source_waiting AS w WHERE w.entity OPERATOR(pg_catalog.=) %L) AS t(k)',
            q.key_columns, q.all_rows, q.key_columns, s.entity, s.entity)
        INTO k1, k2;
    END IF;
    IF k1 IS NULL THEN
        RETURN;
    END IF;
    -- A parent (key: id) leaving the copy takes the rows that refer to it along.
    IF q.key_width OPERATOR(pg_catalog.=) 1 AND NOT inserted
       AND EXISTS (SELECT FROM m365.source_children(s.entity) AS ch JOIN m365.source AS a ON a.entity OPERATOR(pg_catalog.=) ch.child) THEN
        EXECUTE pg_catalog.format(
            'WITH src AS MATERIALIZED (SELECT x.id FROM %s)
             SELECT pg_catalog.array_agg(t.k1) FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS t(k1, k2)
              WHERE EXISTS (SELECT FROM m365.%I AS c WHERE c.id OPERATOR(pg_catalog.=) t.k1)
                AND NOT EXISTS (SELECT FROM src AS y WHERE y.id OPERATOR(pg_catalog.=) t.k1)',
            q.keyed_rows, s.entity)
        USING k1, k2 INTO gone;
        IF gone IS NOT NULL THEN
            PERFORM m365.source_leave_children(s.entity, gone);
        END IF;
    END IF;

    PERFORM m365.source_write(s, q, k1, k2, inserted);

    IF again AND EXISTS (SELECT FROM m365.source_waiting AS w WHERE w.since OPERATOR(pg_catalog.=) pg_catalog.now()) THEN
        -- Rows this transaction left waiting are tried again when what they
        -- wait for may have come: rows of a child entity that wait for one of
        -- these keys (their foreign key to this entity failed, and their
        -- column holds one of the keys: an enrolment written before its
        -- student), and rows of a parent entity that could not leave while
        -- rows of this one referred to them. Rows other transactions left
        -- waiting are the job's (m365.retry_waiting_sources). A write never
        -- tries rows that wait for something else (red-team finds: 2,000
        -- waiting rows made every later write take seconds).
        FOR child IN SELECT ch.child, ch.child_column, r.conname
                       FROM m365.source_children(s.entity) AS ch
                       JOIN m365.source AS a ON a.entity OPERATOR(pg_catalog.=) ch.child
                       JOIN pg_catalog.pg_constraint AS r
                         ON r.conrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(pg_catalog.concat('m365.', pg_catalog.quote_ident(ch.child)))
                        AND r.confrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(pg_catalog.concat('m365.', pg_catalog.quote_ident(s.entity)))
                        AND r.contype OPERATOR(pg_catalog.=) 'f'
                        AND (SELECT at.attname FROM pg_catalog.pg_attribute AS at
                              WHERE at.attrelid OPERATOR(pg_catalog.=) r.conrelid AND at.attnum OPERATOR(pg_catalog.=) r.conkey[1])
                            OPERATOR(pg_catalog.=) ch.child_column LOOP
            SELECT pg_catalog.array_agg(w.key[1] ORDER BY w.key), pg_catalog.array_agg(w.key[2] ORDER BY w.key)
              INTO w1, w2 FROM m365.source_waiting AS w
             WHERE w.entity OPERATOR(pg_catalog.=) child.child AND w.since OPERATOR(pg_catalog.=) pg_catalog.now()
               AND (pg_catalog.strpos(w.reason, pg_catalog.format('"%s"', child.conname)) OPERATOR(pg_catalog.>) 0
                    OR w.reason OPERATOR(pg_catalog.=) m365.source_parent_gone(child.child_column, s.entity));
            CONTINUE WHEN w1 IS NULL;
            cq := m365.source_sql_of((SELECT x FROM m365.source AS x WHERE x.entity OPERATOR(pg_catalog.=) child.child));
            EXECUTE pg_catalog.format(
                'SELECT pg_catalog.array_agg(x.k1 ORDER BY x.k1, x.k2), pg_catalog.array_agg(x.k2 ORDER BY x.k1, x.k2)
                   FROM (SELECT %s FROM %s WHERE x.%I OPERATOR(pg_catalog.=) ANY ($3)) AS x(k1, k2)',
                pg_catalog.concat(cq.key_columns, CASE WHEN cq.key_width OPERATOR(pg_catalog.=) 1 THEN ', NULL::pg_catalog.int8' END),
                cq.keyed_rows, child.child_column)
            USING w1, w2, k1 INTO w1, w2;
            IF w1 IS NOT NULL THEN
                -- (Onwards down: a school reloaded brings back its locations,
                -- and they their enrolments. The entities' foreign keys form
                -- no cycle, so this ends.)
                PERFORM m365.source_sync(child.child, w1, w2, true);
            END IF;
        END LOOP;
        FOR parent IN SELECT e.entity, r.conname
                        FROM pg_catalog.unnest(m365.source_entities()) AS e(entity)
                        JOIN m365.source AS a ON a.entity OPERATOR(pg_catalog.=) e.entity
                        JOIN pg_catalog.pg_constraint AS r
                          ON r.conrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(pg_catalog.concat('m365.', pg_catalog.quote_ident(s.entity)))
                         AND r.confrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(pg_catalog.concat('m365.', pg_catalog.quote_ident(e.entity)))
                         AND r.contype OPERATOR(pg_catalog.=) 'f' LOOP
            SELECT pg_catalog.array_agg(w.key[1] ORDER BY w.key), pg_catalog.array_agg(w.key[2] ORDER BY w.key)
              INTO w1, w2 FROM m365.source_waiting AS w
             WHERE w.entity OPERATOR(pg_catalog.=) parent.entity AND w.since OPERATOR(pg_catalog.=) pg_catalog.now()
               AND pg_catalog.strpos(w.reason, pg_catalog.format('"%s"', parent.conname)) OPERATOR(pg_catalog.>) 0;
            IF w1 IS NOT NULL THEN
                PERFORM m365.source_sync(parent.entity, w1, w2, false);
            END IF;
        END LOOP;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION m365.source_sync(text, bigint[], bigint[], boolean, boolean, m365.source_sql) FROM PUBLIC;

-- The trigger on an attached source: the keys the statement touched (old and
-- new, so that a changed key is a delete and an insert), then the copy made
-- equal to the source for them. Runs as the owner, only for the table and
-- entity registered, after m365.source_problem found nothing of someone
-- else's to run. Whatever goes wrong is recorded on the attachment, never
-- raised: the application's write goes on.
-- It never waits long for a lock on the copies: the copies have foreign keys
-- the application's tables may not, and waiting on them could deadlock the
-- application's own statements (a red-team find). What cannot be copied
-- within lock_timeout waits, and the next run of the job takes it in.
CREATE FUNCTION m365.source_changed()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '100ms'
-- Not the writing session's planner settings (enable_nestloop = off made a
-- one-row write scan the copy), nor its exit_on_error (a row the copy cannot
-- take, caught here, ended the session): red-team finds.
SET enable_nestloop = on
SET enable_seqscan = on
SET enable_indexscan = on
SET enable_bitmapscan = on
SET enable_hashjoin = on
SET enable_mergejoin = on
SET exit_on_error = off
AS $$
DECLARE
    s       m365.source;
    q       m365.source_sql;
    problem text;
    k1      bigint[];
    k2      bigint[];
    failure text;
BEGIN
    BEGIN
        -- (Inside the block: a REINDEX of m365.source made this read time out,
        -- and the application's statement failed: a red-team find.)
        SELECT * INTO s FROM m365.source AS x
         WHERE x.entity OPERATOR(pg_catalog.=) TG_ARGV[0] AND x.source OPERATOR(pg_catalog.=) TG_RELID;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        -- (The statement holds its table: the check stands until the end.)
        problem := m365.source_problem_locked(s);
        IF problem IS NULL AND TG_OP OPERATOR(pg_catalog.<>) 'TRUNCATE' THEN
            q := m365.source_sql_of(s);
            EXECUTE pg_catalog.format(
                'SELECT pg_catalog.array_agg(t.k1 ORDER BY t.k1, t.k2), pg_catalog.array_agg(t.k2 ORDER BY t.k1, t.k2) FROM (%s) AS t(k1, k2)',
                CASE TG_OP WHEN 'INSERT' THEN pg_catalog.format('SELECT %s FROM m365_new', q.key_list)
                           WHEN 'DELETE' THEN pg_catalog.format('SELECT %s FROM m365_old', q.key_list)
                           ELSE pg_catalog.format('SELECT %s FROM m365_new UNION SELECT %s FROM m365_old', q.key_list, q.key_list) END)
            INTO k1, k2;
            IF k1 IS NOT NULL THEN
                PERFORM m365.source_sync(s.entity, k1, k2, true, TG_OP OPERATOR(pg_catalog.=) 'INSERT', q);
            END IF;
        ELSE
            -- TRUNCATE, or a problem: source_sync looks at every key, or records the problem.
            PERFORM m365.source_sync(s.entity, NULL, NULL);
        END IF;
    EXCEPTION WHEN OTHERS THEN
        failure := SQLERRM;
    END;
    IF failure IS NOT NULL THEN
        -- Recorded if that can be done at once; if even that waits on a lock,
        -- a WARNING, and source_drift() shows the difference all the same
        -- (it compares copy and source). Never an error here (a red-team find:
        -- this write waited on a row another session held, and failed the
        -- application's statement).
        BEGIN
            IF s.entity IS NULL THEN
                RAISE EXCEPTION USING MESSAGE = failure;   -- (m365.source itself could not be read)
            ELSIF k1 IS NOT NULL THEN
                PERFORM m365.source_wait(s.entity, k1, k2, pg_catalog.concat('could not be copied: ', failure));
            ELSE
                UPDATE m365.source AS x SET broken = 'the last change could not be copied: ' OPERATOR(pg_catalog.||) failure
                 WHERE x.entity OPERATOR(pg_catalog.=) s.entity;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'm365: a change to %.% was not copied to m365.%: %', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[0], failure
                USING HINT = 'm365.source_drift() lists it; m365.resync_source repairs it.';
        END;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION m365.source_changed() FROM PUBLIC;

-- Attaches an application table to an entity: checks the mapping, copies the
-- rows the copy can take (the others wait, see m365.source_drift), and puts
-- the triggers on it. Run by the owner or an administrator, who must be able
-- to read the table and put triggers on it themselves (SESSION_USER: the
-- role a SET ROLE can always go back to).
CREATE FUNCTION m365.attach_source(entity text, source regclass, columns jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel        pg_catalog.pg_class;
    e          record;
    wanted     name;
    att        pg_catalog.pg_attribute;
    copy_cols  name[] := '{}';
    src_cols   name[] := '{}';
    unknown    text;
    s          m365.source;
    prefix     text := pg_catalog.concat('m365_', entity, '_');
    copy_empty boolean;
BEGIN
    IF entity IS NULL OR source IS NULL OR columns IS NULL THEN
        RAISE EXCEPTION 'attach_source needs an entity, a table and a mapping (''{}'' for none)' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT entity OPERATOR(pg_catalog.=) ANY (m365.source_entities()) THEN
        RAISE EXCEPTION 'unknown entity "%"', entity USING ERRCODE = 'invalid_parameter_value',
            HINT = 'One of school, location, student, class, enrolment, staff, staff_school, class_teacher.';
    END IF;
    IF EXISTS (SELECT FROM m365.source AS x WHERE x.entity OPERATOR(pg_catalog.=) attach_source.entity) THEN
        RAISE EXCEPTION '% is attached already (to %)', entity,
              (SELECT x.source FROM m365.source AS x WHERE x.entity OPERATOR(pg_catalog.=) attach_source.entity)
            USING ERRCODE = 'duplicate_object', HINT = 'm365.detach_source first.';
    END IF;
    SELECT * INTO rel FROM pg_catalog.pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) source;
    IF rel.relkind OPERATOR(pg_catalog.<>) 'r' THEN
        RAISE EXCEPTION '% is not a plain table', source USING ERRCODE = 'wrong_object_type',
            DETAIL = 'Views, partitioned and foreign tables cannot be attached: the copy follows a table''s own triggers.';
    END IF;
    IF rel.relforcerowsecurity THEN
        RAISE EXCEPTION '% forces row-level security', source USING ERRCODE = 'feature_not_supported',
            DETAIL = 'The copy reads the table as its owner, whom FORCE ROW LEVEL SECURITY may hide rows from: the copy would lose them.';
    END IF;
    IF m365.source_runs_code(source) THEN
        RAISE EXCEPTION 'an index or statistics object of % calls code outside pg_catalog', source USING ERRCODE = 'feature_not_supported',
            DETAIL = 'Planning any read of the table runs it, in the session that reads (an administrator''s, the job''s).',
            HINT = 'Index and statistics expressions over pg_catalog''s own functions and operators only.';
    END IF;
    IF m365.source_in_hierarchy(source) THEN
        RAISE EXCEPTION '% is a partition, or a parent or child by inheritance', source USING ERRCODE = 'wrong_object_type',
            DETAIL = 'A write through the parent fires the parent''s statement triggers, not the child''s: the copy would miss it.';
    END IF;
    IF NOT pg_catalog.has_table_privilege(SESSION_USER, source, 'SELECT')
       OR NOT pg_catalog.has_table_privilege(SESSION_USER, source, 'TRIGGER') THEN
        RAISE EXCEPTION 'role % may not attach %: it needs SELECT and TRIGGER on it', SESSION_USER, source
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF pg_catalog.jsonb_typeof(columns) OPERATOR(pg_catalog.<>) 'object'
       OR EXISTS (SELECT FROM pg_catalog.jsonb_each(columns) AS j WHERE pg_catalog.jsonb_typeof(j.value) OPERATOR(pg_catalog.<>) 'string') THEN
        RAISE EXCEPTION 'the mapping is a JSON object of column names: {"first_name": "voornaam", ...}' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT pg_catalog.string_agg(j.key, ', ') INTO unknown FROM pg_catalog.jsonb_object_keys(columns) AS j(key)
     WHERE NOT EXISTS (SELECT FROM m365.source_columns(entity) AS c WHERE c.column_name OPERATOR(pg_catalog.=) j.key);
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION '% has no column % to map', entity, unknown USING ERRCODE = 'undefined_column',
            HINT = 'A location''s or school''s configuration and domains are the administrators'', set in m365.location and m365.school.';
    END IF;
    FOR e IN SELECT * FROM m365.source_columns(entity) LOOP
        wanted := coalesce(columns OPERATOR(pg_catalog.->>) e.column_name::text, e.column_name);
        SELECT * INTO att FROM pg_catalog.pg_attribute AS a
         WHERE a.attrelid OPERATOR(pg_catalog.=) source AND a.attname OPERATOR(pg_catalog.=) wanted
           AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
        IF NOT FOUND THEN
            IF columns ? e.column_name::text THEN
                RAISE EXCEPTION 'column "%" of % does not exist', wanted, source USING ERRCODE = 'undefined_column';
            ELSIF e.required THEN
                RAISE EXCEPTION '% has no column for %.%', source, entity, e.column_name USING ERRCODE = 'undefined_column',
                    HINT = pg_catalog.format('Map it: {"%s": "<column of %s>"}', e.column_name, source);
            END IF;
            CONTINUE;
        END IF;
        IF NOT m365.source_type_fits(att.atttypid, e.type_name, e.key_position IS NOT NULL) THEN
            RAISE EXCEPTION 'column "%" of % is of type %, which does not fit %.% (%)', wanted, source, att.atttypid::regtype,
                  entity, e.column_name, CASE WHEN e.key_position IS NOT NULL THEN 'an integer key' ELSE e.type_name::text END
                USING ERRCODE = 'datatype_mismatch',
                      HINT = 'Only PostgreSQL''s own types are read; convert in a stored generated column of the table (docs/attach.md).';
        END IF;
        copy_cols := copy_cols OPERATOR(pg_catalog.||) e.column_name;
        src_cols := src_cols OPERATOR(pg_catalog.||) wanted;
    END LOOP;

    INSERT INTO m365.source (entity, source, copy_columns, source_columns)
    VALUES (entity, source, copy_cols, src_cols) RETURNING * INTO s;
    EXECUTE pg_catalog.format('CREATE TRIGGER %I AFTER INSERT ON %I.%I REFERENCING NEW TABLE AS m365_new
                               FOR EACH STATEMENT EXECUTE FUNCTION m365.source_changed(%L)',
                              pg_catalog.concat(prefix, 'insert'),
                              rel.relnamespace::regnamespace::name, rel.relname, entity);
    EXECUTE pg_catalog.format('CREATE TRIGGER %I AFTER UPDATE ON %I.%I REFERENCING OLD TABLE AS m365_old NEW TABLE AS m365_new
                               FOR EACH STATEMENT EXECUTE FUNCTION m365.source_changed(%L)',
                              pg_catalog.concat(prefix, 'update'),
                              rel.relnamespace::regnamespace::name, rel.relname, entity);
    EXECUTE pg_catalog.format('CREATE TRIGGER %I AFTER DELETE ON %I.%I REFERENCING OLD TABLE AS m365_old
                               FOR EACH STATEMENT EXECUTE FUNCTION m365.source_changed(%L)',
                              pg_catalog.concat(prefix, 'delete'),
                              rel.relnamespace::regnamespace::name, rel.relname, entity);
    EXECUTE pg_catalog.format('CREATE TRIGGER %I AFTER TRUNCATE ON %I.%I
                               FOR EACH STATEMENT EXECUTE FUNCTION m365.source_changed(%L)',
                              pg_catalog.concat(prefix, 'truncate'),
                              rel.relnamespace::regnamespace::name, rel.relname, entity);
    -- Into an empty copy every row is new: the plain INSERT path.
    EXECUTE pg_catalog.format('SELECT NOT EXISTS (SELECT FROM m365.%I)', entity) INTO copy_empty;
    PERFORM m365.source_sync(entity, NULL, NULL, true, copy_empty);
END
$$;
COMMENT ON FUNCTION m365.attach_source(text, regclass, jsonb) IS
'Attaches an application table to an entity (student, enrolment, staff, ...): copies its rows and keeps the copy equal to it by triggers; columns maps the entity''s column names to the table''s';
REVOKE ALL ON FUNCTION m365.attach_source(text, regclass, jsonb) FROM PUBLIC;
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.attach_source(text, regclass, jsonb)');

-- Takes the triggers off and forgets the attachment; the copy keeps its rows
-- and can be written directly again.
CREATE FUNCTION m365.detach_source(entity text)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s       m365.source;
    name    text;
    trigger name;
BEGIN
    DELETE FROM m365.source AS x WHERE x.entity OPERATOR(pg_catalog.=) detach_source.entity RETURNING * INTO s;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    name := m365.source_lock(s.source);
    -- Its triggers by what they run, not by name: the application may have
    -- renamed one (a red-team find: it stayed, and DROP EXTENSION failed).
    FOR trigger IN SELECT t.tgname FROM pg_catalog.pg_trigger AS t
                    WHERE t.tgrelid OPERATOR(pg_catalog.=) s.source
                      AND t.tgfoid OPERATOR(pg_catalog.=) 'm365.source_changed()'::pg_catalog.regprocedure
                      AND t.tgargs OPERATOR(pg_catalog.=) (pg_catalog.convert_to(s.entity, 'UTF8') OPERATOR(pg_catalog.||) '\x00'::bytea) LOOP
        EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', trigger, name);
    END LOOP;
    RETURN true;
END
$$;
COMMENT ON FUNCTION m365.detach_source(text) IS
'Detaches an entity from its application table: the triggers go, the copy keeps its rows (true when it was attached)';
REVOKE ALL ON FUNCTION m365.detach_source(text) FROM PUBLIC;
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.detach_source(text)');

-- Every row where a copy and its source disagree, or that waits, and why.
CREATE FUNCTION m365.source_drift()
RETURNS TABLE (entity text, source regclass, key bigint[], problem text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s m365.source;
    q m365.source_sql;
BEGIN
    FOR s IN SELECT * FROM m365.source AS x ORDER BY x.entity LOOP
        entity := s.entity;
        source := s.source;
        problem := m365.source_problem_locked(s);
        IF problem IS NOT NULL OR s.broken IS NOT NULL THEN
            key := NULL;
            problem := 'the attachment is broken: ' OPERATOR(pg_catalog.||) coalesce(problem, s.broken);
            RETURN NEXT;
            CONTINUE;
        END IF;
        RETURN QUERY SELECT s.entity, s.source, w.key, w.reason FROM m365.source_waiting AS w
                      WHERE w.entity OPERATOR(pg_catalog.=) s.entity ORDER BY w.key;
        q := m365.source_sql_of(s);
        BEGIN
            RETURN QUERY EXECUTE pg_catalog.format(
                'SELECT $1, $2, ARRAY[%1$s]::pg_catalog.int8[],
                        CASE WHEN x IS NULL THEN ''in the copy, not in the source''
                             WHEN c IS NULL THEN ''in the source, not in the copy''
                             ELSE ''differs from the source'' END
                   FROM (SELECT * FROM %2$s) AS x
                   FULL JOIN (SELECT %3$s FROM m365.%4$I) AS c USING (%1$s)
                  WHERE (x IS NULL OR c IS NULL OR (x.*) IS DISTINCT FROM (c.*))
                    AND NOT EXISTS (SELECT FROM m365.source_waiting AS w
                                     WHERE w.entity OPERATOR(pg_catalog.=) $1 AND w.key OPERATOR(pg_catalog.=) ARRAY[%1$s]::pg_catalog.int8[])
                  ORDER BY 3',
                q.key_columns, q.all_rows, q.columns, s.entity)
            USING s.entity, s.source;
        EXCEPTION WHEN OTHERS THEN
            -- One table that cannot be read (as its owner) hides no other's drift.
            key := NULL;
            problem := 'the table cannot be read: ' OPERATOR(pg_catalog.||) SQLERRM;
            RETURN NEXT;
        END;
    END LOOP;
END
$$;
COMMENT ON FUNCTION m365.source_drift() IS
'Every row where an attached source and its copy disagree, or that waits (with the reason), and every broken attachment';
REVOKE ALL ON FUNCTION m365.source_drift() FROM PUBLIC;
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.source_drift()');

-- Makes the copy equal to its source again (after triggers were disabled, a
-- COPY with triggers off, replication in replica mode): the extension's own
-- triggers on the copy log whoever now needs a username. Answers how many
-- rows still disagree or wait.
CREATE FUNCTION m365.resync_source(entity text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM m365.source AS x WHERE x.entity OPERATOR(pg_catalog.=) resync_source.entity) THEN
        RAISE EXCEPTION '% is not attached', entity USING ERRCODE = 'undefined_object';
    END IF;
    UPDATE m365.source AS x SET broken = NULL WHERE x.entity OPERATOR(pg_catalog.=) resync_source.entity;
    PERFORM m365.source_sync(entity, NULL, NULL);
    RETURN (SELECT pg_catalog.count(*) FROM m365.source_drift() AS d WHERE d.entity OPERATOR(pg_catalog.=) resync_source.entity);
END
$$;
COMMENT ON FUNCTION m365.resync_source(text) IS
'Makes an attached entity''s copy equal to its source again; returns how many rows still disagree or wait';
REVOKE ALL ON FUNCTION m365.resync_source(text) FROM PUBLIC;
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.resync_source(text)');

-- Rows that wait are tried again when a related entity changes, but a parent
-- committed by another session while the row's own transaction was still
-- open is not seen by either. The job tries every waiting row again first,
-- so such a row waits at most until the next run. Returns how many of them
-- the copies took.
CREATE FUNCTION m365.retry_waiting_sources()
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '100ms'  -- (the application's sessions come first; what is locked waits for the next run)
AS $$
DECLARE
    before  bigint := (SELECT pg_catalog.count(*) FROM m365.source_waiting);
    waiting text;
    k1      bigint[];
    k2      bigint[];
BEGIN
    IF before OPERATOR(pg_catalog.=) 0 THEN
        RETURN 0;
    END IF;
    FOR waiting IN SELECT DISTINCT w.entity FROM m365.source_waiting AS w LOOP
        SELECT pg_catalog.array_agg(w.key[1] ORDER BY w.key), pg_catalog.array_agg(w.key[2] ORDER BY w.key)
          INTO k1, k2 FROM m365.source_waiting AS w WHERE w.entity OPERATOR(pg_catalog.=) waiting;
        BEGIN
            PERFORM m365.source_sync(waiting, k1, k2, false);
        EXCEPTION WHEN OTHERS THEN
            UPDATE m365.source AS x SET broken = 'waiting rows could not be tried again: ' OPERATOR(pg_catalog.||) SQLERRM
             WHERE x.entity OPERATOR(pg_catalog.=) waiting;
        END;
    END LOOP;
    RETURN before OPERATOR(pg_catalog.-) (SELECT pg_catalog.count(*) FROM m365.source_waiting);
END
$$;
COMMENT ON FUNCTION m365.retry_waiting_sources() IS
'Tries every row of an attached source that waits again (the job does it first); returns how many the copies took';
REVOKE ALL ON FUNCTION m365.retry_waiting_sources() FROM PUBLIC;
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.retry_waiting_sources()');

-- An attached entity's copy is written by its source only: a direct write
-- would be undone, or kept, by chance. (The owner and superusers may: a
-- restore writes the copies as they were dumped.)
CREATE FUNCTION m365.refuse_write_to_attached_copy()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    attached regclass;
BEGIN
    SELECT x.source INTO attached FROM m365.source AS x WHERE x.entity OPERATOR(pg_catalog.=) TG_TABLE_NAME::text;
    IF FOUND AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)
       AND CURRENT_USER OPERATOR(pg_catalog.<>) (SELECT e.extowner::regrole::name FROM pg_catalog.pg_extension AS e
                                                 WHERE e.extname OPERATOR(pg_catalog.=) 'm365_usernames') THEN
        RAISE EXCEPTION 'm365.% is attached to %: write that table', TG_TABLE_NAME, attached
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'm365.detach_source to write m365.' OPERATOR(pg_catalog.||) TG_TABLE_NAME OPERATOR(pg_catalog.||) ' directly again.';
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION m365.refuse_write_to_attached_copy() FROM PUBLIC;
-- A school's or location's configuration and domain stay the administrators'
-- to set on the copy: only the columns its source feeds are refused.
CREATE TRIGGER school_written_by_its_source
    BEFORE INSERT OR UPDATE OF id, name OR DELETE OR TRUNCATE ON m365.school
    FOR EACH STATEMENT EXECUTE FUNCTION m365.refuse_write_to_attached_copy();
CREATE TRIGGER location_written_by_its_source
    BEFORE INSERT OR UPDATE OF id, school_id, name OR DELETE OR TRUNCATE ON m365.location
    FOR EACH STATEMENT EXECUTE FUNCTION m365.refuse_write_to_attached_copy();
CREATE TRIGGER student_written_by_its_source
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON m365.student
    FOR EACH STATEMENT EXECUTE FUNCTION m365.refuse_write_to_attached_copy();
CREATE TRIGGER class_written_by_its_source
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON m365.class
    FOR EACH STATEMENT EXECUTE FUNCTION m365.refuse_write_to_attached_copy();
CREATE TRIGGER enrolment_written_by_its_source
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON m365.enrolment
    FOR EACH STATEMENT EXECUTE FUNCTION m365.refuse_write_to_attached_copy();
CREATE TRIGGER staff_written_by_its_source
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON m365.staff
    FOR EACH STATEMENT EXECUTE FUNCTION m365.refuse_write_to_attached_copy();
CREATE TRIGGER staff_school_written_by_its_source
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON m365.staff_school
    FOR EACH STATEMENT EXECUTE FUNCTION m365.refuse_write_to_attached_copy();
CREATE TRIGGER class_teacher_written_by_its_source
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON m365.class_teacher
    FOR EACH STATEMENT EXECUTE FUNCTION m365.refuse_write_to_attached_copy();
