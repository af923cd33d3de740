/*
 * migrate: applies the numbered SQL files of migrations/ (embedded in the binary at build
 * time) in order, each exactly once, recorded in schema_migrations with the SHA-256 of its
 * text. Several daemons starting at once serialise on a PostgreSQL advisory lock.
 */
#ifndef PCS_SERVER_MIGRATE_H
#define PCS_SERVER_MIGRATE_H

#include <stddef.h>
#include "status.h"
#include "store.h"

/* The session advisory lock every pcsecretd takes while migrating ("pcsmigra" in ASCII). */
#define MIGRATE_LOCK_KEY "8098443468699300449"

struct migration {
	int version;       /* NNN of migrations/NNN_name.sql */
	const char *name;  /* "NNN_name" */
	const char *sql;   /* the file's text, byte-exact */
};

/* Generated from the files migrations/NNN_name.sql, sorted by version. */
extern const struct migration pcs_migrations[];
extern const size_t pcs_migrations_count;

/* Applies pcs_migrations. */
int migrate_run(struct store_sync *c, pcs_error *err);
/*
 * Applies set (n migrations, versions strictly increasing). Each one not yet recorded runs
 * in its own transaction with its schema_migrations row. Refuses (FAILED_PRECONDITION) when
 * a recorded migration's text changed or the database has a version set does not know.
 * A migration's SQL runs inside BEGIN/COMMIT, so it must not manage transactions itself.
 */
int migrate_run_set(struct store_sync *c, const struct migration *set, size_t n,
    pcs_error *err);

#endif
