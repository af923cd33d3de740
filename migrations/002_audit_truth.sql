-- pcsecret schema, version 2: the audit row says what the client was told, and when the call
-- arrived.
--
-- received_at: when the call arrived at the daemon (the daemon sends it, also for rows committed
--              in the same statement as a mutation; NULL for rows written before this
--              migration).
-- deadline:    the time after which the daemon will have told the client something else than
--              the row's status (group-committed rows only). A row inserted after it is stored
--              as UNAVAILABLE, and the daemon, which waits for the insert's RETURNING status,
--              tells the client UNAVAILABLE too.
-- at:          unchanged: when the row was written (clock_timestamp() at insert).

ALTER TABLE audit_log
    ADD COLUMN received_at timestamptz,
    ADD COLUMN deadline    timestamptz;

-- A BEFORE trigger rather than a CASE in the daemon's INSERT: the decision is taken at the
-- moment the row is inserted (after any lock on the table was granted), whoever inserts it.
CREATE FUNCTION pcs_audit_deadline() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.deadline IS NOT NULL AND NEW.status <> 'UNAVAILABLE'
       AND clock_timestamp() > NEW.deadline THEN
        NEW.message := format('audit row not durable before the call''s deadline (the call was %s)',
                              NEW.status);
        NEW.status := 'UNAVAILABLE';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER audit_log_deadline BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION pcs_audit_deadline();
