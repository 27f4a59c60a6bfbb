-- The SDS v2.1 feed: exact headers, and the rows of a realistic data set.
\set VERBOSITY terse
SET client_min_messages = warning;
TRUNCATE m365.configuration, m365.school, m365.student, m365.staff, m365.username_request RESTART IDENTITY CASCADE;
RESET client_min_messages;
SET datestyle = ISO;

-- The headers, byte for byte as in Microsoft's SDS v2.1 samples.
SELECT v.file, string_agg(a.attname, ',' ORDER BY a.attnum) = v.header AS header_exact
  FROM (VALUES ('orgs', 'sourcedId,name,type,parentSourcedId'),
               ('users', 'sourcedId,username,givenName,familyName,password,activeDirectoryMatchId,email,phone,sms'),
               ('roles', 'userSourcedId,orgSourcedId,role,sessionSourcedId,grade,isPrimary,roleStartDate,roleEndDate'),
               ('classes', 'sourcedId,orgSourcedId,title,sessionSourcedIds,courseSourcedId'),
               ('enrollments', 'classSourcedId,userSourcedId,role'),
               ('academicSessions', 'sourcedId,title,type,schoolYear,startDate,endDate')) AS v(file, header)
  JOIN pg_attribute AS a ON a.attrelid = ('m365_sds.' || quote_ident(v.file))::regclass AND a.attnum > 0
 GROUP BY v.file, v.header ORDER BY v.file;

INSERT INTO m365.configuration (name) VALUES ('Noord'), ('Zuid');
INSERT INTO m365.school (id, name, configuration_id, staff_domain)
VALUES (1, 'Sint-Jan', 1, 'sintjan.be'), (2, 'Sint-Pieter', 1, NULL), (3, 'Zuidschool', 2, 'zuid.be');
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain)
VALUES (10, 1, 'Campus A', 1, 'leerling.sintjan.be'), (11, 1, 'Campus B', 1, NULL),
       (12, 2, 'Sint-Pieter', 1, 'pieter.be'), (20, 3, 'Zuid', 2, 'leerling.zuid.be');
INSERT INTO m365.class (id, location_id, name, school_year)
VALUES (101, 10, '1A', 2026), (102, 12, '2B', 2026), (103, 10, '3C', 2025), (104, 11, '4D', 2026), (105, 20, '5E', 2026);
INSERT INTO m365.student (id, first_name, last_name) VALUES
    (1, 'Jan', 'Peeters'), (2, 'An', 'Maes'), (3, 'Piet', 'Wouters'), (4, 'Lotte', 'Claes'), (5, 'Emma', 'Jacobs'),
    (6, 'Noah', 'Janssens'), (7, E'Mia\nRose', 'Lemmens'), (8, 'Later', 'Kind');
INSERT INTO m365.enrolment (id, student_id, location_id, class_id, start_date, end_date) VALUES
    (1, 1, 10, 101, '2026-09-01', NULL),
    (2, 2, 10, 101, '2026-09-01', '2026-12-31'),  -- An moves to Sint-Pieter in January
    (3, 2, 12, 102, '2027-01-01', NULL),
    (4, 3, 11, 104, '2026-09-01', NULL),          -- Campus B has no domain
    (5, 4, 11, NULL, '2026-09-01', NULL),         -- ... but Lotte gets a fixed one
    (6, 5, 10, 101, '2026-09-01', NULL),          -- sync stays off
    (7, 6, 20, 105, '2026-09-01', NULL),          -- the other tenant
    (8, 7, 10, 101, '2026-09-01', NULL),          -- a line break in the name
    (9, 8, 10, NULL, '2027-09-01', NULL);         -- starts next year
INSERT INTO m365.staff (id, first_name, last_name) VALUES (1, 'Els', 'Maes'), (2, 'Tom', 'Dierckx'), (3, 'Kris', 'Kaal'),
                                                       (4, 'Zora', 'Zuid');
INSERT INTO m365.staff_school (staff_id, school_id) VALUES (1, 1);
INSERT INTO m365.staff_school (staff_id, school_id) VALUES (1, 2), (2, 1), (3, 2), (4, 3);
INSERT INTO m365.class_teacher (class_id, staff_id) VALUES (101, 1), (102, 1), (101, 2), (105, 4);
SELECT m365.generate_usernames_in_transaction();
-- Campus B sets no domain, so none can be typed for Lotte (0.2.0 took one
-- because Campus A has one); a fixed domain written earlier still goes out.
SELECT username FROM m365.set_username((SELECT id FROM m365.username WHERE person_kind = 'student' AND person_id = 4),
                                       'lotte.claes@sintjan.be');
