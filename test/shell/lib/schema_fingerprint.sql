-- Everything the extension defines, one line per fact, sorted: what an
-- upgraded database and a fresh install of the same version must agree on.
-- (pg_dump leaves extension members out, so the catalogs are read directly.)
\set ON_ERROR_STOP on
\pset format unaligned
\pset tuples_only on
-- Rights as a sorted list: the order of an ACL is the order of its GRANTs.
CREATE FUNCTION pg_temp.acl(a aclitem[]) RETURNS text LANGUAGE sql
RETURN coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(a) AS x), '-');
WITH member AS (
    SELECT d.classid, d.objid
      FROM pg_depend AS d
      JOIN pg_extension AS e ON e.oid = d.refobjid AND e.extname = 'm365_usernames'
     WHERE d.deptype = 'e' AND d.refclassid = 'pg_extension'::regclass
), facts AS (
    -- Which objects, with their comments.
    SELECT 'object ' || pg_describe_object(classid, objid, 0)
           || coalesce(' -- ' || obj_description(objid, (SELECT relname FROM pg_class WHERE oid = classid)), '') AS fact
      FROM member
    UNION ALL
    -- Functions: body, language, volatility, strictness, settings, security, rights.
    SELECT 'function ' || p.oid::regprocedure::text || ' secdef=' || p.prosecdef || ' acl=' || pg_temp.acl(p.proacl)
           || E'\n' || pg_get_functiondef(p.oid)
      FROM member JOIN pg_proc AS p ON member.classid = 'pg_proc'::regclass AND p.oid = member.objid
     WHERE p.prokind <> 'a'
    UNION ALL
    -- Relations: kind, rights, options.
    SELECT 'relation ' || c.oid::regclass::text || ' kind=' || c.relkind::text || ' acl=' || pg_temp.acl(c.relacl)
           || ' options=' || coalesce(c.reloptions::text, '-')
      FROM member JOIN pg_class AS c ON member.classid = 'pg_class'::regclass AND c.oid = member.objid
    UNION ALL
    -- Columns, in order (their place among the columns a user sees: an update
    -- that re-creates a column leaves a dropped one behind), with types,
    -- defaults, generation and comments.
    SELECT 'column ' || c.oid::regclass::text || '.' || row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum) || ' ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
           || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
           || coalesce(' identity=' || nullif(a.attidentity::text, ''), '')
           || coalesce(' generated=' || nullif(a.attgenerated::text, ''), '')
           || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')
           || coalesce(' collation=' || nullif(a.attcollation, 0)::regcollation::text, '')
           || coalesce(' acl=' || pg_temp.acl(a.attacl), '')
           || coalesce(' -- ' || col_description(c.oid, a.attnum), '')
      FROM member JOIN pg_class AS c ON member.classid = 'pg_class'::regclass AND c.oid = member.objid
      JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_attrdef AS ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
    UNION ALL
    -- Views.
    SELECT 'view ' || c.oid::regclass::text || E'\n' || pg_get_viewdef(c.oid)
      FROM member JOIN pg_class AS c ON member.classid = 'pg_class'::regclass AND c.oid = member.objid
     WHERE c.relkind IN ('v', 'm')
    UNION ALL
    -- Constraints, indexes and triggers of the extension's tables.
    SELECT 'constraint ' || con.conrelid::regclass::text || ' ' || con.conname || ' ' || pg_get_constraintdef(con.oid)
      FROM member JOIN pg_constraint AS con ON member.classid = 'pg_class'::regclass AND con.conrelid = member.objid
    UNION ALL
    SELECT 'index ' || pg_get_indexdef(i.indexrelid)
      FROM member JOIN pg_index AS i ON member.classid = 'pg_class'::regclass AND i.indrelid = member.objid
    UNION ALL
    SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
      FROM member JOIN pg_trigger AS t ON member.classid = 'pg_class'::regclass AND t.tgrelid = member.objid
     WHERE NOT t.tgisinternal
    UNION ALL
    SELECT 'event trigger ' || t.evtname || ' ' || t.evtevent || ' ' || t.evtfoid::regprocedure::text || ' enabled=' || t.evtenabled::text
      FROM member JOIN pg_event_trigger AS t ON member.classid = 'pg_event_trigger'::regclass AND t.oid = member.objid
    UNION ALL
    -- Schemas and their rights.
    SELECT 'schema ' || n.nspname || ' acl=' || pg_temp.acl(n.nspacl) || coalesce(' -- ' || obj_description(n.oid, 'pg_namespace'), '')
      FROM pg_namespace AS n WHERE n.nspname IN ('m365', 'm365_sds', 'm365_work')
    UNION ALL
    -- What pg_dump keeps.
    SELECT 'dumped ' || cfg::regclass::text || ' where ' || coalesce(cond, '')
      FROM pg_extension AS e, unnest(e.extconfig, e.extcondition) AS x(cfg, cond)
     WHERE e.extname = 'm365_usernames'
    UNION ALL
    -- The texts the extension answers with, and the rights of each access
    -- level (rows its script inserts); which roles have a level.
    SELECT 'message ' || m::text FROM m365.message AS m
    UNION ALL
    SELECT 'access rule ' || r::text FROM m365.access_rule AS r
    UNION ALL
    SELECT 'access role ' || r.role_id::text || ' ' || r.level FROM m365.access_role AS r
    UNION ALL
    SELECT 'sds reader ' || r.role_id::text FROM m365.sds_reader AS r
    UNION ALL
    -- The initial privileges pg_dump compares the rights with (what it leaves
    -- out of a dump).
    SELECT 'init privs ' || pg_describe_object(p.classoid, p.objoid, p.objsubid) || ' ' || pg_temp.acl(p.initprivs)
      FROM member JOIN pg_init_privs AS p ON p.classoid = member.classid AND p.objoid = member.objid
    UNION ALL
    -- Where CREATE EXTENSION recorded it, and who owns its schemas.
    SELECT 'extension schema ' || e.extnamespace::regnamespace::text FROM pg_extension AS e WHERE e.extname = 'm365_usernames'
    UNION ALL
    SELECT 'schema owner ' || n.nspname || ' ' || n.nspowner::regrole::text
      FROM pg_namespace AS n WHERE n.nspname IN ('m365', 'm365_sds', 'm365_work')

)
SELECT fact FROM facts ORDER BY fact;
