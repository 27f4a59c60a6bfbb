-- Bulk statements (10,000 people or more) defer their queueing to the job:
-- the same people end up queued, at the job's next run.
TRUNCATE m365.configuration, m365.school, m365.student, m365.staff RESTART IDENTITY CASCADE;
BEGIN;
INSERT INTO m365.configuration (id, name) VALUES (601, 'bulk'), (602, 'just below bulk');
INSERT INTO m365.school (id, name, configuration_id) VALUES (601, 'S1', 601), (602, 'S2', 602);
INSERT INTO m365.location (id, school_id, name, configuration_id) VALUES (601, 601, 'L1', 601), (602, 602, 'L2', 602);
INSERT INTO m365.student (id, first_name, last_name)
SELECT 600000 + i, 'Kind', 'Nummer' || i FROM generate_series(1, 19999) AS i;
-- 10,000 enrolments in one statement: deferred. 9,999: queued at once.
INSERT INTO m365.enrolment (id, student_id, location_id, start_date)
SELECT 600000 + i, 600000 + i, 601, DATE '2026-09-01' FROM generate_series(1, 10000) AS i;
INSERT INTO m365.enrolment (id, student_id, location_id, start_date)
SELECT 600000 + i, 600000 + i, 602, DATE '2026-09-01' FROM generate_series(10001, 19999) AS i;
SELECT configuration_id, queued, deferred FROM m365.status WHERE configuration_id IN (601, 602) ORDER BY 1;
SELECT person_kind, cardinality(person_ids) AS people FROM m365.username_queue_deferred;
-- Diagnostics tell the application what is going on.
SELECT code FROM m365.diagnose_student(600001, 601);
SELECT code FROM m365.diagnose_student(610001, 602);
-- The job queues the deferred people first, then makes every username.
SELECT m365.generate_usernames();
SELECT configuration_id, usernames, queued, deferred FROM m365.status WHERE configuration_id IN (601, 602) ORDER BY 1;
SELECT count(*) AS deferred_calls_left FROM m365.username_queue_deferred;
-- Enrolling them again in bulk (a new school year) finds everyone served.
INSERT INTO m365.enrolment (id, student_id, location_id, start_date)
SELECT 700000 + i, 600000 + i, 601, DATE '2027-09-01' FROM generate_series(1, 10000) AS i;
SELECT m365.generate_usernames() AS made_again;
ROLLBACK;

-- A bulk statement that rolls back leaves nothing behind.
BEGIN;
INSERT INTO m365.configuration (id, name) VALUES (603, 'rolled back');
INSERT INTO m365.school (id, name, configuration_id) VALUES (603, 'S3', 603);
INSERT INTO m365.location (id, school_id, name, configuration_id) VALUES (603, 603, 'L3', 603);
INSERT INTO m365.student (id, first_name, last_name) SELECT 620000 + i, 'Kind', 'Nummer' || i FROM generate_series(1, 10000) AS i;
INSERT INTO m365.enrolment (id, student_id, location_id, start_date)
SELECT 620000 + i, 620000 + i, 603, DATE '2026-09-01' FROM generate_series(1, 10000) AS i;
ROLLBACK;
SELECT count(*) AS deferred_calls FROM m365.username_queue_deferred;
-- Nobody (NULL arrays) queues nobody and defers nothing.
SELECT m365.queue_or_defer(NULL, 'student', NULL) AS queued,
       (SELECT count(*) FROM m365.username_queue_deferred) AS deferred_calls;

-- A whole run takes a deferred call's people straight from it, after the
-- queue: an older queue entry gets its name first, a person no username can
-- be made for ends up queued with the reason (as with queue_people), and
-- is tried once per run even when it is in the queue and in the call.
BEGIN;
INSERT INTO m365.configuration (id, name, username_format) VALUES (604, 'bulk, straight', 'voornaam.naam');
INSERT INTO m365.school (id, name, configuration_id) VALUES (604, 'S4', 604);
INSERT INTO m365.location (id, school_id, name, configuration_id) VALUES (604, 604, 'L4', 604);
INSERT INTO m365.student (id, first_name, last_name)
SELECT 640000 + i, 'Kind', 'Nummer' || i FROM generate_series(1, 10001) AS i;
UPDATE m365.student SET first_name = '🙂', last_name = '!!!' WHERE id = 640001;
UPDATE m365.student SET first_name = 'Jan', last_name = 'Peeters' WHERE id IN (640002, 640003);
INSERT INTO m365.enrolment (id, student_id, location_id, start_date)
VALUES (659998, 640001, 604, DATE '2026-09-01'), (659999, 640003, 604, DATE '2026-09-01');
INSERT INTO m365.enrolment (id, student_id, location_id, start_date)
SELECT 640000 + i, 640000 + i, 604, DATE '2026-09-02' FROM generate_series(1, 10001) AS i;
SELECT (SELECT count(*) FROM m365.username_queue WHERE configuration_id = 604) AS queued,
       (SELECT sum(cardinality(person_ids)) FROM m365.username_queue_deferred) AS deferred_people;
SELECT m365.generate_usernames() AS made;
SELECT person_id, username FROM m365.username WHERE person_id IN (640001, 640002, 640003) ORDER BY person_id;
SELECT person_id, attempts, last_error FROM m365.username_queue WHERE configuration_id = 604;
SELECT configuration_id, usernames, queued, failing, deferred FROM m365.status WHERE configuration_id = 604;
ROLLBACK;

-- A bounded run counts queue entries, so it queues a deferred call first.
BEGIN;
INSERT INTO m365.configuration (id, name) VALUES (605, 'bulk, bounded');
INSERT INTO m365.school (id, name, configuration_id) VALUES (605, 'S5', 605);
INSERT INTO m365.location (id, school_id, name, configuration_id) VALUES (605, 605, 'L5', 605);
INSERT INTO m365.student (id, first_name, last_name) SELECT 650000 + i, 'Kind', 'Nummer' || i FROM generate_series(1, 10000) AS i;
INSERT INTO m365.enrolment (id, student_id, location_id, start_date)
SELECT 650000 + i, 650000 + i, 605, DATE '2026-09-01' FROM generate_series(1, 10000) AS i;
SELECT m365.generate_usernames(5) AS made;
SELECT configuration_id, usernames, queued, deferred FROM m365.status WHERE configuration_id = 605;
ROLLBACK;
