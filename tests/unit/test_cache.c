/*
 * The resolve cache alone (server/cache): what it answers, what it refuses to answer, what a
 * change-feed notification drops, that it says what an answer was built from, and its bound.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cache.h"

#define CO "11111111-1111-1111-1111-111111111111"
#define S1 "aaaaaaaa-0000-0000-0000-000000000001"
#define S2 "aaaaaaaa-0000-0000-0000-000000000002"
#define AG "bbbbbbbb-0000-0000-0000-000000000001"

static const uint8_t ct[] = "ciphertext-bytes", nonce[] = "nonce", wk[] = "wrapped";

/* A row as db_resolve returns it for a granted, active ref at the given generations. */
static struct db_resolved row(uint32_t idx, const char *sid, const char *name, uint32_t version,
    uint32_t current, int64_t sgen, int64_t agen)
{
	struct db_resolved r;

	memset(&r, 0, sizeof(r));
	r.idx = idx;
	r.granted = 1;
	r.company_id = CO;
	r.secret_id = sid;
	r.version = version;
	r.state = "active";
	r.sealed.ciphertext = ct;
	r.sealed.ciphertext_len = sizeof(ct);
	r.sealed.nonce = nonce;
	r.sealed.nonce_len = sizeof(nonce);
	r.sealed.wrapped_key = wk;
	r.sealed.wrapped_key_len = sizeof(wk);
	r.sealed.key_id = "key-1";
	r.secret_gen = sgen;
	r.current_version = current;
	r.company = "acme";
	r.name = name;
	r.agent_id = AG;
	r.agent_gen = agen;
	return r;
}

static struct cache *live_cache(size_t max)
{
	struct cache *c;
	pcs_error err;

	assert_int_equal(cache_new(max, &c, &err), 0);
	cache_set_live(c, 1);
	return c;
}

/* Puts k1 (latest = version 3, gen 5) for acme/bot (agent gen 7), asked by name. */
static void put_k1(struct cache *c)
{
	const uint32_t sel[] = { 0 };
	struct db_resolved r = row(1, S1, "k1", 3, 3, 5, 7);

	cache_resolve_put(c, "acme", "bot", sel, 1, &r, 1);
}

static int hit(struct cache *c, const struct db_ref *refs, size_t n, struct db_resolved *out,
    struct db_check **k)
{
	return cache_resolve(c, "acme", "bot", refs, n, 9, out, k);
}

static void test_answers_what_the_database_returned(void **state)
{
	struct cache *c = live_cache(1 << 20);
	struct db_ref byname = { "", "acme", "k1", 0 }, byid = { S1, "", "", 0 };
	struct db_resolved out;
	struct db_check *k = NULL;

	(void)state;
	assert_int_equal(hit(c, &byname, 1, &out, &k), 0); /* nothing yet */
	put_k1(c);
	assert_int_equal(hit(c, &byname, 1, &out, &k), 1);
	assert_string_equal(out.secret_id, S1);
	assert_int_equal(out.version, 3);
	assert_int_equal(out.sealed.ciphertext_len, sizeof(ct));
	assert_memory_equal(out.sealed.ciphertext, ct, sizeof(ct));
	assert_string_equal(out.sealed.key_id, "key-1");
	/* What the answer was built from, for the audit statement's check. */
	assert_string_equal(k->agent_id, AG);
	assert_int_equal(k->agent_gen, 7);
	assert_int_equal(k->principals_gen, 9);
	assert_int_equal(k->nsecrets, 1);
	assert_string_equal(k->secrets[0].id, S1);
	assert_int_equal(k->secrets[0].gen, 5);
	free(k);
	/* The same secret by id, in capitals too (ids are compared as the database writes them). */
	assert_int_equal(hit(c, &byid, 1, &out, &k), 1);
	free(k);
	byid.secret_id = "AAAAAAAA-0000-0000-0000-000000000001";
	assert_int_equal(hit(c, &byid, 1, &out, &k), 1);
	free(k);
	cache_free(c);
}

