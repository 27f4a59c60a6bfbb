-- An SDS reader role reads m365_sds and nothing else, and only its own
-- configuration: two tenants in one database never see each other.
BEGIN;
SELECT plan(24);
\ir lib/session.psql


INSERT INTO m365.configuration (id, name) VALUES (910001, 'tenant A'), (910002, 'tenant B');
INSERT INTO m365.school (id, name, configuration_id, staff_domain) VALUES (910001, 'A', 910001, 'a.be'), (910002, 'B', 910002, 'b.be');
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain)
VALUES (910001, 910001, 'A', 910001, 'leerling.a.be'), (910002, 910002, 'B', 910002, 'leerling.b.be');
INSERT INTO m365.student (id, first_name, last_name) SELECT 910000 + i, 'Kind', 'Nr' || i FROM generate_series(1, 30) AS i;
INSERT INTO m365.enrolment (id, student_id, location_id, start_date)
SELECT 910000 + i, 910000 + i, CASE WHEN i <= 20 THEN 910001 ELSE 910002 END, CURRENT_DATE - 10 FROM generate_series(1, 30) AS i;
SELECT m365.generate_usernames_in_transaction();
SELECT m365.set_sync(array_agg(id), true) FROM m365.username WHERE configuration_id IN (910001, 910002);

SELECT lives_ok($$ SELECT m365.create_sds_reader('sds_tenant_a', 910001) $$, 'a reader for tenant A');
SELECT lives_ok($$ SELECT m365.create_sds_reader('sds_tenant_b', 910002) $$, 'a reader for tenant B');
SELECT lives_ok($$ SELECT m365.create_sds_reader('sds_tenant_a', 910001) $$, 'creating it again adopts it');
SELECT throws_ok($$ SELECT m365.create_sds_reader('sds_tenant_a', 910002) $$, '23505', NULL, 'one reader, one configuration');
SELECT throws_ok($$ SELECT m365.create_sds_reader('postgres', 910001) $$, '0LP01', NULL, 'a superuser cannot be a reader');
SELECT throws_ok($$ SELECT m365.create_sds_reader('m365_admin', 910001) $$, '0LP01', NULL, 'nor a role that sees every configuration');
SELECT is((SELECT rolcanlogin FROM pg_roles WHERE rolname = 'sds_tenant_a'), true, 'a reader can log in (the export tool does)');

-- Each sees its own tenant, whatever it sets.
SELECT is(pg_temp.count_as('sds_tenant_a', 'SELECT count(*) FROM m365_sds.users'), 20::bigint, 'tenant A sees its 20 users');
SELECT is(pg_temp.count_as('sds_tenant_b', 'SELECT count(*) FROM m365_sds.users'), 10::bigint, 'tenant B sees its 10 users');
SELECT is(pg_temp.count_as('sds_tenant_a', $$ SELECT count(*) FROM m365_sds.users WHERE username LIKE '%b.be' $$), 0::bigint,
          'none of tenant B''s users are in A''s feed');
SELECT is(pg_temp.count_as('sds_tenant_a', 'SELECT count(*) FROM m365_sds.orgs'), 1::bigint, 'and one org');
SET m365.sds_configuration = 910002;
SELECT is(pg_temp.count_as('sds_tenant_a', $$ SELECT count(*) FROM m365_sds.users WHERE username LIKE '%b.be' $$), 0::bigint,
          'setting m365.sds_configuration does not let a reader see another tenant');
RESET m365.sds_configuration;
SELECT is(pg_temp.as_role('sds_tenant_a', $$ SELECT * FROM m365_sds.roles, m365_sds.classes, m365_sds.enrollments,
                                                m365_sds."academicSessions", m365_sds.left_out LIMIT 1 $$), 'ok',
          'a reader reads every file of the feed');

-- ...and nothing else of the extension.
SELECT is(pg_temp.as_role('sds_tenant_a', 'SELECT * FROM m365.username'), '42501', 'no base table: username');
SELECT is(pg_temp.as_role('sds_tenant_a', 'SELECT * FROM m365.student'), '42501', 'no base table: student');
SELECT is(pg_temp.as_role('sds_tenant_a', 'SELECT * FROM m365.sds_user'), '42501', 'no internal view');
SELECT is(pg_temp.as_role('sds_tenant_a', 'SELECT * FROM m365.sds_reader'), '42501', 'not the reader mapping');
SELECT is(pg_temp.as_role('sds_tenant_a', 'SELECT m365.set_sync(''{1}'', true)'), '42501', 'no writing function');
SELECT is(pg_temp.as_role('sds_tenant_a', 'SELECT m365.generate_usernames_in_transaction()'), '42501', 'not the job');
SELECT is(pg_temp.as_role('sds_tenant_a', 'SET search_path = m365, public; SELECT * FROM username'), '42P01',
          'not through another search_path either: without USAGE the schema is invisible');
SELECT is(pg_temp.as_role('sds_tenant_a', 'CREATE VIEW m365_sds.mine AS SELECT 1'), '42501', 'cannot plant a view in m365_sds');
SELECT is(pg_temp.as_role('sds_tenant_a', 'CREATE TABLE public.mine (x int)'), '42501', 'cannot create in public');
SELECT is(pg_temp.as_role('sds_tenant_a', 'DELETE FROM m365_sds.users'), '55000', 'the feed is read-only (not updatable)');
SELECT is(pg_temp.as_role('sds_tenant_a', $$ SELECT m365.create_sds_reader('sds_tenant_c', 910002) $$), '42501',
          'a reader cannot make itself another reader');

SELECT * FROM finish();
ROLLBACK;
