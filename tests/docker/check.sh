#!/usr/bin/env bash
# Static checks of docker/Dockerfile and docker/compose.yaml, for CI machines without a Docker
# engine.
#   check.sh [ROOT]              check the repository at ROOT (default: the one holding this file)
#   check.sh --self-test [ROOT]  break copies of the files in a temporary directory, one way at a
#                                time, and make sure each break is reported
#   check.sh --flatten FILE      print a YAML file as path=value lines (debugging aid)
# compose.yaml is read with PyYAML when python3 can import it, else with a small awk reader for
# the block-style YAML subset compose files use; PCS_DOCKER_CHECK_NO_YAML=1 forces the latter.
# The Docker build context is the repository root (compose: context "..", dockerfile
# docker/Dockerfile), so COPY sources are checked relative to ROOT.
set -euo pipefail

SELF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")

############################################################################ YAML flattening
# Output: one line per scalar, "a.b[0].c=value"; an empty mapping, list or null is "a.b=".

PYYAML=""
use_pyyaml() {
	if [[ -z $PYYAML ]]; then
		PYYAML=no
		if [[ ${PCS_DOCKER_CHECK_NO_YAML:-0} != 1 ]] && command -v python3 >/dev/null 2>&1 &&
			python3 -c 'import yaml' >/dev/null 2>&1; then
			PYYAML=yes
		fi
	fi
	[[ $PYYAML == yes ]]
}

flatten_py() {
	python3 - "$1" <<'PY'
import sys, yaml
def walk(p, v):
    if isinstance(v, dict):
        if not v:
            print(p + "=")
        for k, x in v.items():
            walk(f"{p}.{k}" if p else str(k), x)
    elif isinstance(v, list):
        if not v:
            print(p + "=")
        for i, x in enumerate(v):
            walk(f"{p}[{i}]", x)
    elif v is None:
        print(p + "=")
    elif isinstance(v, bool):
        print(p + "=" + ("true" if v else "false"))
    else:
        print(p + "=" + str(v).replace("\n", "\\n"))
try:
    with open(sys.argv[1]) as f:
        doc = yaml.safe_load(f)
except (OSError, yaml.YAMLError) as e:
    print(f"cannot parse {sys.argv[1]}: {e}", file=sys.stderr)
    sys.exit(3)
if not isinstance(doc, dict):
    print(f"{sys.argv[1]}: top level is not a mapping", file=sys.stderr)
    sys.exit(3)
walk("", doc)
PY
}

