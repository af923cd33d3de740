/*
 * pcsecretd: start-up (settings, master key, migrations, keyring check), the event loop, and
 * shutdown (SIGTERM/SIGINT drain, SIGHUP reopens the log). Only start-up may exit on errors.
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>
#include <event2/event.h>

#include "audit.h"
#include "cache.h"
#include "config.h"
#include "conn.h"
#include "crypto.h"
#include "db.h"
#include "devmode.h"
#include "dispatch.h"
#include "feed.h"
#include "watch.h"
#include "listener.h"
#include "log.h"
#include "migrate.h"
#include "server.h"
#include "store.h"

static struct server srv;
static struct devmode dev;
static struct event *drain_timer;
static struct db_purger *purger;
static struct db_heartbeat *heartbeat;
static uint64_t drain_deadline_ms;

static void harden(void)
{
	struct rlimit none = { 0, 0 };

	/* Memory holds keys and values: no core files, no ptrace by other users. */
	setrlimit(RLIMIT_CORE, &none);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	signal(SIGPIPE, SIG_IGN);
}

/* Says which setting a connection failure is about, never repeating the string itself. */
static int which_url(int r, const char *setting, pcs_error *err)
{
	char msg[sizeof(err->message)];

	snprintf(msg, sizeof(msg), "%s", err->message);
	return pcs_fail(err, -r, "%s: %s", setting, msg);
}

/*
 * Migrations, the SQL API and the service role's privileges over the owner's connection
 * (migrate_database_url); then, over the service role's (service_url: database_url with the
 * API schema first on its search_path, as the pool uses it), the check that all it needs is
 * there, the keyring check and instance registration.
 */
static int prepare_database(const struct config *cfg, const char *service_url, pcs_error *err)
{
	struct store_sync *db = NULL, *owner = NULL;
	struct migrate_plan plan;
	struct migrate_status st;
	uint8_t check[CRYPTO_CHECK_LEN];
	char check_hex[2 * CRYPTO_CHECK_LEN + 1], host[256], role[128];
	/* Larger than ours: a longer stored value must not compare equal once cut short. */
	char have_key_id[128], have_check[4 * CRYPTO_CHECK_LEN + 1];
	const char *key_id = crypto_master_key_id(srv.master);
	const char *owner_setting = cfg->migrate_database_url[0] != '\0' ? "migrate_database_url" :
	                                                                   "database_url";
	int r, found;

	migrate_plan_builtin(&plan);
	if ((r = store_sync_connect(service_url, &db, err)) != 0) {
		r = which_url(r, "database_url", err);
		goto out;
	}
	/* The role the pool logs in as is the one to grant to, whatever the string says. */
	if ((r = db_current_user(db, role, sizeof(role), err)) != 0)
		goto out;
	/* A connection of its own even for one role: migrations run on the default search_path. */
	if ((r = store_sync_connect(cfg->migrate_database_url[0] != '\0' ?
	             cfg->migrate_database_url :
	             cfg->database_url,
	         &owner, err)) != 0) {
		r = which_url(r, owner_setting, err);
		goto out;
	}
	if ((r = migrate_apply(owner, &plan, role, err)) != 0)
		goto out;
	store_sync_close(owner);
	owner = NULL;
	if ((r = migrate_check(db, &plan, &st, err)) != 0)
		goto out;
	if (st.audit_mutable)
		log_event(LOG_WARN, "db_audit_mutable", "role=%s detail=%s", log_q(role),
		    log_q("the service role owns audit_log and can change or remove audit rows; "
		          "give migrate_database_url a role of its own (docs/security.md)"));
	/* Every statement the daemon runs, against the functions it will call: refuse now. */
	if ((r = db_check_statements(db, err)) != 0)
		goto out;
	crypto_master_check_value(srv.master, check);
	crypto_hex(check_hex, check, sizeof(check));
	/* The first daemon on an empty database records its key; any later one must match it. */
	if ((r = db_keyring_claim(db, key_id, check_hex, err)) != 0 ||
	    (r = db_keyring_active(db, have_key_id, sizeof(have_key_id), have_check,
	         sizeof(have_check), &found, err)) != 0)
		goto out;
	if (!found) {
		r = pcs_fail(err, PCS_FAILED_PRECONDITION,
		    "the database holds secrets but no active "
		    "master key record; refusing to start rather than write with a new key");
		goto out;
	}
	if (strcmp(have_key_id, key_id) != 0 || strcmp(have_check, check_hex) != 0) {
		r = pcs_fail(err, PCS_FAILED_PRECONDITION,
		    "the master key in %s (key id %s) is not the "
		    "key this database was initialised with (key id %s)",
		    cfg->master_key_file, key_id, have_key_id);
		goto out;
	}
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "unknown");
	host[sizeof(host) - 1] = '\0';
	r = db_instance_register(db, srv.instance_id, host, (long)getpid(), PCS_VERSION, err);
out:
	store_sync_close(owner);
	store_sync_close(db);
	return r;
}

