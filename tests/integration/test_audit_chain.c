/*
 * The audit record and its hash chain (docs/audit.md), through the daemon:
 *  - pcrun --agent with 3 bindings makes one GetAgentEnv event listing the 3 secrets (ids
 *    and company/name) with the versions served; a Resolve of 3 refs alike; a refused Resolve
 *    lists what was asked and serves nothing; pcctl audit list --json shows the refs;
 *  - 32 concurrent resolvers: every resolve has exactly one event, in far fewer INSERT
 *    statements (transactions) than resolves (group commit);
 *  - the heartbeat copies the instance's chain heads into its instances row;
 *  - pcctl audit verify passes on the daemon's chains, and reports a row altered, a row
 *    deleted, two rows swapped, a link altered, a link deleted and the newest statement's
 *    rows and link deleted, each naming the row or link (the rows are changed as the owner, who alone can:
 *    test_roles_db shows the daemon's role cannot);
 *  - a chain begun under migration 012 (rows sealed one by one) goes on with 013's links.
 *
 * One daemon; agent connections are opened by children running as the agent's uid
 * (wire_connect_as) and pcrun runs as the agent. Needs root.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "it.h"
#include "itcli.h"
#include "itconn.h"
#include "pcsecret.pb-c.h"
#include "pgtest.h"
#include "wire.h"

#define DB "it_audit_chain"
#define AGENT_UID IT_AGENT_UID /* acme/bot */
#define NCLIENTS 32
#define ROUNDS 20

#define ST_OK PCSECRET__V1__STATUS_CODE__OK
#define ST_DENIED PCSECRET__V1__STATUS_CODE__PERMISSION_DENIED

static struct it_daemon D;
static char conninfo[512];
static struct itconn_env E;
static struct itconn adm, agent;

