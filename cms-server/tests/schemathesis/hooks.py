"""Teaches schemathesis what the native API's document cannot say: the format
`openssh-public-key` (the `public_key` of an imported key pair), by a few real OpenSSH
public keys (their private halves were never kept); the memory provider's catalogue;
and the rules between fields JSON Schema has no words for (a rule's ports in order, a
CIDR without host bits, each device once)."""

import hashlib
import ipaddress

import schemathesis
from hypothesis import strategies as st

KEYS = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKNx7E7XEBVdtpaoBDO155ZbAwMp1R+lEEx7zp+cSAt0 st-1",
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC6i+XDHFpGj9UWbd8j4tJOoDKqV6lZmJWEWvtkmqMGPdroLXX0rTZMvwTBIjfRu6QoMusQQGVcBo5+p/mvljuAP8o4sHbP4aV+f+RfPnwlNOVRGj4Lm2hD260ka/mj6sBAcuuokQOHncrEejK7wMs8YF7zQxOa/uLT5wIKR6qfcx9sESp+QrKa/72ozJF2/P08SG3c2890QJTloR++egmE3v5YCVxlQzNgVU2OrXta73jwhe6vKcDSN1mBvBC2UoLoEWIQF63rRQtN2hFH6yn5ae8JD6gpIXdrPS5SrnMVNittvxFKB5x2hGGckKZE8Z9Fr7Nhn9l/gMu+rBZMlOrz st-2",
]

schemathesis.openapi.format("openssh-public-key", st.sampled_from(KEYS))

# The memory provider's catalogue: a create that names a real image and flavor makes
# an instance, and the stateful phase can then follow the links to it. One create in
# five keeps what was generated (an unknown image: 404), so that path is tested too.
IMAGES = ["img-debian-12", "img-ubuntu-24.04", "img-fedora-41"]
FLAVORS = ["flv-1cpu-1gb", "flv-2cpu-4gb", "flv-4cpu-8gb"]


@schemathesis.hook
def map_case(context, case):
    meta = case.meta
    if (
        case.method.upper() == "POST"
        and case.path == "/v1/providers/{provider}/instances"
        and isinstance(case.body, dict)
        and meta is not None
        and meta.generation.mode.is_positive
    ):
        n = int(hashlib.sha256(repr(sorted(case.body.items(), key=str)).encode()).hexdigest(), 16)
        if n % 5:
            case.body["image_id"] = IMAGES[n % 3]
            case.body["flavor_id"] = FLAVORS[(n // 3) % 3]
    return valid_rules_and_devices(case)


def _canonical_cidr(text):
    """The network a generated `a.b.c.d/n` names, written as a rule takes it."""
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return "0.0.0.0/0"


def _valid_rule(rule):
    """A rule the model takes: what JSON Schema cannot say (ports in order and present
    for tcp and udp, ICMP types and codes up to 255, no ports for `all`, a CIDR with no
    host bits set) made true of a generated rule."""
    if not isinstance(rule, dict):
        return rule

    def number(v):
        # JSON numbers: 7 and 7.0 alike (booleans are not numbers here).
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    protocol = rule.get("protocol")
    if protocol in ("tcp", "udp"):
        a = number(rule.get("from_port"))
        b = number(rule.get("to_port"))
        a = 22 if a is None else a
        b = a if b is None else b
        rule["from_port"], rule["to_port"] = min(a, b), max(a, b)
    elif protocol == "icmp":
        for k in ("from_port", "to_port"):
            v = number(rule.get(k))
            if v is not None and v > 255:
                rule[k] = v % 256
    elif protocol == "all":
        rule.pop("from_port", None)
        rule.pop("to_port", None)
    peer = rule.get("peer")
    if isinstance(peer, dict) and isinstance(peer.get("cidr"), str):
        peer["cidr"] = _canonical_cidr(peer["cidr"])
    return rule


def valid_rules_and_devices(case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or not isinstance(case.body, dict):
        return case
    if case.method.upper() == "POST" and case.path.endswith(("/add-rules", "/remove-rules")):
        rules = case.body.get("rules")
        if isinstance(rules, list):
            case.body["rules"] = [_valid_rule(r) for r in rules]
    if case.method.upper() == "POST" and case.path == "/v1/providers/{provider}/instances":
        # Each device once: two volumes at one device is the caller's mistake (400).
        seen = set()
        for v in case.body.get("volumes") or []:
            if isinstance(v, dict) and "device" in v:
                if v["device"] in seen:
                    del v["device"]
                else:
                    seen.add(v["device"])
    return case
