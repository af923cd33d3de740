-- min_api: 1
--
-- pcsecret schema, version 6: the version lifecycle (docs/lifecycle.md). A version may be
-- added without becoming latest (staged), made latest later (promote), latest moved back to
-- an earlier version (rollback), and a version disabled and enabled again. Who did the last
-- of each to a version, and when, is kept on the version itself; every call is in audit_log
-- too, which keeps the whole history.
--
-- Nullable columns only, and secret_versions.state already allowed 'disabled': API 1 and 2
-- functions work unchanged, so min_api stays 1.

ALTER TABLE secret_versions
    ADD COLUMN disabled_at timestamptz,
    ADD COLUMN disabled_by text,
    ADD COLUMN enabled_at  timestamptz,
    ADD COLUMN enabled_by  text,
    ADD COLUMN promoted_at timestamptz,  -- made latest by promote or rollback
    ADD COLUMN promoted_by text;

-- Disable, enable and promote update versions. The generation trigger of migration 005
-- (secret_versions_gen) already bumps the secret's generation on every such update.
UPDATE service_grants SET privileges = 'SELECT, INSERT, UPDATE'
 WHERE object = 'TABLE secret_versions';
