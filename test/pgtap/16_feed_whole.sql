-- The six files always form a whole (issue 14, point 1), on random data: for
-- each of several seeds, three configurations with schools and locations
-- (some without a domain, some with line breaks, tabs or bidi characters in
-- their names), students with random names (blank, one name, control
-- characters), enrolments that ended, start later or change class inside a
-- location, classes taught by teachers of other schools, inactive staff, and a
-- random half synced. Then, per configuration: every org, user, class and
-- session one file refers to is in the file that defines it, one role row per
-- user, org and role, no control or bidi character in any value, and the
-- whole feed (m365_sds.feed, what the export reads) is the six files computed
-- once.
BEGIN;
SELECT plan(8);
SET LOCAL jit = off;

CREATE TEMP TABLE broken (seed int, configuration_id bigint, what text, n bigint);

CREATE FUNCTION pg_temp.random_name(i int) RETURNS text LANGUAGE sql AS $$
    SELECT (ARRAY['Jan', 'Zoë', 'Дмитрий', E'Mia\nRose', E'Tab\tBed', E'Evil\u202Eliam', '', ' ', 'Van den Broeck',
                  'Nguyễn Văn', E'Ctl\u0001x', 'O''Brien, Jr.', '"Quoted"', E'Sara\u200Cye', E'\u3000'])[1 + (i % 15)]
$$;

