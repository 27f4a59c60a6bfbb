-- Reserved names against the names this database gave out (red-team finds
-- against issue 14): a reservation of a name someone holds made a restore
-- fail and hand names out again, and a session at REPEATABLE READ whose
-- snapshot predated a reservation handed the reserved name to a person.
-- Each side commits through dblink.
BEGIN;
SELECT plan(19);
\ir lib/session.psql

SELECT dblink_connect('owner', (SELECT info FROM conn));
SELECT dblink_connect('adm', (SELECT info FROM conn));
SELECT dblink_connect('app', (SELECT info FROM conn));
SELECT dblink_exec('adm', 'SET ROLE m365_admin');
SELECT dblink_exec('app', 'SET ROLE m365_app');
CREATE TEMP TABLE run AS SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 100000 + 90000 AS base;
CREATE TEMP TABLE cfg AS
SELECT id FROM dblink('owner', format($$INSERT INTO m365.configuration (name, username_format) VALUES (%L, 'voornaam.naam') RETURNING id$$,
                                      'reserved names ' || (SELECT base FROM run))) AS t(id bigint);
SELECT dblink_exec('owner', format($$
    INSERT INTO m365.school (id, name, configuration_id) VALUES (%1$s, 'S', %2$s);
    INSERT INTO m365.location (id, school_id, name, configuration_id) VALUES (%1$s, %1$s, 'L', %2$s);
    INSERT INTO m365.student (id, first_name, last_name) VALUES (%1$s + 1, 'Ann', 'Een'), (%1$s + 2, 'Bert', 'Twee'), (%1$s + 3, 'Zoe', 'Zed');
    INSERT INTO m365.enrolment (id, student_id, location_id, start_date)
    VALUES (%1$s + 1, %1$s + 1, %1$s, CURRENT_DATE), (%1$s + 2, %1$s + 2, %1$s, CURRENT_DATE);
$$, (SELECT base FROM run), (SELECT id FROM cfg)));
SELECT * FROM dblink('owner', 'SELECT m365.generate_usernames_in_transaction()') AS t(n int);
CREATE FUNCTION pg_temp.id_of(person bigint) RETURNS bigint LANGUAGE sql AS $$
    SELECT id FROM m365.username WHERE configuration_id = (SELECT id FROM cfg) AND person_id = (SELECT base FROM run) + person
