#!/usr/bin/env python3
"""Writes the seed corpora of fuzz_dispatch, fuzz_config and fuzz_keyfile.

The seeds are checked in (tests/fuzz/corpus/<target>/); run this only to regenerate them after
the input layout of a harness changes. It writes only the files named below and never deletes
anything, so inputs saved from crashes (named "regress-<what>") stay.
Protobuf messages are encoded by hand from proto/pcsecret.proto's field numbers.
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# ---- protobuf, by hand ----


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_varint(field, n):
    return varint(field << 3 | 0) + varint(n)


def f_bytes(field, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(field << 3 | 2) + varint(len(data)) + data


# Method ids: 1-based positions in service PcSecret (append only).
M = {name: i + 1 for i, name in enumerate([
    "Hello", "CreateCompany", "ListCompanies", "CreateSecret", "UpdateSecret", "ListSecrets",
    "DescribeSecret", "Resolve", "CreateAgent", "DescribeAgent", "SetAgentEnv",
    "UnsetAgentEnv", "GetAgentEnv", "AddPrincipal", "ListPrincipals", "RemovePrincipal",
    "ListAudit", "ListAgents", "DeleteAgent", "DeleteSecret"])}


def ref(company="", name="", secret_id="", version=0):
    msg = b""
    if secret_id:
        msg += f_bytes(1, secret_id)
    if company:
        msg += f_bytes(2, company)
    if name:
        msg += f_bytes(3, name)
    if version:
        msg += f_varint(4, version)
    return msg


UUID = "00000000-0000-4000-8000-0000000000d1"

REQ = {
    "Hello": f_varint(1, 1) + f_bytes(2, "seed"),
    "CreateCompany": f_bytes(1, "acme"),
    "ListCompanies": b"",
    "CreateSecret": f_bytes(1, "acme") + f_bytes(2, "api-key") + f_bytes(3, "desc")
    + f_bytes(4, "value-1"),
    "UpdateSecret": f_bytes(1, "acme") + f_bytes(2, "api-key") + f_bytes(3, "value-2")
    + f_varint(4, 1) + f_bytes(5, "token-1"),
    "ListSecrets": f_bytes(1, "acme"),
    "DescribeSecret": f_bytes(1, "acme") + f_bytes(2, "api-key"),
    "Resolve": f_bytes(1, ref("acme", "api-key")) + f_bytes(1, ref(secret_id=UUID, version=1)),
    "CreateAgent": f_bytes(1, "acme") + f_bytes(2, "bot") + f_varint(3, 40001),
    "DescribeAgent": f_bytes(1, "acme") + f_bytes(2, "bot"),
    "SetAgentEnv": f_bytes(1, "acme") + f_bytes(2, "bot") + f_bytes(3, "API_KEY")
    + f_bytes(4, ref("acme", "api-key")),
    "UnsetAgentEnv": f_bytes(1, "acme") + f_bytes(2, "bot") + f_bytes(3, "API_KEY"),
    "GetAgentEnv": b"",
    "AddPrincipal": f_bytes(1, "uid") + f_varint(2, 40002) + f_bytes(3, "operator")
    + f_bytes(4, "acme"),
    "ListPrincipals": b"",
    "RemovePrincipal": f_varint(1, 7),
    "ListAudit": f_bytes(1, "acme") + f_varint(2, 10),
    "ListAgents": f_bytes(1, "acme"),
    "DeleteAgent": f_bytes(1, "acme") + f_bytes(2, "bot"),
    "DeleteSecret": f_bytes(1, "acme") + f_bytes(2, "api-key") + f_varint(3, 1),
}

# ---- fuzz_dispatch records (see fuzz_dispatch.c) ----

PERSONA = {"bootstrap": 0, "admin": 1, "operator": 2, "launcher": 3, "agent": 4,
           "unknown_role": 5, "no_rule": 6}


def rec(kind, body):
    return bytes([kind]) + struct.pack(">H", len(body)) + body


def call(method, req=None, timeout=0, by_name=False):
    """Kind 2: the harness builds the Call envelope."""
    sel = (128 + M[method] - 1) if by_name else M[method]
    return rec(2, bytes([sel, timeout]) + (REQ[method] if req is None else req))


def envelope(call_id, method_id, req, method=""):
    msg = f_varint(1, call_id)
    if method:
        msg += f_bytes(2, method)
    if method_id:
        msg += f_varint(3, method_id)
    return msg + f_bytes(5, req)


def frame(body):
    """Kind 0: the harness adds the right header."""
    return rec(0, body)


def raw(data):
    """Kind 1: bytes as they are."""
    return rec(1, data)


def dispatch_input(persona, opts=0, script=b"", records=()):
    return bytes([PERSONA[persona], opts, len(script)]) + script + b"".join(records)


# Script bytes (stub_store.c): top 3 bits of a job's outcome byte.
ERR = lambda code_index: bytes([code_index & 0x0F])           # error result
SUBMIT_FAIL = bytes([0x10])                                   # store_submit refuses
EMPTY = bytes([0x20])                                         # zero rows
FUZZROWS = bytes([0x40])                                      # rows from the script
SLOW = lambda ms: bytes([0x60 | (ms & 7)])                    # canned, after a delay
CANNED = bytes([0xE0])


def every_call():
    return [call(m) for m in M if m != "Hello"]


def dispatch_seeds():
    seeds = {}
    seeds["bootstrap_every_rpc"] = dispatch_input("bootstrap", records=every_call())
    for p in ("admin", "operator", "launcher", "agent", "unknown_role", "no_rule"):
        seeds[p + "_every_rpc"] = dispatch_input(p, records=every_call())
    seeds["agent_resolves"] = dispatch_input("agent", records=[
        call("Resolve"), call("GetAgentEnv"),
        call("Resolve", f_bytes(1, ref("acme", "api-key", version=3))),
        call("GetAgentEnv", f_bytes(1, "acme") + f_bytes(2, "other"))])
    seeds["launcher_resolves_for_agent"] = dispatch_input("launcher", records=[
        call("Resolve", REQ["Resolve"] + f_bytes(2, "acme/bot")),
        call("GetAgentEnv", f_bytes(1, "acme") + f_bytes(2, "bot")),
        call("Resolve", REQ["Resolve"]),
        call("Resolve", REQ["Resolve"] + f_bytes(2, "beta/bot"))])
    seeds["admin_resolve_denied"] = dispatch_input("bootstrap", records=[
        call("Resolve"), call("GetAgentEnv", f_bytes(1, "acme") + f_bytes(2, "bot"))])
    seeds["database_errors"] = dispatch_input(
        "agent", script=b"".join(ERR(i) for i in range(12)),
        records=[call("Resolve"), call("GetAgentEnv"), call("ListSecrets")])
    seeds["audit_insert_fails"] = dispatch_input(
        "bootstrap", script=CANNED + ERR(0) + CANNED + SUBMIT_FAIL,
        records=[call("ListCompanies"), call("CreateCompany", f_bytes(1, "Bad Name"))])
    seeds["submit_refused"] = dispatch_input(
        "bootstrap", script=SUBMIT_FAIL * 3, records=[call("ListSecrets"), call("ListAudit")])
    seeds["empty_and_fuzz_rows"] = dispatch_input(
        "launcher", script=EMPTY + CANNED + FUZZROWS + b"\x03\x05" + b"\x09seven-ch" * 6,
        records=[call("Resolve", REQ["Resolve"] + f_bytes(2, "acme/bot")),
                 call("DescribeAgent"), call("ListAudit")])
    seeds["slow_db_and_deadlines"] = dispatch_input(
        "agent", script=SLOW(7) + SLOW(5) + SLOW(1) + SLOW(3),
        records=[call("Resolve", timeout=1), call("GetAgentEnv", timeout=2),
                 call("ListSecrets", timeout=0)])
    seeds["out_of_order"] = dispatch_input(
        "bootstrap", script=CANNED * 4 + b"\x03\x02\x01\x00" * 4,
        records=[call("ListCompanies"), call("ListSecrets"), call("ListAudit"),
                 call("ListPrincipals")])
    seeds["pipelined_before_hello_reply"] = dispatch_input("agent", opts=8,
                                                           records=every_call()[:5])
    seeds["no_hello"] = dispatch_input("bootstrap", opts=1, records=[
        call("ListSecrets"), call("Hello"), call("Hello"), call("ListSecrets")])
    seeds["hello_bad_version"] = dispatch_input("bootstrap", opts=1, records=[
        call("Hello", f_varint(1, 99)), call("Hello"), call("ListCompanies")])
    seeds["chunked_writes"] = dispatch_input("operator", opts=0x02 | 0x30,
                                             records=every_call()[:6])
    seeds["abrupt_close"] = dispatch_input("bootstrap", opts=0x04, records=every_call()[:8])
    seeds["by_name"] = dispatch_input("bootstrap", records=[
        call("ListCompanies", by_name=True), call("CreateSecret", by_name=True)])
    seeds["pipelined_past_inflight_limit"] = dispatch_input(
        "bootstrap", records=[call("ListCompanies")] * 12)
    seeds["raw_envelopes"] = dispatch_input("bootstrap", records=[
        frame(envelope(5, M["ListCompanies"], b"")),
        frame(envelope(6, 0, REQ["ListSecrets"], "/pcsecret.v1.PcSecret/ListSecrets")),
        frame(envelope(7, 99, b"")),
        frame(envelope(8, 0, b"", "pcsecret.v1.PcSecret/Nope")),
        frame(envelope(0, M["ListCompanies"], b""))])
    seeds["zero_length_frame"] = dispatch_input("bootstrap", records=[
        call("ListCompanies"), raw(b"\x00\x00\x00\x00"), call("ListCompanies")])
    seeds["oversized_frame"] = dispatch_input("bootstrap", records=[raw(b"\x00\x10\x00\x01")])
    seeds["truncated_frame"] = dispatch_input("bootstrap", records=[
        raw(b"\x00\x00\x00\x40" + envelope(9, M["ListCompanies"], b""))])
    # Regression (harness): records of length 0 once made the harness add 0 bytes to a NULL
    # buffer (UBSan: zero offset applied to a null pointer).
    seeds["regress-empty-records"] = dispatch_input("bootstrap", opts=1, records=[
        raw(b""), rec(2, b""), frame(b"")])
    seeds["garbage_envelope"] = dispatch_input("bootstrap", records=[frame(b"\xff\xff\xff")])
    seeds["bad_requests"] = dispatch_input("bootstrap", records=[
        call("CreateSecret", f_bytes(1, "acme") + f_bytes(2, "x")),
        call("CreateSecret", f_bytes(1, "acme") + f_bytes(2, "x") + f_bytes(4, b"v" * 300)),
        call("Resolve", b""),
        call("Resolve", f_bytes(1, ref("acme", "Bad"))),
        call("Resolve", b"".join(f_bytes(1, ref("acme", "k%d" % i)) for i in range(10))),
        call("SetAgentEnv", f_bytes(1, "acme") + f_bytes(2, "bot") + f_bytes(3, "1BAD")),
        call("CreateAgent", f_bytes(1, "acme") + f_bytes(2, "bot")),
        call("AddPrincipal", f_bytes(1, "pid")),
        call("RemovePrincipal", b""),
        call("ListAudit", f_varint(2, 5000)),
        call("UpdateSecret", REQ["UpdateSecret"] + f_bytes(5, "t" * 200)),
        call("CreateCompany", b"\x0a\xff")])
    return seeds


def config_seeds():
    full = "".join([
        "# pcsecretd settings\n",
        "socket = /run/pcsecret/pcsecretd.sock\n",
        "socket_group = pcsecret\n",
        "socket_mode = 0660\n",
        'database_url = "host=/run/postgresql dbname=pcsecret user=pcsecret"\n',
        "master_key_file = /etc/pcsecret/master.key\n",
        "log_file =\n",
        "log_level = debug\n",
        "pool_size = 8\n",
        "max_frame = 1048576\n",
        "max_connections = 1024\n",
        "max_inflight = 64\n",
        "max_refs = 256\n",
        "max_output = 4194304\n",
        "idle_timeout_ms = 300000\n",
        "read_timeout_ms = 10000\n",
        "call_timeout_ms = 10000\n",
        "drain_timeout_ms = 0\n",
    ])
    return {
        "full": full,
        "crlf_and_blanks": "\r\n  \t\r\n# c\r\npool_size=2\r\n\tlog_level =  warn  \r\n",
        "quoted": 'socket = "  /tmp/a b.sock  "\nsocket_group = ""\nlog_file = """\n',
        "no_trailing_newline": "max_refs = 1",
        "unknown_key": "bogus = 1\n",
        "no_equals": "pool_size 4\n",
        "out_of_range": "pool_size = 65\n",
        "negative": "drain_timeout_ms = -1\n",
        "not_a_number": "max_frame = 1k\n",
        "overflow": "max_output = 99999999999999999999999\n",
        "empty_key": " = x\n",
        "nul_byte": "log_level = info\0debug\n",
        "long_line": "database_url = " + "x" * 5000 + "\n",
        "equals_in_value": "database_url = postgresql://u@h/db?sslmode=require&x=y\n",
    }


