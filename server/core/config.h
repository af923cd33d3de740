/*
 * config: the daemon's settings. Sources, later ones winning: built-in defaults, a config file
 * (--config or PCSECRET_CONFIG; lines "key = value", '#' comments), the environment
 * (PCSECRET_<KEY>, or PCSECRET_<KEY>_FILE naming a file that holds the value), then flags
 * (--key-with-dashes VALUE). docs/configuration.md lists every key.
 */
#ifndef PCS_SERVER_CONFIG_H
#define PCS_SERVER_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include "status.h"

struct config {
	char *socket;
	char *socket_group;         /* name or number; empty = the daemon's own group */
	char *socket_mode;          /* octal, default 0660 */
	char *database_url;         /* libpq connection string or URI: the service role */
	char *migrate_database_url; /* the owner role, for migrations; empty = database_url */
	char *master_key_file;
	char *log_file; /* empty = stderr */
	char *log_level;
	int64_t pool_size;
	int64_t max_frame; /* bytes */
	int64_t max_connections;
	int64_t max_inflight; /* calls in flight per connection */
	int64_t max_calls;    /* calls in flight in the whole daemon */
	int64_t max_refs;     /* refs per Resolve */
	int64_t max_value;    /* bytes of one secret value (at most 64 KiB) */
	int64_t max_output;   /* bytes queued to a peer before it is cut off */
	int64_t idle_timeout_ms;
	int64_t read_timeout_ms; /* a partial frame must complete within this */
	int64_t call_timeout_ms; /* default deadline of a call that sets none */
	int64_t drain_timeout_ms;
	int64_t handshake_timeout_ms;      /* a peer must complete Hello within this */
	int64_t max_conns_per_uid;         /* connections of one uid */
	int64_t max_conns_unknown_per_uid; /* of one uid that has no principal (yet) */
	int64_t max_frame_before_hello;    /* bytes of a frame before Hello succeeded */
	int64_t max_buffered_per_uid;      /* bytes of unfinished input held for one uid */
	int64_t max_calls_per_uid;     /* calls in flight for one uid, over all its connections */
	int64_t db_wait_ms;            /* how long a call waits when no database connection is up */
	int64_t cache_max_bytes;       /* the resolve cache's bound (server/cache); 0: no cache */
	int64_t purge_interval_ms;     /* between runs of the purge of expired deletions */
	int64_t max_watches_per_conn;  /* open Watch streams per connection */
	int64_t max_watches_per_uid;   /* over all of a uid's connections */
	int64_t heartbeat_interval_ms; /* between heartbeats (last_seen, audit chain heads) */
	int dev; /* --dev: private cluster, key and socket in a temporary dir */
	int help, version;
};

/* Fills cfg from all sources. argv is not modified. */
int config_load(struct config *cfg, int argc, char **argv, pcs_error *err) PCS_WUR;
/*
 * Fills cfg from the defaults and text in config-file syntax only (no environment, no flags):
 * the parser config_load uses for --config files, for the fuzzer and tests. Either way, free
 * cfg with config_free afterwards.
 */
int config_load_buffer(struct config *cfg, const char *text, size_t len, pcs_error *err) PCS_WUR;
/* Sets one key from a string (used by --dev to fill in what it created). */
int config_set(struct config *cfg, const char *key, const char *value, pcs_error *err) PCS_WUR;
void config_free(struct config *cfg);
void config_usage(const char *prog);

#endif
