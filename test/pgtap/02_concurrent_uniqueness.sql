-- Two sessions racing for the same name: exactly one wins. The sessions are
-- real connections (dblink), so their work is committed: every run uses a
-- configuration of its own.
BEGIN;
SELECT plan(10);
\ir lib/session.psql

SELECT dblink_connect('a', (SELECT info FROM conn));
SELECT dblink_connect('b', (SELECT info FROM conn));

CREATE TEMP TABLE cfg AS
SELECT id FROM dblink('a', format(
    'INSERT INTO m365.configuration (name) VALUES (%L) RETURNING id',
    'concurrency ' || clock_timestamp()::text)) AS t(id bigint);

-- Race 1: a holds the name in an open transaction and commits.
SELECT dblink_exec('a', 'BEGIN');
SELECT dblink_exec('a', format(
    'INSERT INTO m365.username (configuration_id, person_kind, person_id, username) VALUES (%s, ''student'', 1, ''jan.peeters'')',
    (SELECT id FROM cfg)));
SELECT is(dblink_send_query('b', format(
    'INSERT INTO m365.username (configuration_id, person_kind, person_id, username) VALUES (%s, ''student'', 2, ''JAN.PEETERS'')',
    (SELECT id FROM cfg))), 1, 'b sends the same name in another case');
SELECT pg_sleep(0.3);
SELECT is(dblink_is_busy('b'), 1, 'b waits for a');
SELECT dblink_exec('a', 'COMMIT');
SELECT throws_like($$ SELECT * FROM dblink_get_result('b') AS t(r text) $$,
                   '%duplicate key value violates unique constraint "username_unique_in_configuration"%',
                   'b loses once a commits');
SELECT * FROM dblink_get_result('b') AS t(r text);  -- drain the end of the result

-- Race 2: a gives up, so b's waiting insert goes through.
SELECT dblink_exec('a', 'BEGIN');
SELECT dblink_exec('a', format(
    'INSERT INTO m365.username (configuration_id, person_kind, person_id, username) VALUES (%s, ''student'', 3, ''an.maes'')',
    (SELECT id FROM cfg)));
SELECT is(dblink_send_query('b', format(
    'INSERT INTO m365.username (configuration_id, person_kind, person_id, username) VALUES (%s, ''student'', 4, ''an.maes'')',
    (SELECT id FROM cfg))), 1, 'b sends a name a holds');
SELECT pg_sleep(0.3);
SELECT is(dblink_is_busy('b'), 1, 'b waits for a again');
SELECT dblink_exec('a', 'ROLLBACK');
SELECT is((SELECT r FROM dblink_get_result('b') AS t(r text)), 'INSERT 0 1', 'b wins once a rolls back');
SELECT * FROM dblink_get_result('b') AS t(r text);

-- Exactly one owner per name, and the ledger agrees.
SELECT is((SELECT count(*)::int FROM m365.username WHERE configuration_id = (SELECT id FROM cfg) AND local_part = 'jan.peeters'),
          1, 'one jan.peeters');
SELECT is((SELECT person_id FROM m365.username WHERE configuration_id = (SELECT id FROM cfg) AND local_part = 'an.maes'),
          4::bigint, 'an.maes belongs to the one that won');
SELECT is((SELECT count(*)::int FROM m365.issued_username WHERE configuration_id = (SELECT id FROM cfg)), 0,
          'the ledger is empty: it holds names that left their owner, and the rolled-back attempt left nothing');
SELECT is((SELECT count(*)::int FROM m365.username WHERE configuration_id = (SELECT id FROM cfg)), 2,
          'two names issued in all');

SELECT dblink_disconnect('a');
SELECT dblink_disconnect('b');
SELECT * FROM finish();
ROLLBACK;
