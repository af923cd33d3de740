-- min_api: 2
--
-- pcsecret schema, version 13: the audit chain sealed once per statement instead of once per
-- row (docs/audit.md, "The chain" and "Cost").
--
-- 012 sealed every row in a PL/pgSQL BEFORE INSERT row trigger: about 70 µs of PostgreSQL
-- time per row, more than everything else a Resolve costs. From 013 the chain's element is a
-- LINK, one per inserting statement and chain: a row of audit_chain_links that lists the
-- statement's rows of that instance (their ids, in id order) and each row's hash, and is
-- chained to the previous link of the same (instance, lane) by seq and prev_hash. One
-- statement-level AFTER INSERT trigger writes it from the statement's transition table: the
-- row hashes in one set-based SELECT (an inlined SQL expression per row, no PL/pgSQL call
-- per row), then one head read, one link insert and one head write per statement.
--
-- Rows are not updated: their chain columns stay NULL (an insert that sets them is refused),
-- and verify recomputes each row's hash to compare with its link's, which names the row.
--
-- Chains written under 012 carry on: a chain's elements are numbered 1, 2, ... whatever their
-- kind, so a chain that has rows sealed by 012 (seq 1..k, hash in the row) continues with
-- links k+1, ... whose first prev_hash is row k's hash; pcs_audit_verify checks both kinds in
-- one walk, 012 rows with 012's encoding (pcs_audit_row_hash, unchanged).
--
-- min_api 2: inserts are unchanged (the new columns of 012 may be left out), so every daemon
-- from API 2 on keeps working, and its rows are chained like any other.

DROP TRIGGER audit_log_seal ON audit_log;
DROP TRIGGER audit_log_seal_heads ON audit_log;
DROP FUNCTION pcs_audit_chain();
DROP FUNCTION pcs_audit_chain_heads();

CREATE TABLE audit_chain_links (
    instance_id  uuid NOT NULL,
    lane         integer NOT NULL,     -- pg_backend_pid() of the inserting statement
    seq          bigint NOT NULL,      -- the element's place in its chain: 1, 2, ...
    ids          bigint[] NOT NULL,    -- the statement's rows of this instance, in id order
    row_hashes   bytea[] NOT NULL,     -- pcs_audit_row_hash2 of each, in the same order
    prev_hash    bytea NOT NULL,       -- the previous element's hash, empty for the first
    hash         bytea NOT NULL,       -- pcs_audit_link_hash of all the above
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance_id, lane, seq)
);

-- The same protection as audit_log's and the heads': append-only for all but the owner.
CREATE TRIGGER audit_chain_links_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON audit_chain_links FOR EACH STATEMENT EXECUTE FUNCTION pcs_audit_append_only();