static void test_never_answers_what_it_was_not_told(void **state)
{
	struct cache *c = live_cache(1 << 20);
	struct db_ref pinned = { "", "acme", "k1", 3 }, other = { "", "acme", "k2", 0 };
	struct db_ref two[2] = { { "", "acme", "k1", 0 }, { "", "acme", "k2", 0 } };
	struct db_resolved out[2], denied;
	struct db_check *k = NULL;
	const uint32_t sel[] = { 0 };

	(void)state;
	put_k1(c);
	/* A binding to latest is not a binding to @3: the database decides that one. */
	assert_int_equal(hit(c, &pinned, 1, out, &k), 0);
	assert_int_equal(hit(c, &other, 1, out, &k), 0);
	/* All or nothing: one unknown ref sends the whole call to the database. */
	assert_int_equal(hit(c, two, 2, out, &k), 0);
	assert_null(k);
	/* Another agent: nothing. */
	assert_int_equal(cache_resolve(c, "acme", "other", two, 1, 9, out, &k), 0);
	/* Unknown principal generation: nothing. */
	assert_int_equal(cache_resolve(c, "acme", "bot", two, 1, 0, out, &k), 0);
	/* A refused or inactive row is not remembered. */
	denied = row(1, S2, "k2", 1, 1, 1, 7);
	denied.granted = 0;
	cache_resolve_put(c, "acme", "bot", sel, 1, &denied, 1);
	denied = row(1, S2, "k2", 1, 1, 1, 7);
	denied.state = "disabled";
	cache_resolve_put(c, "acme", "bot", sel, 1, &denied, 1);
	assert_int_equal(hit(c, &other, 1, out, &k), 0);
	cache_free(c);
}

static void test_feed_notifications_drop_what_changed(void **state)
{
	struct cache *c = live_cache(1 << 20);
	struct db_ref ref = { "", "acme", "k1", 0 };
	struct db_resolved out;
	struct db_check *k = NULL;

	(void)state;
	put_k1(c);
	cache_changed(c, "s " S2); /* another secret */
	assert_int_equal(hit(c, &ref, 1, &out, &k), 1);
	free(k);
	cache_changed(c, "s " S1);
	assert_int_equal(hit(c, &ref, 1, &out, &k), 0);
	put_k1(c);
	cache_changed(c, "a " AG);
	assert_int_equal(hit(c, &ref, 1, &out, &k), 0);
	put_k1(c);
	cache_changed(c, "k"); /* keys: everything */
	assert_int_equal(hit(c, &ref, 1, &out, &k), 0);
	put_k1(c);
	cache_changed(c, "something newer"); /* unknown: everything */
	assert_int_equal(hit(c, &ref, 1, &out, &k), 0);
	/* Feed lost: nothing is served, and nothing read meanwhile is kept. */
	put_k1(c);
	cache_set_live(c, 0);
	assert_int_equal(hit(c, &ref, 1, &out, &k), 0);
	put_k1(c);
	cache_set_live(c, 1);
	assert_int_equal(hit(c, &ref, 1, &out, &k), 0);
	cache_free(c);
}

static void test_generations_only_move_forward(void **state)
{
	struct cache *c = live_cache(1 << 20);
	struct db_ref latest = { "", "acme", "k1", 0 };
	struct db_resolved out, newer = row(1, S1, "k1", 4, 4, 6, 7), older;
	struct db_check *k = NULL;
	const uint32_t sel[] = { 0 };

	(void)state;
	put_k1(c);
	cache_resolve_put(c, "acme", "bot", sel, 1, &newer, 1);
	assert_int_equal(hit(c, &latest, 1, &out, &k), 1);
	assert_int_equal(out.version, 4);
	assert_int_equal(k->secrets[0].gen, 6);
	free(k);
	/* A read that started before the change and returns after it does not win. */
	older = row(1, S1, "k1", 3, 3, 5, 7);
	cache_resolve_put(c, "acme", "bot", sel, 1, &older, 1);
	assert_int_equal(hit(c, &latest, 1, &out, &k), 1);
	assert_int_equal(out.version, 4);
	free(k);
	cache_free(c);
}

static void test_a_version_is_as_current_as_its_secret(void **state)
{
	struct cache *c = live_cache(1 << 20);
	struct db_ref pinned = { "", "acme", "k1", 3 };
	struct db_resolved out, r = row(1, S1, "k1", 3, 3, 5, 7);
	struct db_check *k = NULL;
	const uint32_t sel[] = { 3 }, latest[] = { 0 };

	(void)state;
	cache_resolve_put(c, "acme", "bot", sel, 1, &r, 1);
	assert_int_equal(hit(c, &pinned, 1, &out, &k), 1);
	free(k);
	/* The secret moved (say @3 was disabled): its version entry of gen 5 is not used. */
	r = row(1, S1, "k1", 4, 4, 6, 7);
	cache_resolve_put(c, "acme", "bot", latest, 1, &r, 1);
	assert_int_equal(hit(c, &pinned, 1, &out, &k), 0);
	cache_free(c);
}

