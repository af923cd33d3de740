-- min_api: 2
--
-- pcsecret schema, version 7: soft delete with a recovery window, restore, and purge
-- (docs/lifecycle.md). A deleted secret keeps its id, versions and agents' bindings until its
-- recovery window ends (delete_after); until then it can be restored as it was, and its name
-- stays reserved. Purge destroys every version's ciphertext at once (the leak procedure),
-- keeping the metadata and the audit history. When the window ends a daemon purges the secret
-- and releases its name (released_at), so a new secret may take it.
--
-- min_api 2: the unique name index now covers deleted-but-restorable secrets, which API 1's
-- create does not check for (it would fail with a bare database error), and API 1's forced
-- delete removes the agents' bindings that a restore is meant to bring back intact. API 1
-- daemons therefore may not share a database with this schema.

ALTER TABLE secrets
    ADD COLUMN deleted_by   text,
    ADD COLUMN delete_after timestamptz,  -- end of the recovery window; NULL while live
    ADD COLUMN released_at  timestamptz,  -- the name was given up (purged after the window)
    ADD COLUMN restored_at  timestamptz,  -- the last restore
    ADD COLUMN restored_by  text;

ALTER TABLE secret_versions
    ADD COLUMN purged_at timestamptz,     -- ciphertext destroyed by a purge
    ADD COLUMN purged_by text;

-- Secrets deleted before this migration had already given up their names (another secret may
-- hold one now) and had no recovery window: they stay as they were, released.
UPDATE secrets SET released_at = deleted_at WHERE deleted_at IS NOT NULL;

-- One secret per name among those that hold it: live ones and deleted ones that can still be
-- restored (or wait for their purge). Only a released name is free again.
DROP INDEX secrets_live_name;
CREATE UNIQUE INDEX secrets_live_name ON secrets (company_id, name) WHERE released_at IS NULL;

-- What the daemons' periodic purge looks for.
CREATE INDEX secrets_delete_after ON secrets (delete_after)
    WHERE deleted_at IS NOT NULL AND released_at IS NULL;

-- Purge writes NULL over ciphertext, nonce and wrapped key (already nullable since 001) and
-- sets state 'destroyed' (already allowed): the grants of 006 suffice.
