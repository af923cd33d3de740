-- min_api: 2
--
-- pcsecret schema, version 14: audit retention (docs/audit.md, "Retention").
--
-- Audit rows older than a chosen time can be archived and removed, by the owner only (the
-- role that applies migrations: the append-only triggers of 004 and 013 refuse DELETE on
-- audit_log and audit_chain_links to every other role, and the daemon's role has no DELETE
-- grant). What is removed is a prefix of each chain, in whole elements: a chain's element is
-- a row sealed by 012 (its own seq) or a link of 013 (one seq for all the rows of one
-- inserting statement), and an element is old when every row of it was written before the
-- cut. Of each chain, the old elements before its first element that is not old go, links
-- and rows together, so what is left of a chain is one unbroken run, starting where the
-- archived part ended. Nothing goes silently: each removal leaves one summary row per chain
-- in audit_archive_summaries, with the first and last seq removed and the last element's
-- hash (the prev hash the first remaining element carries), and pcs_audit_verify starts each
-- chain from its newest summary. A chain broken within what would be removed is refused:
-- archiving never erases the evidence of a change. scripts/audit-archive.sh copies the rows
-- out first and calls pcs_audit_archive in the same transaction.
--
-- min_api 2: no daemon writes these; their rows are written as before.

CREATE TABLE audit_archive_summaries (
    id           bigserial PRIMARY KEY,
    archived_at  timestamptz NOT NULL DEFAULT now(),
    archived_by  text NOT NULL DEFAULT current_user,
    cut_before   timestamptz NOT NULL,   -- the rows removed were all written before this
    instance_id  uuid NOT NULL,
    lane         integer,                -- NULL: rows in no chain (from before migration 012)
    nrows        bigint NOT NULL,        -- rows removed
    nlinks       bigint,                 -- elements removed (012 rows and 013 links)
    first_id     bigint NOT NULL,
    last_id      bigint NOT NULL,
    first_at     timestamptz NOT NULL,
    last_at      timestamptz NOT NULL,
    first_seq    bigint,                 -- the first element removed: its seq, prev hash, hash
    first_prev   bytea,
    first_hash   bytea,
    last_seq     bigint,                 -- the last element removed: a verifier's starting point
    last_hash    bytea
);
CREATE INDEX audit_archive_summaries_chain
    ON audit_archive_summaries (instance_id, lane, last_seq);

-- Summaries are kept like audit rows: only the owner may change or remove them.
CREATE TRIGGER audit_archive_summaries_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_archive_summaries
    FOR EACH STATEMENT EXECUTE FUNCTION pcs_audit_append_only();

-- The chain elements pcs_audit_archive(p_before) removes: of each chain, the old elements
-- (every row written before p_before) before its first element that is not old (a clock that
-- went back, or a statement whose rows straddle the cut, leaves the rest of the chain in
-- place). A link none of whose rows is left is old by the time it was written. ids: the rows
-- the element sealed (one for a 012 row).
CREATE FUNCTION pcs_audit_archivable_chain(p_before timestamptz)
RETURNS TABLE (instance_id uuid, lane integer, seq bigint, is_link boolean, ids bigint[],
               prev_hash bytea, hash bytea)
LANGUAGE sql STABLE AS $$
    WITH el AS (
        SELECT a.instance_id, a.chain_lane AS lane, a.chain_seq AS seq, false AS is_link,
               ARRAY[a.id] AS ids, a.chain_prev AS prev_hash, a.chain_hash AS hash,
               a.at < p_before AS old
          FROM public.audit_log a
         WHERE a.chain_seq IS NOT NULL
        UNION ALL
        SELECT l.instance_id, l.lane, l.seq, true, l.ids, l.prev_hash, l.hash,
               (SELECT coalesce(bool_and(a.at < p_before), l.created_at < p_before)
                  FROM public.audit_log a WHERE a.id = ANY (l.ids))
          FROM public.audit_chain_links l),
    keep AS (
        SELECT el.instance_id, el.lane, min(el.seq) AS from_seq
          FROM el WHERE NOT el.old GROUP BY el.instance_id, el.lane)
    SELECT el.instance_id, el.lane, el.seq, el.is_link, el.ids, el.prev_hash, el.hash
      FROM el
      LEFT JOIN keep ON keep.instance_id = el.instance_id AND keep.lane = el.lane
     WHERE el.old AND (keep.from_seq IS NULL OR el.seq < keep.from_seq)
$$;