/* A stale answer's parts are dropped at once, with no notification at all. */
static void test_stale_answer_dropped(void **state)
{
	struct cache *c = live_cache(1 << 20);
	struct db_principal_match m = { "3", "uid", "40010", "agent", "acme", "bot", 4 };
	struct db_ref ref = { "", "acme", "k1", 0 };
	const struct db_principal_match *rows;
	struct db_resolved out;
	struct db_check *k = NULL;
	gid_t g[] = { 100 };
	size_t n;
	int64_t gen;

	(void)state;
	put_k1(c);
	cache_identity_put(c, 40010, g, 1, &m, 1);
	assert_int_equal(hit(c, &ref, 1, &out, &k), 1);
	cache_note_stale(c, k, 40010, g, 1);
	free(k);
	assert_int_equal(cache_identity_get(c, 40010, g, 1, &rows, &n, &gen), 0);
	assert_int_equal(hit(c, &ref, 1, &out, &k), 0);
	cache_free(c);
}

static void test_identity(void **state)
{
	struct cache *c = live_cache(1 << 20);
	struct db_principal_match m = { "3", "uid", "40010", "agent", "acme", "bot", 4 };
	const struct db_principal_match *rows;
	gid_t g1[] = { 100, 200 }, g2[] = { 100 };
	size_t n;
	int64_t gen;

	(void)state;
	assert_int_equal(cache_identity_get(c, 40010, g1, 2, &rows, &n, &gen), 0);
	cache_identity_put(c, 40010, g1, 2, &m, 1);
	assert_int_equal(cache_identity_get(c, 40010, g1, 2, &rows, &n, &gen), 1);
	assert_int_equal(n, 1);
	assert_int_equal(gen, 4);
	assert_string_equal(rows[0].role, "agent");
	assert_string_equal(rows[0].agent_name, "bot");
	/* Other groups are another peer. */
	assert_int_equal(cache_identity_get(c, 40010, g2, 1, &rows, &n, &gen), 0);
	/* Any rule changed: every identity is read again. */
	cache_changed(c, "p");
	assert_int_equal(cache_identity_get(c, 40010, g1, 2, &rows, &n, &gen), 0);
	cache_free(c);
}

static void test_bounded(void **state)
{
	struct cache *c = live_cache(64 * 1024), *none = live_cache(0);
	struct cache_stats st;
	char id[37], name[16];
	const uint32_t sel[] = { 0 };
	struct db_ref ref = { "", "acme", "k1", 0 };
	struct db_resolved out;
	struct db_check *k = NULL;

	(void)state;
	for (int i = 0; i < 500; i++) {
		struct db_resolved r;
		snprintf(id, sizeof(id), "aaaaaaaa-0000-0000-0000-%012d", i);
		snprintf(name, sizeof(name), "k%d", i);
		r = row(1, id, name, 1, 1, 1, 7);
		cache_resolve_put(c, "acme", "bot", sel, 1, &r, 1);
		cache_get_stats(c, &st);
		assert_true(st.bytes <= 64 * 1024);
	}
	assert_true(st.evictions > 0);
	/* The most recent are still answered. */
	ref.name = "k499";
	assert_int_equal(hit(c, &ref, 1, &out, &k), 1);
	free(k);
	/* A cache of 0 bytes holds nothing. */
	put_k1(none);
	ref.name = "k1";
	assert_int_equal(hit(none, &ref, 1, &out, &k), 0);
	cache_free(c);
	cache_free(none);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_answers_what_the_database_returned),
		cmocka_unit_test(test_never_answers_what_it_was_not_told),
		cmocka_unit_test(test_feed_notifications_drop_what_changed),
		cmocka_unit_test(test_generations_only_move_forward),
		cmocka_unit_test(test_a_version_is_as_current_as_its_secret),
		cmocka_unit_test(test_stale_answer_dropped),
		cmocka_unit_test(test_identity),
		cmocka_unit_test(test_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
