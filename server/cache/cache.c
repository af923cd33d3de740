#include "cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "ref.h"

/*
 * One hash table of entries of every kind, told apart by the first byte of their key:
 *   u<uid>:<gid>,...         who a peer is: the rules matching it, and their generation
 *   s<secret id>             a live secret: company id, current version, generation
 *   n<company>\x1f<name>     the live secret of that name
 *   v<secret id>:<version>   a sealed version, valid with its secret at that generation only
 *   a<company>\x1f<agent>    an agent's id, generation and the bindings known to grant
 *   A<agent id>              which a-entry is that agent (the feed names agents by id)
 * Keys are names the daemon checked (name_valid: no \x1f) and ids from the database, and only
 * rows PostgreSQL returned for granted resolves get in, so nobody outside can choose what is
 * hashed: FNV-1a is enough, and keeps the hot path free of a keyed hash.
 */
enum kind { K_IDENTITY, K_SECRET, K_NAME, K_VERSION, K_AGENT, K_AGENT_ID };

#define KEY_MAX (2 * PCS_NAME_MAX + 16 + 12 * 64)
/* Bindings remembered per agent: far above any real agent's, a bound on a hostile one. */
#define AGENT_BINDINGS_MAX 4096

struct binding {
	char secret_id[37];
	uint32_t selector;
};

struct entry {
	struct entry *chain;
	TAILQ_ENTRY(entry) lru;
	uint64_t hash;
	size_t bytes;
	enum kind kind;
	int pinned; /* held by the put running now: not evicted under it */
	size_t klen;
	const char *key;
	union {
		struct {
			int64_t gen;
			uint64_t epoch;
			size_t n;
			struct db_principal_match *rows;
		} id;
		struct {
			char id[37], company_id[37];
			uint32_t current;
			int64_t gen;
		} secret;
		struct {
			char id[37];
		} name;
		struct {
			int64_t gen;
			struct db_sealed sealed;
		} version;
		struct {
			char id[37];
			int64_t gen;
			size_t n, cap;
			struct binding *b;
		} agent;
		struct {
			char akey[KEY_MAX];
			size_t aklen;
		} agent_id;
	} u;
	char data[];
};

TAILQ_HEAD(entry_lru, entry);

struct cache {
	struct entry **buckets;
	size_t nbuckets, count;
	struct entry_lru lru; /* most recently used first */
	size_t bytes, max_bytes;
	uint64_t epoch; /* of the principal rules: an identity entry of an older one is gone */
	int live;
	struct cache_stats st;
};

static uint64_t fnv1a(const char *k, size_t n)
{
	uint64_t h = 14695981039346656037ull;

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)k[i];
		h *= 1099511628211ull;
	}
	return h;
}

int cache_new(size_t max_bytes, struct cache **out, pcs_error *err)
{
	struct cache *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (c == NULL || (c->buckets = calloc(64, sizeof(*c->buckets))) == NULL) {
		free(c);
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	}
	c->nbuckets = 64;
	c->max_bytes = max_bytes;
	TAILQ_INIT(&c->lru);
	*out = c;
	return 0;
}

static void entry_free(struct entry *e)
{
	if (e->kind == K_AGENT)
		free(e->u.agent.b);
	free(e);
}