UPDATE m365.username SET username = 'lotte.claes@sintjan.be' WHERE person_kind = 'student' AND person_id = 4;
UPDATE m365.staff SET active = false, inactive_since = '2027-02-01' WHERE id = 2;
SELECT m365.set_sync(array_agg(id), true) FROM m365.username WHERE NOT (person_kind = 'student' AND person_id = 5);

-- Configuration Noord on 1 March 2027.
SET m365.sds_configuration = 1;
SET m365.sds_on_date = '2027-03-01';
SELECT * FROM m365_sds.orgs ORDER BY 1;
SELECT * FROM m365_sds.users ORDER BY 1;
SELECT * FROM m365_sds.left_out ORDER BY 1;
SELECT * FROM m365_sds.roles ORDER BY 1, 2;
SELECT * FROM m365_sds.classes ORDER BY 1;
SELECT * FROM m365_sds.enrollments ORDER BY 1, 2;
SELECT * FROM m365_sds."academicSessions" ORDER BY 1;
-- No value with a line break anywhere.
SELECT count(*) AS line_breaks FROM (
    SELECT t::text AS r FROM m365_sds.orgs AS t UNION ALL SELECT t::text FROM m365_sds.users AS t
    UNION ALL SELECT t::text FROM m365_sds.roles AS t UNION ALL SELECT t::text FROM m365_sds.classes AS t
    UNION ALL SELECT t::text FROM m365_sds.enrollments AS t UNION ALL SELECT t::text FROM m365_sds."academicSessions" AS t) AS x
 WHERE r ~ '[\r\n]';
-- orgs restates the roles' joins (without their numbering): it must name
-- exactly the locations roles.csv uses, on every day and in every tenant below.
CREATE TEMP VIEW orgs_vs_roles AS
SELECT (SELECT count(*) FROM (SELECT "sourcedId" FROM m365_sds.orgs
                              EXCEPT SELECT "orgSourcedId" FROM m365_sds.roles) AS a)
     + (SELECT count(*) FROM (SELECT "orgSourcedId" FROM m365_sds.roles WHERE "orgSourcedId" IN
                                  (SELECT 'location-' || id FROM m365.location WHERE name !~ '[\r\n]')
                              EXCEPT SELECT "sourcedId" FROM m365_sds.orgs) AS b) AS orgs_not_matching_roles;
SELECT * FROM orgs_vs_roles;

-- In December An was still in Campus A.
SET m365.sds_on_date = '2026-12-15';
SELECT * FROM m365_sds.roles WHERE "userSourcedId" = 'student-2';
SELECT * FROM orgs_vs_roles;
SELECT * FROM m365_sds.enrollments WHERE "userSourcedId" = 'student-2';

-- The other tenant sees only its own.
SET m365.sds_configuration = 2;
SET m365.sds_on_date = '2027-03-01';
SELECT * FROM m365_sds.users ORDER BY 1;
SELECT * FROM m365_sds.orgs ORDER BY 1;
SELECT * FROM orgs_vs_roles;
-- No configuration chosen: nothing.
RESET m365.sds_configuration;
SELECT count(*) AS rows_without_configuration FROM m365_sds.users;

-- What changes between two feeds: the record of what SDS received is made
-- by the export, of today's feed (test/pgtap/24_sds_record.sql).
SET m365.sds_on_date = '2027-03-01';
SELECT username FROM m365.set_username((SELECT id FROM m365.username WHERE person_kind = 'student' AND person_id = 1), 'jan.peeters');
SELECT m365.set_sync(ARRAY[(SELECT id FROM m365.username WHERE person_kind = 'student' AND person_id = 3)], false);
SELECT m365.set_sync(ARRAY[(SELECT id FROM m365.username WHERE person_kind = 'student' AND person_id = 5)], true);
DELETE FROM m365.class_teacher WHERE class_id = 102;
RESET m365.sds_on_date;

-- A class change inside one location (one enrolment ends the day the next
-- starts): one role row per user, org and role, the dates merged (0.2.0 gave
-- two student rows for the same user and org).
UPDATE m365.enrolment SET end_date = '2027-04-01' WHERE id = 1;
INSERT INTO m365.class (id, location_id, name, school_year) VALUES (106, 10, '1B', 2026);
INSERT INTO m365.enrolment (id, student_id, location_id, class_id, start_date, end_date)
VALUES (10, 1, 10, 106, '2027-04-01', '2027-06-30');
SET m365.sds_configuration = 1;
SET m365.sds_on_date = '2027-04-01';
SELECT * FROM m365_sds.roles WHERE "userSourcedId" = 'student-1';
SELECT "userSourcedId", "orgSourcedId", "role", count(*) AS rows
  FROM m365_sds.roles GROUP BY 1, 2, 3 HAVING count(*) > 1;