$$;
-- Runs a statement (a SELECT as PERFORM) through a connection: 'ok' or its SQLSTATE.
CREATE FUNCTION pg_temp.outcome(connection text, statement text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    IF statement LIKE 'SELECT %' THEN
        statement := format('DO %L', 'BEGIN PERFORM ' || substr(statement, 8) || '; END');
    END IF;
    PERFORM dblink_exec(connection, statement);
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;
CREATE FUNCTION pg_temp.reserve(name text) RETURNS text LANGUAGE sql AS $$
    SELECT format('INSERT INTO m365.reserved_username (configuration_id, username) VALUES (%s, %L)', (SELECT id FROM cfg), name)
$$;

-- 1. A name given out is not a reservation.
SELECT is(pg_temp.outcome('adm', pg_temp.reserve('ANN.EEN')), '23505',
          'reserving a name a student holds is refused (0.3.0 before: accepted, and a restore then failed)');
SELECT is(pg_temp.outcome('app', format($$SELECT m365.set_username(%s, 'ann.andere')$$, pg_temp.id_of(1))), 'ok',
          'Ann is renamed: ann.een goes to the ledger');
SELECT is(pg_temp.outcome('adm', pg_temp.reserve('ann.een')), '23505',
          'reserving a name in the ledger (renamed away) is refused');
SELECT is(pg_temp.outcome('adm', 'BEGIN ISOLATION LEVEL REPEATABLE READ; ' || pg_temp.reserve('vrij.naam') || '; COMMIT'), '0A000',
          'a reservation at REPEATABLE READ is refused (its check could miss a name given out meanwhile)');
SELECT dblink_exec('adm', 'ROLLBACK');

-- 2. REPEATABLE READ: a snapshot from before a reservation.
SELECT dblink_exec('app', 'BEGIN ISOLATION LEVEL REPEATABLE READ');
SELECT * FROM dblink('app', 'SELECT count(*) FROM m365.username') AS t(n bigint);
SELECT dblink_exec('adm', pg_temp.reserve('Tenant.Admin'));
SELECT is(pg_temp.outcome('app', format($$SELECT m365.set_username(%s, 'tenant.admin')$$, pg_temp.id_of(2))), '40001',
          'set_username at REPEATABLE READ, snapshot before the reservation: 40001 (0.3.0 before: gave the reserved name)');
SELECT dblink_exec('app', 'ROLLBACK');
SELECT is(pg_temp.outcome('app', format($$SELECT m365.set_username(%s, 'tenant.admin')$$, pg_temp.id_of(2))), 'M3U03',
          'retried, it is refused as in use');

SELECT dblink_exec('owner', format($$INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (%1$s + 3, %1$s + 3, %1$s, CURRENT_DATE)$$,
                                   (SELECT base FROM run)));
SELECT dblink_exec('adm', 'BEGIN ISOLATION LEVEL REPEATABLE READ');
SELECT * FROM dblink('adm', 'SELECT count(*) FROM m365.username') AS t(n bigint);
SELECT dblink_exec('owner', pg_temp.reserve('ZOE.ZED'));
SELECT is(pg_temp.outcome('adm', 'SELECT m365.generate_usernames_in_transaction()'), '40001',
          'the job at REPEATABLE READ, snapshot before the reservation: 40001 (0.3.0 before: gave the reserved name)');
SELECT dblink_exec('adm', 'ROLLBACK');
SELECT is(pg_temp.outcome('adm', 'SELECT m365.generate_usernames_in_transaction()'), 'ok', 'the job runs again at READ COMMITTED');
SELECT is((SELECT username FROM m365.username WHERE id = pg_temp.id_of(3)), 'zoe.zed2', 'run again, Zoe gets a name of her own');

-- 3. READ COMMITTED, both sides open at once.
SELECT dblink_exec('adm', 'BEGIN');
SELECT dblink_exec('adm', pg_temp.reserve('race.een'));
SELECT dblink_send_query('app', format($$SELECT m365.set_username(%s, 'race.een')::text$$, pg_temp.id_of(2)));
SELECT pg_sleep(0.3);
SELECT is(dblink_is_busy('app'), 1, 'set_username waits for the reservation being written');
SELECT dblink_exec('adm', 'COMMIT');
SELECT count(*) FROM dblink_get_result('app', false) AS t(r text);
SELECT count(*) FROM dblink_get_result('app', false) AS t(r text);
SELECT is((SELECT username FROM m365.username WHERE id = pg_temp.id_of(2)), 'bert.twee',
          'and then does not take the reserved name');

SELECT dblink_exec('app', 'BEGIN');
SELECT is(pg_temp.outcome('app', format($$SELECT m365.set_username(%s, 'race.twee')$$, pg_temp.id_of(2))), 'ok',
          'set_username gives race.twee, not yet committed');
SELECT dblink_send_query('adm', pg_temp.reserve('race.twee') || ' RETURNING username');
SELECT pg_sleep(0.3);
SELECT dblink_exec('app', 'COMMIT');
SELECT count(*) FROM dblink_get_result('adm', false) AS t(r text);
SELECT count(*) FROM dblink_get_result('adm', false) AS t(r text);
SELECT is((SELECT username FROM m365.username WHERE id = pg_temp.id_of(2)) || ' '
          || (SELECT count(*) FROM m365.reserved_username WHERE configuration_id = (SELECT id FROM cfg) AND local_part = 'race.twee'),
          'race.twee 0', 'a reservation racing set_username of the same name waits, then is refused: the name stays the student''s');

-- 4. Round two of the red team.
SELECT is(pg_temp.outcome('owner', 'BEGIN ISOLATION LEVEL REPEATABLE READ; ' || pg_temp.reserve('BERT.TWEE') || '; COMMIT'), '0A000',
          'the owner too is refused a reservation at REPEATABLE READ (before: let through as if it were the probe)');
SELECT dblink_exec('owner', 'ROLLBACK');
-- A reservation of a held name loaded with triggers off (replica mode): a
-- later write at REPEATABLE READ that does not change the name leaves it.
SELECT dblink_exec('owner', 'SET session_replication_role = replica; ' || pg_temp.reserve('race.twee') || '; RESET session_replication_role');
SELECT is(pg_temp.outcome('app', format('BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT m365.set_sync(ARRAY[%s]::bigint[], true); COMMIT',
                                        pg_temp.id_of(2))), 'ok', 'set_sync at REPEATABLE READ on that student');
SELECT is((SELECT count(*) FROM m365.reserved_username WHERE configuration_id = (SELECT id FROM cfg) AND local_part = 'race.twee'),
          1::bigint, 'leaves the reservations alone (before: the probe deleted the real one)');
SELECT dblink_exec('owner', format('DELETE FROM m365.reserved_username WHERE configuration_id = %s AND local_part = %L',
                                   (SELECT id FROM cfg), 'race.twee'));

-- 5. Reserving a long run of suffixes slows the job by what it reserved, no
--    more (a red-team find: with suffixes 2 to 100,000 reserved, the doubling
--    windows probed 400,000 names to place 3,000 people). Here 2 to 2,000 are
--    reserved and 30 people share the name; the run, in this transaction,
--    probes each candidate about once in the reserved names' index: 2,058
--    probes; before, 5,364 (the last window, 1,984 names, probed whole for
--    29 people).
SELECT * FROM dblink('owner', 'SELECT m365.unschedule_jobs()') AS t(n int);
SELECT m365.generate_usernames_in_transaction() >= 0 AS drained;
INSERT INTO m365.reserved_username (configuration_id, username)
SELECT (SELECT id FROM cfg), 'rita.reeks' || n FROM generate_series(2, 2000) AS n;
INSERT INTO m365.student (id, first_name, last_name)
SELECT (SELECT base FROM run) + 100 + i, 'Rita', 'Reeks' FROM generate_series(1, 30) AS i;
INSERT INTO m365.enrolment (id, student_id, location_id, start_date)
SELECT (SELECT base FROM run) + 100 + i, (SELECT base FROM run) + 100 + i, (SELECT base FROM run), CURRENT_DATE
  FROM generate_series(1, 30) AS i;
CREATE FUNCTION pg_temp.reserved_probes() RETURNS bigint LANGUAGE sql AS $$
    SELECT sum(pg_stat_get_xact_numscans(indexrelid))::bigint FROM pg_index WHERE indrelid = 'm365.reserved_username'::regclass
$$;
CREATE TEMP TABLE probes_before AS SELECT pg_temp.reserved_probes() AS n;
SELECT is(m365.generate_usernames_in_transaction(), 30, 'the 30 people of one name get a username');
SELECT is((SELECT string_agg(username, ' ' ORDER BY username COLLATE "C") FROM m365.username
            WHERE configuration_id = (SELECT id FROM cfg) AND person_id > (SELECT base FROM run) + 100
              AND username <> 'rita.reeks'),
          (SELECT string_agg('rita.reeks' || n, ' ' ORDER BY ('rita.reeks' || n) COLLATE "C") FROM generate_series(2001, 2029) AS n),
          'the first free suffixes above the reserved ones, none skipped');
SELECT cmp_ok(pg_temp.reserved_probes() - (SELECT n FROM probes_before), '<=', 2100::bigint,
              'and the run probed about as many names as it had to (2,029), not twice that');
SELECT * FROM dblink('owner', 'SELECT m365.schedule_jobs()') AS t(n bigint);

SELECT * FROM finish();
ROLLBACK;
