-- Timing helpers: each step records its wall-clock seconds in bench.result.
CREATE OR REPLACE FUNCTION bench.mark() RETURNS void LANGUAGE sql AS $$ SELECT set_config('bench.t0', clock_timestamp()::text, false) $$;
CREATE OR REPLACE FUNCTION bench.done(step text, note text DEFAULT NULL) RETURNS double precision LANGUAGE sql AS $$
    INSERT INTO bench.result VALUES (step, extract(epoch FROM clock_timestamp() - current_setting('bench.t0')::timestamptz), note)
    ON CONFLICT (step) DO UPDATE SET seconds = EXCLUDED.seconds, note = EXCLUDED.note
    RETURNING seconds
$$;