static void sql(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void sql(char *buf, size_t size, const char *fmt, ...)
{
	char q[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(q, sizeof(q), fmt, ap);
	va_end(ap);
	itconn_sql_text(&E, buf, size, "%s", q);
}

static void create_secret(const char *name, const char *value)
{
	Pcsecret__V1__CreateSecretRequest q = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;

	q.company = (char *)"acme";
	q.name = (char *)name;
	q.value.data = (uint8_t *)value;
	q.value.len = strlen(value);
	itconn_admin_ok(&adm, "CreateSecret", &q.base);
}

static void bind(const char *env, const char *name)
{
	Pcsecret__V1__SetAgentEnvRequest q = PCSECRET__V1__SET_AGENT_ENV_REQUEST__INIT;
	Pcsecret__V1__SecretRef ref = PCSECRET__V1__SECRET_REF__INIT;

	ref.company = (char *)"acme";
	ref.name = (char *)name;
	q.company = (char *)"acme";
	q.agent = (char *)"bot";
	q.env_name = (char *)env;
	q.ref = &ref;
	itconn_admin_ok(&adm, "SetAgentEnv", &q.base);
}

static int setup(void **state)
{
	/* Heartbeats often, so the test of the heads they record is quick. */
	static const char *const args[] = { "--heartbeat-interval-ms", "200", NULL };
	const struct it_daemon_opts opts = { args, 0, NULL };
	Pcsecret__V1__CreateCompanyRequest cc = PCSECRET__V1__CREATE_COMPANY_REQUEST__INIT;
	Pcsecret__V1__CreateAgentRequest ca = PCSECRET__V1__CREATE_AGENT_REQUEST__INIT;
	Pcsecret__V1__UpdateSecretRequest up = PCSECRET__V1__UPDATE_SECRET_REQUEST__INIT;

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	if (it_database(DB, conninfo, sizeof(conninfo)) != 0 ||
	    it_daemon_start_opts(&D, conninfo, NULL, &opts) != 0)
		return -1;
	E.socket = D.socket;
	E.conninfo = conninfo;
	itconn_open(&E, &adm, 0, 1000000);
	cc.name = (char *)"acme";
	itconn_admin_ok(&adm, "CreateCompany", &cc.base);
	create_secret("a", "audit-chain-a");
	create_secret("b", "audit-chain-b1");
	create_secret("c", "audit-chain-c");
	/* acme/b is served at version 2, the others at 1. */
	up.company = (char *)"acme";
	up.name = (char *)"b";
	up.value.data = (uint8_t *)"audit-chain-b2";
	up.value.len = strlen("audit-chain-b2");
	itconn_admin_ok(&adm, "UpdateSecret", &up.base);
	ca.company = (char *)"acme";
	ca.name = (char *)"bot";
	ca.uid = AGENT_UID;
	itconn_admin_ok(&adm, "CreateAgent", &ca.base);
	bind("A", "a");
	bind("B", "b");
	bind("C", "c");
	itconn_open(&E, &agent, AGENT_UID, 2000000);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	wire_close(&agent.w);
	wire_close(&adm.w);
	it_daemon_cleanup(&D);
	return 0;
}

/* "acme/a@1 <id>,..." of audit row id: each ref's name, version served and whether its id is
 * the secret's, in the order stored. */
static void refs_of(const char *row_id, char *buf, size_t size)
{
	sql(buf, size,
	    "SELECT coalesce(string_agg(x.n || '@' || coalesce(x.v::text, '-') || '/' || "
	    "coalesce(x.k::text, '-') || CASE WHEN s.id IS NOT NULL AND s.id = x.i THEN ' id' "
	    "WHEN x.i IS NULL THEN ' noid' ELSE ' badid' END, ',' ORDER BY x.o), '') "
	    "FROM audit_log a, unnest(a.ref_ids, a.ref_names, a.ref_versions, a.ref_asked) "
	    "WITH ORDINALITY AS x(i, n, v, k, o) LEFT JOIN secrets s ON 'acme/' || s.name = x.n "
	    "WHERE a.id = %s",
	    row_id);
}

static void test_agent_env_lists_every_secret_served(void **state)
{
	const char *env[] = { NULL };
	const char *argv[] = { it_path("client/pcrun"), "--agent", "acme/bot", "--", "/bin/sh",
		"-c", "printf '%s %s %s' \"$A\" \"$B\" \"$C\"", NULL };
	struct it_result r;
	char before[32], n[32], id[32], refs[1024], row[512];

	(void)state;
	sql(before, sizeof(before), "SELECT coalesce(max(id), 0) FROM audit_log");
	assert_int_equal(it_run(AGENT_UID, D.socket, env, NULL, argv, &r), 0);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "audit-chain-a audit-chain-b2 audit-chain-c");
	it_result_free(&r);
	/* One event for the call, naming the agent; its refs: the 3 secrets as served. */
	sql(n, sizeof(n), "SELECT count(*) FROM audit_log WHERE id > %s AND method = 'GetAgentEnv'",
	    before);
	assert_string_equal(n, "1");
	sql(id, sizeof(id), "SELECT id FROM audit_log WHERE id > %s AND method = 'GetAgentEnv'",
	    before);
	sql(row, sizeof(row),
	    "SELECT status || ' ' || company || ' ' || secret || ' ' || coalesce(version, '-') "
	    "FROM audit_log WHERE id = %s",
	    id);
	assert_string_equal(row, "OK acme agent:bot -");
	refs_of(id, refs, sizeof(refs));
	assert_string_equal(refs, "acme/a@1/0 id,acme/b@2/0 id,acme/c@1/0 id");
}

/* A Resolve of acme/a, acme/b@b_version and acme/c_name by the agent; its status, id. */
static int resolve3(uint32_t b_version, const char *c_name, uint64_t *id)
{
	Pcsecret__V1__ResolveRequest q = PCSECRET__V1__RESOLVE_REQUEST__INIT;
	Pcsecret__V1__SecretRef r[3] = { PCSECRET__V1__SECRET_REF__INIT,
		PCSECRET__V1__SECRET_REF__INIT, PCSECRET__V1__SECRET_REF__INIT };
	Pcsecret__V1__SecretRef *refs[3] = { &r[0], &r[1], &r[2] };
	const char *names[3] = { "a", "b", c_name };
	char msg[512];

	for (int i = 0; i < 3; i++) {
		r[i].company = (char *)"acme";
		r[i].name = (char *)names[i];
	}
	r[1].version = b_version;
	q.refs = refs;
	q.n_refs = 3;
	return itconn_call(&agent, "Resolve", &q.base, msg, sizeof(msg), NULL, id);
}

static void test_resolve_lists_refs_and_refusals(void **state)
{
	struct it_result r;
	char row[64], refs[1024], rid[32];
	uint64_t id;
	int st;

	(void)state;
	assert_int_equal(resolve3(0, "c", &id), ST_OK);
	sql(rid, sizeof(rid),
	    "SELECT id FROM audit_log WHERE method = 'Resolve' AND call_id = %" PRIu64
	    " AND peer_uid = %u",
	    id, (unsigned)AGENT_UID);
	sql(row, sizeof(row), "SELECT status || ' ' || secret FROM audit_log WHERE id = %s", rid);
	assert_string_equal(row, "OK agent:bot");
	refs_of(rid, refs, sizeof(refs));
	assert_string_equal(refs, "acme/a@1/0 id,acme/b@2/0 id,acme/c@1/0 id");

	/*
	 * Refused (acme/b@1 is not what the agent's binding selects): what was asked is
	 * recorded, nothing was served, and an id only where the agent may know it.
	 */
	st = resolve3(1, "nosuch", &id);
	assert_int_not_equal(st, ST_OK);
	sql(rid, sizeof(rid),
	    "SELECT id FROM audit_log WHERE method = 'Resolve' AND call_id = %" PRIu64
	    " AND peer_uid = %u",
	    id, (unsigned)AGENT_UID);
	sql(row, sizeof(row), "SELECT status FROM audit_log WHERE id = %s", rid);
	assert_string_equal(row, itconn_status_name(st));
	refs_of(rid, refs, sizeof(refs));
	assert_string_equal(refs, "acme/a@-/0 id,acme/b@-/1 noid,acme/nosuch@-/0 noid");

	/* pcctl audit list shows them, in text and in JSON. */
	assert_int_equal(it_pcctl(0, D.socket, NULL, &r, "audit", "list", "--company", "acme",
	                     "--limit", "5", NULL),
	    0);
	assert_non_null(strstr(r.out, "acme/b@2 ("));
	assert_non_null(strstr(r.out, "acme/nosuch@-"));
	it_result_free(&r);
	assert_int_equal(it_pcctl(0, D.socket, NULL, &r, "--json", "audit", "list", "--company",
	                     "acme", "--limit", "5", NULL),
	    0);
	assert_non_null(strstr(r.out, "\"refs\": ["));
	assert_non_null(strstr(r.out, "\"secret\": \"acme/nosuch\""));
	assert_non_null(strstr(r.out, "\"version\": null"));
	assert_non_null(strstr(r.out, "\"version\": 2"));
	it_result_free(&r);
}

static uint32_t method_id(const char *name)
{
	const ProtobufCMethodDescriptor *m = protobuf_c_service_descriptor_get_method_by_name(
	    &pcsecret__v1__pc_secret__descriptor, name);

	assert_non_null(m);
	return (uint32_t)(m - pcsecret__v1__pc_secret__descriptor.methods) + 1;
}

static void test_concurrent_resolvers_one_event_each(void **state)
{
	static struct itconn conns[NCLIENTS];
	struct wire_resolve q;
	uint32_t resolve = method_id("Resolve");
	char n[64];

	(void)state;
	for (int i = 0; i < NCLIENTS; i++)
		itconn_open(&E, &conns[i], AGENT_UID, 3000000 + (uint64_t)i * 1000);
	wire_resolve_init(&q, "a", 1);
	/* Every round: one Resolve in flight on each connection, all at once. */
	for (int round = 0; round < ROUNDS; round++) {
		for (int i = 0; i < NCLIENTS; i++)
			assert_int_equal(wire_send_call(&conns[i].w, conns[i].next_id++, resolve,
			                     10000, &q.req.base),
			    0);
		for (int i = 0; i < NCLIENTS; i++) {
			Pcsecret__V1__Reply *rep = NULL;
			assert_int_equal(wire_reply(&conns[i].w, 15000, &rep), 1);
			assert_int_equal(rep->status, ST_OK);
			assert_true(wire_resolve_ok(
			    rep, 1, (const uint8_t *)"audit-chain-a", strlen("audit-chain-a")));
			pcsecret__v1__reply__free_unpacked(rep, NULL);
		}
	}
	wire_resolve_free(&q);
	for (int i = 0; i < NCLIENTS; i++)
		wire_close(&conns[i].w);
	/* Exactly one OK event per resolve, each listing the secret and the version served. */
	sql(n, sizeof(n),
	    "SELECT count(*) || ' ' || count(DISTINCT call_id) || ' ' || "
	    "count(*) FILTER (WHERE status = 'OK' AND ref_names = '{acme/a}' AND "
	    "ref_versions = '{1}') FROM audit_log WHERE method = 'Resolve' AND call_id >= 3000000 "
	    "AND call_id < 3100000");
	assert_string_equal(n, "640 640 640");
	/* Group commit: rows inserted by one statement share its transaction id. */
	sql(n, sizeof(n),
	    "SELECT count(DISTINCT xmin::text) FROM audit_log WHERE method = 'Resolve' AND "
	    "call_id >= 3000000 AND call_id < 3100000");
	print_message("640 resolves audited in %s INSERT statements\n", n);
	assert_true(atoi(n) >= 1 && atoi(n) * 4 <= NCLIENTS * ROUNDS);
}

static void test_verify_passes_on_the_daemons_chains(void **state)
{
	struct it_result r;

	(void)state;
	assert_int_equal(
	    it_pcctl(0, D.socket, NULL, &r, "audit", "verify", "--instance", E.instance, NULL), 0);
	assert_non_null(strstr(r.out, " 0 broken"));
	assert_non_null(strstr(r.out, "recorded head"));
	it_result_free(&r);
	assert_int_equal(it_pcctl(0, D.socket, NULL, &r, "--json", "audit", "verify", NULL), 0);
	assert_non_null(strstr(r.out, "\"ok\": true"));
	assert_non_null(strstr(r.out, "\"head_hash\": \""));
	it_result_free(&r);
}

/* The heartbeat copies every head of the instance's chains into its instances row. */
static void test_heartbeat_records_the_heads(void **state)
{
	char got[64], want[64];
	uint64_t until = wire_now_ms() + 20000;

	(void)state;
	sql(want, sizeof(want), "SELECT count(*) FROM audit_chain_heads WHERE instance_id = '%s'",
	    E.instance);
	assert_true(atoi(want) >= 1);
	/* Nothing is being written now: the next beat must match the table. */
	do {
		wire_sleep_ms(100);
		sql(got, sizeof(got),
		    "SELECT count(*) FROM instances i, jsonb_array_elements(i.chain_heads) e, "
		    "audit_chain_heads h WHERE i.id = '%s' AND h.instance_id = i.id AND "
		    "h.lane = (e->>'lane')::int AND h.seq = (e->>'seq')::bigint AND "
		    "encode(h.hash, 'hex') = e->>'hash'",
		    E.instance);
	} while (strcmp(got, want) != 0 && wire_now_ms() < until);
	assert_string_equal(got, want);
}

/*
 * 6 rows of instance inst, inserted by the owner in one statement (one backend: one lane, one
 * link of the chain); the id of its row k (1-based) in ids[k - 1].
 */
static void make_chain(const char *inst, char ids[6][24])
{
	char first[24];

	sql(first, sizeof(first),
	    "WITH i AS (INSERT INTO audit_log (instance_id, call_id, peer_uid, peer_gid, peer_pid, "
	    "principal, method, status) SELECT '%s', g, 0, 0, 1, 'test', 'Hello', 'OK' "
	    "FROM generate_series(1, 6) g RETURNING id) SELECT min(id) FROM i",
	    inst);
	for (int k = 0; k < 6; k++)
		snprintf(ids[k], sizeof(ids[k]), "%lld", atoll(first) + k);
}

/*
 * Two statements of 6 rows each of instance inst, in one session (one lane): a chain of two
 * links. The ids of the second link's first and fifth rows in first2, fifth2.
 */
static void make_chain2(const char *inst, char first2[24], char fifth2[24])
{
	char out[64];

	sql(out, sizeof(out),
	    "DO $$ BEGIN FOR k IN 1..2 LOOP INSERT INTO audit_log (instance_id, call_id, peer_uid, "
	    "peer_gid, peer_pid, principal, method, status) SELECT '%s', g, 0, 0, 1, 'test', "
	    "'Hello', 'OK' FROM generate_series(1, 6) g; END LOOP; END $$; SELECT 1",
	    inst);
	sql(first2, 24, "SELECT ids[1] FROM audit_chain_links WHERE instance_id = '%s' AND seq = 2",
	    inst);
	sql(fifth2, 24, "SELECT ids[5] FROM audit_chain_links WHERE instance_id = '%s' AND seq = 2",
	    inst);
}

/* pcctl audit verify --instance inst must fail and say want. */
static void verify_reports(const char *inst, const char *want)
{
	struct it_result r;

	assert_int_not_equal(
	    it_pcctl(0, D.socket, NULL, &r, "audit", "verify", "--instance", inst, NULL), 0);
	if (strstr(r.out, want) == NULL)
		fail_msg("verify said \"%s\" (%s), not \"%s\"", r.out, r.err, want);
	assert_non_null(strstr(r.err, "DATA_LOSS"));
	it_result_free(&r);
}

static void test_verify_reports_tampering(void **state)
{
	static const char *const inst[] = { "00000000-0000-4000-8000-00000000a001",
		"00000000-0000-4000-8000-00000000a002", "00000000-0000-4000-8000-00000000a003",
		"00000000-0000-4000-8000-00000000a004", "00000000-0000-4000-8000-00000000a005",
		"00000000-0000-4000-8000-00000000a006" };
	char ids[3][6][24], first2[3][24], fifth2[3][24], want[160], out[64];
	struct it_result r;

	(void)state;
	for (int i = 0; i < 3; i++)
		make_chain(inst[i], ids[i]);
	/* inst[3] and inst[4]: two statements of one session, a chain of two links. */
	make_chain2(inst[3], first2[0], fifth2[0]);
	make_chain2(inst[4], first2[1], fifth2[1]);
	make_chain2(inst[5], first2[2], fifth2[2]);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(
		    it_pcctl(0, D.socket, NULL, &r, "audit", "verify", "--instance", inst[i], NULL),
		    0);
		it_result_free(&r);
	}
	/* Altered: its content no longer matches the hash its link holds for it. */
	sql(out, sizeof(out),
	    "UPDATE audit_log SET status = 'PERMISSION_DENIED' WHERE id = %s "
	    "RETURNING id",
	    ids[0][2]);
	snprintf(want, sizeof(want), "row id %s (seq 1, row 3 of 6) was altered", ids[0][2]);
	verify_reports(inst[0], want);
	/* Deleted: its link still lists it. */
	sql(out, sizeof(out), "DELETE FROM audit_log WHERE id = %s RETURNING id", ids[1][3]);
	snprintf(want, sizeof(want), "row id %s (seq 1, row 4 of 6) is missing", ids[1][3]);
	verify_reports(inst[1], want);
	/* Two rows swapped: each row's content moved to the other's place (its id). */
	sql(out, sizeof(out),
	    "UPDATE audit_log SET id = CASE id WHEN %s THEN -1 ELSE %s END WHERE id IN (%s, %s) "
	    "RETURNING id",
	    ids[2][1], ids[2][1], ids[2][1], ids[2][2]);
	sql(out, sizeof(out), "UPDATE audit_log SET id = %s WHERE id = -1 RETURNING id", ids[2][2]);
	snprintf(want, sizeof(want), "row id %s (seq 1, row 2 of 6) was altered", ids[2][1]);
	verify_reports(inst[2], want);
	/* The newest statement's rows and its link deleted: only the recorded head shows it. */
	sql(out, sizeof(out),
	    "WITH d AS (DELETE FROM audit_log WHERE instance_id = '%s' AND id >= %s RETURNING id) "
	    "SELECT count(*) FROM d",
	    inst[3], first2[0]);
	assert_string_equal(out, "6");
	sql(out, sizeof(out),
	    "WITH d AS (DELETE FROM audit_chain_links WHERE instance_id = '%s' AND seq = 2 "
	    "RETURNING seq) SELECT count(*) FROM d",
	    inst[3]);
	assert_string_equal(out, "1");
	verify_reports(inst[3], "rows 2 to 2 are missing at the end of the chain");
	/* A link altered (a row taken out of its list): the link is named. */
	sql(out, sizeof(out),
	    "UPDATE audit_chain_links SET ids = ids[1:5], row_hashes = row_hashes[1:5] "
	    "WHERE instance_id = '%s' AND seq = 2 RETURNING seq",
	    inst[4]);
	snprintf(want, sizeof(want), "the link of seq 2 (rows id %s to %s) was altered", first2[1],
	    fifth2[1]);
	verify_reports(inst[4], want);
	/* A link in the middle deleted: the next one no longer follows. */
	sql(out, sizeof(out),
	    "WITH d AS (DELETE FROM audit_chain_links WHERE instance_id = '%s' AND seq = 1 "
	    "RETURNING seq) SELECT count(*) FROM d",
	    inst[5]);
	assert_string_equal(out, "1");
	verify_reports(inst[5], "link seq 1 is missing: the link of row id ");
	/* --json names the row too, and says what needs the heads. */
	assert_int_not_equal(it_pcctl(0, D.socket, NULL, &r, "--json", "audit", "verify",
	                         "--instance", inst[1], NULL),
	    0);
	snprintf(want, sizeof(want), "\"bad_id\": %s", ids[1][3]);
	assert_non_null(strstr(r.out, want));
	assert_non_null(strstr(r.out, "\"ok\": false"));
	assert_non_null(strstr(r.out, "recorded head"));
	it_result_free(&r);
}