-- sha256 of a row's canonical encoding from 013 on (docs/audit.md): the text of one
-- anonymous record, ROW("pcs-audit-2", every column but the chain's, in a fixed order)::text,
-- as PostgreSQL writes a composite value: fields between parentheses, separated by commas,
-- NULL as nothing, a value double-quoted (with " and \ doubled) when it is empty or holds a
-- comma, quote, backslash, parenthesis or space; arrays in their own canonical text form. So
-- no value can imitate a boundary. Timestamps through pcs_audit_ts, so neither TimeZone nor
-- DateStyle matters. One expression, inlined into the query that calls it: no PL/pgSQL call,
-- no length prefix to compute per field, each value converted once (measured: 11-13 µs a row
-- against 20-23 µs for 012's encoding, on the same loaded machine). The row's place in the
-- chain is the link's business (its ids, seq and prev_hash), so none of it is here.
CREATE FUNCTION pcs_audit_row_hash2(r audit_log) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT sha256(convert_to(ROW('pcs-audit-2', r.instance_id, r.id, public.pcs_audit_ts(r.at),
        r.call_id, r.peer_uid, r.peer_gid, r.peer_pid, r.principal, r.method, r.company,
        r.secret, r.version, r.status, r.message, public.pcs_audit_ts(r.received_at),
        public.pcs_audit_ts(r.deadline), r.ref_ids, r.ref_names, r.ref_versions,
        r.ref_asked)::text, 'UTF8'))
$$;

-- sha256 of a link's canonical encoding: the tag "pcs-audit-link-1", instance_id, lane, seq,
-- hex(prev_hash), the number of rows, then each row's id and hex(hash), each a field
-- (pcs_audit_field). It commits to every row's hash and to the element before it. Called once
-- per link. PL/pgSQL, the pieces gathered in an array and joined once: a SQL function with a
-- subquery is planned again at every call (145 µs for 32 rows), and appending to one string in
-- the loop is quadratic (270 ms for 5,000 rows, against 11 ms this way, 2 µs a row).
CREATE FUNCTION pcs_audit_link_hash(p_instance uuid, p_lane integer, p_seq bigint,
                                    p_prev bytea, p_ids bigint[], p_hashes bytea[])
RETURNS bytea
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE n integer := coalesce(cardinality(p_ids), 0); parts text[] := '{}';
BEGIN
    IF n <> coalesce(cardinality(p_hashes), 0) THEN
        RETURN NULL;   -- no valid link has it: verify reports the link altered
    END IF;
    FOR i IN 1..n LOOP
        parts[i] := public.pcs_audit_field(p_ids[i]::text) ||
                    public.pcs_audit_field(encode(p_hashes[i], 'hex'));
    END LOOP;
    RETURN sha256(convert_to('16:pcs-audit-link-1' ||
        public.pcs_audit_field(p_instance::text) ||
        public.pcs_audit_field(p_lane::text) ||
        public.pcs_audit_field(p_seq::text) ||
        public.pcs_audit_field(encode(p_prev, 'hex')) ||
        public.pcs_audit_field(n::text) ||
        array_to_string(parts, ''), 'UTF8'));
END $$;

-- The one append step every audit row goes through, whoever inserts it: once per inserting
-- statement, after it, from the rows it actually stored (the transition table holds them as
-- the BEFORE triggers, audit_log_deadline among them, left them). Per instance among the
-- rows: their hashes in one pass, the chain's head (the lane's newest element), one link,
-- and the head advanced. As the owner: the service role can write neither links nor heads,
-- and a trigger function cannot be called directly. The lane is the inserting backend, which
-- runs one transaction at a time: no two writers ever touch the same head.
CREATE FUNCTION pcs_audit_seal() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE v_lane integer := pg_backend_pid(); g record; h record; v_seq bigint;
        v_prev bytea; v_hash bytea;
BEGIN
    FOR g IN SELECT n.instance_id, array_agg(n.id ORDER BY n.id) AS ids,
                    array_agg(public.pcs_audit_row_hash2(n) ORDER BY n.id) AS hashes,
                    bool_or(n.chain_lane IS NOT NULL OR n.chain_seq IS NOT NULL OR
                            n.chain_prev IS NOT NULL OR n.chain_hash IS NOT NULL) AS chosen
               FROM new_rows n GROUP BY n.instance_id
    LOOP
        -- The chain columns are 012's rows' only: a new row that sets them would pass for one.
        IF g.chosen THEN
            RAISE EXCEPTION 'audit rows cannot set their chain columns (chain_lane, chain_seq, chain_prev, chain_hash)'
                USING ERRCODE = '42501';
        END IF;
        SELECT x.seq, x.hash INTO h FROM public.audit_chain_heads x
         WHERE x.instance_id = g.instance_id AND x.lane = v_lane;
        IF FOUND THEN
            v_seq := h.seq + 1;
            v_prev := h.hash;
        ELSE
            v_seq := 1;
            v_prev := '\x';
        END IF;
        v_hash := public.pcs_audit_link_hash(g.instance_id, v_lane, v_seq, v_prev, g.ids,
                                             g.hashes);
        INSERT INTO public.audit_chain_links (instance_id, lane, seq, ids, row_hashes,
                                              prev_hash, hash)
        VALUES (g.instance_id, v_lane, v_seq, g.ids, g.hashes, v_prev, v_hash);
        INSERT INTO public.audit_chain_heads AS x (instance_id, lane, seq, hash)
        VALUES (g.instance_id, v_lane, v_seq, v_hash)
        ON CONFLICT (instance_id, lane) DO UPDATE
           SET seq = excluded.seq, hash = excluded.hash, updated_at = now();
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER audit_log_seal AFTER INSERT ON audit_log
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION pcs_audit_seal();

-- Every chain checked from its first element (one pass, in order), one result row per chain:
-- its number of rows and newest element, the recorded head, and the first problem found
-- (NULL: none). An element is a row sealed by 012 (checked as 012 did: its seq, its hash, its
-- link to the element before) or a link of 013 (its seq, its link to the element before, its
-- own hash, then each of its rows: present, and matching the hash the link holds for it).
-- Rows in no chain (from before 012) are counted per instance with lane NULL.
CREATE OR REPLACE FUNCTION pcs_audit_verify(p_instance uuid)
RETURNS TABLE (instance_id uuid, lane integer, nrows bigint, last_seq bigint, last_id bigint,
               last_hash bytea, head_seq bigint, head_hash bytea, bad_id bigint,
               bad_seq bigint, problem text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public AS $$
#variable_conflict use_column
DECLARE e record; cur_inst uuid; cur_lane integer; prev_seq bigint; prev_hash bytea;
        prev_id bigint; n bigint := 0; bad boolean := false; h record; x record;
BEGIN
    FOR e IN
        SELECT a.instance_id AS inst, a.chain_lane AS lane, a.chain_seq AS seq, a.id AS id,
               a.chain_prev AS prev, a.chain_hash AS hash,
               public.pcs_audit_row_hash(a) AS calc, NULL::bigint[] AS ids,
               NULL::bytea[] AS hashes
          FROM audit_log a
         WHERE a.chain_seq IS NOT NULL AND (p_instance IS NULL OR a.instance_id = p_instance)
        UNION ALL
        SELECT l.instance_id, l.lane, l.seq, l.ids[cardinality(l.ids)], l.prev_hash, l.hash,
               public.pcs_audit_link_hash(l.instance_id, l.lane, l.seq, l.prev_hash, l.ids,
                                          l.row_hashes), l.ids, l.row_hashes
          FROM audit_chain_links l
         WHERE p_instance IS NULL OR l.instance_id = p_instance
        ORDER BY 1, 2, 3, 4
    LOOP
        IF cur_inst IS DISTINCT FROM e.inst OR cur_lane IS DISTINCT FROM e.lane THEN
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
            cur_inst := e.inst; cur_lane := e.lane; prev_seq := 0;
            prev_hash := '\x'; prev_id := NULL; n := 0; bad := false;
            bad_id := NULL; bad_seq := NULL; problem := NULL;
        END IF;
        n := n + coalesce(cardinality(e.ids), 1);
        IF NOT bad THEN
            IF e.seq = prev_seq THEN
                bad := true; bad_id := e.id; bad_seq := e.seq;
                problem := format('row id %s repeats seq %s (of row id %s)', e.id, e.seq,
                                  prev_id);
            ELSIF e.seq <> prev_seq + 1 THEN
                bad := true; bad_id := e.id; bad_seq := prev_seq + 1;
                problem := format(CASE WHEN e.ids IS NULL
                                  THEN 'row seq %s is missing: row id %s (seq %s) follows row id %s (seq %s)'
                                  ELSE 'link seq %s is missing: the link of row id %s (seq %s) follows row id %s (seq %s)' END,
                                  prev_seq + 1, e.id, e.seq, coalesce(prev_id::text, '-'), prev_seq);
            ELSIF e.ids IS NULL AND e.hash IS DISTINCT FROM e.calc THEN
                bad := true; bad_id := e.id; bad_seq := e.seq;
                problem := format('row id %s (seq %s) was altered: its content does not match its hash',
                                  e.id, e.seq);
            ELSIF e.ids IS NOT NULL AND e.hash IS DISTINCT FROM e.calc THEN
                bad := true; bad_id := e.id; bad_seq := e.seq;
                problem := format('the link of seq %s (rows id %s to %s) was altered: it does not match its hash',
                                  e.seq, e.ids[1], e.id);
            ELSIF e.prev IS DISTINCT FROM prev_hash THEN
                bad := true; bad_id := e.id; bad_seq := e.seq;
                problem := format('row id %s (seq %s) does not link to the row before it (id %s)',
                                  e.id, e.seq, coalesce(prev_id::text, '-'));
            ELSIF e.ids IS NOT NULL THEN
                -- The link is intact: each of its rows must be there and match its hash.
                SELECT r.i, r.o, a.id IS NULL AS gone INTO x
                  FROM unnest(e.ids, e.hashes) WITH ORDINALITY AS r(i, h, o)
                  LEFT JOIN audit_log a ON a.id = r.i
                 WHERE a.id IS NULL OR public.pcs_audit_row_hash2(a) IS DISTINCT FROM r.h
                 ORDER BY r.o LIMIT 1;
                IF FOUND THEN
                    bad := true; bad_id := x.i; bad_seq := e.seq;
                    problem := format(CASE WHEN x.gone
                                      THEN 'row id %s (seq %s, row %s of %s) is missing'
                                      ELSE 'row id %s (seq %s, row %s of %s) was altered: its content does not match its hash' END,
                                      x.i, e.seq, x.o, cardinality(e.ids));
                END IF;
            END IF;
        END IF;
        prev_seq := e.seq; prev_hash := e.hash; prev_id := e.id;
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
    -- Heads whose chain has no element left at all: every row (or link) of it was deleted.
    FOR h IN SELECT x.* FROM audit_chain_heads x
              WHERE (p_instance IS NULL OR x.instance_id = p_instance)
                AND NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.instance_id = x.instance_id
                                   AND a.chain_lane = x.lane AND a.chain_seq IS NOT NULL)
                AND NOT EXISTS (SELECT 1 FROM audit_chain_links l
                                 WHERE l.instance_id = x.instance_id AND l.lane = x.lane)
    LOOP
        instance_id := h.instance_id; lane := h.lane; nrows := 0; last_seq := 0;
        last_id := NULL; last_hash := NULL; head_seq := h.seq; head_hash := h.hash;
        bad_id := NULL; bad_seq := 1;
        problem := format('rows 1 to %s are missing: the chain has no row left', h.seq);
        RETURN NEXT;
    END LOOP;
    -- Rows in no chain: from before the chain existed (or whose link was removed, which the
    -- link chain above reports). One anti-join over every link's ids.
    FOR h IN SELECT a.instance_id AS inst, count(*) AS c
               FROM audit_log a
               LEFT JOIN (SELECT unnest(l.ids) AS id FROM audit_chain_links l
                           WHERE p_instance IS NULL OR l.instance_id = p_instance) k
                 ON k.id = a.id
              WHERE a.chain_seq IS NULL AND k.id IS NULL
                AND (p_instance IS NULL OR a.instance_id = p_instance)
              GROUP BY a.instance_id
    LOOP
        instance_id := h.inst; lane := NULL; nrows := h.c; last_seq := NULL; last_id := NULL;
        last_hash := NULL; head_seq := NULL; head_hash := NULL; bad_id := NULL;
        bad_seq := NULL; problem := NULL;
        RETURN NEXT;
    END LOOP;
END $$;

INSERT INTO service_grants (object, privileges, revoked) VALUES
    ('TABLE audit_chain_links', 'SELECT', 'INSERT, UPDATE, DELETE, TRUNCATE');