def keyfile_seeds():
    key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
    return {
        # first byte: mode selector (0 = 0600, 1 = 0400, 2 = 0640, 3 = 0604)
        "valid_newline": b"\x00" + key.encode() + b"\n",
        "valid_0400": b"\x01" + key.encode(),
        "group_readable": b"\x02" + key.encode() + b"\n",
        "other_readable": b"\x03" + key.encode(),
        "upper_case": b"\x00" + key.upper().encode(),
        "short": b"\x00" + key[:-1].encode(),
        "long": b"\x00" + key.encode() + b"0",
        "two_newlines": b"\x00" + key.encode() + b"\n\n",
        "crlf": b"\x00" + key.encode() + b"\r\n",
        "not_hex": b"\x00" + key[:-1].encode() + b"g",
        "spaces": b"\x00" + " ".join(key[i:i + 2] for i in range(0, 64, 2)).encode(),
        "empty": b"\x00",
    }


def write(target, seeds):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        if isinstance(data, str):
            data = data.encode()
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    print("%s: %d seeds in %s" % (target, len(seeds), d))


def main():
    write("fuzz_dispatch", dispatch_seeds())
    write("fuzz_config", config_seeds())
    write("fuzz_keyfile", keyfile_seeds())
    return 0


if __name__ == "__main__":
    sys.exit(main())
