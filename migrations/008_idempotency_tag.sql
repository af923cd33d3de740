-- min_api: 2
--
-- pcsecret schema, version 8: honest idempotency for UpdateSecret (docs/lifecycle.md). A
-- version made with an idempotency token also keeps a keyed hash of its value (the key is
-- derived from the master key, so the tag reveals nothing about the value without it) and the
-- version it was checked against, so that reusing the token for another value or another
-- expected version is refused instead of silently answered with the first call's version.
--
-- min_api 2: both columns may stay NULL, which API 2 daemons leave them; a version without a
-- tag is answered as before (its value cannot be compared).

ALTER TABLE secret_versions
    ADD COLUMN idempotency_tag      bytea,    -- keyed BLAKE2b of the value; NULL without a token
    ADD COLUMN idempotency_expected integer;  -- the current version it was added on top of
