/*
 * devmode: `pcsecretd --dev`. A throwaway private PostgreSQL cluster (run as the postgres
 * user when started as root) with the owner and service roles of a production set-up, a
 * fresh master key and the socket, all in one temporary directory that is removed again when
 * the daemon stops.
 */
#ifndef PCS_SERVER_DEVMODE_H
#define PCS_SERVER_DEVMODE_H

#include <limits.h>
#include <sys/types.h>
#include "config.h"
#include "status.h"

struct devmode {
	char dir[64];
	char bindir[256];
	int cluster_started;
	uid_t pg_uid; /* who runs PostgreSQL: postgres when we are root, else ourselves */
	gid_t pg_gid;
};

/*
 * Creates everything and points cfg's socket, database_url (the service role "pcsecret"),
 * migrate_database_url (the owner "pcsecret_owner" of database "pcsecret") and
 * master_key_file at it.
 */
int devmode_start(struct devmode *d, struct config *cfg, pcs_error *err) PCS_WUR;
/* Stops the cluster and removes the directory. Safe to call after a failed start. */
void devmode_stop(struct devmode *d);

#endif
