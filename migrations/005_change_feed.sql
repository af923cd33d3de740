-- min_api: 1
--
-- pcsecret schema, version 5: a change feed and generation numbers, so a daemon may answer a
-- Resolve from what it remembers and still never answer from a state that has moved
-- (docs/architecture.md, "The cache and why it is never stale").
--
-- gen:  every row a resolve is built from has a generation that any change to it (or to what
--       hangs off it) increases in the change's own transaction: a secret's (its row, and any
--       change to one of its versions: state, re-wrapped key), an agent's (its row, and any
--       change to its env bindings), and one for all principal rules together. The daemon
--       remembers the generations its cached answer was built from, and the statement that
--       writes the call's audit row inserts it only if they are all still current; otherwise
--       the call is answered again from the database.
-- NOTIFY pcs_change: the same triggers tell every listening daemon what changed, so a cache
--       drops an entry before it is used again ("s <secret id>", "a <agent id>", "p" for the
--       principal rules, "k" for the keyring, "c" for companies). The feed only saves work:
--       correctness rests on the generations checked in the audit statement.
--
-- Triggers rather than the API functions: every writer, of any API version, bumps and
-- notifies alike.

ALTER TABLE secrets ADD COLUMN gen bigint NOT NULL DEFAULT 1;
ALTER TABLE agents ADD COLUMN gen bigint NOT NULL DEFAULT 1;

CREATE TABLE pcs_gens (
    name  text PRIMARY KEY,
    gen   bigint NOT NULL
);
INSERT INTO pcs_gens (name, gen) VALUES ('principals', 1);

CREATE FUNCTION pcs_secret_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.gen := OLD.gen + 1;
    PERFORM pg_notify('pcs_change', 's ' || NEW.id::text);
    RETURN NEW;
END $$;
CREATE TRIGGER secrets_gen BEFORE UPDATE ON secrets
    FOR EACH ROW EXECUTE FUNCTION pcs_secret_changed();

-- A new version needs nothing here: it becomes what latest means through secrets'
-- current_version, which is an update of the secret's row.
CREATE FUNCTION pcs_version_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE secrets SET gen = gen + 1 WHERE id = OLD.secret_id;
    RETURN NULL;
END $$;
CREATE TRIGGER secret_versions_gen AFTER UPDATE OR DELETE ON secret_versions
    FOR EACH ROW EXECUTE FUNCTION pcs_version_changed();

CREATE FUNCTION pcs_agent_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        NEW.gen := OLD.gen + 1;
    END IF;
    PERFORM pg_notify('pcs_change', 'a ' || CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END::text);
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;
CREATE TRIGGER agents_gen BEFORE UPDATE OR DELETE ON agents
    FOR EACH ROW EXECUTE FUNCTION pcs_agent_changed();

-- A binding's agent: its generation moves (and so it notifies). When the agent itself is
-- being deleted (the bindings go by cascade) the update finds no row; the deletion notified.
CREATE FUNCTION pcs_binding_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE agents SET gen = gen + 1 WHERE id = OLD.agent_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND (TG_OP = 'INSERT' OR NEW.agent_id <> OLD.agent_id) THEN
        UPDATE agents SET gen = gen + 1 WHERE id = NEW.agent_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER agent_env_gen AFTER INSERT OR UPDATE OR DELETE ON agent_env
    FOR EACH ROW EXECUTE FUNCTION pcs_binding_changed();

-- One generation for every rule: who a peer is depends on all the rules matching it, and
-- rules change rarely. A statement trigger, so a statement changing many rules bumps once.
CREATE FUNCTION pcs_principals_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE pcs_gens SET gen = gen + 1 WHERE name = 'principals';
    PERFORM pg_notify('pcs_change', 'p');
    RETURN NULL;
END $$;
CREATE TRIGGER principals_gen AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON principals
    FOR EACH STATEMENT EXECUTE FUNCTION pcs_principals_changed();

CREATE FUNCTION pcs_notify_all() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pcs_change', TG_ARGV[0]);
    RETURN NULL;
END $$;
CREATE TRIGGER keyring_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON keyring
    FOR EACH STATEMENT EXECUTE FUNCTION pcs_notify_all('k');
CREATE TRIGGER companies_changed AFTER UPDATE OR DELETE OR TRUNCATE ON companies
    FOR EACH STATEMENT EXECUTE FUNCTION pcs_notify_all('c');

-- The triggers update what they bump with the rights of whoever changed the row.
INSERT INTO service_grants (object, privileges, revoked) VALUES
    ('TABLE pcs_gens', 'SELECT, UPDATE', '');
UPDATE service_grants SET privileges = 'SELECT, INSERT, UPDATE, DELETE'
 WHERE object = 'TABLE agents';
