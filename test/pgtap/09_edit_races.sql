-- An administrator's edit racing the job for one name, step by step (the
-- soak test found this as a deadlock in 0.2.0). Session a does what the job
-- does (the username row, one per new name, then commit); session b is
-- set_username wanting the same name in the middle of it.
BEGIN;
SELECT plan(5);
\ir lib/session.psql

SELECT dblink_connect('a', (SELECT info FROM conn));
SELECT dblink_connect('b', (SELECT info FROM conn));
CREATE TEMP TABLE cfg AS
SELECT id FROM dblink('a', format('INSERT INTO m365.configuration (name) VALUES (%L) RETURNING id',
                                  'edit race ' || clock_timestamp()::text)) AS t(id bigint);
-- The person b edits already has a username.
CREATE TEMP TABLE edited AS
SELECT id FROM dblink('a', format($$INSERT INTO m365.username (configuration_id, person_kind, person_id, username)
                                   VALUES (%s, 'student', 1, 'oud.naam') RETURNING id$$, (SELECT id FROM cfg))) AS t(id bigint);

-- a: the job has stored the username noor.maes2 and not yet committed.
SELECT dblink_exec('a', 'BEGIN');
SELECT is(dblink_exec('a', format($$INSERT INTO m365.username (configuration_id, person_kind, person_id, username, base, suffix, format)
                                   VALUES (%s, 'student', 2, 'noor.maes2', 'noor.maes', 2, 'voornaam.naam')$$, (SELECT id FROM cfg))),
          'INSERT 0 1', 'the job stores the username');
-- b: an administrator types that very name for person 1.
SELECT is(dblink_send_query('b', format($$SELECT m365.set_username(%s, 'noor.maes2')$$, (SELECT id FROM edited))), 1,
          'b sends set_username for the name the job is storing');
SELECT pg_sleep(0.3);
SELECT is(dblink_is_busy('b'), 1, 'b waits for the job''s chunk (on the name''s key), and only for it');
SELECT dblink_exec('a', 'COMMIT');
-- b now answers "in use", the procedure's text, not a deadlock.
SELECT * FROM dblink_get_result('b', false) AS t(r text);
SELECT is(split_part(dblink_error_message('b'), E'\n', 1),
          'ERROR:  Gebruikersnaam fout ''noor.maes2'' is al in gebruik. Pas de gebruikersnaam aan.',
          'b answers: in use (M3U03), the job won');
SELECT * FROM dblink_get_result('b', false) AS t(r text);
SELECT is((SELECT username FROM m365.username WHERE id = (SELECT id FROM edited)), 'oud.naam', 'person 1 keeps the old name');

SELECT dblink_disconnect('a');
SELECT dblink_disconnect('b');
SELECT * FROM finish();
ROLLBACK;
