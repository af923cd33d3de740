-- api_version: 7
--
-- pcsecret's SQL API: every function an rpc calls. Not a migration: each pcsecretd creates
-- these in a schema of its own, pcs_api_<api_version>, at every start-up where the text
-- differs from what the database records (server/migrate.c, under the migration lock), and
-- its pooled connections put that schema first on their search_path. So a daemon always runs
-- the functions it was built with, and daemons of two API versions can share one database
-- during an upgrade, each in its own schema. docs/architecture.md ("Upgrades") has the rules:
-- in short, a change that keeps every signature and meaning keeps api_version; anything else
-- takes the next one.
--
-- The schema is emptied before this file runs, so functions are created, not replaced. The
-- file holds functions only, created unqualified (the daemon sets the search_path to
-- pcs_api_<N>, public first); tables, indexes, triggers and grants belong in migrations/.
-- Names inside bodies resolve through the caller's search_path, which is the daemon's.
--
-- Every rpc that touches data is one call of a function below, so each call is one round trip
-- and one transaction. Functions that only read are STABLE: a LANGUAGE sql one is then inlined
-- into the statement that calls it (planned once with it, instead of planned again at every
-- call, which a VOLATILE one is). The PL/pgSQL helpers that find a row by name stay VOLATILE:
-- called after an insert in the same function, they must take a new snapshot to see it. Functions raise SQLSTATE 'PS0nn' where nn is the gRPC status code; their
-- messages name the problem and never contain a value (values are only ever ciphertext here).