SELECT * FROM m365_sds.enrollments WHERE "userSourcedId" = 'student-1' ORDER BY 1;
SELECT * FROM orgs_vs_roles;
RESET m365.sds_on_date;
RESET m365.sds_configuration;

-- Names SDS chokes on are normalised in the feed (issue 14, point 5): NFC,
-- white space collapsed and trimmed, control and bidi characters removed,
-- joiners kept. A location or class whose name holds a line break stays in
-- the files (0.2.0 left the location out of orgs.csv while roles.csv still
-- pointed to it). A person with one name has it as both; with none left
-- after normalising, they are left out with the reason.
INSERT INTO m365.configuration (id, name) VALUES (3, 'Namen');
INSERT INTO m365.school (id, name, configuration_id, staff_domain) VALUES (4, 'Namenschool', 3, 'namen.be');
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain)
VALUES (40, 4, E'Campus\nNoord', 3, 'leerling.namen.be'), (41, 4, E'\u2028', 3, 'leerling.namen.be');
INSERT INTO m365.class (id, location_id, name, school_year) VALUES (401, 40, E'1A\t(Latijn)\r\n', 2026);
INSERT INTO m365.student (id, first_name, last_name) VALUES
    (41, E'Tab\tBed', E'Naam\u2028Twee'),
    (42, E'Zoe\u0308', E'Evil\u202Eliam\u202C'),
    (43, '-', 'Soekarno'),
    (44, E'\u3000', E'\t'),
    (45, E'Sara\u200Cye', E'\u200FRezaei'),
    (46, E'Ctl\u0001x', E'Maes\u00A0\u00A0Peeters ');
UPDATE m365.student SET first_name = '' WHERE id = 43;
-- A class in a location where nobody has a role, taught by a teacher of
-- another school of the configuration (0.2.0: classes.csv pointed to an org
-- that orgs.csv did not hold).
INSERT INTO m365.school (id, name, configuration_id, staff_domain) VALUES (5, 'Andere school', 3, 'namen.be');
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain) VALUES (42, 5, 'Leeg', 3, NULL);
INSERT INTO m365.class (id, location_id, name, school_year) VALUES (402, 42, 'Gastles', 2026);
INSERT INTO m365.staff (id, first_name, last_name) VALUES (50, 'Gast', 'Docent');
INSERT INTO m365.staff_school (staff_id, school_id) VALUES (50, 4);
INSERT INTO m365.class_teacher (class_id, staff_id) VALUES (402, 50);
INSERT INTO m365.enrolment (id, student_id, location_id, class_id, start_date)
SELECT 400 + id, id, CASE WHEN id = 46 THEN 41 ELSE 40 END, CASE WHEN id = 46 THEN NULL ELSE 401 END, '2026-09-01'
  FROM m365.student WHERE id BETWEEN 41 AND 46;
SELECT m365.generate_usernames_in_transaction();
SELECT m365.set_sync(array_agg(id), true) FROM m365.username WHERE configuration_id = 3;
-- No name is left of student 44 after normalising: the job made none, and a
-- username written for them anyway is left out with the reason.
SELECT person_id, reason FROM m365.username_failure WHERE configuration_id = 3;
INSERT INTO m365.username (configuration_id, person_kind, person_id, username, sync)
VALUES (3, 'student', 44, 'zonder.naam', true);
SET m365.sds_configuration = 3;
SET m365.sds_on_date = '2027-03-01';
SELECT "sourcedId", "username", "givenName", "familyName", length("givenName") AS given_length FROM m365_sds.users ORDER BY 1;
SELECT * FROM m365_sds.left_out ORDER BY 1;
SELECT * FROM m365_sds.orgs ORDER BY 1;
SELECT * FROM m365_sds.classes ORDER BY 1;
SELECT * FROM m365_sds.enrollments WHERE "classSourcedId" = 'class-402';
-- The files form a whole: every org the roles and classes name is in orgs.csv.
SELECT count(*) AS dangling_orgs FROM (
    SELECT "orgSourcedId" FROM m365_sds.roles UNION SELECT "orgSourcedId" FROM m365_sds.classes
    EXCEPT SELECT "sourcedId" FROM m365_sds.orgs) AS d;
-- No control, bidi or line-separator character in any value.
SELECT count(*) AS bad_characters FROM (
    SELECT t::text AS r FROM m365_sds.orgs AS t UNION ALL SELECT t::text FROM m365_sds.users AS t
    UNION ALL SELECT t::text FROM m365_sds.classes AS t) AS x
 WHERE r ~ E'[\\x01-\\x1f\\x7f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f]';
RESET m365.sds_on_date;
RESET m365.sds_configuration;