/*
 * A chain begun under migration 012 (rows sealed one by one, their hash in the row) goes on
 * with 013's links, and verify checks both kinds in one walk: 012's rows are made here as 012
 * sealed them (pcs_audit_row_hash, chain columns set), by the owner with the chain trigger
 * off, then a statement goes through the trigger.
 */
static void test_chain_from_012_carries_on(void **state)
{
	static const char *const inst = "00000000-0000-4000-8000-00000000a012";
	char out[512], want[160], row2[24];
	struct it_result r;

	(void)state;
	/*
	 * One session (one lane): with the 013 trigger off, 6 rows sealed as 012 did, row by row
	 * (seq k, prev the previous row's hash, hash over the row), and their head; then the
	 * trigger back on and one statement of 6 rows through it.
	 */
	sql(out, sizeof(out),
	    "DO $$ DECLARE i bigint; p bytea := '\\x'; BEGIN "
	    "ALTER TABLE audit_log DISABLE TRIGGER audit_log_seal; "
	    "FOR k IN 1..6 LOOP INSERT INTO audit_log (instance_id, call_id, peer_uid, peer_gid, "
	    "peer_pid, principal, method, status, chain_lane, chain_seq, chain_prev) VALUES "
	    "('%s', k, 0, 0, 1, 'test', 'Hello', 'OK', pg_backend_pid(), k, p) RETURNING id INTO i; "
	    "UPDATE audit_log a SET chain_hash = pcs_audit_row_hash(a) WHERE a.id = i "
	    "RETURNING chain_hash INTO p; END LOOP; "
	    "INSERT INTO audit_chain_heads (instance_id, lane, seq, hash) "
	    "VALUES ('%s', pg_backend_pid(), 6, p); "
	    "ALTER TABLE audit_log ENABLE TRIGGER audit_log_seal; "
	    "INSERT INTO audit_log (instance_id, call_id, peer_uid, peer_gid, peer_pid, principal, "
	    "method, status) SELECT '%s', g, 0, 0, 1, 'test', 'Hello', 'OK' "
	    "FROM generate_series(7, 12) g; END $$; SELECT 1",
	    inst, inst, inst);
	/* The link is element 7 of the same chain, linked to 012's row 6. */
	sql(out, sizeof(out),
	    "SELECT l.seq || ' ' || (l.prev_hash = a.chain_hash) || ' ' || cardinality(l.ids) "
	    "FROM audit_chain_links l JOIN audit_log a ON a.instance_id = l.instance_id AND "
	    "a.chain_lane = l.lane AND a.chain_seq = 6 WHERE l.instance_id = '%s'",
	    inst);
	assert_string_equal(out, "7 true 6");
	assert_int_equal(
	    it_pcctl(0, D.socket, NULL, &r, "audit", "verify", "--instance", inst, NULL), 0);
	assert_non_null(strstr(r.out, " 0 broken"));
	it_result_free(&r);
	/* A 012 row altered is still named, with 012's message. */
	sql(row2, sizeof(row2),
	    "UPDATE audit_log SET status = 'X' WHERE instance_id = '%s' AND chain_seq = 2 "
	    "RETURNING id",
	    inst);
	snprintf(want, sizeof(want), "row id %s (seq 2) was altered", row2);
	verify_reports(inst, want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_agent_env_lists_every_secret_served),
		cmocka_unit_test(test_resolve_lists_refs_and_refusals),
		cmocka_unit_test(test_concurrent_resolvers_one_event_each),
		cmocka_unit_test(test_verify_passes_on_the_daemons_chains),
		cmocka_unit_test(test_heartbeat_records_the_heads),
		cmocka_unit_test(test_verify_reports_tampering),
		cmocka_unit_test(test_chain_from_012_carries_on),
	};

	if (!it_is_root()) {
		printf("audit_chain: needs root (real users); skipped\n");
		return 77;
	}
	return cmocka_run_group_tests_name("audit_chain", tests, setup, teardown);
}
