-- min_api: 1
--
-- pcsecret schema, version 4: the SQL API leaves the migrations, and the service role gets
-- only what it needs, with audit rows append-only.
--
-- min_api (read by the build, recorded in schema_migrations): the oldest SQL API version that
-- still works on the schema once this migration is applied. The public functions dropped
-- below are what daemons from before API schemas call, so those cannot share the database
-- with this one; every daemon since uses pcs_api_<N> (docs/architecture.md, "Upgrades").

-- The functions of 001 and 003 now live in sql/api.sql, which each daemon creates in its own
-- schema pcs_api_<N> at start-up. Left here, they could still be found through the
-- search_path (public comes after pcs_api_<N>) by a call whose argument types they match
-- better. pcs_audit_deadline (002) stays: it belongs to its trigger.
DROP FUNCTION pcs_ts(timestamptz);
DROP FUNCTION pcs_raise(integer, text);
DROP FUNCTION pcs_company_id(text);
DROP FUNCTION pcs_principal_lookup(bigint, bigint[]);
DROP FUNCTION pcs_create_company(text, text);
DROP FUNCTION pcs_list_companies(text[]);
DROP FUNCTION pcs_secret_prepare_create(text, text);
DROP FUNCTION pcs_secret_row(uuid);
DROP FUNCTION pcs_create_secret(uuid, uuid, text, text, bytea, bytea, bytea, text, text);
DROP FUNCTION pcs_secret_prepare_update(text, text, text);
DROP FUNCTION pcs_add_version(uuid, integer, integer, bytea, bytea, bytea, text, text, text);
DROP FUNCTION pcs_list_secrets(text);
DROP FUNCTION pcs_describe_secret(text, text);
DROP FUNCTION pcs_agent_id(text, text);
DROP FUNCTION pcs_describe_agent(text, text);
DROP FUNCTION pcs_create_agent(text, text, bigint, text, bigint[]);
DROP FUNCTION pcs_set_agent_env(text, text, text, uuid, text, text, integer, text);
DROP FUNCTION pcs_unset_agent_env(text, text, text);
DROP FUNCTION pcs_resolve(text, text, text[], text[], text[], integer[]);
DROP FUNCTION pcs_agent_env(text, text);
DROP FUNCTION pcs_list_agents(text);
DROP FUNCTION pcs_delete_agent(text, text);
DROP FUNCTION pcs_delete_secret(text, text, boolean);
DROP FUNCTION pcs_principal_rows(bigint);
DROP FUNCTION pcs_add_principal(text, bigint, text, text, text);
DROP FUNCTION pcs_remove_principal(bigint);
DROP FUNCTION pcs_list_audit(text[], integer);

-- What the service role (the role database_url logs in as) may do. The role is only known
-- when a daemon starts, so the owner's connection grants these rows to it then, under the
-- migration lock, and revokes `revoked` (server/migrate.c; it also grants USAGE on the API
-- schema and SELECT on its own schema_migrations and schema_api). Later migrations add or
-- change rows for what they add; grants only ever grow, so every daemon sharing the database
-- keeps what it needs. The API functions (pcs_api_<N>) run with the caller's rights: these
-- are the privileges they use.
CREATE TABLE service_grants (
    object      text PRIMARY KEY,  -- 'TABLE name' or 'SEQUENCE name', in schema public
    privileges  text NOT NULL,
    revoked     text NOT NULL DEFAULT ''
);
INSERT INTO service_grants (object, privileges, revoked) VALUES
    ('TABLE companies',           'SELECT, INSERT', ''),
    ('TABLE secrets',             'SELECT, INSERT, UPDATE', ''),
    ('TABLE secret_versions',     'SELECT, INSERT', ''),
    ('TABLE agents',              'SELECT, INSERT, DELETE', ''),
    ('TABLE agent_env',           'SELECT, INSERT, UPDATE, DELETE', ''),
    ('TABLE principals',          'SELECT, INSERT, DELETE', ''),
    ('SEQUENCE principals_id_seq', 'USAGE', ''),
    ('TABLE keyring',             'SELECT, INSERT', ''),
    ('TABLE instances',           'INSERT', ''),
    -- Append-only, whatever else was ever granted: see the trigger below.
    ('TABLE audit_log',           'SELECT, INSERT', 'UPDATE, DELETE, TRUNCATE'),
    ('SEQUENCE audit_log_id_seq', 'USAGE', '');

-- Audit rows are append-only for everyone but the table's owner (the role that applies
-- migrations; superusers pass too, as they can drop the trigger anyway). Grants alone would
-- do for a careful set-up; this holds when someone grants more, e.g. ALL ON ALL TABLES.
-- A statement trigger, so it also fires for TRUNCATE and for statements that match no row.
CREATE FUNCTION pcs_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT pg_has_role(current_user,
                       (SELECT c.relowner FROM pg_class c WHERE c.oid = TG_RELID), 'MEMBER') THEN
        RAISE EXCEPTION USING ERRCODE = 'PS007',
            MESSAGE = format('audit rows are append-only: %s on %s is refused to role %s',
                             TG_OP, TG_TABLE_NAME, current_user);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION pcs_audit_append_only();
