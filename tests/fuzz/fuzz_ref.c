/* ref_parse on arbitrary strings; whatever it accepts must survive format and re-parse. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_same(const struct pcs_ref *a, const struct pcs_ref *b)
{
	if (strcmp(a->company, b->company) != 0 || strcmp(a->name, b->name) != 0 ||
	    strcmp(a->secret_id, b->secret_id) != 0 || a->version != b->version)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pcs_ref ref, again;
	char buf[512], company[PCS_NAME_MAX + 1], name[PCS_NAME_MAX + 1];
	pcs_error err;
	char *s;

	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (ref_parse(s, &ref, &err) == 0) {
		if (ref_format(&ref, buf, sizeof(buf)) != 0 || ref_parse(buf, &again, &err) != 0)
			abort();
		check_same(&ref, &again);
		if (ref.secret_id[0] == '\0' ? !name_valid(ref.company) || !name_valid(ref.name) :
		    !uuid_valid(ref.secret_id) || ref.company[0] != '\0' || ref.name[0] != '\0')
			abort();
	} else if (err.code != PCS_INVALID_ARGUMENT || memchr(err.message, '\0',
	    sizeof(err.message)) == NULL) {
		abort();
	}
	/* The CLI's COMPANY/NAME form shares the name rules: exercise it on the same input. */
	if (ref_parse_path(s, company, name, &err) == 0 && (!name_valid(company) ||
	    !name_valid(name)))
		abort();
	free(s);
	return 0;
}
