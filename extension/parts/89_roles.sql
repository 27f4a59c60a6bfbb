--------------------------------------------------------------------------------
-- Who may do what. All the security decisions of the extension, in one place.
--
--   m365_app    the school application: writes school data, reads the lists,
--               edits usernames and sync flags, runs diagnostics and previews.
--   m365_admin  configurations, reserved names, running and scheduling the job;
--               and everything m365_app may.
--
-- Roles are cluster-wide: created here when missing, never dropped.
--------------------------------------------------------------------------------

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'm365_app') THEN
        CREATE ROLE m365_app NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'm365_admin') THEN
        CREATE ROLE m365_admin NOLOGIN;
    END IF;
    -- The group of every SDS reader role: the grants of the feed live here.
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'm365_sds_reader') THEN
        CREATE ROLE m365_sds_reader NOLOGIN;
    END IF;
END
$roles$;
GRANT m365_app TO m365_admin;

GRANT USAGE ON SCHEMA m365 TO m365_app;

-- Tables: the application writes school data and reads the rest. Usernames,
-- sync flags and the queue change only through the functions below.
GRANT SELECT, INSERT, UPDATE, DELETE
   ON m365.school, m365.location, m365.student, m365.class, m365.enrolment, m365.staff, m365.staff_school,
      m365.class_teacher
   TO m365_app;
GRANT SELECT ON m365.configuration, m365.username, m365.username_queue, m365.username_queue_deferred,
                m365.username_history, m365.issued_username,
                m365.reserved_username, m365.message
   TO m365_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON m365.configuration, m365.reserved_username TO m365_admin;
GRANT USAGE ON SEQUENCE m365.configuration_id_seq TO m365_admin;

-- Functions that write what the caller may not write directly run as the
-- extension's owner, with the pinned search_path every function has.
ALTER FUNCTION m365.set_username(bigint, text) SECURITY DEFINER;
ALTER FUNCTION m365.set_sync(bigint[], boolean) SECURITY DEFINER;
ALTER FUNCTION m365.set_location_sync(bigint, boolean, text, date) SECURITY DEFINER;
ALTER FUNCTION m365.set_school_sync(bigint, boolean, text, date) SECURITY DEFINER;
ALTER FUNCTION m365.generate_usernames(integer) SECURITY DEFINER;
ALTER FUNCTION m365.schedule_jobs() SECURITY DEFINER;
ALTER FUNCTION m365.unschedule_jobs() SECURITY DEFINER;
-- Triggers of school data writes fill the queue, which m365_app cannot write.
ALTER FUNCTION m365.enrolment_queue_students() SECURITY DEFINER;
ALTER FUNCTION m365.staff_queue() SECURITY DEFINER;
ALTER FUNCTION m365.staff_school_queue() SECURITY DEFINER;
ALTER FUNCTION m365.location_queue() SECURITY DEFINER;
ALTER FUNCTION m365.school_queue() SECURITY DEFINER;
ALTER FUNCTION m365.person_name_changed() SECURITY DEFINER;
ALTER FUNCTION m365.username_check_ledger() SECURITY DEFINER;

-- Nobody but these roles runs what writes or schedules.
REVOKE ALL ON FUNCTION
    m365.set_username(bigint, text), m365.set_sync(bigint[], boolean),
    m365.set_location_sync(bigint, boolean, text, date), m365.set_school_sync(bigint, boolean, text, date),
    m365.generate_usernames(integer), m365.schedule_jobs(), m365.unschedule_jobs(),
    m365.queue_people(bigint[], text, bigint[]), m365.queue_staff(bigint[]),
    m365.queue_or_defer(bigint[], text, bigint[]), m365.queue_deferred(),
    m365.raise_message(text, text, text, text, text),
    m365.student_usernames(bigint, date), m365.staff_usernames(bigint, date),
    m365.diagnose_student(bigint, bigint, date), m365.diagnose_staff(bigint, bigint, date),
    m365.diagnose_generation(bigint, text, bigint), m365.preview_format(bigint, text)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    m365.set_username(bigint, text), m365.set_sync(bigint[], boolean),
    m365.set_location_sync(bigint, boolean, text, date), m365.set_school_sync(bigint, boolean, text, date),
    m365.student_usernames(bigint, date), m365.staff_usernames(bigint, date),
    m365.diagnose_student(bigint, bigint, date), m365.diagnose_staff(bigint, bigint, date),
    m365.diagnose_generation(bigint, text, bigint), m365.preview_format(bigint, text)
  TO m365_app;
GRANT EXECUTE ON FUNCTION m365.generate_usernames(integer), m365.schedule_jobs(), m365.unschedule_jobs() TO m365_admin;
ALTER FUNCTION m365.queue_missing_usernames() SECURITY DEFINER;
REVOKE ALL ON FUNCTION m365.queue_missing_usernames() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION m365.queue_missing_usernames() TO m365_admin;

-- The SDS feed: readers read its views, and nothing else of the extension.
GRANT USAGE ON SCHEMA m365_sds TO m365_sds_reader, m365_admin;
GRANT SELECT ON ALL TABLES IN SCHEMA m365_sds TO m365_sds_reader, m365_admin;
GRANT SELECT ON m365.sds_reader TO m365_admin;
ALTER FUNCTION m365.create_sds_reader(name, bigint) SECURITY DEFINER;
REVOKE ALL ON FUNCTION m365.create_sds_reader(name, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION m365.create_sds_reader(name, bigint) TO m365_admin;
ALTER FUNCTION m365.take_sds_snapshots() SECURITY DEFINER;
REVOKE ALL ON FUNCTION m365.take_sds_snapshots() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION m365.take_sds_snapshots() TO m365_admin;
GRANT SELECT ON m365.sds_snapshot, m365.sds_snapshot_user, m365.sds_snapshot_membership TO m365_admin;


-- Monitoring: the application may show the queue's state; the jobs' runs are
-- pg_cron's rows of the extension's owner, read for m365_admin.
GRANT SELECT ON m365.status TO m365_app;
ALTER FUNCTION m365.job_status() SECURITY DEFINER;
REVOKE ALL ON FUNCTION m365.job_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION m365.job_status() TO m365_admin;
