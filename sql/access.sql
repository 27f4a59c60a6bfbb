-- Access levels: the extension creates no role and grants nothing; the DBA
-- gives roles a level per database with m365.grant_access.
BEGIN;
CREATE ROLE regress_access_app NOLOGIN;
CREATE ROLE regress_access_admin NOLOGIN;
CREATE ROLE regress_access_super NOLOGIN SUPERUSER;
CREATE ROLE regress_access_creator NOLOGIN CREATEROLE;
CREATE ROLE regress_access_reads_all NOLOGIN IN ROLE pg_read_all_data;
CREATE ROLE regress_access_group NOLOGIN IN ROLE regress_access_super;

-- A fresh install: no role other than the owner has a right on the
-- extension's tables, views, sequences and schemas, and PUBLIC executes only
-- the pure functions (and what the feed's views call).
SELECT count(*) AS granted_relations
  FROM pg_class AS c, aclexplode(c.relacl) AS a
 WHERE c.relnamespace IN ('m365'::regnamespace, 'm365_sds'::regnamespace) AND a.grantee <> c.relowner;
SELECT count(*) AS granted_schemas
  FROM pg_namespace AS n, aclexplode(n.nspacl) AS a
 WHERE n.nspname IN ('m365', 'm365_sds') AND a.grantee <> n.nspowner;
SELECT p.oid::regprocedure AS callable_by_public
  FROM pg_proc AS p
 WHERE p.pronamespace = 'm365'::regnamespace AND has_function_privilege('public', p.oid, 'EXECUTE')
   AND p.prorettype <> 'trigger'::regtype
 ORDER BY 1;

-- app: school data and the administration functions; not the job, not the feed.
SELECT m365.grant_access('regress_access_app', 'app');
SELECT has_table_privilege('regress_access_app', 'm365.student', 'INSERT') AS writes_students,
       has_table_privilege('regress_access_app', 'm365.username', 'UPDATE') AS writes_usernames,
       has_function_privilege('regress_access_app', 'm365.set_username(bigint, text, boolean)', 'EXECUTE') AS edits,
       has_function_privilege('regress_access_app', 'm365.generate_usernames_in_transaction()', 'EXECUTE') AS runs_job,
       has_table_privilege('regress_access_app', 'm365_sds.users', 'SELECT') AS reads_feed,
       has_table_privilege('regress_access_app', 'm365.configuration', 'UPDATE') AS writes_configurations;
-- admin: app, plus configurations, reserved names, the job and the feed.
SELECT m365.grant_access('regress_access_admin', 'admin');
SELECT has_table_privilege('regress_access_admin', 'm365.student', 'INSERT') AS writes_students,
       has_function_privilege('regress_access_admin', 'm365.generate_usernames_in_transaction()', 'EXECUTE') AS runs_job,
       has_table_privilege('regress_access_admin', 'm365_sds.users', 'SELECT') AS reads_feed,
       has_table_privilege('regress_access_admin', 'm365.configuration', 'UPDATE') AS writes_configurations,
       has_function_privilege('regress_access_admin', 'm365.grant_access(regrole, text)', 'EXECUTE') AS grants_access;
SELECT role_id, level FROM m365.access_role ORDER BY role_id::text;
-- A lower level takes the higher level's rights away; revoke_access takes all.
SELECT m365.grant_access('regress_access_admin', 'app');
SELECT has_function_privilege('regress_access_admin', 'm365.generate_usernames_in_transaction()', 'EXECUTE') AS runs_job,
       has_table_privilege('regress_access_admin', 'm365.student', 'INSERT') AS writes_students;
SELECT m365.revoke_access('regress_access_admin') AS had_a_level, m365.revoke_access('regress_access_admin') AS again;
SELECT count(*) AS rights_left
  FROM pg_class AS c, aclexplode(c.relacl) AS a
 WHERE c.relnamespace IN ('m365'::regnamespace, 'm365_sds'::regnamespace)
   AND a.grantee = 'regress_access_admin'::regrole;

-- What is refused, and why.
\set VERBOSITY terse
SAVEPOINT refused;
SELECT m365.grant_access('regress_access_app', 'owner');
ROLLBACK TO refused;
SELECT m365.grant_access('regress_access_app', NULL);
ROLLBACK TO refused;
SELECT m365.grant_access(NULL, 'app');
ROLLBACK TO refused;
SELECT m365.grant_access('regress_access_super', 'app');
ROLLBACK TO refused;
SELECT m365.grant_access('regress_access_creator', 'admin');
ROLLBACK TO refused;
SELECT m365.grant_access('regress_access_reads_all', 'app');
ROLLBACK TO refused;
SELECT m365.grant_access('regress_access_group', 'app');
ROLLBACK TO refused;
SELECT m365.grant_access('pg_read_all_data', 'app');
ROLLBACK TO refused;
SELECT m365.grant_access('no_such_role', 'app');
ROLLBACK TO refused;
\set VERBOSITY default
ROLLBACK;
