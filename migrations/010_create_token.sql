-- min_api: 2
--
-- pcsecret schema, version 10: idempotent CreateSecret, and descriptions changed by
-- UpdateSecret (docs/lifecycle.md, "Idempotency"). A create's token is kept on the version it
-- made, version 1, in the columns an update's token uses (idempotency_token, idempotency_tag),
-- so one token names one write of a secret whichever call made it. This column adds what a
-- write with a token did to the description, so that a retry that gives another description
-- is refused instead of answered with the first call's secret.
--
-- min_api 2: the column may stay NULL, which daemons of API 2 to 4 leave it; a version
-- without it is compared on its value only.

ALTER TABLE secret_versions
    ADD COLUMN idempotency_description text;  -- the description set; NULL: none set
