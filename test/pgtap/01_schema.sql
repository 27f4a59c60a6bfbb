-- The extension's objects: schema, tables, keys, functions and their properties.
BEGIN;
SELECT plan(91);

SELECT has_extension('m365_usernames');
SELECT has_schema('m365');
SELECT is((SELECT extrelocatable FROM pg_extension WHERE extname = 'm365_usernames'), false, 'not relocatable');
SELECT isnt(obj_description((SELECT oid FROM pg_extension WHERE extname = 'm365_usernames'), 'pg_extension'), NULL,
            'the extension has a comment for \dx');

SELECT has_table('m365', t, 'table m365.' || t) FROM unnest('{configuration,username,issued_username,reserved_username,school,location,student,class,enrolment,staff,staff_school,class_teacher,username_request,username_failure,username_history,message}'::text[]) AS t;
SELECT isnt(obj_description(('m365.' || t)::regclass, 'pg_class'), NULL, 'm365.' || t || ' has a comment')
  FROM unnest('{configuration,username,issued_username,reserved_username,school,location,student,class,enrolment,staff,staff_school,class_teacher,username_request,username_failure,username_history,message}'::text[]) AS t;

SELECT col_is_pk('m365', 'configuration', 'id', 'configuration.id is the key');
SELECT col_is_pk('m365', 'username', 'id', 'username.id is the key');
SELECT col_is_pk('m365', 'issued_username', ARRAY['configuration_id', 'local_part'], 'issued names are unique per configuration');
SELECT col_is_pk('m365', 'reserved_username', ARRAY['configuration_id', 'local_part'], 'reserved names are unique per configuration');
SELECT col_is_unique('m365', 'configuration', ARRAY['name'], 'configuration names are unique');
SELECT col_is_unique('m365', 'username', ARRAY['configuration_id', 'local_part'], 'a local part is unique per configuration');
SELECT col_is_unique('m365', 'username', ARRAY['configuration_id', 'person_kind', 'person_id'], 'one username per person and configuration');
SELECT fk_ok('m365', 'username', 'configuration_id', 'm365', 'configuration', 'id');
SELECT col_not_null('m365', 'username', c, 'username.' || c || ' is NOT NULL')
  FROM unnest('{configuration_id,person_kind,person_id,username,local_part,sync,created_at,updated_at}'::text[]) AS c;
SELECT col_default_is('m365', 'username', 'sync', 'false', 'sync is off when a username is created');
SELECT is((SELECT attgenerated FROM pg_attribute WHERE attrelid = 'm365.username'::regclass AND attname = 'local_part'),
          's', 'local_part is a stored generated column');

SELECT volatility_is('m365', 'make_username', ARRAY['text', 'text', 'text'], 'stable',
                     'make_username is STABLE: its output depends on the ICU version');
SELECT is_strict('m365', 'make_username', ARRAY['text', 'text', 'text'], 'make_username is STRICT');
SELECT is((SELECT proparallel FROM pg_proc WHERE oid = 'm365.make_username(text,text,text)'::regprocedure), 's',
          'make_username is PARALLEL SAFE');
SELECT volatility_is('m365', 'username_is_valid', ARRAY['text'], 'immutable');
SELECT is_strict('m365', 'username_is_valid', ARRAY['text']);
SELECT function_returns('m365', 'first_free_username', ARRAY['bigint', 'text'], 'text');

-- Every function the extension creates has a pinned search_path or is C.
SELECT is_empty($$
    SELECT p.oid::regprocedure::text
      FROM pg_proc p
      JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
      JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'm365_usernames'
      JOIN pg_language l ON l.oid = p.prolang
     WHERE l.lanname <> 'c'
       AND NOT coalesce(p.proconfig @> '{"search_path=pg_catalog, pg_temp"}', false)
       -- Inlined on purpose (a SET clause prevents inlining); schema-qualified bodies.
       AND p.oid NOT IN ('m365.sds_problem(text,text,text,boolean,boolean)'::regprocedure, 'm365.school_year(date)'::regprocedure,
                         'm365.local_date(text)'::regprocedure, 'm365.configuration_today(bigint)'::regprocedure,
                         'm365.username_is_free(bigint,text,text,bigint)'::regprocedure,
                         'm365.username_freedom(bigint,text,text,bigint)'::regprocedure,
                         'm365.highest_suffix_row(bigint,text)'::regprocedure,
                         'm365.forgotten_name_hash(text)'::regprocedure, 'm365.highest_suffix(bigint,text)'::regprocedure,
                         'm365.names_digest(text,text)'::regprocedure, 'm365.corrected_base(text,text,text,integer,bytea,text,text)'::regprocedure,
                         'm365.name_key(text,text)'::regprocedure, 'm365.tenant_account_is_not_theirs(text,bigint,text,bigint)'::regprocedure,
                         'm365.people_needing_username(bigint[],bigint[])'::regprocedure,
                         'm365.generation_names_to_store()'::regprocedure,
                         'm365.source_columns(text)'::regprocedure, 'm365.source_children(text)'::regprocedure,
                         -- A procedure that commits cannot carry SET: it names everything in full.
                         'm365.generate_usernames()'::regprocedure)
$$, 'every SQL and PL/pgSQL function pins search_path, but the seventeen inlined on purpose and the job''s procedure');

