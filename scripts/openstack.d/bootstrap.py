"""Helper of scripts/openstack, run with the Python of .venv-openstack.

Usage: python bootstrap.py COMMAND, with its settings in environment variables
(CMS_OS_*, set by scripts/openstack) so that no password shows in a process list:

  neutron-schema   creates Neutron's tables from its models (faster than its ~300
                   migrations); scripts/openstack then stamps them as current.
  wait-amqp        waits until RabbitMQ accepts AMQP connections.
  wait-consumers   waits until each queue named in the arguments has a consumer
                   (e.g. `conductor`, `compute.HOST`: the service listens).
  identity         creates, over Keystone's REST API, what `keystone-manage
                   bootstrap` does not: the region's endpoints for every service,
                   the project `service` with a user per service, and the test
                   tenant (project `demo`, user `demo` with roles member and
                   reader). A few REST calls take about a second; the same with
                   the openstack command-line client takes minutes.
  resources        creates the test resources: flavors m1.tiny and m1.small, the
                   public raw image `cirros`, the shared network `private` with
                   subnet 10.0.0.0/24.

Every request has a timeout; every failure ends the program with a message on
stderr and a non-zero status.
"""

import json
import os
import sys
import time

TIMEOUT = 30  # seconds, for every HTTP request


def env(name):
    value = os.environ.get(name)
    if not value:
        sys.exit(f"bootstrap.py: {name} is not set")
    return value


def fail(message):
    sys.exit(f"bootstrap.py: {message}")


# --- Neutron's schema -----------------------------------------------------------


def neutron_schema():
    import sqlalchemy
    from neutron.db.migration.models import head

    engine = sqlalchemy.create_engine(env("CMS_OS_NEUTRON_DB"))
    head.get_metadata().create_all(engine)
    engine.dispose()


# --- RabbitMQ --------------------------------------------------------------------


def amqp_connection():
    import amqp

    conn = amqp.Connection(
        host=f"127.0.0.1:{env('CMS_OS_AMQP_PORT')}",
        userid="guest",
        password="guest",
        connect_timeout=5,
    )
    conn.connect()
    return conn


def wait_amqp():
    deadline = time.monotonic() + float(env("CMS_OS_TIMEOUT"))
    while True:
        try:
            amqp_connection().close()
            return
        except Exception as error:  # refused, reset, not ready: all the same here
            if time.monotonic() > deadline:
                fail(f"RabbitMQ does not accept connections: {error}")
            time.sleep(0.5)


def wait_consumers(queues):
    import amqp

    deadline = time.monotonic() + float(env("CMS_OS_TIMEOUT"))
    waiting = list(queues)
    conn = None
    while waiting:
        try:
            if conn is None:
                conn = amqp_connection()
            # A passive declaration tells the number of consumers of an existing
            # queue, and fails (closing the channel) when there is no such queue.
            channel = conn.channel()
            try:
                _, _, consumers = channel.queue_declare(waiting[0], passive=True)
            finally:
                if channel.is_open:
                    channel.close()
            if consumers > 0:
                waiting.pop(0)
                continue
        except amqp.exceptions.NotFound:
            pass
        except Exception:
            conn = None  # reconnect
        if time.monotonic() > deadline:
            fail("no service consumes queue(s) " + ", ".join(waiting))
        time.sleep(0.5)
    if conn is not None:
        conn.close()


# --- REST ------------------------------------------------------------------------


class Api:
    """Minimal REST client with a Keystone token."""

    def __init__(self, keystone, user, password, project):
        import requests

        self.http = requests.Session()
        self.keystone = keystone.rstrip("/")
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": user,
                            "domain": {"id": "default"},
                            "password": password,
                        }
                    },
                },
                "scope": {"project": {"name": project, "domain": {"id": "default"}}},
            }
        }
        reply = self.http.post(f"{self.keystone}/v3/auth/tokens", json=body, timeout=TIMEOUT)
        if reply.status_code != 201:
            fail(f"cannot log in to Keystone as {user}: {reply.status_code} {reply.text[:500]}")
        self.http.headers["X-Auth-Token"] = reply.headers["X-Subject-Token"]

    def call(self, method, url, expect=(200, 201, 202, 204), **kwargs):
        reply = self.http.request(method, url, timeout=TIMEOUT, **kwargs)
        if reply.status_code not in expect:
            fail(f"{method} {url}: {reply.status_code} {reply.text[:500]}")
        return reply.json() if reply.content and "json" in reply.headers.get("Content-Type", "") else None

    def ks(self, method, path, **kwargs):
        return self.call(method, f"{self.keystone}/v3{path}", **kwargs)

    def find_or_create(self, collection, key, name, body, query=""):
        """Finds the Keystone resource named NAME, else creates it; returns its ID."""
        found = self.ks("GET", f"/{collection}?name={name}{query}")[collection]
        if found:
            return found[0]["id"]
        return self.ks("POST", f"/{collection}", json={key: dict(body, name=name)})[key]["id"]