CREATE FUNCTION pg_temp.fill_and_check(seed int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    b0 bigint := 916000000 + seed * 100000;
    c bigint;
    calls bigint;
    people bigint;
    places bigint;
BEGIN
    PERFORM setseed(seed / 10.0);
    INSERT INTO m365.configuration (id, name) SELECT b0 + k, 'whole ' || seed || '/' || k FROM generate_series(1, 3) AS k;
    INSERT INTO m365.school (id, name, configuration_id, staff_domain)
    SELECT b0 + 10 + k, 'School ' || k, b0 + 1 + (k % 3), CASE WHEN k % 4 = 0 THEN NULL ELSE 's' || k || '.be' END
      FROM generate_series(1, 6) AS k;
    INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain)
    SELECT b0 + 100 + k, b0 + 10 + 1 + (k % 6),
           (ARRAY['Campus', E'Campus\nNoord', E'Tab\tZuid', E'\u202EEvil', 'Leeg'])[1 + k % 5] || ' ' || k,
           (SELECT s.configuration_id FROM m365.school AS s WHERE s.id = b0 + 10 + 1 + (k % 6)),
           CASE WHEN k % 3 = 0 THEN NULL ELSE 'l' || k || '.be' END
      FROM generate_series(1, 12) AS k;
    INSERT INTO m365.class (id, location_id, name, school_year)
    SELECT b0 + 1000 + k, b0 + 100 + 1 + (k % 12), E'Klas\t' || k, m365.school_year(CURRENT_DATE)
      FROM generate_series(1, 20) AS k;
    INSERT INTO m365.student (id, first_name, last_name)
    SELECT b0 + 10000 + k,
           CASE WHEN random() < 0.1 THEN '' ELSE pg_temp.random_name((random() * 100)::int) END,
           pg_temp.random_name((random() * 100)::int) || ' ' || k
      FROM generate_series(1, 300) AS k;
    -- Enrolments: current, ended, future; and a class change inside a location.
    INSERT INTO m365.enrolment (id, student_id, location_id, class_id, start_date, end_date)
    SELECT e.id, e.student_id, e.location_id, e.class_id, e.start_date,
           CASE WHEN e.r < 0.2 THEN greatest(e.start_date, CURRENT_DATE - (random() * 10)::int) END
      FROM (SELECT b0 + 20000 + k AS id, b0 + 10000 + k AS student_id, l.id AS location_id,
                   (SELECT cl.id FROM m365.class AS cl WHERE cl.location_id = l.id ORDER BY random() LIMIT 1) AS class_id,
                   CURRENT_DATE - (random() * 300)::int + CASE WHEN random() < 0.1 THEN 200 ELSE 0 END AS start_date,
                   random() AS r
              FROM generate_series(1, 300) AS k
              -- Nobody is enrolled in the "Leeg" locations: only teachers of classes there.
              CROSS JOIN LATERAL (SELECT id FROM m365.location WHERE id BETWEEN b0 + 101 AND b0 + 112 AND k > 0
                                     AND (id - b0 - 100) % 5 <> 4
                                    ORDER BY random() LIMIT 1) AS l) AS e;
    INSERT INTO m365.enrolment (id, student_id, location_id, class_id, start_date)
    SELECT e.id + 10000, e.student_id, e.location_id,
           (SELECT cl.id FROM m365.class AS cl WHERE cl.location_id = e.location_id ORDER BY random() LIMIT 1), CURRENT_DATE
      FROM m365.enrolment AS e
     WHERE e.id BETWEEN b0 + 20000 AND b0 + 29999 AND e.end_date = CURRENT_DATE;
    -- Staff in random schools, some inactive, teaching random classes anywhere.
    INSERT INTO m365.staff (id, first_name, last_name, active)
    SELECT b0 + 40000 + k, pg_temp.random_name(k), 'Docent ' || k, random() < 0.8 FROM generate_series(1, 30) AS k;
    INSERT INTO m365.staff_school (staff_id, school_id)
    SELECT DISTINCT b0 + 40000 + k, b0 + 10 + 1 + ((k * 7 + j) % 6) FROM generate_series(1, 30) AS k, generate_series(0, 1) AS j
     WHERE random() < 0.7;
    INSERT INTO m365.class_teacher (class_id, staff_id)
    SELECT DISTINCT b0 + 1000 + 1 + (random() * 19)::int, b0 + 40000 + k FROM generate_series(1, 30) AS k;
    PERFORM m365.generate_usernames_in_transaction();
    PERFORM m365.set_sync(array_agg(u.id), true) FROM m365.username AS u
     WHERE u.configuration_id BETWEEN b0 + 1 AND b0 + 3 AND random() < 0.6;
    FOR c IN SELECT id FROM m365.configuration WHERE id BETWEEN b0 + 1 AND b0 + 3 LOOP
        PERFORM set_config('m365.sds_configuration', c::text, true);
        INSERT INTO broken
        SELECT seed, c, 'dangling org', count(*) FROM (
            SELECT "orgSourcedId" FROM m365_sds.roles UNION SELECT "orgSourcedId" FROM m365_sds.classes
            EXCEPT SELECT "sourcedId" FROM m365_sds.orgs) AS d
        UNION ALL
        SELECT seed, c, 'dangling user', count(*) FROM (
            SELECT "userSourcedId" FROM m365_sds.roles UNION SELECT "userSourcedId" FROM m365_sds.enrollments
            EXCEPT SELECT "sourcedId" FROM m365_sds.users) AS d
        UNION ALL
        SELECT seed, c, 'dangling class', count(*) FROM (
            SELECT "classSourcedId" FROM m365_sds.enrollments EXCEPT SELECT "sourcedId" FROM m365_sds.classes) AS d
        UNION ALL
        SELECT seed, c, 'dangling session', count(*) FROM (
            SELECT "sessionSourcedId" FROM m365_sds.roles UNION SELECT "sessionSourcedIds" FROM m365_sds.classes
            EXCEPT SELECT "sourcedId" FROM m365_sds."academicSessions") AS d
        UNION ALL
        SELECT seed, c, 'duplicate role', count(*) FROM (
            SELECT 1 FROM m365_sds.roles GROUP BY "userSourcedId", "orgSourcedId", "role" HAVING count(*) > 1) AS d
        UNION ALL
        SELECT seed, c, 'bad character', count(*) FROM (
            SELECT t::text AS r FROM m365_sds.orgs AS t UNION ALL SELECT t::text FROM m365_sds.users AS t
            UNION ALL SELECT t::text FROM m365_sds.classes AS t) AS x
         WHERE r ~ E'[\\x01-\\x1f\\x7f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f]'
        UNION ALL
        SELECT seed, c, 'users', count(*) FROM m365_sds.users
        UNION ALL
        SELECT seed, c, 'class-only orgs', count(*) FROM (
            SELECT "orgSourcedId" FROM m365_sds.classes EXCEPT SELECT "orgSourcedId" FROM m365_sds.roles) AS d
        UNION ALL
        -- The whole feed is the six files' views, row for row.
        SELECT seed, c, 'feed differs', count(*) FROM (
            (SELECT f.file, f.c1, f.c2, f.c3, f.c4, f.c5, f.c6, f.c7, f.c8, f.c9 FROM m365_sds.feed AS f WHERE f.file <> 'left_out'
             EXCEPT ALL
             (SELECT 'users', u.* FROM m365_sds.users AS u
              UNION ALL SELECT 'roles', r.*, NULL FROM m365_sds.roles AS r
              UNION ALL SELECT 'orgs', o.*, NULL, NULL, NULL, NULL, NULL FROM m365_sds.orgs AS o
              UNION ALL SELECT 'classes', k.*, NULL, NULL, NULL, NULL FROM m365_sds.classes AS k
              UNION ALL SELECT 'enrollments', e.*, NULL, NULL, NULL, NULL, NULL, NULL FROM m365_sds.enrollments AS e
              UNION ALL SELECT 'academicSessions', a.*, NULL, NULL, NULL FROM m365_sds."academicSessions" AS a))
            UNION ALL
            (SELECT 'users', u.* FROM m365_sds.users AS u
             EXCEPT ALL SELECT f.file, f.c1, f.c2, f.c3, f.c4, f.c5, f.c6, f.c7, f.c8, f.c9 FROM m365_sds.feed AS f)) AS d;
        -- Computed once (what the export reads): every candidate's names are
        -- made once, every org's and class's name once. Six files that each
        -- computed the user set made them again for each.
        PERFORM set_config('track_functions', 'all', true);
        calls := coalesce((SELECT s.calls FROM pg_stat_xact_user_functions AS s WHERE s.funcid = 'm365.feed_text(text)'::regprocedure), 0);
        SELECT count(*) FILTER (WHERE f.file IN ('users', 'left_out')), count(*) FILTER (WHERE f.file IN ('orgs', 'classes'))
          INTO people, places FROM m365_sds.feed AS f;
        calls := coalesce((SELECT s.calls FROM pg_stat_xact_user_functions AS s WHERE s.funcid = 'm365.feed_text(text)'::regprocedure), 0) - calls;
        INSERT INTO broken VALUES (seed, c, 'names made', calls), (seed, c, 'names made more than once', calls - (2 * people + places));
    END LOOP;
    PERFORM set_config('m365.sds_configuration', '', true);