-- pg_dump keeps the user data.
SELECT set_eq($$
    SELECT unnest(extconfig)::regclass::text FROM pg_extension WHERE extname = 'm365_usernames'
$$, ARRAY['m365.configuration', 'm365.configuration_id_seq', 'm365.username', 'm365.username_id_seq',
          'm365.issued_username', 'm365.reserved_username', 'm365.school', 'm365.location', 'm365.student',
          'm365.class', 'm365.enrolment', 'm365.staff', 'm365.staff_school', 'm365.class_teacher',
          'm365.username_history', 'm365.username_history_id_seq', 'm365.sds_reader', 'm365.access_role',
          'm365.job_run', 'm365.job_run_id_seq',
          'm365.sds_record', 'm365.sds_record_id_seq', 'm365.sds_record_head', 'm365.sds_record_user', 'm365.sds_record_membership',
          'm365.sds_hold', 'm365.sds_approval', 'm365.sds_approval_id_seq',
          'm365.forget_key', 'm365.forgotten_username', 'm365.forgotten_person', 'm365.forgotten_person_id_seq', 'm365.person_in_feed',
          'm365.tenant_account', 'm365.tenant_adoption', 'm365.tenant_adoption_id_seq',
          'm365.departed_person', 'm365.username_hold', 'm365.source', 'm365.source_waiting', 'm365.source_decided'],
   'the tables holding user data are dumped by pg_dump');

-- School data keys and rules.
SELECT col_is_pk('m365', t, 'id', 'm365.' || t || '.id is the application''s key')
  FROM unnest('{school,location,student,class,enrolment,staff}'::text[]) AS t;
SELECT col_is_pk('m365', 'username_request', 'id', 'log rows have an id: a run deletes exactly the rows it read');
SELECT col_is_pk('m365', 'username_failure', ARRAY['configuration_id', 'person_kind', 'person_id'], 'one failure per person and configuration');
SELECT fk_ok('m365', 'enrolment', ARRAY['class_id', 'location_id'], 'm365', 'class', ARRAY['id', 'location_id']);
SELECT has_check('m365', 'enrolment', 'an enrolment''s end is checked against its start');

-- The job and its schedule: explicit, never a side effect of CREATE EXTENSION.
SELECT is((SELECT prokind FROM pg_proc WHERE oid = 'm365.generate_usernames()'::regprocedure), 'p',
          'the job is a procedure (it commits per chunk)');
SELECT is((SELECT prosecdef OR proconfig IS NOT NULL FROM pg_proc WHERE oid = 'm365.generate_usernames()'::regprocedure), false,
          'the job''s procedure runs as its caller without SET (either would forbid COMMIT)');
