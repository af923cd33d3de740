-- min_api: 2
--
-- pcsecret schema, version 14: audit retention (docs/audit.md, "Retention").
--
-- Audit rows older than a chosen time can be archived and removed, by the owner only (the
-- role that applies migrations: audit_log's append-only trigger of 004 refuses DELETE to
-- every other role, and the daemon's role has no DELETE grant). Nothing goes silently: each
-- removal leaves one summary row per chain in audit_archive_summaries, with the first and the
-- last link removed, so whoever verifies a chain afterwards starts from the last archived
-- hash (the chain_prev of the chain's first remaining row). Only a prefix of each chain is
-- ever removed: the rows before the chain's first row at or after the cut, so what is left of
-- a chain is still one unbroken run of links. scripts/audit-archive.sh copies the rows out
-- first and calls pcs_audit_archive in the same transaction.
--
-- min_api 2: no daemon uses these; their rows are written as before.

CREATE TABLE audit_archive_summaries (
    id           bigserial PRIMARY KEY,
    archived_at  timestamptz NOT NULL DEFAULT now(),
    archived_by  text NOT NULL DEFAULT current_user,
    cut_before   timestamptz NOT NULL,   -- the rows removed were all written before this
    instance_id  uuid NOT NULL,
    lane         integer,                -- NULL: rows from before the chain (migration 012)
    nrows        bigint NOT NULL,
    first_id     bigint NOT NULL,
    last_id      bigint NOT NULL,
    first_at     timestamptz NOT NULL,
    last_at      timestamptz NOT NULL,
    first_seq    bigint,                 -- the first link removed: its seq, chain_prev, hash
    first_prev   bytea,
    first_hash   bytea,
    last_seq     bigint,                 -- the last link removed: a verifier's starting point
    last_hash    bytea
);
CREATE INDEX audit_archive_summaries_chain
    ON audit_archive_summaries (instance_id, lane, last_seq);

-- Summaries are kept like audit rows: only the owner may change or remove them.
CREATE TRIGGER audit_archive_summaries_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_archive_summaries
    FOR EACH STATEMENT EXECUTE FUNCTION pcs_audit_append_only();

-- The rows pcs_audit_archive(p_before) removes, in id order: every unchained row written
-- before p_before, and of each chain the rows before its first row written at or after
-- p_before (a clock that went back leaves the later rows of a chain in place).
CREATE FUNCTION pcs_audit_archivable(p_before timestamptz) RETURNS SETOF audit_log
LANGUAGE sql STABLE AS $$
    WITH keep AS (
        SELECT k.instance_id, k.chain_lane, min(k.chain_seq) AS from_seq
          FROM public.audit_log k
         WHERE k.at >= p_before AND k.chain_lane IS NOT NULL
         GROUP BY k.instance_id, k.chain_lane)
    SELECT a.* FROM public.audit_log a
      LEFT JOIN keep ON keep.instance_id = a.instance_id AND keep.chain_lane = a.chain_lane
     WHERE a.at < p_before
       AND (a.chain_lane IS NULL OR keep.from_seq IS NULL OR a.chain_seq < keep.from_seq)
     ORDER BY a.id
$$;

-- Removes pcs_audit_archivable(p_before) and records one summary per chain (returned).
-- p_expect: the number of rows the caller copied out; any other number removes nothing. Run
-- it in the transaction that copied them (REPEATABLE READ, as the script does), so both see
-- the same rows.
CREATE FUNCTION pcs_audit_archive(p_before timestamptz, p_expect bigint)
RETURNS SETOF audit_archive_summaries
LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    IF p_before IS NULL OR p_before > now() THEN
        RAISE EXCEPTION USING ERRCODE = 'PS003',
            MESSAGE = 'archive: the cut must be a time in the past';
    END IF;
    CREATE TEMP TABLE pcs_archiving ON COMMIT DROP AS
        SELECT a.* FROM public.pcs_audit_archivable(p_before) a;
    SELECT count(*) INTO n FROM pcs_archiving;
    IF p_expect IS NULL OR n <> p_expect THEN
        RAISE EXCEPTION USING ERRCODE = 'PS009',
            MESSAGE = format('archive: %s rows to remove but %s were copied out; nothing '
                             'removed', n, coalesce(p_expect::text, 'no count'));
    END IF;
    RETURN QUERY
    INSERT INTO public.audit_archive_summaries (cut_before, instance_id, lane, nrows,
            first_id, last_id, first_at, last_at, first_seq, first_prev, first_hash,
            last_seq, last_hash)
    SELECT p_before, r.instance_id, r.chain_lane, count(*), min(r.id), max(r.id), min(r.at),
           max(r.at),
           (array_agg(r.chain_seq ORDER BY r.chain_seq))[1],
           (array_agg(r.chain_prev ORDER BY r.chain_seq))[1],
           (array_agg(r.chain_hash ORDER BY r.chain_seq))[1],
           (array_agg(r.chain_seq ORDER BY r.chain_seq DESC))[1],
           (array_agg(r.chain_hash ORDER BY r.chain_seq DESC))[1]
      FROM pcs_archiving r
     GROUP BY r.instance_id, r.chain_lane
    RETURNING *;
    DELETE FROM public.audit_log a USING pcs_archiving r WHERE a.id = r.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n <> p_expect THEN
        RAISE EXCEPTION USING ERRCODE = 'PS013',
            MESSAGE = format('archive: removed %s rows, expected %s', n, p_expect);
    END IF;
    DROP TABLE pcs_archiving;
END $$;

REVOKE EXECUTE ON FUNCTION pcs_audit_archive(timestamptz, bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pcs_audit_archivable(timestamptz) FROM PUBLIC;

-- The daemon's role may read the summaries (a verifier run by the daemon starts from them),
-- never write them, and never archive, whatever was granted before.
INSERT INTO service_grants (object, privileges, revoked) VALUES
    ('TABLE audit_archive_summaries', 'SELECT', 'INSERT, UPDATE, DELETE, TRUNCATE'),
    ('FUNCTION pcs_audit_archive(timestamptz, bigint)', '', 'EXECUTE'),
    ('FUNCTION pcs_audit_archivable(timestamptz)', '', 'EXECUTE');
