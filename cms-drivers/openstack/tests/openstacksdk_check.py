"""Drives the fake OpenStack of cms-drivers/openstack with openstacksdk, a client no one
here wrote: version discovery, Keystone, paged listings of Nova, Glance and Neutron, and
a server's life (create, ACTIVE, stop, start, delete).

Run by tests/openstacksdk.rs, which starts the fake and passes, in the environment:
CMS_FAKE_AUTH_URL, CMS_FAKE_USERNAME, CMS_FAKE_PASSWORD, CMS_FAKE_PROJECT, and
CMS_FAKE_EXPECTED (JSON: the server ids in Nova's order, image, flavor and network
names and ids). Halfway through the server listing it prints `paused` and waits for a
line on stdin (meanwhile the test expires every token), then goes on: keystoneauth must
authenticate again. Prints one JSON line of what it saw; exits 1 on a mismatch.
"""

import base64
import hashlib
import json
import os
import sys

import openstack


def fail(message):
    print(f"openstacksdk check failed: {message}", file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def main():
    expected = json.loads(os.environ["CMS_FAKE_EXPECTED"])
    conn = openstack.connect(
        auth_url=os.environ["CMS_FAKE_AUTH_URL"],
        username=os.environ["CMS_FAKE_USERNAME"],
        password=os.environ["CMS_FAKE_PASSWORD"],
        project_name=os.environ["CMS_FAKE_PROJECT"],
        user_domain_name="Default",
        project_domain_name="Default",
        region_name="RegionOne",
        load_yaml_config=False,
        load_envvars=False,
    )
    seen = {}

    # Servers, every page, with the tokens expired between two pages.
    listing = conn.compute.servers()
    ids = []
    for server in listing:
        ids.append(server.id)
        if len(ids) == 3:
            print("paused", flush=True)
            if sys.stdin.readline().strip() != "go":
                fail("the test did not say go")
    check(
        ids == expected["server_ids"],
        f"servers: got {ids}, want {expected['server_ids']}",
    )
    seen["servers"] = len(ids)

    one = conn.compute.get_server(ids[0])
    check(one.status == "ACTIVE", f"server {one.id} is {one.status}")
    check("private" in (one.addresses or {}), f"server addresses: {one.addresses}")
    check(one.flavor is not None, "server without a flavor")
    major, minor = conn.compute.get_endpoint_data().max_microversion
    seen["compute_microversion"] = f"{major}.{minor}"
    seen["first_server"] = {"name": one.name, "status": one.status}

    images = {i.name: i.id for i in conn.image.images()}
    check(images == expected["images"], f"images: got {images}, want {expected['images']}")
    seen["images"] = sorted(images)

    flavors = {f.name: f.id for f in conn.compute.flavors()}
    check(
        flavors == expected["flavors"],
        f"flavors: got {flavors}, want {expected['flavors']}",
    )
    seen["flavors"] = sorted(flavors)

    networks = {n.name: n.id for n in conn.network.networks()}
    check(
        networks == expected["networks"],
        f"networks: got {networks}, want {expected['networks']}",
    )
    seen["networks"] = sorted(networks)
    subnets = [s.cidr for s in conn.network.subnets(network_id=networks["private"])]
    check(subnets == ["10.0.0.0/24"], f"subnets of private: {subnets}")

    zones = [z.name for z in conn.compute.availability_zones()]
    check(zones == ["nova"], f"availability zones: {zones}")

    # A server's life.
    server = conn.compute.create_server(
        name="sdk-check",
        image_id=images["cirros"],
        flavor_id=flavors["m1.tiny"],
        networks=[{"uuid": networks["private"]}],
        metadata={"made-by": "openstacksdk"},
    )
    server = conn.compute.wait_for_server(server, status="ACTIVE", interval=0.05, wait=30)
    check(server.metadata == {"made-by": "openstacksdk"}, f"metadata: {server.metadata}")
    ports = list(conn.network.ports(device_id=server.id))
    check(len(ports) == 1, f"ports of the new server: {ports}")
    address = server.addresses["private"][0]["addr"]
    check(
        ports[0].fixed_ips[0]["ip_address"] == address,
        f"port {ports[0].fixed_ips} and server address {address} differ",
    )
    conn.compute.set_server_metadata(server, color="blue")
    meta = conn.compute.get_server_metadata(server).metadata
    check(meta.get("color") == "blue", f"metadata after set: {meta}")
    server.add_tag(conn.compute, "sdk")
    tagged = [s.id for s in conn.compute.servers(tags="sdk")]
    check(tagged == [server.id], f"servers tagged sdk: {tagged}")
    output = conn.compute.get_server_console_output(server, length=1)["output"]
    check(output.endswith("login: "), f"console output: {output!r}")
    conn.compute.stop_server(server)
    conn.compute.wait_for_server(server, status="SHUTOFF", interval=0.05, wait=30)
    conn.compute.start_server(server)
    conn.compute.wait_for_server(server, status="ACTIVE", interval=0.05, wait=30)
    conn.compute.reboot_server(server, "SOFT")
    rebooting = conn.compute.get_server(server.id)
    check(rebooting.status == "REBOOT", f"rebooting server is {rebooting.status}")
    conn.compute.wait_for_server(rebooting, status="ACTIVE", interval=0.05, wait=30)
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, interval=0.05, wait=30)
    check(conn.compute.find_server(server.id) is None, "the server is still there")
    check(not list(conn.network.ports(device_id=server.id)), "its port is still there")
    seen["lifecycle"] = "BUILD, ACTIVE, SHUTOFF, ACTIVE, REBOOT, ACTIVE, gone"

    # Key pairs: one generated, one imported (its fingerprint computed here).
    made = conn.compute.create_keypair(name="sdk-made")
    check("PRIVATE KEY" in (made.private_key or ""), "no private key for a generated pair")
    public_key = made.public_key.strip()
    blob = base64.b64decode(public_key.split()[1])
    digest = hashlib.md5(blob).hexdigest()
    want = ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
    imported = conn.compute.create_keypair(name="sdk-imported", public_key=public_key)
    check(imported.fingerprint == want, f"fingerprint {imported.fingerprint}, want {want}")
    check(made.fingerprint == want, f"generated fingerprint {made.fingerprint}, want {want}")
    names = sorted(k.name for k in conn.compute.keypairs())
    check(names == ["sdk-imported", "sdk-made"], f"key pairs: {names}")
    conn.compute.delete_keypair("sdk-made")
    conn.compute.delete_keypair("sdk-imported")
    check(not list(conn.compute.keypairs()), "key pairs left after delete")

    limits = conn.compute.get_limits()
    check(
        limits.absolute.instances_used == len(ids),
        f"instances used: {limits.absolute.instances_used}",
    )

    # The cloud layer on top of the proxies.
    listed = sorted(s.id for s in conn.list_servers())
    check(listed == sorted(ids), f"list_servers: {listed}")
    seen["cloud_layer_servers"] = len(listed)

    # A conflict is an exception openstacksdk maps.
    victim = conn.compute.get_server(ids[-1])
    try:
        conn.compute.start_server(victim)
    except openstack.exceptions.ConflictException as e:
        seen["conflict"] = str(e.details)
    else:
        fail("starting an ACTIVE server did not conflict")

    print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    main()
