"""Teaches schemathesis what the native API's document cannot say: the format
`openssh-public-key` (the `public_key` of an imported key pair), by a few real OpenSSH
public keys (their private halves were never kept); the memory provider's catalogue;
and the rules between fields JSON Schema has no words for (a rule's ports in order, a
CIDR without host bits, each device once, a deployment's `min` within its `count`), or
between a request and what exists (a volume no smaller than its snapshot, an
instance's own private address, a device free on the instance)."""

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


def _positive(case):
    """Whether the case is meant to be valid: positive generation, and the stateful
    phase's steps (which carry no generation metadata and expect success)."""
    meta = case.meta
    return meta is None or meta.generation.mode.is_positive


@schemathesis.hook
def map_case(context, case):
    meta = case.meta
    if (
        case.method.upper() == "POST"
        and case.path == "/v1/providers/{provider}/instances"
        and isinstance(case.body, dict)
        and _positive(case)
    ):
        n = int(hashlib.sha256(repr(sorted(case.body.items(), key=str)).encode()).hexdigest(), 16)
        if n % 5:
            case.body["image_id"] = IMAGES[n % 3]
            case.body["flavor_id"] = FLAVORS[(n // 3) % 3]
    return small_deployments(valid_rules_and_devices(case))


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
    if not _positive(case) or not isinstance(case.body, dict):
        return case
    if case.method.upper() == "POST" and case.path.endswith(("/add-rules", "/remove-rules")):
        rules = case.body.get("rules")
        if isinstance(rules, list):
            case.body["rules"] = [_valid_rule(r) for r in rules]
    if case.method.upper() == "POST" and case.path == "/v1/providers/{provider}/volumes":
        # A volume from a snapshot is at least the snapshot's size, which only the
        # snapshot knows: leave the size to it.
        if case.body.get("snapshot_id") is not None:
            case.body.pop("size_gib", None)
        elif case.body.get("size_gib") is None:
            # A size or a snapshot (the document's `anyOf`, which the coverage phase
            # does not always keep to).
            case.body.pop("snapshot_id", None)
            case.body["size_gib"] = 1
    if case.method.upper() == "POST" and case.path.endswith("/attach"):
        # A device free on the instance is something only the instance knows: leave
        # the choice to the provider.
        case.body.pop("device", None)
    if case.method.upper() == "POST" and case.path.endswith("/associate"):
        # A private address must be one of the instance's, which only it knows.
        case.body.pop("private_ip", None)
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


def _whole(v):
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def small_deployments(case):
    """Deployments the test server can carry out quickly: a few instances of the
    catalogue on its provider (one in five keeps the generated template, whose create
    then fails: a failed job is tested too), `min` no larger than `count` (a rule
    between two fields), and nothing that expires before the next step looks at it."""
    meta = case.meta
    if not _positive(case) or not isinstance(case.body, dict):
        return case
    if case.method.upper() in ("POST", "PATCH") and case.path in (
        "/v1/deployments",
        "/v1/deployments/{id}",
        "/v1/providers/{provider}/instances",
        "/v1/providers/{provider}/instances/{id}",
    ):
        # An `expires_at` in the past (the year 184, say) is taken, and what it names
        # expires at once: the stateful phase would then find it gone. Expiry has
        # tests of its own. (An instance's PATCH requires the field: `null`.)
        if case.method.upper() == "PATCH" and case.path.endswith("/instances/{id}"):
            case.body["expires_at"] = None
        else:
            case.body.pop("expires_at", None)
    if case.method.upper() == "POST" and case.path == "/v1/deployments":
        body = case.body
        count = _whole(body.get("count"))
        if count is not None:
            body["count"] = count % 4
            m = _whole(body.get("min"))
            if m is not None:
                body["min"] = min(m, body["count"])
        n = int(hashlib.sha256(repr(sorted(body.items(), key=str)).encode()).hexdigest(), 16)
        if isinstance(body.get("partitions"), list):
            for p in body["partitions"]:
                if isinstance(p, dict):
                    p["provider"] = "local"
        template = body.get("template")
        if isinstance(template, dict):
            # Every partition needs an image and a flavor, from itself or the template.
            template.setdefault("image_id", "img-unknown")
            template.setdefault("flavor_id", "flv-unknown")
            for k in ("image_id", "flavor_id"):
                if template.get(k) is None:
                    template[k] = k.split("_")[0] + "-unknown"
        if n % 5 and isinstance(template, dict):
            template["image_id"] = IMAGES[n % 3]
            template["flavor_id"] = FLAVORS[(n // 3) % 3]
            for p in body.get("partitions") or []:
                if isinstance(p, dict):
                    for k in ("image_id", "flavor_id", "network_ids", "key_name", "security_group_ids"):
                        p.pop(k, None)
    if case.method.upper() == "PATCH" and case.path == "/v1/deployments/{id}":
        count = _whole(case.body.get("count"))
        if count is not None:
            case.body["count"] = count % 4
    return case


@schemathesis.hook
def before_call(context, case, kwargs):
    """The stateful phase builds its steps without `map_case`: the same repairs, just
    before each call (they are idempotent)."""
    map_case(context, case)
