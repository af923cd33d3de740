-- min_api: 2
--
-- pcsecret schema, version 12: audit rows that say exactly what was served, and that show
-- when they were changed (docs/audit.md).
--
-- refs:  a Resolve or GetAgentEnv row lists every secret it was about, in the order asked, in
--        four arrays of one element per ref: the secret's id (NULL when the daemon never
--        identified it), company/name (as the caller asked when unknown), the version served
--        (NULL when nothing was served: every element of a refused call) and the version asked
--        (0 = latest). One call is still one row; ref_ids is indexed for "who read this key".
-- chain: every row is linked into a hash chain of its own daemon instance and lane. A lane is
--        the PostgreSQL backend that inserted the row (pg_backend_pid()): a backend runs one
--        transaction at a time, so its rows are already in order and no two writers ever
--        contend for a lane, whichever of the daemon's write paths (a mutation's row in its
--        own statement, a group-committed batch, the periodic purge) the row comes from.
--        The trigger below sets chain_lane, chain_seq (1, 2, ... per chain), chain_prev (the
--        previous row's chain_hash, empty for the first) and chain_hash (sha256 of the row's
--        canonical encoding, pcs_audit_row_hash), whatever the inserting statement gave: the
--        daemon's role cannot choose them. A rolled-back insert advances nothing.
-- heads: audit_chain_heads keeps each chain's newest (seq, hash), written only by a trigger
--        running as the owner, so deleting a chain's newest rows (which only the owner can)
--        still leaves a head pointing past them; each instance also copies its heads into
--        instances.chain_heads with its heartbeat, and `pcctl audit verify --json` prints them
--        for archiving outside the database.
--
-- min_api 2: the new columns may be left out by an insert (the trigger fills the chain), so
-- API 2 and later daemons keep working; their rows simply list no refs.

ALTER TABLE audit_log
    ADD COLUMN ref_ids      uuid[],
    ADD COLUMN ref_names    text[],
    ADD COLUMN ref_versions integer[],
    ADD COLUMN ref_asked    integer[],
    ADD COLUMN chain_lane   integer,
    ADD COLUMN chain_seq    bigint,
    ADD COLUMN chain_prev   bytea,
    ADD COLUMN chain_hash   bytea;

CREATE INDEX audit_log_ref_ids ON audit_log USING gin (ref_ids);
-- The chain trigger finds a lane's newest row here, and verify walks each chain in order.
CREATE INDEX audit_log_chain ON audit_log (instance_id, chain_lane, chain_seq);

CREATE TABLE audit_chain_heads (
    instance_id  uuid NOT NULL,
    lane         integer NOT NULL,
    seq          bigint NOT NULL,
    hash         bytea NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance_id, lane)
);

ALTER TABLE instances
    ADD COLUMN chain_heads jsonb,        -- [{"lane", "seq", "hash"}] as of heads_at
    ADD COLUMN heads_at    timestamptz;

