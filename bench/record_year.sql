-- Run in a database of its own (the feed's views scan every configuration's
-- rows), after bench.person is loaded.
-- A simulated school year of the record of what SDS received (issue 16):
-- :people students (from data/persons.csv, loaded as bench.person), two
-- records a day for 365 days; each day 0.5 % of them join, leave, are renamed
-- or change class (a quarter each); on 1 July a sixth leave and on
-- 1 September a sixth join and everyone changes class. The days are steps:
-- the feed is always today's, the data changes as a year's would.
-- Result rows: year_full_record_bytes (one full record), year_bytes (all
-- 730 records), both after VACUUM, the seconds of the whole simulation, and
-- year_approvals (exports the brake held and an approval let through: 1 July).
\set ON_ERROR_STOP on
-- As the export: m365_sds.record_feed runs in REPEATABLE READ only.
SET default_transaction_isolation = 'repeatable read';
INSERT INTO m365.configuration (id, name) VALUES (9, 'bench year');
INSERT INTO m365.school (id, name, configuration_id) VALUES (9, 'Year', 9);
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain) VALUES (9, 9, 'Year', 9, 'year.be');
INSERT INTO m365.class (id, location_id, name, school_year)
SELECT 900000 + c, 9, 'K' || c, m365.school_year(CURRENT_DATE) FROM generate_series(1, 48) AS c;
INSERT INTO m365.student (id, first_name, last_name) SELECT 900000000 + n, first_name, last_name FROM bench.person WHERE n <= :people;
INSERT INTO m365.enrolment (id, student_id, location_id, class_id, start_date)
SELECT 900000000 + n, 900000000 + n, 9, 900001 + n % 48, CURRENT_DATE - 30 FROM bench.person WHERE n <= :people;
SELECT m365.generate_usernames_in_transaction();
SELECT m365.set_sync(array_agg(id), true) FROM m365.username WHERE configuration_id = 9;
CREATE SEQUENCE bench.year_id START 910000000;

CREATE FUNCTION bench.year_size() RETURNS bigint LANGUAGE sql AS $$
    SELECT pg_total_relation_size('m365.sds_record') + pg_total_relation_size('m365.sds_record_head')
         + pg_total_relation_size('m365.sds_record_user') + pg_total_relation_size('m365.sds_record_membership')
$$;

-- One day's changes: k people join, leave, are renamed, change class each.
CREATE PROCEDURE bench.year_day(k integer, turnover text) LANGUAGE plpgsql AS $$
DECLARE
    new_id bigint;
    u bigint;
    joiners integer;
BEGIN
    FOR i IN 1 .. k LOOP
        new_id := nextval('bench.year_id');
        INSERT INTO m365.student (id, first_name, last_name)
        SELECT new_id, p.first_name, p.last_name FROM bench.person AS p
         WHERE p.n = 1 + new_id % (SELECT count(*) FROM bench.person);
        INSERT INTO m365.enrolment (id, student_id, location_id, class_id, start_date)
        VALUES (new_id, new_id, 9, 900001 + new_id % 48, CURRENT_DATE - 1);
    END LOOP;
    UPDATE m365.enrolment SET end_date = CURRENT_DATE - 1
     WHERE id IN (SELECT id FROM m365.enrolment WHERE location_id = 9 AND end_date IS NULL ORDER BY random() LIMIT k);
    FOR u IN SELECT id FROM m365.username WHERE configuration_id = 9 ORDER BY random() LIMIT k LOOP
        PERFORM m365.set_username(u, 'hernoemd.' || u || '.' || nextval('bench.year_id'));
    END LOOP;
    UPDATE m365.enrolment SET class_id = 900001 + (class_id - 900000) % 48
     WHERE id IN (SELECT id FROM m365.enrolment WHERE location_id = 9 AND end_date IS NULL ORDER BY random() LIMIT k);
    IF turnover = 'july' THEN
        UPDATE m365.enrolment SET end_date = CURRENT_DATE - 1
         WHERE id IN (SELECT id FROM m365.enrolment WHERE location_id = 9 AND end_date IS NULL ORDER BY random()
                      LIMIT (SELECT count(*) / 6 FROM m365.enrolment WHERE location_id = 9 AND end_date IS NULL));
    ELSIF turnover = 'september' THEN
        UPDATE m365.enrolment SET class_id = 900001 + (class_id - 900000 + 7) % 48 WHERE location_id = 9 AND end_date IS NULL;
        joiners := (SELECT count(*) / 6 FROM m365.enrolment WHERE location_id = 9 AND end_date IS NULL);
        CALL bench.year_day(joiners, 'join');
    ELSIF turnover = 'join' THEN
        NULL;
    END IF;
    IF turnover <> 'join' THEN
        PERFORM m365.generate_usernames_in_transaction();
        -- (array_agg of no row is NULL, which set_sync refuses.)
        PERFORM m365.set_sync(array_agg(id), true) FROM m365.username WHERE configuration_id = 9 AND NOT sync HAVING count(*) > 0;
    END IF;
END
$$;

SET m365.app_user = 'bench.year';
SELECT bench.mark();
SELECT m365_sds.record_feed('/srv/sds/year', 9);
VACUUM m365.sds_record, m365.sds_record_head, m365.sds_record_user, m365.sds_record_membership;
INSERT INTO bench.result VALUES ('year_full_record_bytes', bench.year_size(), NULL);
-- Day 1 is 1 September's day after; 1 July is day 304, 1 September day 365.
DO $$
DECLARE
    k integer;
BEGIN
    FOR day IN 1 .. 365 LOOP
        k := greatest(1, (SELECT count(*) FROM m365.username WHERE configuration_id = 9) * 5 / 1000 / 4);
        CALL bench.year_day(k, CASE day WHEN 304 THEN 'july' WHEN 365 THEN 'september' ELSE 'day' END);
        IF (SELECT r.outcome FROM m365_sds.record_feed('/srv/sds/year', 9) AS r) = 'held' THEN
            -- The turnover: held by the brake on mass changes, then approved
            -- once and exported again, as the DBA guide walks through it.
            PERFORM m365.approve_sds_changes(9);
            PERFORM m365_sds.record_feed('/srv/sds/year', 9);
        END IF;
        PERFORM m365_sds.record_feed('/srv/sds/year', 9);
        COMMIT;
    END LOOP;
END
$$;
SELECT bench.done('year_simulation');
VACUUM m365.sds_record, m365.sds_record_head, m365.sds_record_user, m365.sds_record_membership;
INSERT INTO bench.result VALUES ('year_bytes', bench.year_size(), NULL),
                                ('year_records', (SELECT count(*) FROM m365.sds_record WHERE configuration_id = 9), NULL),
                                ('year_approvals', (SELECT count(*) FROM m365.sds_approval WHERE configuration_id = 9 AND used_by_record IS NOT NULL), NULL);