END
$$;

SELECT pg_temp.fill_and_check(s) FROM generate_series(1, 5) AS s;

SELECT cmp_ok((SELECT sum(n)::int FROM broken WHERE what = 'users'), '>', 100,
              'the random feeds hold users (15 configurations over 5 seeds)');
SELECT is_empty($$ SELECT seed, configuration_id, what, n FROM broken WHERE what LIKE 'dangling%' AND n > 0 $$,
                'no file refers to an org, user, class or session another file does not define');
SELECT is_empty($$ SELECT seed, configuration_id, n FROM broken WHERE what = 'duplicate role' AND n > 0 $$,
                'one role row per user, org and role');
SELECT is_empty($$ SELECT seed, configuration_id, n FROM broken WHERE what = 'bad character' AND n > 0 $$,
                'no control, bidi or line-separator character in orgs, users or classes');
SELECT cmp_ok((SELECT sum(n)::int FROM broken WHERE what = 'class-only orgs'), '>', 0,
              'the data has classes in locations where nobody has a role (their orgs are in orgs.csv, above)');

SELECT is_empty($$ SELECT seed, configuration_id, n FROM broken WHERE what = 'feed differs' AND n > 0 $$,
                'm365_sds.feed is the six files'' views, row for row');
SELECT cmp_ok((SELECT sum(n)::int FROM broken WHERE what = 'names made'), '>', 200,
              'reading m365_sds.feed makes the names (counted with track_functions)');
SELECT is_empty($$ SELECT seed, configuration_id, n FROM broken WHERE what = 'names made more than once' AND n <> 0 $$,
                'the whole feed is computed once: each candidate''s two names, each org''s and class''s name made once');

SELECT * FROM finish();
ROLLBACK;