static void unlink_entry(struct cache *c, struct entry *e)
{
	struct entry **pp = &c->buckets[e->hash & (c->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->chain;
	*pp = e->chain;
	TAILQ_REMOVE(&c->lru, e, lru);
	c->count--;
	c->bytes -= e->bytes;
	entry_free(e);
}

static struct entry *find(struct cache *c, const char *key, size_t klen)
{
	uint64_t h = fnv1a(key, klen);
	struct entry *e = c->buckets[h & (c->nbuckets - 1)];

	for (; e != NULL; e = e->chain)
		if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
			return e;
	return NULL;
}

static void touch(struct cache *c, struct entry *e)
{
	if (TAILQ_FIRST(&c->lru) != e) {
		TAILQ_REMOVE(&c->lru, e, lru);
		TAILQ_INSERT_HEAD(&c->lru, e, lru);
	}
}

static void grow(struct cache *c)
{
	size_t n = c->nbuckets * 2;
	struct entry **b = calloc(n, sizeof(*b)), *e, *next;

	if (b == NULL)
		return; /* longer chains, still correct */
	for (size_t i = 0; i < c->nbuckets; i++)
		for (e = c->buckets[i]; e != NULL; e = next) {
			next = e->chain;
			e->chain = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
		}
	free(c->buckets);
	c->buckets = b;
	c->nbuckets = n;
}

static void evict(struct cache *c)
{
	struct entry *e = TAILQ_LAST(&c->lru, entry_lru), *prev;

	while (c->bytes > c->max_bytes && e != NULL) {
		prev = TAILQ_PREV(e, entry_lru, lru);
		if (!e->pinned) {
			unlink_entry(c, e);
			c->st.evictions++;
		}
		e = prev;
	}
}

/* A new entry of kind with key and extra bytes of data after the key; NULL out of memory. */
static struct entry *entry_new(enum kind kind, const char *key, size_t klen, size_t extra)
{
	struct entry *e = calloc(1, sizeof(*e) + klen + 1 + extra);

	if (e == NULL)
		return NULL;
	e->kind = kind;
	memcpy(e->data, key, klen);
	e->key = e->data;
	e->klen = klen;
	e->bytes = sizeof(*e) + klen + 1 + extra;
	e->hash = fnv1a(key, klen);
	return e;
}

/* Puts e in, replacing any entry of its key, then keeps the bound. e may be freed. */
static void insert(struct cache *c, struct entry *e)
{
	struct entry *old = find(c, e->key, e->klen);
	size_t b;

	if (old != NULL)
		unlink_entry(c, old);
	if (c->max_bytes == 0 || e->bytes > c->max_bytes) {
		entry_free(e);
		return;
	}
	if (c->count >= c->nbuckets)
		grow(c);
	b = e->hash & (c->nbuckets - 1);
	e->chain = c->buckets[b];
	c->buckets[b] = e;
	TAILQ_INSERT_HEAD(&c->lru, e, lru);
	c->count++;
	c->bytes += e->bytes;
	e->pinned++;
	evict(c);
	e->pinned--;
}

void cache_flush(struct cache *c)
{
	struct entry *e;

	while ((e = TAILQ_FIRST(&c->lru)) != NULL)
		unlink_entry(c, e);
	c->epoch++;
	c->st.flushes++;
}

void cache_free(struct cache *c)
{
	if (c == NULL)
		return;
	cache_flush(c);
	free(c->buckets);
	free(c);
}

void cache_set_live(struct cache *c, int live)
{
	if (c == NULL)
		return;
	cache_flush(c);
	c->live = live;
}

int cache_live(const struct cache *c) { return c != NULL && c->live && c->max_bytes > 0; }

static size_t key_of(char *buf, char kind, const char *a, const char *b)
{
	int n = snprintf(buf, KEY_MAX, "%c%s%s%s", kind, a, b != NULL ? "\x1f" : "", b ? b : "");

	return n > 0 && n < KEY_MAX ? (size_t)n : 0;
}

static void forget(struct cache *c, const char *key, size_t klen)
{
	struct entry *e;

	if (klen > 0 && (e = find(c, key, klen)) != NULL)
		unlink_entry(c, e);
}

/* The agent of that id: its entry and the index entry that finds it by id. */
static void forget_agent(struct cache *c, const char *id)
{
	char key[KEY_MAX];
	size_t klen = key_of(key, 'A', id, NULL);
	struct entry *e;

	if (klen > 0 && (e = find(c, key, klen)) != NULL) {
		forget(c, e->u.agent_id.akey, e->u.agent_id.aklen);
		unlink_entry(c, e);
	}
}

void cache_changed(struct cache *c, const char *payload)
{
	char key[KEY_MAX];

	if (c == NULL)
		return;
	c->st.changes++;
	if (payload[0] == 's' && payload[1] == ' ') {
		forget(c, key, key_of(key, 's', payload + 2, NULL));
	} else if (payload[0] == 'a' && payload[1] == ' ') {
		forget_agent(c, payload + 2);
	} else if (strcmp(payload, "p") == 0) {
		c->epoch++;
	} else {
		/* Keys, companies, or a change this build does not know: everything may be stale. */
		cache_flush(c);
	}
}

/* ---- identity ---- */

static size_t identity_key(char *buf, uint32_t uid, const gid_t *groups, size_t ngroups)
{
	size_t o = (size_t)snprintf(buf, KEY_MAX, "u%u:", (unsigned)uid);

	for (size_t i = 0; i < ngroups && o + 12 < KEY_MAX; i++)
		o += (size_t)snprintf(buf + o, KEY_MAX - o, "%u,", (unsigned)groups[i]);
	return o + 12 < KEY_MAX ? o : 0;
}

int cache_identity_get(struct cache *c, uint32_t uid, const gid_t *groups, size_t ngroups,
    const struct db_principal_match **rows, size_t *n, int64_t *gen)
{
	char key[KEY_MAX];
	size_t klen;
	struct entry *e;

	if (!cache_live(c) || (klen = identity_key(key, uid, groups, ngroups)) == 0 ||
	    (e = find(c, key, klen)) == NULL)
		return 0;
	if (e->u.id.epoch != c->epoch) {
		unlink_entry(c, e);
		return 0;
	}
	touch(c, e);
	*rows = e->u.id.rows;
	*n = e->u.id.n;
	*gen = e->u.id.gen;
	return 1;
}

static size_t opt_len(const char *s) { return s != NULL ? strlen(s) + 1 : 0; }

/* Copies s to *at (advancing it); NULL stays NULL. */
static const char *copy_str(char **at, const char *s)
{
	char *d = *at;
	size_t n;

	if (s == NULL)
		return NULL;
	n = strlen(s) + 1;
	memcpy(d, s, n);
	*at += n;
	return d;
}

void cache_identity_put(struct cache *c, uint32_t uid, const gid_t *groups, size_t ngroups,
    const struct db_principal_match *rows, size_t n)
{
	char key[KEY_MAX], *at;
	size_t klen, strings = 0, head;
	struct entry *e;

	if (!cache_live(c) || n == 0 || (klen = identity_key(key, uid, groups, ngroups)) == 0)
		return;
	for (size_t i = 0; i < n; i++)
		strings += opt_len(rows[i].id) + opt_len(rows[i].match) + opt_len(rows[i].unix_id) +
		    opt_len(rows[i].role) + opt_len(rows[i].company) + opt_len(rows[i].agent_name);
	/* The rows after the key, aligned for their pointers; then their strings. */
	head = (klen + 1 + 7) & ~(size_t)7;
	if ((e = entry_new(K_IDENTITY, key, klen, head - klen - 1 + n * sizeof(*rows) + strings)) ==
	    NULL)
		return;
	e->u.id.rows = (struct db_principal_match *)(void *)(e->data + head);
	e->u.id.n = n;
	e->u.id.gen = rows[0].gen;
	e->u.id.epoch = c->epoch;
	at = e->data + head + n * sizeof(*rows);
	for (size_t i = 0; i < n; i++) {
		struct db_principal_match *r = &e->u.id.rows[i];
		r->id = copy_str(&at, rows[i].id);
		r->match = copy_str(&at, rows[i].match);
		r->unix_id = copy_str(&at, rows[i].unix_id);
		r->role = copy_str(&at, rows[i].role);
		r->company = copy_str(&at, rows[i].company);
		r->agent_name = copy_str(&at, rows[i].agent_name);
		r->gen = rows[i].gen;
	}
	insert(c, e);
}

/* ---- resolve ---- */

/* A secret id as the database writes it (lower case), or "" when it is not one. */
static void canonical_id(const char *in, char out[37])
{
	size_t i = 0;

	for (; i < 36 && in[i] != '\0'; i++)
		out[i] = (char)(in[i] >= 'A' && in[i] <= 'F' ? in[i] - 'A' + 'a' : in[i]);
	out[i] = '\0';
	if (i != 36 || in[i] != '\0')
		out[0] = '\0';
}

static struct entry *find_secret(struct cache *c, const struct db_ref *r)
{
	char key[KEY_MAX], id[37];
	struct entry *n;
	size_t klen;

	if (r->secret_id[0] != '\0') {
		canonical_id(r->secret_id, id);
		if (id[0] == '\0')
			return NULL;
	} else {
		if ((klen = key_of(key, 'n', r->company, r->name)) == 0 ||
		    (n = find(c, key, klen)) == NULL)
			return NULL;
		touch(c, n);
		memcpy(id, n->u.name.id, sizeof(id));
	}
	if ((klen = key_of(key, 's', id, NULL)) == 0)
		return NULL;
	return find(c, key, klen);
}

static int agent_grants(const struct entry *a, const char *secret_id, uint32_t selector)
{
	for (size_t i = 0; i < a->u.agent.n; i++)
		if (a->u.agent.b[i].selector == selector &&
		    strcmp(a->u.agent.b[i].secret_id, secret_id) == 0)
			return 1;
	return 0;
}

static struct entry *find_version(struct cache *c, const struct entry *s, uint32_t version)
{
	char key[KEY_MAX];
	struct entry *v;
	int klen = snprintf(key, sizeof(key), "v%s:%u", s->u.secret.id, (unsigned)version);

	if (klen <= 0 || (size_t)klen >= sizeof(key) || (v = find(c, key, (size_t)klen)) == NULL)
		return NULL;
	/* A version is only as current as its secret: a state change moves the secret's gen. */
	return v->u.version.gen == s->u.secret.gen ? v : NULL;
}

int cache_resolve(struct cache *c, const char *company, const char *agent,
    const struct db_ref *refs, size_t n, int64_t principals_gen, struct db_resolved *out,
    struct db_check **check)
{
	char key[KEY_MAX];
	struct entry *a, *s, *v;
	struct db_check *k;
	size_t klen;

	*check = NULL;
	if (!cache_live(c) || principals_gen <= 0 ||
	    (klen = key_of(key, 'a', company, agent)) == 0 || (a = find(c, key, klen)) == NULL)
		goto miss;
	for (size_t i = 0; i < n; i++) {
		uint32_t version;
		if ((s = find_secret(c, &refs[i])) == NULL ||
		    !agent_grants(a, s->u.secret.id, refs[i].version))
			goto miss;
		version = refs[i].version != 0 ? refs[i].version : s->u.secret.current;
		if ((v = find_version(c, s, version)) == NULL)
			goto miss;
		memset(&out[i], 0, sizeof(out[i]));
		out[i].idx = (uint32_t)(i + 1);
		out[i].granted = 1;
		out[i].company_id = s->u.secret.company_id;
		out[i].secret_id = s->u.secret.id;
		out[i].version = version;
		out[i].state = "active";
		out[i].sealed = v->u.version.sealed;
		out[i].secret_gen = s->u.secret.gen;
		out[i].current_version = s->u.secret.current;
		touch(c, s);
		touch(c, v);
	}
	if ((k = calloc(1, sizeof(*k) + n * sizeof(k->secrets[0]))) == NULL)
		return -PCS_RESOURCE_EXHAUSTED;
	memcpy(k->agent_id, a->u.agent.id, sizeof(k->agent_id));
	k->agent_gen = a->u.agent.gen;
	k->principals_gen = principals_gen;
	k->nsecrets = n;
	for (size_t i = 0; i < n; i++) {
		snprintf(k->secrets[i].id, sizeof(k->secrets[i].id), "%s", out[i].secret_id);
		k->secrets[i].gen = out[i].secret_gen;
	}
	touch(c, a);
	*check = k;
	c->st.hits++;
	return 1;
miss:
	if (c != NULL)
		c->st.misses++;
	return 0;
}

/* The agent's entry for generation gen of agent id, made when missing or older. */
static struct entry *agent_entry(
    struct cache *c, const char *company, const char *agent, const char *id, int64_t gen)
{
	char key[KEY_MAX], ikey[KEY_MAX];
	size_t klen = key_of(key, 'a', company, agent), iklen = key_of(ikey, 'A', id, NULL);
	struct entry *a, *ix;

	if (klen == 0 || iklen == 0 || strlen(id) != 36)
		return NULL;
	if ((a = find(c, key, klen)) != NULL) {
		if (strcmp(a->u.agent.id, id) == 0 && a->u.agent.gen == gen)
			return a;
		if (strcmp(a->u.agent.id, id) == 0 && a->u.agent.gen > gen)
			return NULL; /* this read is older than what is cached */
		forget(c, ikey, key_of(ikey, 'A', a->u.agent.id, NULL));
		unlink_entry(c, a);
		iklen = key_of(ikey, 'A', id, NULL);
	}
	if ((a = entry_new(K_AGENT, key, klen, 0)) == NULL ||
	    (ix = entry_new(K_AGENT_ID, ikey, iklen, 0)) == NULL) {
		free(a);
		return NULL;
	}
	memcpy(a->u.agent.id, id, 37);
	a->u.agent.gen = gen;
	memcpy(ix->u.agent_id.akey, key, klen);
	ix->u.agent_id.aklen = klen;
	insert(c, ix);
	insert(c, a);
	return find(c, key, klen);
}

static void agent_add(struct cache *c, struct entry *a, const char *secret_id, uint32_t selector)
{
	struct binding *b;
	size_t cap;

	if (agent_grants(a, secret_id, selector) || a->u.agent.n >= AGENT_BINDINGS_MAX)
		return;
	if (a->u.agent.n == a->u.agent.cap) {
		cap = a->u.agent.cap ? a->u.agent.cap * 2 : 4;
		if ((b = realloc(a->u.agent.b, cap * sizeof(*b))) == NULL)
			return;
		a->bytes += (cap - a->u.agent.cap) * sizeof(*b);
		c->bytes += (cap - a->u.agent.cap) * sizeof(*b);
		a->u.agent.b = b;
		a->u.agent.cap = cap;
	}
	b = &a->u.agent.b[a->u.agent.n++];
	memcpy(b->secret_id, secret_id, sizeof(b->secret_id));
	b->selector = selector;
}

/* The secret's entry at row's generation (made or refreshed); NULL when the cache has newer. */
static struct entry *secret_put(struct cache *c, const struct db_resolved *row)
{
	char key[KEY_MAX];
	size_t klen = key_of(key, 's', row->secret_id, NULL);
	struct entry *s;

	if (klen == 0 || strlen(row->secret_id) != 36 || strlen(row->company_id) != 36)
		return NULL;
	if ((s = find(c, key, klen)) != NULL) {
		if (s->u.secret.gen == row->secret_gen)
			return s;
		if (s->u.secret.gen > row->secret_gen)
			return NULL;
	}
	if ((s = entry_new(K_SECRET, key, klen, 0)) == NULL)
		return NULL;
	memcpy(s->u.secret.id, row->secret_id, 37);
	memcpy(s->u.secret.company_id, row->company_id, 37);
	s->u.secret.current = row->current_version;
	s->u.secret.gen = row->secret_gen;
	insert(c, s);
	return find(c, key, klen);
}

static void name_put(struct cache *c, const struct db_resolved *row)
{
	char key[KEY_MAX];
	size_t klen;
	struct entry *e;

	if (row->company == NULL || row->name == NULL || row->company[0] == '\0' ||
	    (klen = key_of(key, 'n', row->company, row->name)) == 0)
		return;
	if ((e = find(c, key, klen)) != NULL && strcmp(e->u.name.id, row->secret_id) == 0)
		return;
	if ((e = entry_new(K_NAME, key, klen, 0)) == NULL)
		return;
	memcpy(e->u.name.id, row->secret_id, 37);
	insert(c, e);
}

static void version_put(struct cache *c, const struct entry *s, const struct db_resolved *row)
{
	const struct db_sealed *in = &row->sealed;
	char key[KEY_MAX], *at;
	struct entry *v;
	size_t head;
	int klen = snprintf(key, sizeof(key), "v%s:%u", s->u.secret.id, (unsigned)row->version);

	if (klen <= 0 || (size_t)klen >= sizeof(key) || in->ciphertext == NULL ||
	    in->nonce == NULL || in->wrapped_key == NULL || in->key_id == NULL)
		return;
	if ((v = find(c, key, (size_t)klen)) != NULL && v->u.version.gen == s->u.secret.gen)
		return;
	head = (size_t)klen + 1;
	if ((v = entry_new(K_VERSION, key, (size_t)klen,
	         in->ciphertext_len + in->nonce_len + in->wrapped_key_len + strlen(in->key_id) +
	             1)) == NULL)
		return;
	at = v->data + head;
	v->u.version.gen = s->u.secret.gen;
	v->u.version.sealed = *in;
	v->u.version.sealed.ciphertext = memcpy(at, in->ciphertext, in->ciphertext_len);
	at += in->ciphertext_len;
	v->u.version.sealed.nonce = memcpy(at, in->nonce, in->nonce_len);
	at += in->nonce_len;
	v->u.version.sealed.wrapped_key = memcpy(at, in->wrapped_key, in->wrapped_key_len);
	at += in->wrapped_key_len;
	v->u.version.sealed.key_id = copy_str(&at, in->key_id);
	insert(c, v);
}

void cache_resolve_put(struct cache *c, const char *company, const char *agent,
    const uint32_t *selectors, size_t nrefs, const struct db_resolved *rows, size_t n)
{
	struct entry *a, *s;

	if (!cache_live(c) || n == 0 || rows[0].agent_id == NULL)
		return;
	if ((a = agent_entry(c, company, agent, rows[0].agent_id, rows[0].agent_gen)) != NULL) {
		touch(c, a);
		a->pinned++;
	}
	for (size_t i = 0; i < n; i++) {
		const struct db_resolved *row = &rows[i];
		if (!row->granted || row->deleted_note != NULL || row->state == NULL ||
		    strcmp(row->state, "active") != 0 || row->idx < 1 || row->idx > nrefs ||
		    row->secret_gen <= 0)
			continue;
		if ((s = secret_put(c, row)) == NULL)
			continue;
		s->pinned++;
		name_put(c, row);
		if (s->u.secret.gen == row->secret_gen)
			version_put(c, s, row);
		if (a != NULL)
			agent_add(c, a, s->u.secret.id, selectors[row->idx - 1]);
		s->pinned--;
	}
	if (a != NULL)
		a->pinned--;
	evict(c);
}

void cache_note_stale(struct cache *c, const struct db_check *check, uint32_t uid,
    const gid_t *groups, size_t ngroups)
{
	char key[KEY_MAX];

	if (c == NULL)
		return;
	c->st.stale++;
	forget(c, key, identity_key(key, uid, groups, ngroups));
	if (check == NULL)
		return;
	if (check->agent_id[0] != '\0')
		forget_agent(c, check->agent_id);
	for (size_t i = 0; i < check->nsecrets; i++)
		forget(c, key, key_of(key, 's', check->secrets[i].id, NULL));
}

void cache_get_stats(const struct cache *c, struct cache_stats *out)
{
	if (c == NULL) {
		memset(out, 0, sizeof(*out));
		return;
	}
	*out = c->st;
	out->entries = c->count;
	out->bytes = c->bytes;
	out->max_bytes = c->max_bytes;
	out->live = cache_live(c);
}