-- RFC 3339 UTC timestamps for the wire.
CREATE FUNCTION pcs_ts(t timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

CREATE FUNCTION pcs_raise(code integer, msg text) RETURNS void
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'PS0' || lpad(code::text, 2, '0'), MESSAGE = msg;
END $$;

CREATE FUNCTION pcs_company_id(p_company text) RETURNS uuid
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE v uuid;
BEGIN
    SELECT id INTO v FROM companies WHERE name = p_company;
    IF v IS NULL THEN
        PERFORM pcs_raise(5, format('company %s does not exist', p_company));
    END IF;
    RETURN v;
END $$;

-- Soft delete (docs/lifecycle.md): what a deleted secret that still holds its name says about
-- restoring it, by its recovery deadline.
CREATE FUNCTION pcs_restore_note(p_after timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_after IS NULL THEN 'it can no longer be restored'
                WHEN p_after > now() THEN 'it can be restored until ' || pcs_ts(p_after)
                ELSE 'its recovery window ended at ' || pcs_ts(p_after)
                     || '; it cannot be restored' END
$$;

-- "secret c/n was deleted; ..." when a deleted secret still holds the name, else NULL.
CREATE FUNCTION pcs_deleted_note(p_company_id uuid, p_company text, p_name text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT format('secret %s/%s was deleted; %s', p_company, p_name,
                  pcs_restore_note(s.delete_after))
      FROM secrets s
     WHERE s.company_id = p_company_id AND s.name = p_name
       AND s.deleted_at IS NOT NULL AND s.released_at IS NULL
$$;

-- NOT_FOUND for a name no live secret has, saying so when a deleted one holds it: a caller
-- must learn that it was deleted and until when it can come back, not that it never was.
CREATE FUNCTION pcs_secret_missing(p_company_id uuid, p_company text, p_name text)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pcs_raise(5, coalesce(pcs_deleted_note(p_company_id, p_company, p_name),
                                  format('secret %s/%s does not exist', p_company, p_name)));
END $$;

-- Principals: every rule matching the peer's uid or gid; the daemon picks the most specific.
-- gen: the principal rules' generation (migration 005) when these rows were read, so the
-- daemon can reuse its decision while the rules have not changed.
CREATE FUNCTION pcs_principal_lookup(p_uid bigint, p_gids bigint[])
RETURNS TABLE (id bigint, match text, unix_id bigint, role text, company text,
               agent_id uuid, agent_name text, gen bigint)
LANGUAGE sql STABLE AS $$
    SELECT p.id, p.match, p.unix_id, p.role, c.name, a.id, a.name,
           (SELECT g.gen FROM pcs_gens g WHERE g.name = 'principals')
      FROM principals p
      LEFT JOIN companies c ON c.id = p.company_id
      LEFT JOIN agents a ON a.id = p.agent_id
     WHERE (p.match = 'uid' AND p.unix_id = p_uid)
        OR (p.match = 'gid' AND p.unix_id = ANY (p_gids))
     ORDER BY (p.match = 'uid') DESC, p.id
$$;

-- Companies.
CREATE FUNCTION pcs_create_company(p_name text, p_actor text)
RETURNS TABLE (id uuid, name text, created_at timestamptz, created_by text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    IF EXISTS (SELECT 1 FROM companies c WHERE c.name = p_name) THEN
        PERFORM pcs_raise(6, format('company %s already exists', p_name));
    END IF;
    RETURN QUERY INSERT INTO companies (name, created_by) VALUES (p_name, p_actor)
        RETURNING companies.id, companies.name, companies.created_at, companies.created_by;
END $$;

-- p_only NULL = every company.
CREATE FUNCTION pcs_list_companies(p_only text[])
RETURNS TABLE (id uuid, name text, created_at timestamptz, created_by text)
LANGUAGE sql STABLE AS $$
    SELECT c.id, c.name, c.created_at, c.created_by FROM companies c
     WHERE p_only IS NULL OR c.name = ANY (p_only) ORDER BY c.name
$$;

-- Secrets. Creating and updating take two steps because the value is sealed in the daemon
-- with associated data that includes ids and the version number: *_prepare returns them.
-- For a create: the company's id. With p_token, a live secret of that name whose version 1 that
-- token made is a retry: its id, the first call's value tag (hex) and description come back
-- (token_secret NULL otherwise), for the daemon to answer it or refuse it if the request
-- differs (docs/lifecycle.md, "Idempotency").
CREATE FUNCTION pcs_secret_prepare_create(p_company text, p_name text, p_token text)
RETURNS TABLE (company_id uuid, token_secret uuid, token_tag text, token_description text)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE v_company uuid := pcs_company_id(p_company); v_holder record;
BEGIN
    SELECT s.id, s.deleted_at, v.idempotency_tag, v.idempotency_description,
           (p_token <> '' AND v.idempotency_token = p_token) AS same_token
      INTO v_holder
      FROM secrets s LEFT JOIN secret_versions v ON v.secret_id = s.id AND v.version = 1
     WHERE s.company_id = v_company AND s.name = p_name AND s.released_at IS NULL;
    IF v_holder.id IS NULL THEN
        RETURN QUERY SELECT v_company, NULL::uuid, ''::text, ''::text;
        RETURN;
    END IF;
    IF v_holder.deleted_at IS NULL AND coalesce(v_holder.same_token, false) THEN
        RETURN QUERY SELECT v_company, v_holder.id,
                            coalesce(encode(v_holder.idempotency_tag, 'hex'), ''),
                            coalesce(v_holder.idempotency_description, '');
        RETURN;
    END IF;
    IF v_holder.deleted_at IS NULL THEN
        PERFORM pcs_raise(6, format('secret %s/%s already exists', p_company, p_name));
    END IF;
    -- A retry must not bring back, nor report as live, the secret it made and someone deleted.
    IF coalesce(v_holder.same_token, false) THEN
        PERFORM pcs_raise(9, format('the secret this idempotency token created was deleted '
                                    'since: %s (restore it; a retried create does not)',
                                    pcs_deleted_note(v_company, p_company, p_name)));
    END IF;
    -- A deleted secret keeps its name until its recovery window ends and it is purged.
    PERFORM pcs_raise(6, pcs_deleted_note(v_company, p_company, p_name) || '; its name stays '
                         'reserved until then (restore it instead)');
END $$;

CREATE FUNCTION pcs_secret_row(p_secret uuid)
RETURNS TABLE (id uuid, company text, name text, description text, current_version integer,
               created_at timestamptz, updated_at timestamptz, created_by text)
LANGUAGE sql STABLE AS $$
    SELECT s.id, c.name, s.name, s.description, s.current_version, s.created_at, s.updated_at,
           s.created_by
      FROM secrets s JOIN companies c ON c.id = s.company_id WHERE s.id = p_secret
$$;

-- The name taken when a create went to store: ABORTED when the holder is a create with the
-- same token that won the race (the daemon then prepares again and answers the retry from
-- it), ALREADY_EXISTS otherwise.
CREATE FUNCTION pcs_create_taken(p_company_id uuid, p_name text, p_token text) RETURNS void
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE v_company text := (SELECT c.name FROM companies c WHERE c.id = p_company_id);
BEGIN
    IF p_token <> '' AND EXISTS (SELECT 1 FROM secrets s JOIN secret_versions v
                                     ON v.secret_id = s.id AND v.version = 1
                                  WHERE s.company_id = p_company_id AND s.name = p_name
                                    AND s.released_at IS NULL
                                    AND v.idempotency_token = p_token) THEN
        PERFORM pcs_raise(10, 'a create with this idempotency token was applied concurrently');
    END IF;
    PERFORM pcs_raise(6, coalesce(pcs_deleted_note(p_company_id, v_company, p_name)
                                  || '; its name stays reserved until then (restore it instead)',
                                  format('secret %s/%s already exists', v_company, p_name)));
END $$;

-- With p_token, version 1 keeps the token, p_tag (the daemon's keyed hash of the value) and
-- the description, what a retried create is checked against. The unique name index decides
-- between racing creates: the loser waits for the winner's commit and then gets
-- pcs_create_taken's answer.
CREATE FUNCTION pcs_create_secret(p_company_id uuid, p_secret uuid, p_name text,
    p_description text, p_ciphertext bytea, p_nonce bytea, p_wrapped bytea, p_key_id text,
    p_actor text, p_token text, p_tag bytea)
RETURNS TABLE (id uuid, company text, name text, description text, current_version integer,
               created_at timestamptz, updated_at timestamptz, created_by text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    IF EXISTS (SELECT 1 FROM secrets s WHERE s.company_id = p_company_id AND s.name = p_name
               AND s.released_at IS NULL) THEN
        PERFORM pcs_create_taken(p_company_id, p_name, p_token);
    END IF;
    BEGIN
        INSERT INTO secrets (id, company_id, name, description, current_version, created_by)
            VALUES (p_secret, p_company_id, p_name, coalesce(p_description, ''), 1, p_actor);
    EXCEPTION WHEN unique_violation THEN
        PERFORM pcs_create_taken(p_company_id, p_name, p_token);
    END;
    INSERT INTO secret_versions (secret_id, version, ciphertext, nonce, wrapped_key, key_id,
                                 created_by, idempotency_token, idempotency_tag,
                                 idempotency_description)
        VALUES (p_secret, 1, p_ciphertext, p_nonce, p_wrapped, p_key_id, p_actor,
                nullif(p_token, ''), CASE WHEN p_token <> '' THEN p_tag END,
                CASE WHEN p_token <> '' THEN coalesce(p_description, '') END);
    PERFORM pcs_apply_retention(p_secret, p_actor);
    RETURN QUERY SELECT * FROM pcs_secret_row(p_secret);
END $$;

-- For an update: the ids, the current version, the next version number, and the version an
-- earlier update with the same idempotency token made (0 when none) with that update's value
-- tag (hex; '' for a version stored before tags were), the version it replaced and the
-- description it set (token_described false: none), so the daemon can refuse a reuse of the
-- token for another value, expected version or description.
CREATE FUNCTION pcs_secret_prepare_update(p_company text, p_name text, p_token text)
RETURNS TABLE (company_id uuid, secret_id uuid, current_version integer, next_version integer,
               token_version integer, token_tag text, token_expected integer,
               token_described boolean, token_description text)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE v_company uuid := pcs_company_id(p_company); v_secret uuid; v_current integer;
BEGIN
    SELECT s.id, s.current_version INTO v_secret, v_current FROM secrets s
     WHERE s.company_id = v_company AND s.name = p_name AND s.deleted_at IS NULL;
    IF v_secret IS NULL THEN
        PERFORM pcs_secret_missing(v_company, p_company, p_name);
    END IF;
    RETURN QUERY SELECT v_company, v_secret, v_current,
        (SELECT max(v.version) + 1 FROM secret_versions v WHERE v.secret_id = v_secret),
        coalesce(t.version, 0), coalesce(encode(t.idempotency_tag, 'hex'), ''),
        coalesce(t.idempotency_expected, 0), t.idempotency_description IS NOT NULL,
        coalesce(t.idempotency_description, '')
      FROM (SELECT 1) one
      LEFT JOIN secret_versions t ON t.secret_id = v_secret AND p_token <> ''
                                 AND t.idempotency_token = p_token;
END $$;

-- Adds p_version and, when p_promote, makes it current, if the secret's current version is
-- still p_expected (check-and-set; ABORTED otherwise, so a racing update is detected, never
-- lost). Without p_promote the version is staged: latest stays where it is until promoted.
-- With a token the version keeps p_tag (the daemon's keyed hash of the value), p_expected and
-- p_description, what a later call with the same token is checked against. p_description not
-- NULL becomes the secret's description in the same transaction.
CREATE FUNCTION pcs_add_version(p_secret uuid, p_version integer, p_expected integer,
    p_ciphertext bytea, p_nonce bytea, p_wrapped bytea, p_key_id text, p_token text,
    p_tag bytea, p_actor text, p_promote boolean, p_description text)
RETURNS TABLE (id uuid, company text, name text, description text, current_version integer,
               created_at timestamptz, updated_at timestamptz, created_by text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE v_current integer;
BEGIN
    SELECT s.current_version INTO v_current FROM secrets s
     WHERE s.id = p_secret AND s.deleted_at IS NULL FOR UPDATE;
    IF v_current IS NULL THEN
        PERFORM pcs_raise(5, coalesce((SELECT format('secret %s/%s was deleted; %s', c.name,
                                                     s.name, pcs_restore_note(s.delete_after))
                                         FROM secrets s JOIN companies c ON c.id = s.company_id
                                        WHERE s.id = p_secret), 'secret does not exist'));
    END IF;
    IF v_current <> p_expected
       OR EXISTS (SELECT 1 FROM secret_versions v WHERE v.secret_id = p_secret
                  AND v.version >= p_version) THEN
        PERFORM pcs_raise(10, format('secret changed concurrently (current version is %s)',
                                     v_current));
    END IF;
    IF p_token <> '' AND EXISTS (SELECT 1 FROM secret_versions v WHERE v.secret_id = p_secret
                                 AND v.idempotency_token = p_token) THEN
        PERFORM pcs_raise(10, 'an update with this idempotency token was applied concurrently');
    END IF;
    INSERT INTO secret_versions (secret_id, version, ciphertext, nonce, wrapped_key, key_id,
                                 created_by, idempotency_token, idempotency_tag,
                                 idempotency_expected, idempotency_description)
        VALUES (p_secret, p_version, p_ciphertext, p_nonce, p_wrapped, p_key_id, p_actor,
                nullif(p_token, ''), CASE WHEN p_token <> '' THEN p_tag END,
                CASE WHEN p_token <> '' THEN p_expected END,
                CASE WHEN p_token <> '' THEN p_description END);
    UPDATE secrets SET current_version = CASE WHEN p_promote THEN p_version
                                              ELSE secrets.current_version END,
                       description = coalesce(p_description, secrets.description),
                       updated_at = now()
     WHERE secrets.id = p_secret;
    PERFORM pcs_apply_retention(p_secret, p_actor);
    RETURN QUERY SELECT * FROM pcs_secret_row(p_secret);
END $$;

-- UpdateSecret with a description and no value: the description changes, no version is made.
-- The secret's row changes, so its generation moves (migration 005) although no cache holds
-- the description.
CREATE FUNCTION pcs_set_secret_description(p_company text, p_name text, p_description text)
RETURNS TABLE (id uuid, company text, name text, description text, current_version integer,
               created_at timestamptz, updated_at timestamptz, created_by text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE v_company uuid := pcs_company_id(p_company); v_secret uuid;
BEGIN
    UPDATE secrets s SET description = p_description, updated_at = now()
     WHERE s.company_id = v_company AND s.name = p_name AND s.deleted_at IS NULL
    RETURNING s.id INTO v_secret;
    IF v_secret IS NULL THEN
        PERFORM pcs_secret_missing(v_company, p_company, p_name);
    END IF;
    RETURN QUERY SELECT * FROM pcs_secret_row(v_secret);
END $$;

CREATE FUNCTION pcs_list_secrets(p_company text)
RETURNS TABLE (id uuid, company text, name text, description text, current_version integer,
               created_at timestamptz, updated_at timestamptz, created_by text)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE v_company uuid := pcs_company_id(p_company);
BEGIN
    RETURN QUERY SELECT s.id, p_company, s.name, s.description, s.current_version,
                        s.created_at, s.updated_at, s.created_by
                   FROM secrets s WHERE s.company_id = v_company AND s.deleted_at IS NULL
                  ORDER BY s.name;
END $$;

-- One row per version, the secret's columns repeated.
CREATE FUNCTION pcs_describe_secret(p_company text, p_name text)
RETURNS TABLE (id uuid, company text, name text, description text, current_version integer,
               created_at timestamptz, updated_at timestamptz, created_by text,
               version integer, state text, version_created_at timestamptz,
               version_created_by text, key_id text, disabled_at timestamptz,
               disabled_by text, enabled_at timestamptz, enabled_by text,
               promoted_at timestamptz, promoted_by text, max_versions integer,
               destroyed_at timestamptz, destroyed_by text, destroyed_how text)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE v_company uuid := pcs_company_id(p_company); v_secret uuid;
BEGIN
    SELECT s.id INTO v_secret FROM secrets s
     WHERE s.company_id = v_company AND s.name = p_name AND s.deleted_at IS NULL;
    IF v_secret IS NULL THEN
        PERFORM pcs_secret_missing(v_company, p_company, p_name);
    END IF;
    RETURN QUERY SELECT r.*, v.version, v.state, v.created_at, v.created_by, v.key_id,
                        v.disabled_at, v.disabled_by, v.enabled_at, v.enabled_by,
                        v.promoted_at, v.promoted_by,
                        (SELECT x.max_versions FROM secrets x WHERE x.id = v_secret),
                        -- A purge destroys too: it says so in its own columns (007).
                        coalesce(v.destroyed_at, v.purged_at),
                        coalesce(v.destroyed_by, v.purged_by),
                        coalesce(v.destroyed_how, CASE WHEN v.purged_at IS NOT NULL
                                                       THEN 'purge' END)
                   FROM pcs_secret_row(v_secret) r
                   JOIN secret_versions v ON v.secret_id = r.id
                  ORDER BY v.version;
END $$;

-- The version lifecycle (docs/lifecycle.md): p_action is promote (latest := p_version, an
-- active version), rollback (latest := p_version, an active version older than latest; no
-- version is written), disable or enable (the version's state). Latest never points at a
-- disabled version: disabling it is refused, as is making a disabled one latest. Each records
-- who and when on the version. The secret's row is locked first, so two transitions of one
-- secret serialize and each checks against the other's outcome.
CREATE FUNCTION pcs_secret_version_action(p_company text, p_name text, p_version integer,
    p_action text, p_actor text)
RETURNS TABLE (id uuid, company text, name text, description text, current_version integer,
               created_at timestamptz, updated_at timestamptz, created_by text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_company uuid := pcs_company_id(p_company);
    v_secret uuid; v_current integer; v_state text;
    v_what text := format('version %s of secret %s/%s', p_version, p_company, p_name);
BEGIN
    IF p_action NOT IN ('promote', 'rollback', 'disable', 'enable') THEN
        PERFORM pcs_raise(3, format('unknown version action %s', p_action));
    END IF;
    SELECT s.id, s.current_version INTO v_secret, v_current FROM secrets s
     WHERE s.company_id = v_company AND s.name = p_name AND s.deleted_at IS NULL FOR UPDATE;
    IF v_secret IS NULL THEN
        PERFORM pcs_secret_missing(v_company, p_company, p_name);
    END IF;
    SELECT v.state INTO v_state FROM secret_versions v
     WHERE v.secret_id = v_secret AND v.version = p_version FOR UPDATE;
    IF v_state IS NULL THEN
        PERFORM pcs_raise(5, format('%s does not exist', v_what));
    END IF;
    IF v_state = 'destroyed' THEN
        PERFORM pcs_raise(9, format('%s is destroyed', v_what));
    END IF;
    IF p_action IN ('promote', 'rollback') THEN
        IF v_state <> 'active' THEN
            PERFORM pcs_raise(9, format('%s is %s; latest may not point at a disabled '
                                        'version (enable it first)', v_what, v_state));
        END IF;
        IF p_action = 'rollback' AND p_version >= v_current THEN
            PERFORM pcs_raise(9, format('%s is not earlier than latest (version %s): rollback '
                                        'goes back to an earlier version; use promote',
                                        v_what, v_current));
        END IF;
        UPDATE secret_versions v SET promoted_at = now(), promoted_by = p_actor
         WHERE v.secret_id = v_secret AND v.version = p_version;
        UPDATE secrets SET current_version = p_version, updated_at = now()
         WHERE secrets.id = v_secret;
    ELSIF p_action = 'disable' THEN
        IF p_version = v_current THEN
            PERFORM pcs_raise(9, format('latest may not point at a disabled version: %s is '
                                        'latest; promote or roll back first', v_what));
        END IF;
        IF v_state = 'disabled' THEN
            PERFORM pcs_raise(9, format('%s is already disabled', v_what));
        END IF;
        UPDATE secret_versions v SET state = 'disabled', disabled_at = now(),
                                     disabled_by = p_actor
         WHERE v.secret_id = v_secret AND v.version = p_version;
    ELSE
        IF v_state <> 'disabled' THEN
            PERFORM pcs_raise(9, format('%s is not disabled (it is %s)', v_what, v_state));
        END IF;
        UPDATE secret_versions v SET state = 'active', enabled_at = now(), enabled_by = p_actor
         WHERE v.secret_id = v_secret AND v.version = p_version;
    END IF;
    RETURN QUERY SELECT * FROM pcs_secret_row(v_secret);
END $$;

-- Retention and destroying one version (docs/lifecycle.md, migration 009). Destroying a
-- version writes NULL over its ciphertext, nonce, wrapped key and value tag, sets its state
-- 'destroyed' and records when, by whom and how; its row and the audit history stay. Each
-- destroyed row's update bumps the secret's generation (trigger of 005), so no daemon's cache
-- serves it again.

-- What a secret's retention keeps: its newest max_versions versions that are not destroyed,
-- and always the version latest points to and every staged one (active, above latest); every
-- other version's value is destroyed, here, by p_actor. 0 = unlimited: nothing. The caller
-- holds the secret's row locked (FOR UPDATE), so two writers of one secret apply it in turn.
-- Returns how many versions it destroyed.
CREATE FUNCTION pcs_apply_retention(p_secret uuid, p_actor text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE v_max integer; v_current integer; v_n integer;
BEGIN
    SELECT s.max_versions, s.current_version INTO v_max, v_current
      FROM secrets s WHERE s.id = p_secret;
    IF coalesce(v_max, 0) = 0 THEN
        RETURN 0;
    END IF;
    WITH ranked AS (
        SELECT k.version, row_number() OVER (ORDER BY k.version DESC) AS newest
          FROM secret_versions k WHERE k.secret_id = p_secret AND k.state <> 'destroyed')
    UPDATE secret_versions v
       SET ciphertext = NULL, nonce = NULL, wrapped_key = NULL, idempotency_tag = NULL,
           state = 'destroyed', destroyed_at = now(), destroyed_by = p_actor,
           destroyed_how = 'retention'
      FROM ranked r
     WHERE v.secret_id = p_secret AND v.version = r.version AND r.newest > v_max
       AND v.version <> v_current
       AND NOT (v.version > v_current AND v.state = 'active');
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END $$;

-- Sets company/name's retention limit (0 = unlimited) and applies it at once. Returns the
-- secret's row, the limit, and how many versions this call destroyed.
CREATE FUNCTION pcs_set_secret_retention(p_company text, p_name text, p_max integer,
    p_actor text)
RETURNS TABLE (id uuid, company text, name text, description text, current_version integer,
               created_at timestamptz, updated_at timestamptz, created_by text,
               max_versions integer, destroyed integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE v_company uuid := pcs_company_id(p_company); v_secret uuid; v_n integer;
BEGIN
    IF p_max IS NULL OR p_max < 0 OR p_max > 10000 THEN
        PERFORM pcs_raise(3, format('max versions %s is out of range: 0 (unlimited) to 10000',
                                    p_max));
    END IF;
    SELECT s.id INTO v_secret FROM secrets s
     WHERE s.company_id = v_company AND s.name = p_name AND s.deleted_at IS NULL FOR UPDATE;
    IF v_secret IS NULL THEN
        PERFORM pcs_secret_missing(v_company, p_company, p_name);
    END IF;
    UPDATE secrets SET max_versions = p_max WHERE secrets.id = v_secret;
    v_n := pcs_apply_retention(v_secret, p_actor);
    RETURN QUERY SELECT r.*, p_max, v_n FROM pcs_secret_row(v_secret) r;
END $$;

-- Destroys the value of version p_version of company/name, a live secret (a deleted one is
-- purged whole instead). Refused for the version latest points to (rotate or roll back first:
-- latest must resolve) and for a version already destroyed, so a script sees that nothing
-- changed. A staged or disabled version may be destroyed.
CREATE FUNCTION pcs_destroy_secret_version(p_company text, p_name text, p_version integer,
    p_actor text)
RETURNS TABLE (id uuid, company text, name text, description text, current_version integer,
               created_at timestamptz, updated_at timestamptz, created_by text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_company uuid := pcs_company_id(p_company);
    v_secret uuid; v_current integer; v_row record;
    v_what text := format('version %s of secret %s/%s', p_version, p_company, p_name);
BEGIN
    SELECT s.id, s.current_version INTO v_secret, v_current FROM secrets s
     WHERE s.company_id = v_company AND s.name = p_name AND s.deleted_at IS NULL FOR UPDATE;
    IF v_secret IS NULL THEN
        PERFORM pcs_secret_missing(v_company, p_company, p_name);
    END IF;
    SELECT v.state, coalesce(v.destroyed_at, v.purged_at) AS d_at,
           coalesce(v.destroyed_by, v.purged_by) AS d_by INTO v_row
      FROM secret_versions v
     WHERE v.secret_id = v_secret AND v.version = p_version FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM pcs_raise(5, format('%s does not exist', v_what));
    END IF;
    IF v_row.state = 'destroyed' THEN
        PERFORM pcs_raise(9, format('%s was already destroyed (at %s by %s): nothing to destroy',
                                    v_what, coalesce(pcs_ts(v_row.d_at), 'an unknown time'),
                                    coalesce(v_row.d_by, 'an unknown principal')));
    END IF;
    IF p_version = v_current THEN
        PERFORM pcs_raise(9, format('%s is latest and cannot be destroyed: rotate (secret '
                                    'update) or roll back first', v_what));
    END IF;
    UPDATE secret_versions v
       SET ciphertext = NULL, nonce = NULL, wrapped_key = NULL, idempotency_tag = NULL,
           state = 'destroyed', destroyed_at = now(), destroyed_by = p_actor,
           destroyed_how = 'destroy-version'
     WHERE v.secret_id = v_secret AND v.version = p_version;
    RETURN QUERY SELECT * FROM pcs_secret_row(v_secret);
END $$;

-- Agents.
CREATE FUNCTION pcs_agent_id(p_company text, p_agent text) RETURNS uuid
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE v uuid;
BEGIN
    SELECT a.id INTO v FROM agents a WHERE a.company_id = pcs_company_id(p_company)
       AND a.name = p_agent;
    IF v IS NULL THEN
        PERFORM pcs_raise(5, format('agent %s/%s does not exist', p_company, p_agent));
    END IF;
    RETURN v;
END $$;

-- The agent and its bindings: one row per binding (binding columns NULL when it has none).
CREATE FUNCTION pcs_describe_agent(p_company text, p_agent text)
RETURNS TABLE (id uuid, company text, name text, uid bigint, created_at timestamptz,
               created_by text, env_name text, ref_company text, ref_name text,
               ref_version integer)
LANGUAGE sql STABLE AS $$
    SELECT a.id, c.name, a.name, a.uid, a.created_at, a.created_by, e.env_name, sc.name,
           s.name, e.version
      FROM agents a
      JOIN companies c ON c.id = a.company_id
      LEFT JOIN agent_env e ON e.agent_id = a.id
      LEFT JOIN secrets s ON s.id = e.secret_id
      LEFT JOIN companies sc ON sc.id = s.company_id
     WHERE a.id = pcs_agent_id(p_company, p_agent)
     ORDER BY e.env_name
$$;

-- An agent's uid is an agent and nothing else: refused when any rule already matches the uid,
-- by uid or through one of p_gids (its groups, looked up by the daemon).
CREATE FUNCTION pcs_create_agent(p_company text, p_agent text, p_uid bigint, p_actor text,
    p_gids bigint[])
RETURNS TABLE (id uuid, company text, name text, uid bigint, created_at timestamptz,
               created_by text, env_name text, ref_company text, ref_name text,
               ref_version integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE v_company uuid := pcs_company_id(p_company); v_agent uuid; v_rule record;
BEGIN
    IF EXISTS (SELECT 1 FROM agents a WHERE a.company_id = v_company AND a.name = p_agent) THEN
        PERFORM pcs_raise(6, format('agent %s/%s already exists', p_company, p_agent));
    END IF;
    SELECT p.id, p.role INTO v_rule FROM principals p
     WHERE p.match = 'uid' AND p.unix_id = p_uid LIMIT 1;
    IF FOUND THEN
        PERFORM pcs_raise(9, format('uid %s already has role %s (principal %s)', p_uid,
                                    v_rule.role, v_rule.id));
    END IF;
    SELECT p.id, p.role, p.unix_id INTO v_rule FROM principals p
     WHERE p.match = 'gid' AND p.unix_id = ANY (coalesce(p_gids, '{}')) ORDER BY p.id LIMIT 1;
    IF FOUND THEN
        PERFORM pcs_raise(9, format('uid %s belongs to group %s, which has role %s (principal %s); '
                                    'an agent''s uid may match no other rule', p_uid,
                                    v_rule.unix_id, v_rule.role, v_rule.id));
    END IF;
    INSERT INTO agents (company_id, name, uid, created_by)
        VALUES (v_company, p_agent, p_uid, p_actor) RETURNING agents.id INTO v_agent;
    INSERT INTO principals (match, unix_id, role, company_id, agent_id, created_by)
        VALUES ('uid', p_uid, 'agent', v_company, v_agent, p_actor);
    RETURN QUERY SELECT * FROM pcs_describe_agent(p_company, p_agent);
END $$;

-- p_ref_secret: a secret id, or NULL to use p_ref_company/p_ref_name. p_version NULL = latest.
CREATE FUNCTION pcs_set_agent_env(p_company text, p_agent text, p_env text,
    p_ref_secret uuid, p_ref_company text, p_ref_name text, p_version integer, p_actor text)
RETURNS TABLE (id uuid, company text, name text, uid bigint, created_at timestamptz,
               created_by text, env_name text, ref_company text, ref_name text,
               ref_version integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE v_agent uuid := pcs_agent_id(p_company, p_agent); v_company uuid; v_secret uuid;
BEGIN
    IF p_ref_secret IS NOT NULL THEN
        SELECT s.id, s.company_id INTO v_secret, v_company FROM secrets s
         WHERE s.id = p_ref_secret AND s.deleted_at IS NULL;
    ELSE
        SELECT s.id, s.company_id INTO v_secret, v_company FROM secrets s
         WHERE s.company_id = pcs_company_id(p_ref_company) AND s.name = p_ref_name
           AND s.deleted_at IS NULL;
    END IF;
    IF v_secret IS NULL THEN
        PERFORM pcs_raise(5, format('secret %s does not exist',
            coalesce(p_ref_secret::text, p_ref_company || '/' || p_ref_name)));
    END IF;
    IF v_company <> pcs_company_id(p_company) THEN
        PERFORM pcs_raise(7, format('agent %s/%s may only use secrets of company %s',
                                    p_company, p_agent, p_company));
    END IF;
    IF p_version IS NOT NULL AND NOT EXISTS (SELECT 1 FROM secret_versions v
            WHERE v.secret_id = v_secret AND v.version = p_version) THEN
        PERFORM pcs_raise(5, format('version %s of secret %s does not exist', p_version,
            coalesce(p_ref_secret::text, p_ref_company || '/' || p_ref_name)));
    END IF;
    INSERT INTO agent_env (agent_id, env_name, secret_id, version, created_by)
        VALUES (v_agent, p_env, v_secret, p_version, p_actor)
        ON CONFLICT (agent_id, env_name) DO UPDATE
           SET secret_id = EXCLUDED.secret_id, version = EXCLUDED.version,
               created_at = now(), created_by = EXCLUDED.created_by;
    RETURN QUERY SELECT * FROM pcs_describe_agent(p_company, p_agent);
END $$;

CREATE FUNCTION pcs_unset_agent_env(p_company text, p_agent text, p_env text)
RETURNS TABLE (id uuid, company text, name text, uid bigint, created_at timestamptz,
               created_by text, env_name text, ref_company text, ref_name text,
               ref_version integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    DELETE FROM agent_env e WHERE e.agent_id = pcs_agent_id(p_company, p_agent)
       AND e.env_name = p_env;
    IF NOT FOUND THEN
        PERFORM pcs_raise(5, format('agent %s/%s has no variable %s', p_company, p_agent, p_env));
    END IF;
    RETURN QUERY SELECT * FROM pcs_describe_agent(p_company, p_agent);
END $$;

-- Resolving. One row per ref i = 1..n given as parallel arrays (secret id or company+name;
-- version 0 = latest), on behalf of agent p_company/p_agent: granted says whether the agent's
-- env config binds that secret with that same version selector. The daemon's authz decides
-- from it; the sealed value is returned only for granted refs, and nothing at all about a ref
-- that is not granted, so agents cannot probe for names. One set-based statement whatever n
-- is: the agent's bindings are few and indexed by agent, each joined to its secret by key.
-- The last columns are what the daemon's cache keeps (docs/architecture.md): the secret's
-- generation, what latest points to, its names, and the agent's id and generation, all read
-- in this statement's snapshot together with the value they describe.
CREATE FUNCTION pcs_resolve(p_company text, p_agent text, p_ids text[], p_companies text[],
    p_names text[], p_versions integer[])
RETURNS TABLE (idx integer, granted boolean, company_id uuid, secret_id uuid, version integer,
               state text, ciphertext bytea, nonce bytea, wrapped_key bytea, key_id text,
               secret_gen bigint, current_version integer, company text, name text,
               agent_id uuid, agent_gen bigint, deleted_note text)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    v_agent uuid := pcs_agent_id(p_company, p_agent);
    v_gen bigint;
BEGIN
    SELECT a.gen INTO v_gen FROM agents a WHERE a.id = v_agent;
    RETURN QUERY
    SELECT r.i::integer, s.id IS NOT NULL, s.company_id, s.id,
           CASE WHEN s.id IS NOT NULL THEN coalesce(nullif(r.v, 0), s.current_version) END,
           sv.state,
           CASE WHEN sv.state = 'active' AND s.deleted_at IS NULL THEN sv.ciphertext END,
           CASE WHEN sv.state = 'active' AND s.deleted_at IS NULL THEN sv.nonce END,
           CASE WHEN sv.state = 'active' AND s.deleted_at IS NULL THEN sv.wrapped_key END,
           sv.key_id, s.gen, s.current_version, c.name, s.name, v_agent, v_gen,
           CASE WHEN s.deleted_at IS NOT NULL
                THEN format('secret %s/%s was deleted; %s', c.name, s.name,
                            pcs_restore_note(s.delete_after)) END
      FROM unnest(p_ids, p_companies, p_names, p_versions) WITH ORDINALITY AS r(id, co, nm, v, i)
      LEFT JOIN LATERAL (
          -- A deleted secret's bindings are kept (docs/lifecycle.md): it is still matched,
          -- so the agent is told it was deleted instead of being refused as if never bound.
          SELECT x.id, x.company_id, x.current_version, x.gen, x.name, x.deleted_at,
                 x.delete_after
            FROM agent_env e JOIN secrets x ON x.id = e.secret_id
           WHERE e.agent_id = v_agent
             AND e.version IS NOT DISTINCT FROM nullif(r.v, 0)
             AND (x.id = nullif(r.id, '')::uuid
                  OR (coalesce(r.id, '') = '' AND x.name = r.nm
                      AND x.company_id = (SELECT c2.id FROM companies c2 WHERE c2.name = r.co)))
           ORDER BY x.deleted_at IS NOT NULL
           LIMIT 1) s ON true
      LEFT JOIN companies c ON c.id = s.company_id
      LEFT JOIN secret_versions sv
             ON sv.secret_id = s.id AND sv.version = coalesce(nullif(r.v, 0), s.current_version)
     ORDER BY r.i;
END $$;

-- The configured environment of an agent with each binding's sealed value.
CREATE FUNCTION pcs_agent_env(p_company text, p_agent text)
RETURNS TABLE (env_name text, ref_company text, ref_name text, selector integer,
               company_id uuid, secret_id uuid, version integer, ciphertext bytea,
               nonce bytea, wrapped_key bytea, key_id text)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE v_agent uuid := pcs_agent_id(p_company, p_agent); r record;
BEGIN
    FOR r IN SELECT e.env_name, c.name AS company, s.name, e.version AS selector, s.company_id,
                    s.id, coalesce(e.version, s.current_version) AS version, s.deleted_at,
                    s.delete_after
               FROM agent_env e JOIN secrets s ON s.id = e.secret_id
               JOIN companies c ON c.id = s.company_id
              WHERE e.agent_id = v_agent ORDER BY e.env_name LOOP
        IF r.deleted_at IS NOT NULL THEN
            -- Loud: an agent must not start without its variable (docs/lifecycle.md).
            PERFORM pcs_raise(5, format('%s: secret %s/%s was deleted; %s', r.env_name,
                                        r.company, r.name, pcs_restore_note(r.delete_after)));
        END IF;
        RETURN QUERY SELECT r.env_name, r.company, r.name, r.selector, r.company_id, r.id,
                            r.version, v.ciphertext, v.nonce, v.wrapped_key, v.key_id
                       FROM secret_versions v
                      WHERE v.secret_id = r.id AND v.version = r.version AND v.state = 'active';
        IF NOT FOUND THEN
            PERFORM pcs_raise(9, format('%s: version %s of %s/%s %s', r.env_name, r.version,
                r.company, r.name,
                coalesce((SELECT CASE v.state WHEN 'destroyed' THEN 'was destroyed'
                                              ELSE 'is ' || v.state END
                            FROM secret_versions v
                           WHERE v.secret_id = r.id AND v.version = r.version),
                         'does not exist')));
        END IF;
    END LOOP;
END $$;

CREATE FUNCTION pcs_list_agents(p_company text)
RETURNS TABLE (id uuid, company text, name text, uid bigint, created_at timestamptz,
               created_by text, env_name text, ref_company text, ref_name text,
               ref_version integer)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE v_company uuid := pcs_company_id(p_company);
BEGIN
    RETURN QUERY SELECT a.id, p_company, a.name, a.uid, a.created_at, a.created_by,
                        NULL::text, NULL::text, NULL::text, NULL::integer
                   FROM agents a WHERE a.company_id = v_company ORDER BY a.name;
END $$;

-- Removing an agent removes its bindings and its principal (ON DELETE CASCADE).
CREATE FUNCTION pcs_delete_agent(p_company text, p_agent text)
RETURNS TABLE (id uuid)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE v_agent uuid := pcs_agent_id(p_company, p_agent);
BEGIN
    DELETE FROM agents a WHERE a.id = v_agent;
    RETURN QUERY SELECT v_agent;
END $$;

-- Soft delete (docs/lifecycle.md): nothing resolves the secret any more, but its id,
-- versions, name and the agents' bindings stay, so it can be restored as it was until
-- p_days from now; then a daemon purges it (pcs_purge_expired). Refused while agents bind it,
-- naming them, unless p_force: their bindings are kept either way, and they fail loudly (NOT
-- FOUND, saying until when it can be restored) rather than start without the variable.
-- Returns the bindings that still name it and the restore deadline.
CREATE FUNCTION pcs_delete_secret(p_company text, p_name text, p_force boolean,
    p_days integer, p_actor text)
RETURNS TABLE (bound text, restore_until text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_company uuid := pcs_company_id(p_company); v_secret uuid; v_users text[];
    v_after timestamptz;
BEGIN
    IF p_days IS NULL OR p_days < 1 OR p_days > 30 THEN
        PERFORM pcs_raise(3, format('recovery days %s is out of range: 1 to 30', p_days));
    END IF;
    SELECT s.id INTO v_secret FROM secrets s
     WHERE s.company_id = v_company AND s.name = p_name AND s.deleted_at IS NULL FOR UPDATE;
    IF v_secret IS NULL THEN
        PERFORM pcs_secret_missing(v_company, p_company, p_name);
    END IF;
    SELECT array_agg(c.name || '/' || a.name || ':' || e.env_name ORDER BY c.name, a.name,
                     e.env_name)
      INTO v_users
      FROM agent_env e JOIN agents a ON a.id = e.agent_id JOIN companies c ON c.id = a.company_id
     WHERE e.secret_id = v_secret;
    IF v_users IS NOT NULL AND NOT p_force THEN
        PERFORM pcs_raise(9, format('secret %s/%s is used by %s; unset those or delete with '
                                    'force (the bindings are kept, and fail until restored)',
                                    p_company, p_name, array_to_string(v_users, ', ')));
    END IF;
    v_after := now() + make_interval(days => p_days);
    UPDATE secrets SET deleted_at = now(), deleted_by = p_actor, delete_after = v_after
     WHERE secrets.id = v_secret;
    RETURN QUERY SELECT u, pcs_ts(v_after) FROM unnest(coalesce(v_users, '{}')) AS u;
    IF v_users IS NULL THEN
        RETURN QUERY SELECT NULL::text, pcs_ts(v_after);
    END IF;
END $$;

-- Brings a deleted secret back within its recovery window: same id, versions and bindings.
CREATE FUNCTION pcs_restore_secret(p_company text, p_name text, p_actor text)
RETURNS TABLE (id uuid, company text, name text, description text, current_version integer,
               created_at timestamptz, updated_at timestamptz, created_by text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE v_company uuid := pcs_company_id(p_company); v_secret uuid; v_after timestamptz;
BEGIN
    -- The name's holder (live, or deleted and not yet released): at most one.
    SELECT s.id, s.delete_after INTO v_secret, v_after FROM secrets s
     WHERE s.company_id = v_company AND s.name = p_name AND s.released_at IS NULL
       AND s.deleted_at IS NOT NULL FOR UPDATE;
    IF v_secret IS NULL THEN
        IF EXISTS (SELECT 1 FROM secrets s WHERE s.company_id = v_company AND s.name = p_name
                   AND s.deleted_at IS NULL) THEN
            PERFORM pcs_raise(9, format('secret %s/%s is not deleted: nothing to restore',
                                        p_company, p_name));
        END IF;
        PERFORM pcs_raise(5, format('secret %s/%s does not exist (or its recovery window '
                                    'ended and it was purged)', p_company, p_name));
    END IF;
    IF v_after IS NULL OR v_after <= now() THEN
        PERFORM pcs_raise(9, format('secret %s/%s was deleted; %s', p_company, p_name,
                                    pcs_restore_note(v_after)));
    END IF;
    UPDATE secrets SET deleted_at = NULL, deleted_by = NULL, delete_after = NULL,
                       restored_at = now(), restored_by = p_actor, updated_at = now()
     WHERE secrets.id = v_secret;
    RETURN QUERY SELECT * FROM pcs_secret_row(v_secret);
END $$;

-- Destroys the ciphertext of every version of company/name at once, live or deleted (the
-- leaked-key procedure, docs/lifecycle.md); the secret's row, its versions' metadata and the
-- audit history stay. Irreversible. Refused when nothing is left to destroy.
CREATE FUNCTION pcs_purge_secret(p_company text, p_name text, p_actor text)
RETURNS TABLE (id uuid, company text, name text, description text, current_version integer,
               created_at timestamptz, updated_at timestamptz, created_by text,
               destroyed integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE v_company uuid := pcs_company_id(p_company); v_secret uuid; v_n integer;
BEGIN
    SELECT s.id INTO v_secret FROM secrets s
     WHERE s.company_id = v_company AND s.name = p_name AND s.released_at IS NULL FOR UPDATE;
    IF v_secret IS NULL THEN
        PERFORM pcs_raise(5, format('secret %s/%s does not exist', p_company, p_name));
    END IF;
    UPDATE secret_versions v SET ciphertext = NULL, nonce = NULL, wrapped_key = NULL,
                                 idempotency_tag = NULL,
                                 state = 'destroyed', purged_at = now(), purged_by = p_actor
     WHERE v.secret_id = v_secret AND (v.state <> 'destroyed' OR v.ciphertext IS NOT NULL);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n = 0 THEN
        PERFORM pcs_raise(9, format('secret %s/%s is already purged: no version holds a value',
                                    p_company, p_name));
    END IF;
    RETURN QUERY SELECT r.*, v_n FROM pcs_secret_row(v_secret) r;
END $$;

-- Deleted secrets that still hold their names, with their restore deadlines.
CREATE FUNCTION pcs_list_deleted_secrets(p_company text)
RETURNS TABLE (id uuid, company text, name text, description text, current_version integer,
               created_at timestamptz, updated_at timestamptz, created_by text,
               deleted_at timestamptz, deleted_by text, delete_after timestamptz,
               purged boolean)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE v_company uuid := pcs_company_id(p_company);
BEGIN
    RETURN QUERY SELECT s.id, p_company, s.name, s.description, s.current_version,
                        s.created_at, s.updated_at, s.created_by, s.deleted_at, s.deleted_by,
                        s.delete_after,
                        NOT EXISTS (SELECT 1 FROM secret_versions v WHERE v.secret_id = s.id
                                     AND v.ciphertext IS NOT NULL)
                   FROM secrets s
                  WHERE s.company_id = v_company AND s.deleted_at IS NOT NULL
                    AND s.released_at IS NULL
                  ORDER BY s.name;
END $$;

-- The daemons' periodic purge: every deleted secret whose recovery window ended loses its
-- versions' ciphertext and gives up its name, with one audit row each, in this one statement.
-- One daemon at a time: the others find the lock taken and skip the round (skipped).
CREATE FUNCTION pcs_purge_expired(p_instance uuid, p_uid bigint, p_gid bigint, p_pid bigint)
RETURNS TABLE (purged integer, skipped boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE v_n integer;
BEGIN
    -- 'pcsp' 'urge': a key of its own, not the migration lock's.
    IF NOT pg_try_advisory_xact_lock(1885565808, 1970431845) THEN
        RETURN QUERY SELECT 0, true;
        RETURN;
    END IF;
    WITH due AS (
        SELECT s.id, s.name, s.delete_after, c.name AS company
          FROM secrets s JOIN companies c ON c.id = s.company_id
         WHERE s.deleted_at IS NOT NULL AND s.released_at IS NULL AND s.delete_after <= now()
           FOR UPDATE OF s SKIP LOCKED),
    versions AS (
        UPDATE secret_versions v SET ciphertext = NULL, nonce = NULL, wrapped_key = NULL,
                                     idempotency_tag = NULL,
                                     state = 'destroyed', purged_at = now(),
                                     purged_by = 'pcsecretd'
          FROM due
         WHERE v.secret_id = due.id AND (v.state <> 'destroyed' OR v.ciphertext IS NOT NULL)),
    released AS (
        UPDATE secrets s SET released_at = now() FROM due WHERE s.id = due.id
        RETURNING s.id),
    audited AS (
        INSERT INTO audit_log (instance_id, call_id, peer_uid, peer_gid, peer_pid, principal,
                               method, company, secret, version, status, message, received_at)
        SELECT p_instance, 0, p_uid, p_gid, p_pid, 'pcsecretd', 'PurgeExpired', due.company,
               due.name, NULL, 'OK',
               format('recovery window ended at %s: purged, name released',
                      pcs_ts(due.delete_after)), now()
          FROM due JOIN released r ON r.id = due.id
        RETURNING 1)
    SELECT count(*) INTO v_n FROM audited;
    RETURN QUERY SELECT v_n, false;
END $$;

-- Principal rules (admin, operator, launcher; agents get theirs from pcs_create_agent).
CREATE FUNCTION pcs_principal_rows(p_only bigint)
RETURNS TABLE (id bigint, match text, unix_id bigint, role text, company text,
               agent text, created_at timestamptz, created_by text)
LANGUAGE sql STABLE AS $$
    SELECT p.id, p.match, p.unix_id, p.role, c.name, a.name, p.created_at, p.created_by
      FROM principals p
      LEFT JOIN companies c ON c.id = p.company_id
      LEFT JOIN agents a ON a.id = p.agent_id
     WHERE p_only IS NULL OR p.id = p_only
     ORDER BY p.id
$$;

CREATE FUNCTION pcs_add_principal(p_match text, p_unix_id bigint, p_role text,
    p_company text, p_actor text)
RETURNS TABLE (id bigint, match text, unix_id bigint, role text, company text,
               agent text, created_at timestamptz, created_by text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE v_company uuid; v_rule record; v_id bigint;
BEGIN
    IF p_role NOT IN ('admin', 'operator', 'launcher') THEN
        PERFORM pcs_raise(3, format('role %s cannot be added here (agents are made with agent create)', p_role));
    END IF;
    IF p_role = 'admin' AND coalesce(p_company, '') <> '' THEN
        PERFORM pcs_raise(3, 'admin rules apply to every company: give no company');
    END IF;
    IF p_role <> 'admin' THEN
        IF coalesce(p_company, '') = '' THEN
            PERFORM pcs_raise(3, format('role %s needs a company', p_role));
        END IF;
        v_company := pcs_company_id(p_company);
    END IF;
    -- One role per uid or gid, so that whoami has one answer.
    SELECT p.id, p.role INTO v_rule FROM principals p
     WHERE p.match = p_match AND p.unix_id = p_unix_id AND p.role <> p_role LIMIT 1;
    IF FOUND THEN
        PERFORM pcs_raise(9, format('%s %s already has role %s (principal %s)', p_match,
                                    p_unix_id, v_rule.role, v_rule.id));
    END IF;
    IF EXISTS (SELECT 1 FROM principals p WHERE p.match = p_match AND p.unix_id = p_unix_id
               AND p.role = p_role AND p.company_id IS NOT DISTINCT FROM v_company) THEN
        PERFORM pcs_raise(6, format('%s %s is already %s%s', p_match, p_unix_id, p_role,
            CASE WHEN p_company <> '' THEN ' of ' || p_company ELSE '' END));
    END IF;
    INSERT INTO principals (match, unix_id, role, company_id, created_by)
        VALUES (p_match, p_unix_id, p_role, v_company, p_actor) RETURNING principals.id INTO v_id;
    RETURN QUERY SELECT * FROM pcs_principal_rows(v_id);
END $$;

CREATE FUNCTION pcs_remove_principal(p_id bigint)
RETURNS TABLE (id bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    DELETE FROM principals p WHERE p.id = p_id;
    IF NOT FOUND THEN
        PERFORM pcs_raise(5, format('principal %s does not exist', p_id));
    END IF;
    RETURN QUERY SELECT p_id;
END $$;

-- ---- Watch ----
-- What a Watch covers, as it is now. p_company NULL: refs by id in any company (the daemon
-- then authorizes the company each row names). p_agent '' or NULL: no agent. With no refs,
-- the agent's environment: one row per secret it binds (idx 0). With refs, one row per ref in
-- order (secret_id NULL when it names no secret holding its name); granted says whether the
-- agent, when one is named, binds that secret (with any version selector).
CREATE FUNCTION pcs_watch_targets(p_company text, p_agent text, p_ids text[], p_names text[])
RETURNS TABLE (idx integer, secret_id uuid, company text, name text, latest integer,
               deleted boolean, granted boolean, agent_id uuid)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    v_company uuid;
    v_agent uuid;
BEGIN
    IF p_company IS NOT NULL THEN
        v_company := pcs_company_id(p_company);
    END IF;
    IF coalesce(p_agent, '') <> '' THEN
        v_agent := pcs_agent_id(p_company, p_agent);
    END IF;
    IF coalesce(cardinality(p_ids), 0) = 0 THEN
        RETURN QUERY
        SELECT 0, s.id, c.name, s.name, s.current_version, s.deleted_at IS NOT NULL, true,
               v_agent
          FROM secrets s JOIN companies c ON c.id = s.company_id
         WHERE s.id IN (SELECT e.secret_id FROM agent_env e WHERE e.agent_id = v_agent)
         ORDER BY s.name;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT r.i::integer, s.id, c.name, s.name, s.current_version, s.deleted_at IS NOT NULL,
           v_agent IS NULL OR EXISTS (SELECT 1 FROM agent_env e
                                       WHERE e.agent_id = v_agent AND e.secret_id = s.id),
           v_agent
      FROM unnest(p_ids, p_names) WITH ORDINALITY AS r(id, nm, i)
      LEFT JOIN LATERAL (
          SELECT x.id, x.company_id, x.name, x.current_version, x.deleted_at
            FROM secrets x
           WHERE x.released_at IS NULL
             AND (x.id = nullif(r.id, '')::uuid
                  OR (coalesce(r.id, '') = '' AND x.name = r.nm AND x.company_id = v_company))
             AND (v_company IS NULL OR x.company_id = v_company)
           LIMIT 1) s ON true
      LEFT JOIN companies c ON c.id = s.company_id
     ORDER BY r.i;
END $$;

-- An audit row's outcome (docs/audit.md, "Searching"): ok, denied (the caller was refused:
-- PERMISSION_DENIED or UNAUTHENTICATED) or error (any other status).
CREATE FUNCTION pcs_audit_outcome(p_status text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_status = 'OK' THEN 'ok'
                WHEN p_status IN ('PERMISSION_DENIED', 'UNAUTHENTICATED') THEN 'denied'
                ELSE 'error' END
$$;

-- The agent an audit row is about, company/agent: the caller when it is an agent (principal
-- "agent C/A"), else the agent a call acted on or for (company C, secret "agent:A"); NULL.
CREATE FUNCTION pcs_audit_agent(p_principal text, p_company text, p_secret text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_principal LIKE 'agent %/%' THEN substr(p_principal, 7)
                WHEN p_company IS NOT NULL AND p_secret LIKE 'agent:%'
                    THEN p_company || '/' || substr(p_secret, 7) END
$$;

-- Audit search, one page (docs/audit.md, "Searching"). Every filter NULL = none; they combine
-- with AND. p_only: the companies the caller may see (NULL: every one). p_secret_*: rows
-- whose refs hold any secret ever named company/name (live or deleted: by id, through the GIN
-- index on ref_ids) or whose own company and secret name it (the lifecycle calls). p_agent_*:
-- rows by that agent (principal "agent C/A") or acting on or for it (secret "agent:A").
-- p_cursor: rows after that id in the order asked (ascending: oldest first). The statement is
-- built from the filters given, so each search is planned for what it asks, indexes included;
-- the values stay parameters.
CREATE FUNCTION pcs_search_audit(p_only text[], p_company text, p_secret_company text,
    p_secret_name text, p_agent_company text, p_agent_name text, p_principal text,
    p_method text, p_outcome text, p_since timestamptz, p_until timestamptz,
    p_no_hello boolean, p_cursor bigint, p_ascending boolean, p_limit integer)
RETURNS SETOF audit_log
LANGUAGE plpgsql STABLE AS $$
DECLARE
    w text := 'true';
    ids uuid[];
BEGIN
    IF p_only IS NOT NULL THEN w := w || ' AND a.company = ANY ($1)'; END IF;
    IF p_company IS NOT NULL THEN w := w || ' AND a.company = $2'; END IF;
    IF p_secret_name IS NOT NULL THEN
        SELECT coalesce(array_agg(s.id), '{}') INTO ids
          FROM secrets s JOIN companies c ON c.id = s.company_id
         WHERE c.name = p_secret_company AND s.name = p_secret_name;
        w := w || ' AND (a.ref_ids && $16 OR (a.company = $3 AND a.secret = $4))';
    END IF;
    IF p_agent_name IS NOT NULL THEN
        w := w || ' AND (a.principal = ''agent '' || $5 || ''/'' || $6'
                  ' OR (a.company = $5 AND a.secret = ''agent:'' || $6))';
    END IF;
    IF p_principal IS NOT NULL THEN w := w || ' AND a.principal = $7'; END IF;
    IF p_method IS NOT NULL THEN w := w || ' AND a.method = $8'; END IF;
    IF p_outcome = 'ok' THEN
        w := w || ' AND a.status = ''OK''';
    ELSIF p_outcome = 'denied' THEN
        w := w || ' AND a.status IN (''PERMISSION_DENIED'', ''UNAUTHENTICATED'')';
    ELSIF p_outcome = 'error' THEN
        w := w || ' AND a.status NOT IN (''OK'', ''PERMISSION_DENIED'', ''UNAUTHENTICATED'')';
    ELSIF p_outcome IS NOT NULL THEN
        PERFORM pcs_raise(3, 'outcome must be ok, denied or error');
    END IF;
    IF p_since IS NOT NULL THEN w := w || ' AND a.at >= $10'; END IF;
    IF p_until IS NOT NULL THEN w := w || ' AND a.at < $11'; END IF;
    IF p_no_hello THEN w := w || ' AND a.method <> ''Hello'''; END IF;
    IF p_cursor IS NOT NULL THEN
        w := w || CASE WHEN p_ascending THEN ' AND a.id > $13' ELSE ' AND a.id < $13' END;
    END IF;
    RETURN QUERY EXECUTE 'SELECT a.* FROM audit_log a WHERE ' || w || ' ORDER BY a.id '
        || CASE WHEN p_ascending THEN 'ASC' ELSE 'DESC' END || ' LIMIT $15'
        USING p_only, p_company, p_secret_company, p_secret_name, p_agent_company,
              p_agent_name, p_principal, p_method, p_outcome, p_since, p_until, p_no_hello,
              p_cursor, p_ascending, p_limit, ids;
END $$;
