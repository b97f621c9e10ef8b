"""What OpenStack's own clients see of one server: `openstack server show` (the
python-openstackclient) and openstacksdk, both pinned in `.venv-openstack`.

Usage: look.py SERVER_ID   (OS_CLIENT_CONFIG_FILE and OS_CLOUD say which cloud)

Prints one JSON object: {"osc": {...} or {"missing": true}, "sdk": {...} or
{"missing": true}} with the status, image id, flavor id, properties (metadata) and
name each client reports.
"""
import json
import os
import subprocess
import sys

import openstack


def osc(server_id):
    bin_dir = os.path.dirname(sys.executable)
    r = subprocess.run(
        [os.path.join(bin_dir, "openstack"), "--os-compute-api-version", "2.46",
         "server", "show", server_id, "-f", "json"],
        capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        if any(m in r.stderr for m in ("No server with a name or ID", "No Server found", "could not be found")):
            return {"missing": True}
        raise SystemExit("openstack server show failed: " + r.stderr)
    s = json.loads(r.stdout)
    image = s.get("image") or ""
    flavor = s.get("flavor") or ""
    # osc shows "NAME (ID)" for both.
    pick = lambda text: text.rsplit("(", 1)[-1].rstrip(")") if "(" in text else text
    props = s.get("properties") or {}
    if isinstance(props, str):
        props = dict(p.split("=", 1) for p in props.replace("'", "").split(", ") if "=" in p)
    return {"status": s.get("status"), "image": pick(image), "flavor": pick(flavor),
            "properties": props, "name": s.get("name")}


def sdk(server_id):
    conn = openstack.connect(cloud=os.environ["OS_CLOUD"])
    s = conn.compute.find_server(server_id, ignore_missing=True)
    if s is None:
        return {"missing": True}
    s = conn.compute.get_server(s.id)
    return {"status": s.status, "image": (s.image or {}).get("id"),
            "flavor": (s.flavor or {}).get("original_name") or (s.flavor or {}).get("id"),
            "properties": dict(s.metadata or {}), "name": s.name}


server_id = sys.argv[1]
print(json.dumps({"osc": osc(server_id), "sdk": sdk(server_id)}))
