#include <string.h>
#include <strings.h>

#include "envname.h"
#include "ref.h"

/*
 * Why a name is refused. The test for every entry: may the person who writes a binding (an
 * operator, who may create secrets but never read them) use it to run code as whoever runs
 * pcrun, or to get the values the process holds? If so, no value that person chose may ever
 * reach it through a binding.
 */
#define WHY_LOADER "the dynamic loader or the C library loads code or data from what it names"
#define WHY_SHELL "shells run it as code or parse commands differently because of it"
#define WHY_INTERP "an interpreter or virtual machine loads code or options from it"
#define WHY_COMMAND "programs run the command it names"
#define WHY_PATH "it decides which program runs: pcrun looks PROGRAM up in it"
#define WHY_CONFIG "programs read configuration that can run commands from where it points"
#define WHY_TLS "it decides which certificates are trusted or where TLS keys are written"
#define WHY_TMP "programs write their temporary files where it points"
#define WHY_GIT "git reads GIT_* variables to run commands, load configuration and write traces"

struct refused {
	const char *name; /* ending in '*': every name with that prefix */
	const char *why;
};

/* Matched without regard to case: some programs read these names case-insensitively. */
static const struct refused refused[] = {
	/* glibc's own list of variables it ignores in set-uid programs, and more. */
	{ "LD_*", WHY_LOADER },
	{ "DYLD_*", WHY_LOADER },
	{ "GCONV_PATH", WHY_LOADER },
	{ "GETCONF_DIR", WHY_LOADER },
	{ "GLIBC_TUNABLES", WHY_LOADER },
	{ "MALLOC_*", WHY_LOADER },
	{ "HOSTALIASES", WHY_LOADER },
	{ "LOCALDOMAIN", WHY_LOADER },
	{ "LOCPATH", WHY_LOADER },
	{ "NIS_PATH", WHY_LOADER },
	{ "NLSPATH", WHY_LOADER },
	{ "RESOLV_HOST_CONF", WHY_LOADER },
	{ "RES_OPTIONS", WHY_LOADER },
	{ "TZDIR", WHY_LOADER },
	{ "TMPDIR", WHY_TMP },
	{ "PATH", WHY_PATH },
	/* Shells. */
	{ "BASH_ENV", WHY_SHELL },
	{ "ENV", WHY_SHELL },
	{ "BASH_FUNC_*", WHY_SHELL },
	{ "SHELLOPTS", WHY_SHELL },
	{ "BASHOPTS", WHY_SHELL },
	{ "PS0", WHY_SHELL },
	{ "PS1", WHY_SHELL },
	{ "PS2", WHY_SHELL },
	{ "PS3", WHY_SHELL },
	{ "PS4", WHY_SHELL },
	{ "PROMPT_COMMAND", WHY_SHELL },
	{ "IFS", WHY_SHELL },
	{ "CDPATH", WHY_SHELL },
	{ "SHELL", WHY_COMMAND },
	/* Commands other programs run. */
	{ "EDITOR", WHY_COMMAND },
	{ "VISUAL", WHY_COMMAND },
	{ "PAGER", WHY_COMMAND },
	{ "BROWSER", WHY_COMMAND },
	{ "SSH_ASKPASS", WHY_COMMAND },
	{ "SUDO_ASKPASS", WHY_COMMAND },
	{ "GIT_*", WHY_GIT },
	/* Where per-user configuration (git's core.sshCommand, ...) is read from. */
	{ "HOME", WHY_CONFIG },
	{ "XDG_CONFIG_HOME", WHY_CONFIG },
	{ "XDG_CONFIG_DIRS", WHY_CONFIG },
	{ "OPENSSL_CONF", WHY_CONFIG },
	{ "OPENSSL_ENGINES", WHY_LOADER },
	{ "OPENSSL_MODULES", WHY_LOADER },
	/* Interpreters and virtual machines. */
	{ "PYTHONSTARTUP", WHY_INTERP },
	{ "PYTHONPATH", WHY_INTERP },
	{ "PYTHONHOME", WHY_INTERP },
	{ "PYTHONINSPECT", WHY_INTERP },
	{ "PYTHONUSERBASE", WHY_INTERP },
	{ "PYTHONWARNINGS", WHY_INTERP },
	{ "PYTHONBREAKPOINT", WHY_INTERP },
	{ "PYTHONEXECUTABLE", WHY_INTERP },
	{ "NODE_OPTIONS", WHY_INTERP },
	{ "NODE_PATH", WHY_INTERP },
	{ "NODE_REPL_EXTERNAL_MODULE", WHY_INTERP },
	{ "PERL5*", WHY_INTERP },
	{ "PERLLIB", WHY_INTERP },
	{ "RUBYOPT", WHY_INTERP },
	{ "RUBYLIB", WHY_INTERP },
	{ "RUBYSHELL", WHY_INTERP },
	{ "LUA_INIT*", WHY_INTERP },
	{ "LUA_PATH*", WHY_INTERP },
	{ "LUA_CPATH*", WHY_INTERP },
	{ "JAVA_TOOL_OPTIONS", WHY_INTERP },
	{ "_JAVA_OPTIONS", WHY_INTERP },
	{ "JDK_JAVA_OPTIONS", WHY_INTERP },
	{ "JAVA_OPTS", WHY_INTERP },
	{ "JAVA_HOME", WHY_INTERP },
	{ "CLASSPATH", WHY_INTERP },
	{ "MAVEN_OPTS", WHY_INTERP },
	{ "GRADLE_OPTS", WHY_INTERP },
	{ "GOFLAGS", WHY_INTERP },
	/* TLS: trusting another certificate, or logging session keys, reads the traffic. */
	{ "SSLKEYLOGFILE", WHY_TLS },
	{ "SSL_CERT_FILE", WHY_TLS },
	{ "SSL_CERT_DIR", WHY_TLS },
	{ "NODE_EXTRA_CA_CERTS", WHY_TLS },
	{ "NODE_TLS_REJECT_UNAUTHORIZED", WHY_TLS },
	{ "REQUESTS_CA_BUNDLE", WHY_TLS },
	{ "CURL_CA_BUNDLE", WHY_TLS },
	{ "PYTHONHTTPSVERIFY", WHY_TLS },
};

const char *envname_refused(const char *name)
{
	size_t i, len;

	if (name == NULL)
		return NULL;
	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		len = strlen(refused[i].name);
		if (refused[i].name[len - 1] == '*') {
			if (strncasecmp(name, refused[i].name, len - 1) == 0)
				return refused[i].why;
		} else if (strcasecmp(name, refused[i].name) == 0) {
			return refused[i].why;
		}
	}
	return NULL;
}

int envname_check(const char *name, pcs_error *err)
{
	const char *why;

	/* Invalid names are not quoted: the bytes may be anything, even a pasted value. */
	if (name == NULL || !env_name_valid(name))
		return pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "an environment variable name is "
		    "invalid: use letters, digits and '_', not starting with a digit, at most %d "
		    "characters",
		    PCS_ENV_NAME_MAX);
	if ((why = envname_refused(name)) != NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "environment variable %.64s may not be set "
		    "from a secret: %s",
		    name, why);
	return 0;
}
