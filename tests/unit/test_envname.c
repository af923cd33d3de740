/*
 * The environment variable names a secret binding may not set (common/envname.c): every name
 * the security issue lists is refused with a message naming it, ordinary secret names pass,
 * and an invalid name is refused without being quoted.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "envname.h"
#include "ref.h"

static const char *const refused_names[] = {
	/* Loader and C library. */
	"LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "LD_ANYTHING_NEW", "DYLD_INSERT_LIBRARIES",
	"DYLD_LIBRARY_PATH", "GCONV_PATH", "LOCPATH", "NLSPATH", "MALLOC_CHECK_",
	"MALLOC_ARENA_MAX", "GLIBC_TUNABLES", "HOSTALIASES", "RESOLV_HOST_CONF", "RES_OPTIONS",
	"LOCALDOMAIN", "NIS_PATH", "GETCONF_DIR", "TZDIR", "TMPDIR", "PATH",
	/* Shells. */
	"BASH_ENV", "ENV", "BASH_FUNC_x", "SHELLOPTS", "BASHOPTS", "PS4", "PS1", "PROMPT_COMMAND",
	"IFS", "CDPATH", "SHELL",
	/* Commands. */
	"EDITOR", "VISUAL", "PAGER", "BROWSER", "SSH_ASKPASS", "SUDO_ASKPASS", "GIT_SSH_COMMAND",
	"GIT_SSH", "GIT_EXEC_PATH", "GIT_ASKPASS", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_KEY_0",
	"GIT_TRACE_CURL", "GIT_DIR", "GIT_TEMPLATE_DIR",
	/* Configuration. */
	"HOME", "XDG_CONFIG_HOME", "XDG_CONFIG_DIRS", "OPENSSL_CONF", "OPENSSL_ENGINES",
	"OPENSSL_MODULES",
	/* Interpreters. */
	"PYTHONSTARTUP", "PYTHONPATH", "PYTHONHOME", "PYTHONINSPECT", "PYTHONUSERBASE",
	"PYTHONWARNINGS", "PYTHONBREAKPOINT", "NODE_OPTIONS", "NODE_PATH", "PERL5OPT", "PERL5LIB",
	"PERL5DB", "PERLLIB", "RUBYOPT", "RUBYLIB", "LUA_INIT", "LUA_INIT_5_4", "LUA_PATH",
	"LUA_CPATH_5_4", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "JAVA_OPTS",
	"JAVA_HOME", "CLASSPATH", "MAVEN_OPTS", "GRADLE_OPTS", "GOFLAGS",
	/* TLS trust and key logs. */
	"SSLKEYLOGFILE", "SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS",
	"NODE_TLS_REJECT_UNAUTHORIZED", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
	"PYTHONHTTPSVERIFY",
	/* Without regard to case. */
	"ld_preload", "Ld_Library_Path", "path", "Bash_Env", "git_ssh_command", "node_options",
};

/* Names secrets are really bound to, some close to refused ones. */
static const char *const allowed_names[] = {
	"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "DB_PASSWORD", "GITHUB_TOKEN", "GITLAB_TOKEN",
	"NODE_AUTH_TOKEN", "NPM_TOKEN", "HTTPS_PROXY", "http_proxy", "PYTHONANYWHERE_API_TOKEN",
	"AWS_SECRET_ACCESS_KEY", "PATHS", "MYPATH", "HOMER", "ENVIRONMENT", "LDAP_PASSWORD",
	"PS5", "SHELL_TOKEN", "ENV_FILE_KEY", "_", "a", "X1",
};

static void
test_refused_names_name_the_variable(void **state)
{
	pcs_error err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(refused_names) / sizeof(refused_names[0]); i++) {
		memset(&err, 0, sizeof(err));
		if (envname_check(refused_names[i], &err) != -PCS_INVALID_ARGUMENT)
			fail_msg("%s was not refused", refused_names[i]);
		assert_int_equal(err.code, PCS_INVALID_ARGUMENT);
		assert_non_null(strstr(err.message, refused_names[i]));
		assert_non_null(strstr(err.message, "may not be set from a secret"));
		assert_non_null(envname_refused(refused_names[i]));
	}
}

static void
test_ordinary_names_pass(void **state)
{
	pcs_error err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(allowed_names) / sizeof(allowed_names[0]); i++) {
		memset(&err, 0, sizeof(err));
		if (envname_check(allowed_names[i], &err) != 0)
			fail_msg("%s was refused: %s", allowed_names[i], err.message);
		assert_null(envname_refused(allowed_names[i]));
	}
}

static void
test_invalid_names_are_not_quoted(void **state)
{
	static const char *const invalid[] = {
		"", "1ABC", "BAD-NAME", "A B", "A=B", "X\x1b[31mred", "LD_PRELOAD=/tmp/x.so",
		"sk-live-0123456789", "caf\xc3\xa9",
	};
	char longest[PCS_ENV_NAME_MAX + 2];
	pcs_error err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		memset(&err, 0, sizeof(err));
		assert_int_equal(envname_check(invalid[i], &err), -PCS_INVALID_ARGUMENT);
		assert_non_null(strstr(err.message, "invalid"));
		if (invalid[i][0] != '\0')
			assert_null(strstr(err.message, invalid[i]));
		assert_null(strchr(err.message, '\x1b'));
	}
	assert_int_equal(envname_check(NULL, &err), -PCS_INVALID_ARGUMENT);
	/* The longest valid name passes; one character more does not. */
	memset(longest, 'A', sizeof(longest));
	longest[PCS_ENV_NAME_MAX] = '\0';
	assert_int_equal(envname_check(longest, &err), 0);
	longest[PCS_ENV_NAME_MAX] = 'A';
	longest[PCS_ENV_NAME_MAX + 1] = '\0';
	assert_int_equal(envname_check(longest, &err), -PCS_INVALID_ARGUMENT);
	/* err may be NULL. */
	assert_int_equal(envname_check("LD_PRELOAD", NULL), -PCS_INVALID_ARGUMENT);
	assert_null(envname_refused(NULL));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_refused_names_name_the_variable),
		cmocka_unit_test(test_ordinary_names_pass),
		cmocka_unit_test(test_invalid_names_are_not_quoted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
