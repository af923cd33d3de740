-- min_api: 2
--
-- pcsecret schema, version 11: what a change was, for Watch streams (docs/protocol.md,
-- "Watch"). The change feed of migration 005 says only which secret or agent changed, which
-- is all a cache needs; a watcher is told what happened. The same triggers' way: every writer,
-- of any API version, notifies alike, in the change's own transaction, so the notification
-- reaches every daemon (each LISTENs) when, and only if, the change commits.
--
-- A channel of its own, pcs_watch, so daemons that do not know it (their cache flushes on a
-- payload it cannot parse) never see these. Payload: four fields separated by one space,
--   <kind> <secret id> <latest> <version>
-- kind: new_version, staged, promoted, rollback, disabled, enabled, deleted, restored,
-- purged; latest is the secret's latest version after the change, version the version the
-- change is about (0 for the whole secret). For bindings, "binding_changed <agent id> 0 0".
-- PostgreSQL folds identical payloads of one transaction into one (a purge of many versions
-- is one event).
--
-- Triggers and their functions only: every API version works with it. min_api 2 as 007.

CREATE FUNCTION pcs_watch_secret() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE v_kind text; v_version integer := 0;
BEGIN
    IF OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN
        v_kind := 'deleted';
    ELSIF OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NULL THEN
        v_kind := 'restored';
    ELSIF NEW.current_version < OLD.current_version THEN
        v_kind := 'rollback';
        v_version := NEW.current_version;
    ELSIF NEW.current_version > OLD.current_version THEN
        -- Made latest by the update that wrote it, or later by a promote.
        v_kind := CASE WHEN EXISTS (SELECT 1 FROM secret_versions v
                                     WHERE v.secret_id = NEW.id
                                       AND v.version = NEW.current_version
                                       AND v.created_at = now())
                       THEN 'new_version' ELSE 'promoted' END;
        v_version := NEW.current_version;
    ELSE
        -- An update that added a version without making it latest (no_promote).
        SELECT max(v.version) INTO v_version FROM secret_versions v
         WHERE v.secret_id = NEW.id AND v.created_at = now();
        IF v_version IS NULL THEN
            RETURN NULL;
        END IF;
        v_kind := 'staged';
    END IF;
    PERFORM pg_notify('pcs_watch', format('%s %s %s %s', v_kind, NEW.id, NEW.current_version,
                                          v_version));
    RETURN NULL;
END $$;
CREATE TRIGGER secrets_watch AFTER UPDATE ON secrets
    FOR EACH ROW
    WHEN (OLD.current_version IS DISTINCT FROM NEW.current_version
          OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at
          OR OLD.updated_at IS DISTINCT FROM NEW.updated_at)
    EXECUTE FUNCTION pcs_watch_secret();

CREATE FUNCTION pcs_watch_version() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE v_kind text; v_version integer := NEW.version; v_latest integer;
BEGIN
    IF OLD.purged_at IS NULL AND NEW.purged_at IS NOT NULL THEN
        v_kind := 'purged';
        v_version := 0;
    ELSIF OLD.state = 'active' AND NEW.state = 'disabled' THEN
        v_kind := 'disabled';
    ELSIF OLD.state = 'disabled' AND NEW.state = 'active' THEN
        v_kind := 'enabled';
    ELSE
        RETURN NULL;
    END IF;
    SELECT s.current_version INTO v_latest FROM secrets s WHERE s.id = NEW.secret_id;
    PERFORM pg_notify('pcs_watch', format('%s %s %s %s', v_kind, NEW.secret_id, v_latest,
                                          v_version));
    RETURN NULL;
END $$;
CREATE TRIGGER secret_versions_watch AFTER UPDATE ON secret_versions
    FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.purged_at IS DISTINCT FROM NEW.purged_at)
    EXECUTE FUNCTION pcs_watch_version();

CREATE FUNCTION pcs_watch_binding() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('pcs_watch', format('binding_changed %s 0 0', OLD.agent_id));
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('pcs_watch', format('binding_changed %s 0 0', NEW.agent_id));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER agent_env_watch AFTER INSERT OR UPDATE OR DELETE ON agent_env
    FOR EACH ROW EXECUTE FUNCTION pcs_watch_binding();