-- The canonical encoding of one field: NULL is "-", a value is its UTF-8 octet length in
-- decimal, ":", then its text. Length-prefixed, so no value can imitate a field boundary.
CREATE FUNCTION pcs_audit_field(t text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN t IS NULL THEN '-' ELSE octet_length(t)::text || ':' || t END
$$;

-- An array: NULL is "-", else "#", its number of elements, ":", then each element as a field.
-- PL/pgSQL: a loop here costs a few microseconds where a subquery costs tens.
CREATE FUNCTION pcs_audit_afield(a text[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE s text; e text;
BEGIN
    IF a IS NULL THEN
        RETURN '-';
    END IF;
    s := '#' || cardinality(a)::text || ':';
    FOREACH e IN ARRAY a LOOP
        s := s || CASE WHEN e IS NULL THEN '-' ELSE octet_length(e)::text || ':' || e END;
    END LOOP;
    RETURN s;
END $$;

-- Timestamps in one fixed form, whatever the session's TimeZone and DateStyle.
CREATE FUNCTION pcs_audit_ts(t timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- sha256 of a row's canonical encoding (docs/audit.md, "The chain"): the tag "pcs-audit-1",
-- then every column but chain_hash as a field, in this order. The one definition, used by the
-- trigger that writes the chain and by pcs_audit_verify that checks it. PL/pgSQL, so the
-- expression is planned once per session (a SQL function this size is not inlined, and was
-- measured 30 times slower).
CREATE FUNCTION pcs_audit_row_hash(r audit_log) RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    RETURN sha256(convert_to(
        public.pcs_audit_field('pcs-audit-1') ||
        public.pcs_audit_field(r.instance_id::text) ||
        public.pcs_audit_field(r.chain_lane::text) ||
        public.pcs_audit_field(r.chain_seq::text) ||
        public.pcs_audit_field(encode(r.chain_prev, 'hex')) ||
        public.pcs_audit_field(r.id::text) ||
        public.pcs_audit_field(public.pcs_audit_ts(r.at)) ||
        public.pcs_audit_field(r.call_id::text) ||
        public.pcs_audit_field(r.peer_uid::text) ||
        public.pcs_audit_field(r.peer_gid::text) ||
        public.pcs_audit_field(r.peer_pid::text) ||
        public.pcs_audit_field(r.principal) ||
        public.pcs_audit_field(r.method) ||
        public.pcs_audit_field(r.company) ||
        public.pcs_audit_field(r.secret) ||
        public.pcs_audit_field(r.version) ||
        public.pcs_audit_field(r.status) ||
        public.pcs_audit_field(r.message) ||
        public.pcs_audit_field(public.pcs_audit_ts(r.received_at)) ||
        public.pcs_audit_field(public.pcs_audit_ts(r.deadline)) ||
        public.pcs_audit_afield(r.ref_ids::text[]) ||
        public.pcs_audit_afield(r.ref_names) ||
        public.pcs_audit_afield(r.ref_versions::text[]) ||
        public.pcs_audit_afield(r.ref_asked::text[]), 'UTF8'));
END $$;

-- The one append step every audit row goes through, whoever inserts it. Row-level BEFORE
-- INSERT, named to fire after audit_log_deadline (triggers fire in name order), so the status
-- it seals is the one stored. The previous link is the lane's newest row, or the recorded
-- head when that is further on (rows deleted at the end: the gap stays visible). SQL in a
-- row-level BEFORE trigger sees the rows the same statement inserted before this one, so a
-- batch chains row after row. Not SECURITY DEFINER: it only reads (audit_log, and the heads
-- the service role may select); the head is written once per statement by the next trigger.
CREATE FUNCTION pcs_audit_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE v_lane integer := pg_backend_pid(); v_seq bigint := 0; v_hash bytea := '\x';
        h record;
BEGIN
    SELECT a.chain_seq, a.chain_hash INTO h FROM public.audit_log a
     WHERE a.instance_id = NEW.instance_id AND a.chain_lane = v_lane AND a.chain_seq IS NOT NULL
     ORDER BY a.chain_seq DESC LIMIT 1;
    IF FOUND THEN
        v_seq := h.chain_seq;
        v_hash := h.chain_hash;
    END IF;
    SELECT x.seq, x.hash INTO h FROM public.audit_chain_heads x
     WHERE x.instance_id = NEW.instance_id AND x.lane = v_lane;
    IF FOUND AND h.seq > v_seq THEN
        v_seq := h.seq;
        v_hash := h.hash;
    END IF;
    NEW.chain_lane := v_lane;
    NEW.chain_seq := v_seq + 1;
    NEW.chain_prev := v_hash;
    NEW.chain_hash := public.pcs_audit_row_hash(NEW);
    RETURN NEW;
END $$;

CREATE TRIGGER audit_log_seal BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION pcs_audit_chain();

-- Once per inserting statement: the heads of the chains it extended, as the owner (the
-- service role cannot write audit_chain_heads at all). From the rows themselves, so nothing
-- the inserting session says can move a head.
CREATE FUNCTION pcs_audit_chain_heads() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    INSERT INTO public.audit_chain_heads AS h (instance_id, lane, seq, hash)
    SELECT DISTINCT ON (n.instance_id, n.chain_lane) n.instance_id, n.chain_lane,
           n.chain_seq, n.chain_hash
      FROM new_rows n
     WHERE n.chain_seq IS NOT NULL
     ORDER BY n.instance_id, n.chain_lane, n.chain_seq DESC
    ON CONFLICT (instance_id, lane) DO UPDATE
       SET seq = excluded.seq, hash = excluded.hash, updated_at = now()
     WHERE excluded.seq > h.seq;
    RETURN NULL;
END $$;

CREATE TRIGGER audit_log_seal_heads AFTER INSERT ON audit_log
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION pcs_audit_chain_heads();

-- The heads table is append-and-advance only, like the rows it points to.
CREATE TRIGGER audit_chain_heads_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON audit_chain_heads FOR EACH STATEMENT EXECUTE FUNCTION pcs_audit_append_only();

-- An instance's heartbeat: last_seen, and its chains' heads copied where a later check (or
-- an operator comparing with an archived copy) can find them. Owner's rights: the service
-- role may run this and nothing else on instances but its start-up INSERT.
CREATE FUNCTION pcs_instance_heartbeat(p_instance uuid) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE v jsonb;
BEGIN
    SELECT coalesce(jsonb_agg(jsonb_build_object('lane', h.lane, 'seq', h.seq,
                                                 'hash', encode(h.hash, 'hex'))
                              ORDER BY h.lane), '[]'::jsonb)
      INTO v FROM public.audit_chain_heads h WHERE h.instance_id = p_instance;
    UPDATE public.instances SET last_seen = now(), chain_heads = v, heads_at = now()
     WHERE id = p_instance;
    RETURN v;
END $$;
REVOKE EXECUTE ON FUNCTION pcs_instance_heartbeat(uuid) FROM PUBLIC;

-- Every chain checked from its first row (one pass, in index order), one result row per
-- chain: its length and newest link, the recorded head, and the first problem found (NULL:
-- none): a row whose hash does not match its content (altered), a seq out of step (a row
-- missing, or rows moved), a link that does not match the previous row's hash, or a head
-- beyond the newest row (the newest rows deleted). Rows from before migration 012 carry no
-- chain: each instance's are counted in a result row with lane NULL. p_instance NULL: all.
CREATE FUNCTION pcs_audit_verify(p_instance uuid)
RETURNS TABLE (instance_id uuid, lane integer, nrows bigint, last_seq bigint, last_id bigint,
               last_hash bytea, head_seq bigint, head_hash bytea, bad_id bigint,
               bad_seq bigint, problem text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public AS $$
#variable_conflict use_column
DECLARE r audit_log; cur_inst uuid; cur_lane integer; prev_seq bigint; prev_hash bytea;
        prev_id bigint; n bigint := 0; bad boolean := false; h record;
BEGIN
    -- Chains that ended: compare with its head, then emit (called at each chain's end).
    FOR r IN SELECT * FROM audit_log a
              WHERE a.chain_seq IS NOT NULL AND (p_instance IS NULL OR a.instance_id = p_instance)
              ORDER BY a.instance_id, a.chain_lane, a.chain_seq, a.id
    LOOP
        IF cur_inst IS DISTINCT FROM r.instance_id OR cur_lane IS DISTINCT FROM r.chain_lane THEN
            IF cur_inst IS NOT NULL THEN
                SELECT x.seq, x.hash INTO h FROM audit_chain_heads x
                 WHERE x.instance_id = cur_inst AND x.lane = cur_lane;
                instance_id := cur_inst; lane := cur_lane; nrows := n; last_seq := prev_seq;
                last_id := prev_id; last_hash := prev_hash; head_seq := h.seq;
                head_hash := h.hash;
                IF NOT bad AND h.seq IS NOT NULL AND h.seq > prev_seq THEN
                    bad_id := NULL; bad_seq := prev_seq + 1;
                    problem := format('rows %s to %s are missing at the end of the chain (the recorded head is %s; the newest row is id %s)',
                                      prev_seq + 1, h.seq, h.seq, prev_id);
                ELSIF NOT bad AND h.seq = prev_seq AND h.hash <> prev_hash THEN
                    bad_id := prev_id; bad_seq := prev_seq;
                    problem := format('row id %s (seq %s) is not the recorded head of the chain',
                                      prev_id, prev_seq);
                END IF;
                RETURN NEXT;
            END IF;
            cur_inst := r.instance_id; cur_lane := r.chain_lane; prev_seq := 0;
            prev_hash := '\x'; prev_id := NULL; n := 0; bad := false;
            bad_id := NULL; bad_seq := NULL; problem := NULL;
        END IF;
        n := n + 1;
        IF NOT bad THEN
            IF r.chain_seq = prev_seq THEN
                bad := true; bad_id := r.id; bad_seq := r.chain_seq;
                problem := format('row id %s repeats seq %s (of row id %s)', r.id, r.chain_seq,
                                  prev_id);
            ELSIF r.chain_seq <> prev_seq + 1 THEN
                bad := true; bad_id := r.id; bad_seq := prev_seq + 1;
                problem := format('row seq %s is missing: row id %s (seq %s) follows row id %s (seq %s)',
                                  prev_seq + 1, r.id, r.chain_seq, coalesce(prev_id::text, '-'), prev_seq);
            ELSIF r.chain_hash IS DISTINCT FROM pcs_audit_row_hash(r) THEN
                bad := true; bad_id := r.id; bad_seq := r.chain_seq;
                problem := format('row id %s (seq %s) was altered: its content does not match its hash',
                                  r.id, r.chain_seq);
            ELSIF r.chain_prev IS DISTINCT FROM prev_hash THEN
                bad := true; bad_id := r.id; bad_seq := r.chain_seq;
                problem := format('row id %s (seq %s) does not link to the row before it (id %s)',
                                  r.id, r.chain_seq, coalesce(prev_id::text, '-'));
            END IF;
        END IF;
        prev_seq := r.chain_seq; prev_hash := r.chain_hash; prev_id := r.id;
    END LOOP;
    IF cur_inst IS NOT NULL THEN
        SELECT x.seq, x.hash INTO h FROM audit_chain_heads x
         WHERE x.instance_id = cur_inst AND x.lane = cur_lane;
        instance_id := cur_inst; lane := cur_lane; nrows := n; last_seq := prev_seq;
        last_id := prev_id; last_hash := prev_hash; head_seq := h.seq; head_hash := h.hash;
        IF NOT bad AND h.seq IS NOT NULL AND h.seq > prev_seq THEN
            bad_id := NULL; bad_seq := prev_seq + 1;
            problem := format('rows %s to %s are missing at the end of the chain (the recorded head is %s; the newest row is id %s)',
                              prev_seq + 1, h.seq, h.seq, prev_id);
        ELSIF NOT bad AND h.seq = prev_seq AND h.hash <> prev_hash THEN
            bad_id := prev_id; bad_seq := prev_seq;
            problem := format('row id %s (seq %s) is not the recorded head of the chain',
                              prev_id, prev_seq);
        END IF;
        RETURN NEXT;
    END IF;
    -- Heads whose chain has no row left at all: every row of it was deleted.
    FOR h IN SELECT x.* FROM audit_chain_heads x
              WHERE (p_instance IS NULL OR x.instance_id = p_instance)
                AND NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.instance_id = x.instance_id
                                   AND a.chain_lane = x.lane AND a.chain_seq IS NOT NULL)
    LOOP
        instance_id := h.instance_id; lane := h.lane; nrows := 0; last_seq := 0;
        last_id := NULL; last_hash := NULL; head_seq := h.seq; head_hash := h.hash;
        bad_id := NULL; bad_seq := 1;
        problem := format('rows 1 to %s are missing: the chain has no row left', h.seq);
        RETURN NEXT;
    END LOOP;
    -- Rows from before the chain existed.
    FOR h IN SELECT a.instance_id AS inst, count(*) AS c FROM audit_log a
              WHERE a.chain_seq IS NULL AND (p_instance IS NULL OR a.instance_id = p_instance)
              GROUP BY a.instance_id
    LOOP
        instance_id := h.inst; lane := NULL; nrows := h.c; last_seq := NULL; last_id := NULL;
        last_hash := NULL; head_seq := NULL; head_hash := NULL; bad_id := NULL;
        bad_seq := NULL; problem := NULL;
        RETURN NEXT;
    END LOOP;
END $$;

-- The service role reads heads (the chain trigger runs with its rights) and may run the
-- heartbeat; it can neither write nor remove a head.
INSERT INTO service_grants (object, privileges, revoked) VALUES
    ('TABLE audit_chain_heads', 'SELECT', 'INSERT, UPDATE, DELETE, TRUNCATE'),
    ('FUNCTION pcs_instance_heartbeat(uuid)', 'EXECUTE', '');