-- One rule for who needs a username: the end-date predicate ("has not ended
-- by today in the configuration's time zone") lives in one function.
SELECT is(ARRAY(SELECT p.oid::regprocedure::text
                  FROM pg_proc p
                  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
                  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'm365_usernames'
                 WHERE p.prokind <> 'a'
                   AND pg_get_functiondef(p.oid) ~ 'end_date\s*(OPERATOR\(pg_catalog\.>=\)|>=)\s*\(?\s*m365\.(local_date|configuration_today)\('),
          ARRAY['m365.people_needing_username(bigint[],bigint[])'],
          'the end-date predicate of who needs a username is written in exactly one function');
-- One rule for "this tenant account is not this person's" (nobody's known, or
-- someone else's): every check asks m365.tenant_account_is_not_theirs.
SELECT is(ARRAY(SELECT x.name FROM (
                  SELECT p.oid::regprocedure::text AS name, pg_get_functiondef(p.oid) AS src
                    FROM pg_proc p
                    JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
                    JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'm365_usernames'
                   WHERE p.prokind <> 'a'
                  UNION ALL
                  SELECT c.oid::regclass::text, pg_get_viewdef(c.oid)
                    FROM pg_class c
                    JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
                    JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'm365_usernames'
                   WHERE c.relkind = 'v') AS x
                 WHERE x.src ~ 'owner_kind\s+IS\s+NULL\)?\s+OR|owner_kind\s+IS\s+DISTINCT\s+FROM'),
          ARRAY['m365.tenant_account_is_not_theirs(text,bigint,text,bigint)'],
          'whether a tenant account is not a person''s is written in exactly one function');
CREATE FUNCTION pg_temp.plan_of(query text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE line text; plan text := '';
BEGIN
    FOR line IN EXECUTE 'EXPLAIN ' || query LOOP plan := plan || line || E'\n'; END LOOP;
    RETURN plan;
END $$;
SELECT doesnt_match(pg_temp.plan_of($$SELECT * FROM m365.people_needing_username(ARRAY[1::bigint], ARRAY[2::bigint])$$),
              'Function Scan', 'the rule is inlined into its caller''s query (no call per row)');
SELECT doesnt_match(pg_temp.plan_of($$SELECT (SELECT f.is_free FROM m365.username_freedom(c, 'x', NULL, NULL) AS f)
                                       FROM generate_series(1, 3) AS c$$),
              'Function Scan on username_freedom', '"never reused" is inlined into the job''s set queries (a call per candidate cost four times its probes)');
SELECT doesnt_match(pg_temp.plan_of($$SELECT (SELECT h.highest FROM m365.highest_suffix_row(c, 'x') AS h)
                                       FROM generate_series(1, 3) AS c$$),
              'Function Scan on highest_suffix_row', 'and so is the highest suffix of a base');
SELECT is_empty($$ SELECT evtname FROM pg_event_trigger WHERE evtfoid::regprocedure::text LIKE 'm365.%' $$,
                'no event trigger: the extension never acts on someone else''s DDL');
SELECT is_empty($$ SELECT p.oid::regprocedure FROM pg_proc p WHERE p.proname LIKE 'generation\_%'
                     AND p.pronamespace = 'm365'::regnamespace AND has_function_privilege('public', p.oid, 'EXECUTE') $$,
                'the job''s internal steps are not executable by PUBLIC');

-- What CREATE and DROP EXTENSION do to pg_cron, inside this transaction:
-- nothing; m365.schedule_jobs() and m365.unschedule_jobs() do it.
SELECT is(m365.unschedule_jobs(), 2, 'unschedule_jobs() removes the two jobs of this database (docs: before DROP EXTENSION)');
SELECT lives_ok('DROP EXTENSION m365_usernames CASCADE', 'DROP EXTENSION');
SELECT lives_ok('CREATE EXTENSION m365_usernames', 'CREATE EXTENSION again');
SELECT is_empty($$ SELECT FROM cron.job WHERE jobname LIKE 'm365\_%' AND database = current_database() $$,
                'CREATE EXTENSION scheduled nothing');
SELECT is((SELECT count(*)::int FROM m365.schedule_jobs()), 2, 'm365.schedule_jobs() schedules two jobs');
SELECT results_eq($$ SELECT schedule, command FROM cron.job WHERE jobname = 'm365_generate_usernames@' || current_database() AND database = current_database() $$,
                  $$ VALUES ('*/15 * * * *'::text, 'CALL m365.generate_usernames()'::text) $$,
                  'the job every 15 minutes, named after the database');
SELECT results_eq($$ SELECT schedule, command FROM cron.job WHERE jobname = 'm365_retention@' || current_database() AND database = current_database() $$,
                  $$ VALUES ('30 3 * * *'::text, 'SELECT m365.apply_retention()'::text) $$,
                  'and the removal of old SDS records every night');
SELECT is(m365.job_name('m365_generate_usernames') = 'm365_generate_usernames@' || current_database(), true,
          'job_name(): job@database');
SELECT cmp_ok(octet_length(m365.job_name('m365_generate_usernames', repeat('ë', 40))), '<=', 63,
              'a long database name is hashed to fit pg_cron''s 63 bytes');
SELECT set_eq($$ SELECT c.relname::text FROM pg_class c WHERE c.relnamespace = 'm365_sds'::regnamespace $$,
              ARRAY['orgs', 'users', 'roles', 'classes', 'enrollments', 'academicSessions', 'left_out', 'scope', 'feed'],
              'm365_sds holds the six SDS files, left_out, scope and the whole feed');

SELECT * FROM finish();
ROLLBACK;
