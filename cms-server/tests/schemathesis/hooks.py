"""Teaches schemathesis the one format of the native API's document it cannot know:
`openssh-public-key` (the `public_key` of an imported key pair), by a few real OpenSSH
public keys (their private halves were never kept)."""

import hashlib

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
    return case