# The block-style subset: nested mappings, "- " sequences (also at their key's indentation),
# "- key: value" items, quoted scalars, comments, flow sequences of scalars, block scalars
# (| and >, reported as <block>). Anchors/aliases are not resolved (a warning says so).
flatten_awk() {
	awk -v FILE="$1" '
	function die(msg) { printf "%s:%d: %s\n", FILE, NR, msg > "/dev/stderr"; bad = 1; exit 3 }
	function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
	function strip_comment(s,    i, c, q, prev) {
		q = ""
		for (i = 1; i <= length(s); i++) {
			c = substr(s, i, 1)
			if (q != "") {
				if (q == "\"" && c == "\\") { i++; continue }
				if (c == q) q = ""
				continue
			}
			prev = (i == 1) ? " " : substr(s, i - 1, 1)
			if ((c == "\"" || c == "\047") && index(" \t[{,:-", prev)) { q = c; continue }
			if (c == "#" && (prev == " " || prev == "\t" || i == 1)) return substr(s, 1, i - 1)
		}
		return s
	}
	function unquote(v) {
		v = trim(v)
		if (v ~ /^".*"$/) { v = substr(v, 2, length(v) - 2); gsub(/\\"/, "\"", v); return v }
		if (v ~ /^\047.*\047$/) { v = substr(v, 2, length(v) - 2); gsub(/\047\047/, "\047", v); return v }
		return v
	}
	function is_key(s) {
		return s ~ /^"[^"]*":( |$)/ || s ~ /^\047[^\047]*\047:( |$)/ ||
		       s ~ /^[^-"\047{}\[\],#&*!|>%@` \t][^:]*:( |$)/ || s ~ /^<<:( |$)/
	}
	function emit(p, v,    n, i, items) {
		if (v ~ /^\*/ || p ~ /(^|\.)<<$/) warn_alias = 1
		if (v ~ /^\[.*\]$/ && v !~ /^\[.*[\[\]{}].*\]$/ ) {
			v = trim(substr(v, 2, length(v) - 2))
			if (v == "") { print p "="; return }
			n = split(v, items, ",")
			for (i = 1; i <= n; i++) print p "[" (i - 1) "]=" unquote(items[i])
			return
		}
		if (v == "{}") v = ""
		print p "=" unquote(v)
	}
	function push(c, p, k) { depth++; col[depth] = c; path[depth] = p; kind[depth] = k; cnt[depth] = -1 }
	function item(c, s,    rest, ic, ip) {
		if (pending != "" && (c > pcol || (c == pcol && ptype == "key"))) {
			push(c, pending, "seq")
			pending = ""
		} else {
			if (pending != "") print pending "="
			pending = ""
			while (depth > 0 && col[depth] > c) depth--
		}
		if (kind[depth] != "seq" || col[depth] != c) die("sequence item where none can be")
		cnt[depth]++
		ip = path[depth] "[" cnt[depth] "]"
		rest = s; sub(/^-[ \t]*/, "", rest)
		ic = c + length(s) - length(rest)
		if (rest == "") { pending = ip; pcol = c; ptype = "item"; return }
		if (rest ~ /^-( |$)/) die("nested inline sequences are not supported")
		if (is_key(rest)) { push(ic, ip, "map"); keyline(ic, rest); return }
		emit(ip, rest)
	}
	function keyline(c, s,    m, key, val, p) {
		if (pending != "" && c > pcol) push(c, pending, "map")
		else if (pending != "") print pending "="
		pending = ""
		while (depth > 0 && (col[depth] > c || (col[depth] == c && kind[depth] == "seq"))) depth--
		if (kind[depth] != "map" || col[depth] != c) die("bad indentation")
		if (s ~ /^["\047]/) {
			m = index(substr(s, 2), substr(s, 1, 1))
			key = substr(s, 2, m - 1); val = substr(s, m + 3)
		} else {
			m = match(s, /:( |$)/)
			key = trim(substr(s, 1, m - 1)); val = substr(s, m + 1)
		}
		val = trim(val)
		if (val ~ /^&[^ \t]+/) { sub(/^&[^ \t]+[ \t]*/, "", val) }
		p = (path[depth] == "") ? key : path[depth] "." key
		if (val == "") { pending = p; pcol = c; ptype = "key"; return }
		if (val ~ /^[|>][-+0-9]*$/) { print p "=<block>"; blockcol = c; return }
		emit(p, val)
	}
	BEGIN { depth = 0; col[0] = 0; path[0] = ""; kind[0] = "map"; pending = ""; blockcol = -1 }
	{
		raw = $0; sub(/\r$/, "", raw)
		if (blockcol >= 0) {
			if (raw ~ /^[ \t]*$/) next
			match(raw, /^ */)
			if (RLENGTH > blockcol) next
			blockcol = -1
		}
		line = strip_comment(raw)
		if (line ~ /^[ \t]*$/ || line ~ /^(---|\.\.\.)[ \t]*$/ || line ~ /^%/) next
		if (line ~ /^ *\t/) die("tab in indentation")
		match(line, /^ */); c = RLENGTH
		s = trim(substr(line, c + 1))
		if (s ~ /^-( |$)/) item(c, s)
		else if (is_key(s)) keyline(c, s)
		else die("cannot read this line: " s)
	}
	END {
		if (!bad && pending != "") print pending "="
		if (!bad && warn_alias)
			print FILE ": aliases/merge keys are not resolved by the fallback reader" > "/dev/stderr"
	}' "$1"
}

flatten() {
	if use_pyyaml; then flatten_py "$1"; else flatten_awk "$1"; fi
}

############################################################################ checks

errors=()
nchecks=0
fail() { errors+=("$*"); }
check() { nchecks=$((nchecks + 1)); }

# Dockerfile logical lines: "LINENO<TAB>instruction args", continuations joined, comments dropped.
dockerfile_lines() {
	awk '
	{
		line = $0; sub(/\r$/, "", line)
		if (line ~ /^[ \t]*#/) next
		if (line ~ /^[ \t]*$/) { if (buf == "") next; else next }
		if (buf == "") start = NR
		if (line ~ /\\[ \t]*$/) { sub(/\\[ \t]*$/, "", line); buf = buf line " "; next }
		buf = buf line
		sub(/^[ \t]+/, "", buf)
		print start "\t" buf
		buf = ""
	}
	END { if (buf != "") { sub(/^[ \t]+/, "", buf); print start "\t" buf } }' "$1"
}

# Patterns of an ignore file, without comments, negations and surrounding slashes.
ignore_patterns() {
	[[ -f $1 ]] || return 0
	sed -e 's/#.*//' -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' "$1" |
		grep -v -e '^$' -e '^!' | sed -e 's#^/##' -e 's#/$##'
}

# excluded_by_ignore SRC: prints the pattern that excludes SRC from the build context, if any.
excluded_by_ignore() {
	local src=$1 pat
	while IFS= read -r pat; do
		pat=${pat#\*\*/}
		# shellcheck disable=SC2053 # $pat is a glob on purpose
		if [[ $src == $pat || $src == $pat/* ]]; then
			printf '%s\n' "$pat"
			return 0
		fi
	done < <(ignore_patterns "$IGNOREFILE")
	return 1
}

check_dockerfile() {
	local df=$1 rel=${1#"$ROOT"/}
	if [[ ! -f $df ]]; then
		fail "$rel does not exist"
		return
	fi
	local -a names=() unnamed=()
	local nstages=0 user="" userline="" entry="" volumes="" envs=""
	local lineno text instr args
	while IFS=$'\t' read -r lineno text; do
		instr=${text%%[[:space:]]*}
		instr=${instr^^}
		args=${text#*[[:space:]]}
		[[ $args == "$text" ]] && args=""
		local -a tok=()
		read -r -a tok <<<"$args"
		case $instr in
		FROM)
			local i=0
			while [[ ${tok[i]:-} == --* ]]; do i=$((i + 1)); done
			nstages=$((nstages + 1))
			user="" userline="" entry="" volumes="" envs=""
			if [[ ${tok[i + 1]:-} =~ ^[Aa][Ss]$ && -n ${tok[i + 2]:-} ]]; then
				names+=("${tok[i + 2],,}")
			else
				names+=("")
				unnamed+=("$lineno")
			fi
			;;
		COPY | ADD)
			check_copy "$rel" "$lineno" "$instr" "$nstages" "${names[@]:0:$((nstages > 0 ? nstages - 1 : 0))}" -- "${tok[@]}"
			;;
		USER) user=${tok[0]:-} userline=$lineno ;;
		ENTRYPOINT) entry=$args ;;
		VOLUME) volumes+=" $args" ;;
		ENV) envs+=" $args" ;;
		esac
	done < <(dockerfile_lines "$df")

	check
	if ((nstages < 2)); then
		fail "$rel: needs at least two stages (build and runtime), found $nstages FROM"
	fi
	check
	if ((${#unnamed[@]} > 0)); then
		fail "$rel: every stage must be named (FROM image AS name); unnamed FROM at line(s) ${unnamed[*]}"
	fi
	# The runtime stage is the last one.
	check
	local u=${user%%:*}
	if [[ -z $u ]]; then
		fail "$rel: the runtime (last) stage sets no USER, so it would run as root"
	elif [[ $u == root || $u == 0 ]]; then
		fail "$rel:$userline: the runtime stage's USER is root ($user); use a non-root user"
	fi
	check
	local first
	if [[ $entry =~ ^[[:space:]]*\[[[:space:]]*\"([^\"]*)\" ]]; then
		first=${BASH_REMATCH[1]}
	else
		first=${entry%%[[:space:]]*}
	fi
	if [[ -z $entry ]]; then
		fail "$rel: the runtime stage has no ENTRYPOINT (expected [\"pcsecretd\"])"
	elif [[ ${first##*/} != pcsecretd ]]; then
		fail "$rel: the runtime stage's ENTRYPOINT is $entry, expected [\"pcsecretd\"]"
	fi
	check
	if [[ $volumes != *'/run/pcsecret"'* && ! $volumes =~ /run/pcsecret([[:space:]]|$) ]]; then
		fail "$rel: the runtime stage must declare VOLUME /run/pcsecret (the socket directory)"
	fi
	check
	if [[ ! $envs =~ PCSECRET_SOCKET[=[:space:]]+/run/pcsecret/ ]]; then
		fail "$rel: the runtime stage must set ENV PCSECRET_SOCKET=/run/pcsecret/..."
	fi
}

# check_copy REL LINENO INSTR STAGE_NUMBER EARLIER_STAGE_NAMES... -- ARGS...
check_copy() {
	local rel=$1 lineno=$2 instr=$3 stage=$4
	shift 4
	local -a earlier=()
	while [[ $1 != -- ]]; do
		earlier+=("$1")
		shift
	done
	shift
	local from="" a
	local -a rest=()
	while (($#)) && [[ $1 == --* ]]; do
		case $1 in --from=*) from=${1#--from=} ;; esac
		shift
	done
	rest=("$@")
	# JSON form: ["src", ..., "dest"]
	if [[ ${rest[0]:-} == \[* ]]; then
		local joined="${rest[*]}"
		joined=${joined#[}
		joined=${joined%]}
		IFS=',' read -r -a rest <<<"$joined"
		for a in "${!rest[@]}"; do
			rest[a]=$(sed -e 's/^[[:space:]]*"//' -e 's/"[[:space:]]*$//' <<<"${rest[a]}")
		done
	fi
	check
	if ((${#rest[@]} < 2)); then
		fail "$rel:$lineno: $instr needs at least a source and a destination"
		return
	fi
	if [[ -n $from ]]; then
		check
		local f=${from,,} ok=0 n
		if [[ $f =~ ^[0-9]+$ ]]; then
			((f < stage - 1)) && ok=1
		else
			for n in "${earlier[@]}"; do [[ -n $n && $n == "$f" ]] && ok=1; done
		fi
		if ((ok == 0)); then
			fail "$rel:$lineno: COPY --from=$from does not name a stage defined before it (stages: ${earlier[*]:-none})"
		fi
		return
	fi
	local src n=$((${#rest[@]} - 1)) i pat
	for ((i = 0; i < n; i++)); do
		src=${rest[i]}
		[[ $src == '<<'* ]] && continue # heredoc
		if [[ $instr == ADD && $src =~ ^(https?|git)://|^git@ ]]; then continue; fi
		src=${src#./}
		src=${src#/}
		[[ -z $src ]] && src=.
		check
		if [[ $src != . ]] && pat=$(excluded_by_ignore "$src"); then
			fail "$rel:$lineno: $instr source '$src' is excluded from the build context by '$pat' in ${IGNOREFILE#"$ROOT"/}"
			continue
		fi
		check
		if [[ $src == *[\*\?\[]* ]]; then
			if ! compgen -G "$ROOT/$src" >/dev/null; then
				fail "$rel:$lineno: $instr source '$src' matches nothing in the repository"
			fi
		elif [[ ! -e $ROOT/$src ]]; then
			fail "$rel:$lineno: $instr source '$src' does not exist in the repository"
		fi
	done
}

check_dockerignore() {
	local rel=${IGNOREFILE#"$ROOT"/} p
	check
	if [[ ! -f $IGNOREFILE ]]; then
		fail "$rel does not exist (the build context would include .git, build trees and secrets)"
		return
	fi
	local pats
	pats=$(ignore_patterns "$IGNOREFILE")
	for p in .git 'build*' docker/secrets; do
		check
		if ! grep -qxF -- "$p" <<<"$pats"; then
			fail "$rel must exclude $p"
		fi
	done
}

# Helpers over the flattened compose file $FLAT.
yhas() { awk -v p="$1" 'index($0, p) == 1 && index(".=[", substr($0, length(p) + 1, 1)) { f = 1; exit } END { exit !f }' "$FLAT"; }
yget() { awk -v p="$1=" 'index($0, p) == 1 { print substr($0, length(p) + 1); exit }' "$FLAT"; }
# Direct children of a mapping: names after "P."
ykeys() { awk -v p="$1." 'index($0, p) == 1 { s = substr($0, length(p) + 1); sub(/[.=\[].*/, "", s); if (!seen[s]++) print s }' "$FLAT"; }
# Indexes of a sequence: numbers in "P[N]"
yidx() { awk -v p="$1[" 'index($0, p) == 1 { s = substr($0, length(p) + 1); sub(/\].*/, "", s); if (!seen[s]++) print s }' "$FLAT"; }

check_compose() {
	local cf=$1 rel=${1#"$ROOT"/} cdir
	cdir=$(dirname "$cf")
	check
	if [[ ! -f $cf ]]; then
		fail "$rel does not exist"
		return
	fi
	FLAT=$(mktemp)
	local err
	if ! err=$(flatten "$cf" 2>&1 >"$FLAT"); then
		fail "$rel: cannot be parsed: $err"
		rm -f "$FLAT"
		return
	fi
	[[ -n $err ]] && echo "note: $err" >&2
	local -a services=()
	mapfile -t services < <(ykeys services)
	local s
	for s in postgres pcsecretd; do
		check
		if ! yhas "services.$s"; then
			fail "$rel: service '$s' is missing (services: ${services[*]:-none})"
		fi
	done

	local i src tgt file ctx dfile vol v vsrc
	for s in "${services[@]}"; do
		local -a mounted=()
		# Secrets: declared at top level with a file, and that file's directory git-ignored.
		while IFS= read -r i; do
			src=$(yget "services.$s.secrets[$i]")
			[[ -z $src ]] && src=$(yget "services.$s.secrets[$i].source")
			tgt=$(yget "services.$s.secrets[$i].target")
			mounted+=("${tgt:-$src}")
			check
			if [[ -z $src ]]; then
				fail "$rel: service '$s': secrets entry $i has no name/source"
				continue
			fi
			if ! yhas "secrets.$src"; then
				fail "$rel: service '$s' uses secret '$src', which is not declared under the top-level secrets:"
				continue
			fi
			file=$(yget "secrets.$src.file")
			check
			if [[ -z $file ]]; then
				fail "$rel: top-level secret '$src' has no file: (expected e.g. file: ./secrets/$src)"
				continue
			fi
			check
			[[ $file != /* ]] && file=$cdir/$file
			if [[ ! -f $(dirname "$file")/.gitignore ]] || ! grep -qxF '*' "$(dirname "$file")/.gitignore"; then
				fail "$rel: secret '$src' lives in $(dirname "${file#"$ROOT"/}"), which needs a .gitignore ignoring everything (*)"
			fi
		done < <(yidx "services.$s.secrets")

		# Every /run/secrets/NAME the environment points at is mounted into this service.
		while IFS= read -r v; do
			[[ $v =~ /run/secrets/([A-Za-z0-9_.-]+) ]] || continue
			local want=${BASH_REMATCH[1]} m found=0
			for m in "${mounted[@]}"; do [[ $m == "$want" ]] && found=1; done
			check
			if ((found == 0)); then
				fail "$rel: service '$s' points at /run/secrets/$want but mounts no such secret (mounts: ${mounted[*]:-none})"
			fi
		done < <(awk -v p="services.$s.environment" 'index($0, p) == 1 { print substr($0, index($0, "=") + 1) }' "$FLAT")

		# Named volumes are declared at top level.
		while IFS= read -r i; do
			vol=$(yget "services.$s.volumes[$i]")
			if [[ -n $vol ]]; then
				[[ $vol == *:* ]] || continue
				vsrc=${vol%%:*}
			else
				[[ $(yget "services.$s.volumes[$i].type") == volume ]] || continue
				vsrc=$(yget "services.$s.volumes[$i].source")
			fi
			[[ -z $vsrc || $vsrc == [/.~\$]* ]] && continue
			check
			if ! yhas "volumes.$vsrc"; then
				fail "$rel: service '$s' mounts volume '$vsrc', which is not declared under the top-level volumes:"
			fi
		done < <(yidx "services.$s.volumes")

		# Build context and Dockerfile exist.
		if yhas "services.$s.build"; then
			ctx=$(yget "services.$s.build.context")
			[[ -z $ctx ]] && ctx=$(yget "services.$s.build")
			[[ -z $ctx ]] && ctx=.
			dfile=$(yget "services.$s.build.dockerfile")
			[[ -z $dfile ]] && dfile=Dockerfile
			[[ $ctx != /* ]] && ctx=$cdir/$ctx
			check
			if [[ ! -d $ctx ]]; then
				fail "$rel: service '$s': build context '$(yget "services.$s.build.context")' is not a directory"
				continue
			fi
			[[ $dfile != /* ]] && dfile=$ctx/$dfile
			check
			if [[ ! -f $dfile ]]; then
				fail "$rel: service '$s': dockerfile '$(yget "services.$s.build.dockerfile")' does not exist (relative to the build context)"
				continue
			fi
			if [[ $s == pcsecretd ]]; then
				check
				if [[ $(cd "$ctx" && pwd -P) != $(cd "$ROOT" && pwd -P) ||
					$(realpath "$dfile") != $(realpath "$ROOT/docker/Dockerfile") ]]; then
					fail "$rel: service 'pcsecretd' must build docker/Dockerfile with the repository root as context"
				fi
			fi
		fi
	done

	if yhas services.pcsecretd; then
		check
		yhas services.pcsecretd.build || fail "$rel: service 'pcsecretd' has no build: section"
		check
		if [[ $(yget services.pcsecretd.depends_on.postgres.condition) != service_healthy ]]; then
			fail "$rel: service 'pcsecretd' must depend on postgres with condition: service_healthy"
		fi
		check
		local runvol=0
		while IFS= read -r v; do
			[[ $v == *:/run/pcsecret || $v == *:/run/pcsecret:* ]] && runvol=1
		done < <(awk -v p="services.pcsecretd.volumes[" 'index($0, p) == 1 { print substr($0, index($0, "=") + 1) }' "$FLAT")
		grep -qE '^services\.pcsecretd\.volumes\[[0-9]+\]\.target=/run/pcsecret/?$' "$FLAT" && runvol=1
		((runvol)) || fail "$rel: service 'pcsecretd' must mount a volume at /run/pcsecret (its socket)"
	fi
	if yhas services.postgres; then
		check
		if ! awk -v p="services.postgres.healthcheck.test" 'index($0, p) == 1' "$FLAT" | grep -q pg_isready; then
			fail "$rel: service 'postgres' needs a healthcheck running pg_isready"
		fi
	fi
	rm -f "$FLAT"
}

run_checks() {
	ROOT=$(cd "$1" && pwd)
	IGNOREFILE=$ROOT/docker/Dockerfile.dockerignore
	check_dockerignore
	check_dockerfile "$ROOT/docker/Dockerfile"
	check_compose "$ROOT/docker/compose.yaml"
	local how=awk
	use_pyyaml && how=PyYAML
	if ((${#errors[@]} > 0)); then
		local e
		for e in "${errors[@]}"; do echo "docker_static: FAIL: $e" >&2; done
		echo "docker_static: ${#errors[@]} problem(s) found ($nchecks checks; compose read with $how)" >&2
		return 1
	fi
	echo "docker_static: OK ($nchecks checks; compose read with $how)"
}

############################################################################ self-test

self_test() {
	local root tmp
	root=$(cd "$1" && pwd)
	tmp=$(mktemp -d)
	# shellcheck disable=SC2064 # expand now
	trap "rm -rf '$tmp'" EXIT
	local -a modes=(awk)
	if [[ ${PCS_DOCKER_CHECK_NO_YAML:-0} != 1 ]] && python3 -c 'import yaml' >/dev/null 2>&1; then
		modes+=(pyyaml)
	else
		echo "self-test: PyYAML not importable; testing the awk reader only"
	fi
	local failures=0

	fresh_copy() {
		rm -rf "$tmp/r"
		mkdir "$tmp/r"
		local e
		for e in "$root"/* "$root"/.[!.]*; do
			if [[ -e $e && $(basename "$e") != docker ]]; then ln -s "$e" "$tmp/r/$(basename "$e")"; fi
		done
		# Real copies (never links), so the edits below cannot reach the originals; the secrets
		# themselves are not copied, only the .gitignore guarding them.
		mkdir -p "$tmp/r/docker/secrets"
		for e in Dockerfile Dockerfile.dockerignore compose.yaml secrets/.gitignore; do
			if [[ -e $root/docker/$e ]]; then cp -L "$root/docker/$e" "$tmp/r/docker/$e"; fi
		done
	}
	run_mode() { # MODE -> runs the checker on the copy, output in $tmp/out
		local noyaml=0
		[[ $1 == awk ]] && noyaml=1
		PCS_DOCKER_CHECK_NO_YAML=$noyaml bash "$SELF" "$tmp/r" >"$tmp/out" 2>&1
	}

	# The awk reader must agree with PyYAML on the real compose file.
	if [[ " ${modes[*]} " == *" pyyaml "* ]]; then
		if diff <(flatten_py "$root/docker/compose.yaml" | sort) \
			<(flatten_awk "$root/docker/compose.yaml" | sort) >"$tmp/diff"; then
			echo "self-test ok:   awk reader and PyYAML agree on docker/compose.yaml"
		else
			echo "self-test FAIL: awk reader and PyYAML disagree on docker/compose.yaml:" >&2
			cat "$tmp/diff" >&2
			failures=$((failures + 1))
		fi
	fi

	local m
	fresh_copy
	for m in "${modes[@]}"; do
		if run_mode "$m"; then
			echo "self-test ok:   unmodified copy passes ($m)"
		else
			echo "self-test FAIL: unmodified copy does not pass ($m):" >&2
			cat "$tmp/out" >&2
			failures=$((failures + 1))
		fi
	done

	# name @ file under docker/ @ sed -E script @ text the failure must mention
	# shellcheck disable=SC2016 # sed scripts, not shell expansions
	local cases='
stage not named@Dockerfile@0,/^FROM /s/^(FROM[[:space:]]+[^[:space:]]+)[[:space:]]+AS[[:space:]]+[^[:space:]]+/\1/@must be named
single stage@Dockerfile@/^FROM .* AS runtime/,$d@at least two stages
COPY --from unknown stage@Dockerfile@s/--from=build/--from=builder/@--from=builder
COPY missing source@Dockerfile@s|^WORKDIR /src$|&\nCOPY no/such/file /x|@no/such/file
COPY ignored source@Dockerfile@s|^WORKDIR /src$|&\nCOPY build/x /x|@excluded
runtime USER root@Dockerfile@s/^USER pcsecret$/USER root/@USER is root
runtime without USER@Dockerfile@/^USER /d@no USER
wrong ENTRYPOINT@Dockerfile@s|^ENTRYPOINT .*|ENTRYPOINT ["/bin/sh"]|@ENTRYPOINT
no socket VOLUME@Dockerfile@/^VOLUME /d@VOLUME
ignore file keeps .git@Dockerfile.dockerignore@/^\.git$/d@must exclude .git
ignore file keeps secrets@Dockerfile.dockerignore@/^docker\/secrets$/d@must exclude docker/secrets
service postgres renamed@compose.yaml@s/^  postgres:$/  database:/@service '"'"'postgres'"'"' is missing
service pcsecretd missing@compose.yaml@s/^  pcsecretd:$/  daemon:/@service '"'"'pcsecretd'"'"' is missing
secret not declared@compose.yaml@s/^      - database_url$/      - db_url/@db_url
secret without file@compose.yaml@s|file: ./secrets/master_key|environment: MASTER_KEY|@secret '"'"'master_key'"'"' has no file
env names unmounted secret@compose.yaml@s|PCSECRET_MASTER_KEY_FILE: /run/secrets/master_key|PCSECRET_MASTER_KEY_FILE: /run/secrets/mk|@/run/secrets/mk
dockerfile missing@compose.yaml@s|dockerfile: docker/Dockerfile|dockerfile: docker/Nope|@docker/Nope
context missing@compose.yaml@s|context: \.\.$|context: ../nope|@not a directory
not waiting for healthy@compose.yaml@s/condition: service_healthy/condition: service_started/@service_healthy
volume not declared@compose.yaml@s/^  pcsecret-run:$/  other-run:/@pcsecret-run
no pg_isready@compose.yaml@s/pg_isready/true/@pg_isready
broken YAML@compose.yaml@s/^services:$/services: [/@parse
'
	local name file script expect
	while IFS='@' read -r name file script expect; do
		[[ -z $name ]] && continue
		for m in "${modes[@]}"; do
			[[ $file != compose.yaml && $m == pyyaml ]] && continue
			fresh_copy
			if [[ -L $tmp/r/docker || -L $tmp/r/docker/$file ||
				$(realpath "$tmp/r/docker/$file") != "$(realpath "$tmp")"/* ]]; then
				echo "self-test: refusing to edit $tmp/r/docker/$file: not a private copy" >&2
				return 1
			fi
			sed -E -i -e "$script" "$tmp/r/docker/$file"
			if cmp -s "$root/docker/$file" "$tmp/r/docker/$file"; then
				echo "self-test FAIL: '$name': the edit did not change docker/$file (update the self-test)" >&2
				failures=$((failures + 1))
				continue
			fi
			if run_mode "$m"; then
				echo "self-test FAIL: '$name' ($m) was not detected" >&2
				failures=$((failures + 1))
			elif ! grep -qiF -- "$expect" "$tmp/out"; then
				echo "self-test FAIL: '$name' ($m) failed without mentioning '$expect':" >&2
				cat "$tmp/out" >&2
				failures=$((failures + 1))
			else
				echo "self-test ok:   '$name' ($m): $(grep -m1 'FAIL' "$tmp/out" | sed 's/^docker_static: FAIL: //')"
			fi
		done
	done <<<"$cases"

	if ((failures > 0)); then
		echo "docker_static self-test: $failures failure(s)" >&2
		return 1
	fi
	echo "docker_static self-test: OK"
}

############################################################################ main

case ${1:-} in
--self-test)
	self_test "${2:-$(dirname "$SELF")/../..}"
	;;
--flatten)
	flatten "$2"
	;;
*)
	run_checks "${1:-$(dirname "$SELF")/../..}"
	;;
esac