static void on_drain_check(evutil_socket_t fd, short what, void *arg)
{
	size_t busy = conn_busy_all(&srv);
	struct timeval tick = { 0, 50000 };

	(void)fd;
	(void)what;
	(void)arg;
	if (busy == 0 || conn_now_ms() >= drain_deadline_ms) {
		if (busy != 0)
			log_event(LOG_WARN, "drain_timeout", "calls_abandoned=%zu", busy);
		conn_close_all(&srv, "shutting down");
		event_base_loopexit(srv.base, NULL);
		return;
	}
	evtimer_add(drain_timer, &tick);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	pcs_error err;

	(void)what;
	(void)arg;
	if (sig == SIGHUP) {
		if (log_reopen(&err) != 0)
			fprintf(stderr, "pcsecretd: %s\n", err.message);
		log_event(LOG_INFO, "log_reopened", NULL);
		return;
	}
	if (srv.draining)
		return;
	srv.draining = 1;
	log_event(LOG_INFO, "draining", "signal=%d connections=%zu", (int)sig, srv.nconns);
	listener_stop(&srv);
	conn_drain_all(&srv);
	drain_deadline_ms = conn_now_ms() + (uint64_t)srv.cfg->drain_timeout_ms;
	on_drain_check(-1, 0, NULL);
}

static void on_store_log(int level, const char *event, const char *detail, void *arg)
{
	(void)arg;
	log_event(level == 0 ? LOG_INFO :
	        level == 1   ? LOG_WARN :
	                       LOG_ERROR,
	    event, "detail=%s", log_q(detail));
}

static void on_feed_live(int up, void *arg)
{
	struct server *s = arg;

	cache_set_live(s->cache, up);
	watch_feed_live(s->watch, up);
}

static void on_feed_changed(const char *payload, void *arg)
{
	struct server *s = arg;

	cache_changed(s->cache, payload);
	watch_feed_changed(s->watch, payload);
}

static void on_feed_watch(const char *payload, void *arg)
{
	watch_feed_event(((struct server *)arg)->watch, payload);
}

static const struct feed_ops feed_ops = { on_feed_live, on_feed_changed, on_feed_watch,
	on_store_log };

static void fatal(const pcs_error *err)
{
	fprintf(stderr, "pcsecretd: %s: %s\n", pcs_status_name(err->code), err->message);
	devmode_stop(&dev);
	exit(1);
}

