-- min_api: 4
--
-- pcsecret schema, version 9: retention and destroying one version (docs/lifecycle.md,
-- "Retention" and "Destroying one version"). A secret may keep a limited number of versions
-- (max_versions, 0 = every one); the values of the versions beyond it are destroyed in the
-- transaction that goes past it: the set-retention call itself, and every later version add.
-- One version's value may also be destroyed on its own. A destroyed version keeps its row,
-- with state 'destroyed', and says when, by whom and how it was destroyed.
--
-- min_api 4: the columns are nullable or defaulted, but an API 3 daemon adds versions without
-- destroying those beyond the secret's limit, so a secret could keep more values than its
-- limit promises (and leaked old versions would stay readable by a pinned agent). Daemons
-- older than API 4 therefore may not share a database with this schema.

ALTER TABLE secrets
    ADD COLUMN max_versions integer NOT NULL DEFAULT 0
        CHECK (max_versions >= 0 AND max_versions <= 10000);

ALTER TABLE secret_versions
    ADD COLUMN destroyed_at  timestamptz,  -- its value destroyed by destroy-version or retention
    ADD COLUMN destroyed_by  text,
    ADD COLUMN destroyed_how text CHECK (destroyed_how IN ('destroy-version', 'retention'));

-- Destroying writes NULL over ciphertext, nonce, wrapped key and value tag and sets state
-- 'destroyed' (allowed since 001); setting the limit updates secrets. The grants of 001 and
-- 006 suffice, and the generation trigger of 005 (secret_versions_gen) bumps the secret's
-- generation on each destroyed version, so no daemon's cache serves it afterwards.