def identity():
    keystone = env("CMS_OS_KEYSTONE_URL")
    region = "RegionOne"
    api = Api(keystone, "admin", env("CMS_OS_ADMIN_PASSWORD"), "admin")

    roles = {role["name"]: role["id"] for role in api.ks("GET", "/roles")["roles"]}
    for name in ("admin", "member", "reader", "service"):
        if name not in roles:
            roles[name] = api.ks("POST", "/roles", json={"role": {"name": name}})["role"]["id"]

    if "region" not in api.ks("GET", f"/regions/{region}", expect=(200, 404)):
        api.ks("POST", "/regions", json={"region": {"id": region}})

    # The catalog: one service per type, an endpoint per interface.
    endpoints = json.loads(env("CMS_OS_ENDPOINTS"))  # [[type, name, url], ...]
    for service_type, name, url in endpoints:
        found = api.ks("GET", f"/services?type={service_type}")["services"]
        if found:
            service_id = found[0]["id"]
        else:
            service_id = api.ks(
                "POST", "/services", json={"service": {"type": service_type, "name": name}}
            )["service"]["id"]
        existing = {
            e["interface"]
            for e in api.ks("GET", f"/endpoints?service_id={service_id}")["endpoints"]
        }
        for interface in ("public", "internal", "admin"):
            if interface not in existing:
                api.ks(
                    "POST",
                    "/endpoints",
                    json={
                        "endpoint": {
                            "service_id": service_id,
                            "interface": interface,
                            "url": url,
                            "region_id": region,
                        }
                    },
                )

    domain = {"domain_id": "default"}
    service_project = api.find_or_create(
        "projects", "project", "service", dict(domain, description="OpenStack services")
    )
    service_password = env("CMS_OS_SERVICE_PASSWORD")
    for name in ("nova", "placement", "glance", "neutron"):
        user = api.find_or_create(
            "users", "user", name, dict(domain, password=service_password)
        )
        for role in ("admin", "service"):
            api.ks("PUT", f"/projects/{service_project}/users/{user}/roles/{roles[role]}")

    demo_project = api.find_or_create(
        "projects", "project", "demo", dict(domain, description="Tenant of the tests")
    )
    demo = api.find_or_create(
        "users",
        "user",
        "demo",
        dict(domain, password=env("CMS_OS_DEMO_PASSWORD"), default_project_id=demo_project),
    )
    for role in ("member", "reader"):
        api.ks("PUT", f"/projects/{demo_project}/users/{demo}/roles/{roles[role]}")


def resources():
    keystone = env("CMS_OS_KEYSTONE_URL")
    api = Api(keystone, "admin", env("CMS_OS_ADMIN_PASSWORD"), "admin")
    nova = env("CMS_OS_NOVA_URL").rstrip("/")
    glance = env("CMS_OS_GLANCE_URL").rstrip("/")
    neutron = env("CMS_OS_NEUTRON_URL").rstrip("/")

    # Flavors (ids as in DevStack), public.
    flavors = {f["name"] for f in api.call("GET", f"{nova}/flavors?limit=1000")["flavors"]}
    for flavor_id, name, ram, disk in (("1", "m1.tiny", 512, 1), ("2", "m1.small", 2048, 20)):
        if name not in flavors:
            api.call(
                "POST",
                f"{nova}/flavors",
                json={
                    "flavor": {
                        "id": flavor_id,
                        "name": name,
                        "vcpus": 1,
                        "ram": ram,
                        "disk": disk,
                        "os-flavor-access:is_public": True,
                    }
                },
            )

    # A small raw image. The fake virt driver never reads it, so its content is
    # only a few KB of a recognisable pattern.
    images = api.call("GET", f"{glance}/v2/images?name=cirros")["images"]
    if images and images[0]["status"] != "active":
        api.call("DELETE", f"{glance}/v2/images/{images[0]['id']}")
        images = []
    if not images:
        image = api.call(
            "POST",
            f"{glance}/v2/images",
            json={
                "name": "cirros",
                "disk_format": "raw",
                "container_format": "bare",
                "visibility": "public",
                "min_disk": 0,
                "min_ram": 0,
            },
        )
        data = (b"cms test image\n" + bytes(range(256)) * 16)[:4096]
        api.call(
            "PUT",
            f"{glance}/v2/images/{image['id']}/file",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        status = api.call("GET", f"{glance}/v2/images/{image['id']}")["status"]
        if status != "active":
            fail(f"image cirros is {status} after its upload, not active")

    # The shared network `private` and its subnet.
    networks = api.call("GET", f"{neutron}/v2.0/networks?name=private")["networks"]
    if networks:
        network_id = networks[0]["id"]
    else:
        network_id = api.call(
            "POST",
            f"{neutron}/v2.0/networks",
            json={"network": {"name": "private", "shared": True, "admin_state_up": True}},
        )["network"]["id"]
    subnets = api.call("GET", f"{neutron}/v2.0/subnets?network_id={network_id}")["subnets"]
    if not subnets:
        api.call(
            "POST",
            f"{neutron}/v2.0/subnets",
            json={
                "subnet": {
                    "name": "private-subnet",
                    "network_id": network_id,
                    "ip_version": 4,
                    "cidr": "10.0.0.0/24",
                }
            },
        )


def main():
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "neutron-schema":
        neutron_schema()
    elif command == "wait-amqp":
        wait_amqp()
    elif command == "wait-consumers":
        wait_consumers(sys.argv[2:])
    elif command == "identity":
        identity()
    elif command == "resources":
        resources()
    else:
        fail(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