-- The rows pcs_audit_archive(p_before) removes, in id order: the rows of the elements above,
-- and every row in no chain (from before 012) written before p_before.
CREATE FUNCTION pcs_audit_archivable(p_before timestamptz) RETURNS SETOF audit_log
LANGUAGE sql STABLE AS $$
    SELECT a.* FROM public.audit_log a
     WHERE a.id IN (SELECT unnest(c.ids) FROM public.pcs_audit_archivable_chain(p_before) c)
    UNION ALL
    SELECT a.* FROM public.audit_log a
      LEFT JOIN (SELECT unnest(l.ids) AS id FROM public.audit_chain_links l) k ON k.id = a.id
     WHERE a.at < p_before AND a.chain_seq IS NULL AND k.id IS NULL
     ORDER BY id
$$;

-- pcs_audit_verify as in 013, each chain started after its newest archive summary when it has
-- one: the first element left must be seq last_seq + 1 and carry last_hash as its prev hash,
-- as the element archived before it did. A chain archived whole must have its head at the
-- summary's last element. The archived part is said in a new column, archived (NULL: none),
-- never as missing rows; rows deleted without a summary are still missing. The result gains
-- that column, so the function is dropped and made again (no view or function uses it).
DROP FUNCTION pcs_audit_verify(uuid);
CREATE FUNCTION pcs_audit_verify(p_instance uuid)
RETURNS TABLE (instance_id uuid, lane integer, nrows bigint, last_seq bigint, last_id bigint,
               last_hash bytea, head_seq bigint, head_hash bytea, bad_id bigint,
               bad_seq bigint, problem text, archived text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public AS $$
#variable_conflict use_column
DECLARE e record; cur_inst uuid; cur_lane integer; prev_seq bigint; prev_hash bytea;
        prev_id bigint; prev_txt text; n bigint := 0; bad boolean := false; h record;
        x record; s record;
BEGIN
    -- Elements in chain order, then one sentinel (instance NULL sorts last) that ends the
    -- last chain, so a chain's end is handled in one place.
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
        UNION ALL
        SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
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
            EXIT WHEN e.inst IS NULL;
            cur_inst := e.inst; cur_lane := e.lane; prev_seq := 0;
            prev_hash := '\x'; prev_id := NULL; n := 0; bad := false;
            bad_id := NULL; bad_seq := NULL; problem := NULL; archived := NULL;
            prev_txt := 'row id - (seq 0)';
            -- Archived before: start where the newest summary ended.
            SELECT z.last_seq, z.last_hash, z.archived_at, m.first_seq, m.nrows INTO s
              FROM audit_archive_summaries z,
                   LATERAL (SELECT min(y.first_seq) AS first_seq, sum(y.nrows) AS nrows
                              FROM audit_archive_summaries y
                             WHERE y.instance_id = z.instance_id AND y.lane = z.lane) m
             WHERE z.instance_id = cur_inst AND z.lane = cur_lane
             ORDER BY z.last_seq DESC, z.id DESC LIMIT 1;
            IF FOUND THEN
                prev_seq := s.last_seq; prev_hash := s.last_hash;
                prev_txt := format('the archived seq %s (summary of %s)', s.last_seq,
                                   pcs_audit_ts(s.archived_at));
                archived := format('seq %s..%s archived, %s rows (summary of %s)',
                                   s.first_seq, s.last_seq, s.nrows,
                                   pcs_audit_ts(s.archived_at));
            END IF;
        END IF;
        n := n + coalesce(cardinality(e.ids), 1);
        IF NOT bad THEN
            IF e.seq = prev_seq THEN
                bad := true; bad_id := e.id; bad_seq := e.seq;
                problem := CASE WHEN prev_id IS NULL
                           THEN format('row id %s repeats seq %s of %s', e.id, e.seq, prev_txt)
                           ELSE format('row id %s repeats seq %s (of row id %s)', e.id, e.seq,
                                       prev_id) END;
            ELSIF e.seq <> prev_seq + 1 THEN
                bad := true; bad_id := e.id; bad_seq := prev_seq + 1;
                problem := format(CASE WHEN e.ids IS NULL
                                  THEN 'row seq %s is missing: row id %s (seq %s) follows %s'
                                  ELSE 'link seq %s is missing: the link of row id %s (seq %s) follows %s' END,
                                  prev_seq + 1, e.id, e.seq, prev_txt);
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
                problem := CASE WHEN prev_id IS NULL AND prev_seq > 0
                           THEN format('row id %s (seq %s) does not link to %s: its prev hash is not the summary''s last hash',
                                       e.id, e.seq, prev_txt)
                           ELSE format('row id %s (seq %s) does not link to the row before it (id %s)',
                                       e.id, e.seq, coalesce(prev_id::text, '-')) END;
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
        prev_txt := format('row id %s (seq %s)', e.id, e.seq);
    END LOOP;
    -- Heads whose chain has no element left at all: archived whole (its head must be the
    -- summary's last element), or every row (or link) of it deleted.
    FOR h IN SELECT x.*, z.last_seq AS a_seq, z.last_hash AS a_hash, z.archived_at AS a_at,
                    m.first_seq AS a_first, m.nrows AS a_rows
               FROM audit_chain_heads x
               LEFT JOIN LATERAL (SELECT y.last_seq, y.last_hash, y.archived_at
                                    FROM audit_archive_summaries y
                                   WHERE y.instance_id = x.instance_id AND y.lane = x.lane
                                   ORDER BY y.last_seq DESC, y.id DESC LIMIT 1) z ON true
               LEFT JOIN LATERAL (SELECT min(y.first_seq) AS first_seq, sum(y.nrows) AS nrows
                                    FROM audit_archive_summaries y
                                   WHERE y.instance_id = x.instance_id AND y.lane = x.lane) m
                 ON true
              WHERE (p_instance IS NULL OR x.instance_id = p_instance)
                AND NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.instance_id = x.instance_id
                                   AND a.chain_lane = x.lane AND a.chain_seq IS NOT NULL)
                AND NOT EXISTS (SELECT 1 FROM audit_chain_links l
                                 WHERE l.instance_id = x.instance_id AND l.lane = x.lane)
    LOOP
        instance_id := h.instance_id; lane := h.lane; nrows := 0;
        last_seq := coalesce(h.a_seq, 0); last_id := NULL; last_hash := h.a_hash;
        head_seq := h.seq; head_hash := h.hash; bad_id := NULL; bad_seq := NULL;
        problem := NULL; archived := NULL;
        IF h.a_seq IS NULL THEN
            bad_seq := 1;
            problem := format('rows 1 to %s are missing: the chain has no row left', h.seq);
        ELSE
            archived := format('seq %s..%s archived, %s rows (summary of %s)', h.a_first,
                               h.a_seq, h.a_rows, pcs_audit_ts(h.a_at));
            IF h.seq > h.a_seq THEN
                bad_seq := h.a_seq + 1;
                problem := format('rows %s to %s are missing: the chain has no row left after the archived seq %s',
                                  h.a_seq + 1, h.seq, h.a_seq);
            ELSIF h.seq <> h.a_seq OR h.hash <> h.a_hash THEN
                bad_seq := h.seq;
                problem := format('the recorded head (seq %s) is not the archived chain''s last element (seq %s)',
                                  h.seq, h.a_seq);
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;
    -- Rows in no chain: from before the chain existed (or whose link was removed, which the
    -- link chain above reports). One anti-join over every link's ids.
    FOR h IN SELECT a.instance_id AS inst, count(*) AS c,
                    (SELECT format('%s rows archived (summary of %s)', sum(y.nrows),
                                   pcs_audit_ts(max(y.archived_at)))
                       FROM audit_archive_summaries y
                      WHERE y.instance_id = a.instance_id AND y.lane IS NULL
                     HAVING count(*) > 0) AS note
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
        bad_seq := NULL; problem := NULL; archived := h.note;
        RETURN NEXT;
    END LOOP;
END $$;

-- Removes pcs_audit_archivable(p_before) and the chain elements it belongs to, and records
-- one summary per chain (returned). p_expect: the number of rows the caller copied out; any
-- other number removes nothing. Run it in the transaction that copied them (REPEATABLE READ,
-- as the script does), so both see the same rows. A chain that pcs_audit_verify finds broken
-- at or before the last element to remove is refused, and nothing is removed: archive the
-- evidence of a change and the change could no longer be seen.
CREATE FUNCTION pcs_audit_archive(p_before timestamptz, p_expect bigint)
RETURNS SETOF audit_archive_summaries
LANGUAGE plpgsql AS $$
DECLARE n bigint; b record;
BEGIN
    IF p_before IS NULL OR p_before > now() THEN
        RAISE EXCEPTION USING ERRCODE = 'PS003',
            MESSAGE = 'archive: the cut must be a time in the past';
    END IF;
    CREATE TEMP TABLE pcs_archiving_chain ON COMMIT DROP AS
        SELECT c.* FROM public.pcs_audit_archivable_chain(p_before) c;
    CREATE TEMP TABLE pcs_archiving ON COMMIT DROP AS
        SELECT a.* FROM public.pcs_audit_archivable(p_before) a;
    SELECT count(*) INTO n FROM pcs_archiving;
    IF p_expect IS NULL OR n <> p_expect THEN
        RAISE EXCEPTION USING ERRCODE = 'PS009',
            MESSAGE = format('archive: %s rows to remove but %s were copied out; nothing '
                             'removed', n, coalesce(p_expect::text, 'no count'));
    END IF;
    SELECT v.instance_id, v.lane, v.problem INTO b
      FROM public.pcs_audit_verify(NULL) v
      JOIN (SELECT c.instance_id, c.lane, max(c.seq) AS upto FROM pcs_archiving_chain c
             GROUP BY c.instance_id, c.lane) k
        ON k.instance_id = v.instance_id AND k.lane = v.lane
     WHERE v.problem IS NOT NULL AND (v.bad_seq IS NULL OR v.bad_seq <= k.upto)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PS009',
            MESSAGE = format('archive: the chain of instance %s lane %s is broken where it '
                             'would be archived (%s); nothing removed',
                             b.instance_id, b.lane, b.problem);
    END IF;
    RETURN QUERY
    WITH chained AS (
        SELECT c.instance_id, c.lane, count(*) AS nlinks,
               (array_agg(c.seq ORDER BY c.seq))[1] AS first_seq,
               (array_agg(c.prev_hash ORDER BY c.seq))[1] AS first_prev,
               (array_agg(c.hash ORDER BY c.seq))[1] AS first_hash,
               max(c.seq) AS last_seq,
               (array_agg(c.hash ORDER BY c.seq DESC))[1] AS last_hash
          FROM pcs_archiving_chain c GROUP BY c.instance_id, c.lane),
    placed AS (
        SELECT c.instance_id, c.lane, u.id
          FROM pcs_archiving_chain c CROSS JOIN LATERAL unnest(c.ids) AS u(id)),
    counted AS (
        SELECT p.instance_id, p.lane, count(a.id) AS nrows, min(a.id) AS first_id,
               max(a.id) AS last_id, min(a.at) AS first_at, max(a.at) AS last_at
          FROM pcs_archiving a RIGHT JOIN placed p ON p.id = a.id
         GROUP BY p.instance_id, p.lane)
    INSERT INTO public.audit_archive_summaries (cut_before, instance_id, lane, nrows, nlinks,
            first_id, last_id, first_at, last_at, first_seq, first_prev, first_hash,
            last_seq, last_hash)
    SELECT p_before, k.instance_id, k.lane, r.nrows, k.nlinks, r.first_id, r.last_id,
           r.first_at, r.last_at, k.first_seq, k.first_prev, k.first_hash, k.last_seq,
           k.last_hash
      FROM chained k JOIN counted r ON r.instance_id = k.instance_id AND r.lane = k.lane
    UNION ALL
    SELECT p_before, a.instance_id, NULL, count(*), NULL, min(a.id), max(a.id), min(a.at),
           max(a.at), NULL, NULL, NULL, NULL, NULL
      FROM pcs_archiving a LEFT JOIN placed p ON p.id = a.id
     WHERE p.id IS NULL
     GROUP BY a.instance_id
    RETURNING *;
    DELETE FROM public.audit_chain_links l USING pcs_archiving_chain c
     WHERE c.is_link AND l.instance_id = c.instance_id AND l.lane = c.lane AND l.seq = c.seq;
    DELETE FROM public.audit_log a USING pcs_archiving r WHERE a.id = r.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n <> p_expect THEN
        RAISE EXCEPTION USING ERRCODE = 'PS013',
            MESSAGE = format('archive: removed %s rows, expected %s', n, p_expect);
    END IF;
    DROP TABLE pcs_archiving;
    DROP TABLE pcs_archiving_chain;
END $$;

REVOKE EXECUTE ON FUNCTION pcs_audit_archive(timestamptz, bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pcs_audit_archivable(timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pcs_audit_archivable_chain(timestamptz) FROM PUBLIC;

-- The daemon's role may read the summaries (its verify starts from them), never write them,
-- and never archive, whatever was granted before.
INSERT INTO service_grants (object, privileges, revoked) VALUES
    ('TABLE audit_archive_summaries', 'SELECT', 'INSERT, UPDATE, DELETE, TRUNCATE'),
    ('FUNCTION pcs_audit_archive(timestamptz, bigint)', '', 'EXECUTE'),
    ('FUNCTION pcs_audit_archivable(timestamptz)', '', 'EXECUTE'),
    ('FUNCTION pcs_audit_archivable_chain(timestamptz)', '', 'EXECUTE');