int main(int argc, char **argv)
{
	static struct config cfg;
	char search_path[64], options[160], *service_url = NULL;
	struct event *sigs[4] = { NULL, NULL, NULL, NULL };
	struct cache_stats cst;
	const int signums[4] = { SIGTERM, SIGINT, SIGHUP, 0 };
	pcs_error err;
	int lvl;

	harden();
#ifdef M_MMAP_THRESHOLD
	/*
	 * Connection input buffers of up to a frame come and go with peers. glibc raises its mmap
	 * threshold to the largest block freed, after which such buffers come from the heap and a
	 * burst of them can keep the daemon large after they are gone; a fixed threshold keeps
	 * them mmapped, so each is given back when freed (test_dos measures it).
	 */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
	if (config_load(&cfg, argc, argv, &err) != 0) {
		fprintf(stderr, "pcsecretd: %s\n", err.message);
		config_usage(argv[0]);
		return 2;
	}
	if (cfg.help) {
		config_usage(argv[0]);
		return 0;
	}
	if (cfg.version) {
		printf("pcsecretd %s (protocol %d)\n", PCS_VERSION, PCS_PROTOCOL_VERSION);
		return 0;
	}
	if ((lvl = log_level_from_name(cfg.log_level)) < 0) {
		fprintf(stderr, "pcsecretd: log_level must be debug, info, warn or error\n");
		return 2;
	}
	log_set_level((enum log_level)lvl);
	if (cfg.log_file[0] != '\0' && log_open(cfg.log_file, &err) != 0)
		fatal(&err);
	if (crypto_init(&err) != 0)
		fatal(&err);
	if (cfg.dev) {
		fprintf(stderr, "pcsecretd: --dev: starting a private PostgreSQL cluster...\n");
		if (devmode_start(&dev, &cfg, &err) != 0)
			fatal(&err);
		/*
		 * Like Vault's dev server: reachable by every local user so agents running as their
		 * own users can try it. Peers are still identified by uid; unknown ones are refused.
		 */
		if (config_set(&cfg, "socket_mode", "0666", &err) != 0)
			fatal(&err);
	}
	if (cfg.database_url[0] == '\0') {
		pcs_fail(&err, PCS_INVALID_ARGUMENT,
		    "no database: set --database-url, "
		    "PCSECRET_DATABASE_URL or PCSECRET_DATABASE_URL_FILE (or use --dev)");
		fatal(&err);
	}
	if (cfg.master_key_file[0] == '\0') {
		pcs_fail(&err, PCS_INVALID_ARGUMENT,
		    "no master key: set --master-key-file or "
		    "PCSECRET_MASTER_KEY_FILE (make one with: pcctl keys init --out FILE)");
		fatal(&err);
	}
	if (crypto_master_load(cfg.master_key_file, &srv.master, &err) != 0)
		fatal(&err);
	crypto_uuid(srv.instance_id);
	srv.cfg = &cfg;
	srv.self_uid = geteuid();
	TAILQ_INIT(&srv.conns);
	TAILQ_INIT(&srv.waitq);
	migrate_search_path(pcs_api_version, search_path, sizeof(search_path));
	snprintf(options, sizeof(options), "-c search_path=%s", search_path);
	if (store_conninfo_add_options(cfg.database_url, options, &service_url, &err) != 0 ||
	    prepare_database(&cfg, service_url, &err) != 0)
		fatal(&err);
	if (dispatch_init(&err) != 0)
		fatal(&err);
	if ((srv.base = event_base_new()) == NULL) {
		pcs_fail(&err, PCS_INTERNAL, "cannot create the event loop");
		fatal(&err);
	}
	if (store_open(srv.base, service_url, (int)cfg.pool_size, &srv.store, &err) != 0)
		fatal(&err);
	store_set_logger(srv.store, on_store_log, NULL);
	store_set_wait_limit(srv.store, (int)cfg.db_wait_ms);
	if ((srv.audit = audit_queue_new(srv.base, srv.store)) == NULL) {
		pcs_fail(&err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		fatal(&err);
	}
	/*
	 * The cache serves nothing, and no Watch starts, until the feed listens (live). The feed
	 * runs without a cache too: the watches need it.
	 */
	if (cache_new((size_t)cfg.cache_max_bytes, &srv.cache, &err) != 0 ||
	    watch_hub_new(&srv, &srv.watch, &err) != 0 ||
	    feed_new(srv.base, service_url, &feed_ops, &srv, &srv.feed, &err) != 0)
		fatal(&err);
	if (listener_open(&srv, cfg.socket, cfg.socket_mode, cfg.socket_group, cfg.dev, &err) != 0)
		fatal(&err);
	if (db_purger_new(
	        srv.base, srv.store, srv.instance_id, cfg.purge_interval_ms, &purger, &err) != 0)
		fatal(&err);
	if (db_heartbeat_new(srv.base, srv.store, srv.instance_id, cfg.heartbeat_interval_ms,
	        &heartbeat, &err) != 0)
		fatal(&err);
	drain_timer = evtimer_new(srv.base, on_drain_check, NULL);
	for (int i = 0; signums[i] != 0; i++) {
		sigs[i] = evsignal_new(srv.base, signums[i], on_signal, NULL);
		evsignal_add(sigs[i], NULL);
	}
	log_event(LOG_INFO, "listening", "socket=%s instance=%s version=%s key_id=%s pool=%lld",
	    log_q(cfg.socket), srv.instance_id, PCS_VERSION, crypto_master_key_id(srv.master),
	    (long long)cfg.pool_size);
	if (cfg.dev) {
		printf("export PCSECRET_SOCKET=%s\n", cfg.socket);
		/* Clients trust only root, themselves and this uid (docs/cli.md). */
		if (srv.self_uid != 0)
			printf("export PCSECRET_SERVER_UID=%u\n", (unsigned)srv.self_uid);
		fflush(stdout);
		fprintf(stderr,
		    "pcsecretd: --dev ready; you (uid %u) are admin. Not for production: "
		    "the socket is open to every local user (each is still identified by uid) and all "
		    "data lives in %s, removed when you press Ctrl-C.\n",
		    (unsigned)srv.self_uid, dev.dir);
	}
	event_base_dispatch(srv.base);

	log_flush_suppressed();
	cache_get_stats(srv.cache, &cst);
	log_event(LOG_INFO, "stopped",
	    "calls=%llu failed=%llu cache_hits=%llu cache_misses=%llu cache_stale=%llu "
	    "cache_entries=%zu cache_bytes=%zu cache_evictions=%llu cache_flushes=%llu "
	    "cache_changes=%llu audit_batches=%lu watches=%zu watch_events=%llu",
	    (unsigned long long)srv.stats.calls_total, (unsigned long long)srv.stats.calls_failed,
	    (unsigned long long)cst.hits, (unsigned long long)cst.misses,
	    (unsigned long long)cst.stale, cst.entries, cst.bytes,
	    (unsigned long long)cst.evictions, (unsigned long long)cst.flushes,
	    (unsigned long long)cst.changes, audit_queue_batches(srv.audit),
	    watch_hub_streams(srv.watch), (unsigned long long)watch_hub_events(srv.watch));
	listener_close(&srv);
	conn_close_all(&srv, "shutting down");
	db_purger_free(purger);
	db_heartbeat_free(heartbeat);
	audit_queue_free(srv.audit);
	feed_free(srv.feed);
	watch_hub_free(srv.watch);
	cache_free(srv.cache);
	store_close(srv.store);
	for (int i = 0; sigs[i] != NULL; i++)
		event_free(sigs[i]);
	event_free(drain_timer);
	event_base_free(srv.base);
	crypto_master_free(srv.master);
	devmode_stop(&dev);
	store_conninfo_free(service_url);
	config_free(&cfg);
	return 0;
}
