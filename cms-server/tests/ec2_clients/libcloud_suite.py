"""The cms EC2 frontend driven by Apache Libcloud's ``EC2NodeDriver``, unmodified.

Run by ``cms-server/tests/ec2_clients.rs`` against a fresh ``cms-server`` with memory
providers (``local`` among them) and two tenants. Standalone::

    CMS_EC2_ENDPOINT=http://127.0.0.1:PORT/ec2 CMS_EC2_REGION=local \\
    CMS_ALICE_ID=... CMS_ALICE_SECRET=... CMS_BOB_ID=... CMS_BOB_SECRET=... \\
    .venv/bin/python libcloud_suite.py -v

The only client-side setup is :func:`cms_driver`, the recipe the README shows: the
server's host and port, SigV4, and the cms provider registered as a region in
libcloud's tables. The driver then talks to the server at ``/`` (libcloud's EC2 path);
nothing of the driver is patched. What is checked is what a libcloud user sees:
``Node`` states and ``extra`` fields, booleans the driver derives from the answers,
key pair fingerprints as libcloud computes them, libcloud's exceptions. Every test
removes what it made.
"""

import base64
import hashlib
import os
import re
import socket
import time
import unittest
import uuid
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from libcloud.common.types import InvalidCredsError
from libcloud.compute.base import KeyPair, NodeAuthSSHKey, NodeImage, NodeLocation, NodeSize
from libcloud.compute.drivers.ec2 import NAMESPACE, EC2NodeDriver
from libcloud.compute.types import KeyPairDoesNotExistError, NodeState
from libcloud.utils.publickey import get_pubkey_ssh2_fingerprint
from libcloud.utils.xml import findall, findtext

ENDPOINT = os.environ["CMS_EC2_ENDPOINT"]
REGION = os.environ.get("CMS_EC2_REGION", "local")
ALICE = (os.environ["CMS_ALICE_ID"], os.environ["CMS_ALICE_SECRET"])
BOB = (os.environ["CMS_BOB_ID"], os.environ["CMS_BOB_SECRET"])

INSTANCE_ID = re.compile(r"^i-[0-9a-f]{17}$")
IMAGE_ID = re.compile(r"^ami-[0-9a-f]{17}$")
MADE_UP_INSTANCE = "i-0123456789abcdef0"
# Short polls: the memory provider's transitions take a few hundred milliseconds.
WAIT_PERIOD = 0.3
TIMEOUT = 30


def cms_driver(endpoint, region, access_key_id, secret_access_key):
    """An Apache Libcloud ``EC2NodeDriver`` for the EC2 API of a cms server.

    `endpoint` is the server's EC2 endpoint (``http://HOST:PORT/ec2``; libcloud uses
    only its scheme, host and port and sends its requests to ``/``, which the server
    also serves) and `region` the cms provider to use (its region name).

    Libcloud only accepts the regions in its own tables and reads a region's instance
    types from them (``list_sizes()`` makes no request), so the provider is
    registered there first, with the instance types the server lists for it
    (``DescribeInstanceTypes``); types libcloud does not know are added to its type
    table with the server's memory, disk and vCPUs. Signing is SigV4, for `region`.
    """
    from libcloud.compute.constants import ec2_instance_types as instance_types
    from libcloud.compute.constants import ec2_region_details_complete as complete
    from libcloud.compute.constants import ec2_region_details_partial as partial

    url = urlsplit(endpoint)
    secure = url.scheme == "https"
    entry = {
        "api_name": "ec2_cms_" + region,
        "country": "cms",
        "endpoint": url.hostname,
        "id": region,
        "signature_version": "4",
    }
    partial.REGION_DETAILS.setdefault(region, entry)
    driver = EC2NodeDriver(
        access_key_id, secret_access_key, secure=secure, host=url.hostname,
        port=url.port or (443 if secure else 80), region=region, signature_version="4",
    )

    names = []
    params = {"Action": "DescribeInstanceTypes"}
    while True:
        answer = driver.connection.request(driver.path, params=dict(params)).object
        for item in findall(answer, "instanceTypeSet/item", NAMESPACE):
            name = findtext(item, "instanceType", NAMESPACE)
            names.append(name)
            instance_types.INSTANCE_TYPES.setdefault(name, {
                "id": name,
                "name": name,
                "ram": int(findtext(item, "memoryInfo/sizeInMiB", NAMESPACE) or 0),
                "disk": int(findtext(item, "instanceStorageInfo/totalSizeInGB", NAMESPACE) or 0),
                "bandwidth": None,
                "extra": {"vcpu": findtext(item, "vCpuInfo/defaultVCpus", NAMESPACE)},
            })
        token = findtext(answer, "nextToken", NAMESPACE)
        if not token:
            break
        params["NextToken"] = token
    complete.REGION_DETAILS[region] = dict(entry, instance_types=names)
    return driver


def rsa_public_key(comment):
    """A fresh RSA key: (private key, OpenSSH public key line with `comment`)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    line = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return key, f"{line} {comment}"


def colon_hex(digest):
    return ":".join(f"{b:02x}" for b in digest)


def created_rsa_fingerprint(private_pem):
    """EC2's fingerprint of a key pair it created: SHA-1 of the DER PKCS#8 private key."""
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return colon_hex(hashlib.sha1(der).digest())


class LibcloudTestCase(unittest.TestCase):
    """Alice's and bob's drivers, the catalogue, nodes destroyed after each test."""

    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.driver = cms_driver(ENDPOINT, REGION, *ALICE)
        cls.images = sorted(cls.driver.list_images(), key=lambda i: i.name)
        cls.image = cls.images[0]
        cls.sizes = sorted(cls.driver.list_sizes(), key=lambda s: s.id)
        cls.size = cls.sizes[0]

    def create_node(self, driver=None, **kwargs):
        driver = driver or self.driver
        kwargs.setdefault("name", "lc-" + uuid.uuid4().hex[:8])
        kwargs.setdefault("size", self.size)
        kwargs.setdefault("image", self.image)
        node = driver.create_node(**kwargs)
        self.addCleanup(self.destroy_quietly, driver, node)
        return node

    @staticmethod
    def destroy_quietly(driver, node):
        try:
            driver.destroy_node(node)
        except Exception:  # noqa: BLE001 - cleanup only
            pass

    def delete_key_quietly(self, name):
        try:
            self.driver.delete_key_pair(KeyPair(name, None, None, self.driver))
        except Exception:  # noqa: BLE001 - cleanup only
            pass

    def fetch(self, node, driver=None):
        """The node as list_nodes(ex_node_ids=[...]) shows it."""
        nodes = (driver or self.driver).list_nodes(ex_node_ids=[node.id])
        self.assertEqual([n.id for n in nodes], [node.id])
        return nodes[0]

    def wait_state(self, node, state, driver=None):
        """Polls list_nodes until `node` is in `state` (a NodeState) and returns it."""
        deadline = time.time() + TIMEOUT
        while True:
            got = self.fetch(node, driver)
            if got.state == state:
                return got
            if time.time() > deadline:
                self.fail(f"{node.id} still {got.state} ({got.extra.get('status')}) "
                          f"after {TIMEOUT} s, waiting for {state}")
            time.sleep(WAIT_PERIOD)

    def running(self, node):
        """libcloud's own wait_until_running, the way an instance without a public
        address is waited for (`ssh_interface="private_ips"`)."""
        ((node, ips),) = self.driver.wait_until_running(
            [node], wait_period=WAIT_PERIOD, timeout=TIMEOUT, ssh_interface="private_ips")
        return node, ips


class Catalogue(LibcloudTestCase):
    def test_list_sizes(self):
        sizes = self.driver.list_sizes()
        self.assertGreaterEqual(len(sizes), 1)
        ids = [s.id for s in sizes]
        self.assertEqual(len(ids), len(set(ids)))
        for s in sizes:
            self.assertIsInstance(s, NodeSize)
            self.assertEqual(s.name, s.id)
            self.assertGreater(s.ram, 0, s.id)
            self.assertIsNone(s.price)
            self.assertIs(s.driver, self.driver)

    def test_list_images(self):
        images = self.driver.list_images()
        self.assertGreaterEqual(len(images), 1)
        for i in images:
            self.assertIsInstance(i, NodeImage)
            self.assertRegex(i.id, IMAGE_ID)
            self.assertTrue(i.name)
            self.assertEqual(i.extra["state"], "available")
            self.assertEqual(i.extra["image_type"], "machine")
            self.assertIn(i.extra["architecture"], ("x86_64", "arm64", "i386"))
            self.assertEqual(i.extra["root_device_type"], "ebs")
            self.assertRegex(i.extra["owner_id"], r"^[0-9]{12}$")
            self.assertIsInstance(i.extra["tags"], dict)
            self.assertIsInstance(i.extra["block_device_mapping"], list)
        first = images[0]
        got = self.driver.list_images(ex_image_ids=[first.id])
        self.assertEqual([i.id for i in got], [first.id])
        self.assertEqual(self.driver.get_image(first.id).name, first.name)
        named = self.driver.list_images(ex_filters={"name": first.name})
        self.assertEqual([i.id for i in named], [first.id])

    def test_list_locations(self):
        locations = self.driver.list_locations()
        self.assertGreaterEqual(len(locations), 1)
        for n, loc in enumerate(locations):
            self.assertIsInstance(loc, NodeLocation)
            self.assertEqual(loc.id, str(n))
            self.assertTrue(loc.name.startswith(REGION), loc.name)
            self.assertEqual(loc.country, "cms")
            zone = loc.availability_zone
            self.assertEqual(zone.name, loc.name)
            self.assertEqual(zone.region_name, REGION)
            self.assertEqual(zone.zone_state, "available")


class Nodes(LibcloudTestCase):
    def test_create_node(self):
        key = "lc-node-" + uuid.uuid4().hex[:8]
        self.driver.create_key_pair(key)
        self.addCleanup(self.delete_key_quietly, key)
        location = self.driver.list_locations()[-1]
        name = "lc-create-" + uuid.uuid4().hex[:6]
        before = time.time()
        node = self.create_node(
            name=name, location=location, ex_keyname=key,
            ex_userdata="#!/bin/sh\necho 'hello from libcloud'\n",
            ex_metadata={"env": "test", "team": "blue"},
        )
        self.assertRegex(node.id, INSTANCE_ID)
        self.assertEqual(node.name, name)
        self.assertEqual(node.state, NodeState.PENDING)
        self.assertEqual(node.extra["status"], "pending")
        self.assertEqual(node.extra["tags"], {"Name": name, "env": "test", "team": "blue"})
        self.assertEqual(node.extra["key_name"], key)
        self.assertEqual(node.extra["image_id"], self.image.id)
        self.assertEqual(node.extra["instance_type"], self.size.id)
        self.assertEqual(node.extra["availability"], location.name)
        self.assertEqual(node.extra["launch_index"], 0)
        self.assertIsNotNone(node.created_at)
        self.assertLess(abs(node.created_at.timestamp() - before), 60)

        # What the server kept, as list_nodes shows it.
        got = self.fetch(node)
        self.assertEqual(got.name, name)
        self.assertEqual(got.extra["tags"], {"Name": name, "env": "test", "team": "blue"})
        self.assertEqual(got.extra["key_name"], key)
        self.assertEqual(got.extra["availability"], location.name)
        self.assertTrue(got.extra["subnet_id"].startswith("subnet-"), got.extra)
        self.assertTrue(got.extra["vpc_id"].startswith("vpc-"), got.extra)
        self.assertIn(got.state, (NodeState.PENDING, NodeState.RUNNING))

    def test_list_nodes(self):
        batch = uuid.uuid4().hex[:10]
        a = self.create_node(ex_metadata={"batch": batch, "role": "a"})
        b = self.create_node(ex_metadata={"batch": batch, "role": "b"})

        everything = [n.id for n in self.driver.list_nodes()]
        self.assertIn(a.id, everything)
        self.assertIn(b.id, everything)
        self.assertEqual(len(everything), len(set(everything)))

        self.assertEqual([n.id for n in self.driver.list_nodes(ex_node_ids=[a.id])], [a.id])
        self.assertEqual(sorted(n.id for n in self.driver.list_nodes(ex_node_ids=[a.id, b.id])),
                         sorted([a.id, b.id]))

        def filtered(filters):
            return sorted(n.id for n in self.driver.list_nodes(ex_filters=filters))

        self.assertEqual(filtered({"tag:batch": batch}), sorted([a.id, b.id]))
        self.assertEqual(filtered({"tag:batch": batch, "tag:role": "b"}), [b.id])
        self.assertEqual(filtered({"tag:batch": batch, "instance-id": a.id}), [a.id])
        self.assertEqual(filtered({"tag:batch": batch,
                                   "instance-state-name": ["pending", "running"]}),
                         sorted([a.id, b.id]))
        self.assertEqual(filtered({"tag:batch": batch, "instance-state-name": "stopped"}), [])
        self.assertEqual(filtered({"tag:batch": "no-" + batch}), [])

        with self.assertRaises(Exception) as cm:
            self.driver.list_nodes(ex_node_ids=[MADE_UP_INSTANCE])
        self.assertIn("InvalidInstanceID.NotFound", str(cm.exception))

        # Bob sees none of them.
        bob = cms_driver(ENDPOINT, REGION, *BOB)
        self.assertEqual([n for n in bob.list_nodes() if n.id in (a.id, b.id)], [])

    def test_wait_until_running(self):
        node = self.create_node()
        node, ips = self.running(node)
        self.assertEqual(node.state, NodeState.RUNNING)
        self.assertEqual(node.extra["status"], "running")
        self.assertEqual(ips, node.private_ips)
        self.assertGreaterEqual(len(ips), 1)
        for ip in ips:
            socket.inet_pton(socket.AF_INET, ip)
        self.assertEqual(node.public_ips, [])
        self.assertTrue(node.extra["private_dns"], node.extra)

    def test_reboot_node(self):
        node, _ = self.running(self.create_node())
        self.assertIs(self.driver.reboot_node(node), True)
        self.assertEqual(self.fetch(node).state, NodeState.RUNNING)
        self.running(node)

    def test_stop_right_after_reboot(self):
        node, _ = self.running(self.create_node())
        self.assertIs(self.driver.reboot_node(node), True)
        self.assertIs(self.driver.ex_stop_node(node), True, "stop just after a reboot")
        stopped = self.wait_state(node, NodeState.STOPPED)
        self.assertEqual(stopped.extra["status"], "stopped")
        self.assertEqual(stopped.private_ips, node.private_ips)

    def test_start_node(self):
        node, _ = self.running(self.create_node())
        self.assertIs(self.driver.ex_stop_node(node), True)
        self.wait_state(node, NodeState.STOPPED)
        self.assertIs(self.driver.ex_start_node(node), True)
        node, _ = self.running(node)
        self.assertEqual(node.state, NodeState.RUNNING)

    def test_destroy_node(self):
        node, _ = self.running(self.create_node())
        self.assertIs(self.driver.destroy_node(node), True)
        gone = self.wait_state(node, NodeState.TERMINATED)
        self.assertEqual(gone.extra["status"], "terminated")
        # Terminating a terminated instance succeeds (EC2's TerminateInstances is
        # idempotent): libcloud sees it terminated.
        self.assertIs(self.driver.destroy_node(node), True)


class KeyPairs(LibcloudTestCase):
    def create_key(self, name):
        kp = self.driver.create_key_pair(name)
        self.addCleanup(self.delete_key_quietly, name)
        return kp

    def import_key(self, name, public_key):
        kp = self.driver.import_key_pair_from_string(name, public_key)
        self.addCleanup(self.delete_key_quietly, name)
        return kp

    def test_list_key_pairs(self):
        name = "lc-list-" + uuid.uuid4().hex[:8]
        kp = self.create_key(name)
        listed = {k.name: k for k in self.driver.list_key_pairs()}
        self.assertIn(name, listed)
        self.assertEqual(listed[name].fingerprint, kp.fingerprint)
        self.assertIsNone(listed[name].private_key)
        bob = cms_driver(ENDPOINT, REGION, *BOB)
        self.assertNotIn(name, [k.name for k in bob.list_key_pairs()])

    def test_create_key_pair(self):
        name = "lc-create-" + uuid.uuid4().hex[:8]
        kp = self.create_key(name)
        self.assertEqual(kp.name, name)
        self.assertTrue(kp.private_key.startswith("-----BEGIN RSA PRIVATE KEY-----"), kp.private_key)
        self.assertEqual(kp.fingerprint, created_rsa_fingerprint(kp.private_key))
        self.assertRegex(kp.fingerprint, r"^([0-9a-f]{2}:){19}[0-9a-f]{2}$")

    def test_import_key_pair_from_string(self):
        name = "lc-import-" + uuid.uuid4().hex[:8]
        _, public = rsa_public_key("me@laptop")
        kp = self.import_key(name, public)
        self.assertEqual(kp.name, name)
        self.assertIsNone(kp.private_key)
        self.assertEqual(kp.fingerprint, get_pubkey_ssh2_fingerprint(public))
        self.assertEqual(self.driver.get_key_pair(name).fingerprint, kp.fingerprint)

    def test_find_or_import_keypair_by_key_material_twice(self):
        comment = "lc-" + uuid.uuid4().hex[:8] + "@host"
        _, public = rsa_public_key(comment)
        fingerprint = get_pubkey_ssh2_fingerprint(public)
        expected_name = f"{comment}-{fingerprint}"
        self.addCleanup(self.delete_key_quietly, expected_name)

        first = self.driver.ex_find_or_import_keypair_by_key_material(public)
        self.assertEqual(first, {"keyName": expected_name, "keyFingerprint": fingerprint})
        count = len(self.driver.list_key_pairs())

        # The second call must find the key by its fingerprint, not import it again
        # (which would fail: the name is taken).
        second = self.driver.ex_find_or_import_keypair_by_key_material(public)
        self.assertEqual(second, {"keyName": expected_name, "keyFingerprint": fingerprint})
        self.assertEqual(len(self.driver.list_key_pairs()), count)

    def test_create_node_with_ssh_key_auth(self):
        comment = "lc-auth-" + uuid.uuid4().hex[:8]
        _, public = rsa_public_key(comment)
        name = f"{comment}-{get_pubkey_ssh2_fingerprint(public)}"
        self.addCleanup(self.delete_key_quietly, name)
        node = self.create_node(auth=NodeAuthSSHKey(public))
        self.assertEqual(node.extra["key_name"], name)
        # Again with the same key: found, not imported twice.
        again = self.create_node(auth=NodeAuthSSHKey(public))
        self.assertEqual(again.extra["key_name"], name)
        self.assertEqual(self.fetch(again).extra["key_name"], name)

    def test_get_key_pair(self):
        suffix = uuid.uuid4().hex[:8]
        a = self.create_key("lc-get-a-" + suffix)
        b = self.create_key("lc-get-b-" + suffix)
        for kp in (a, b):
            got = self.driver.get_key_pair(kp.name)
            self.assertEqual((got.name, got.fingerprint), (kp.name, kp.fingerprint))

    def test_get_missing_key_pair(self):
        # Another key exists, so that an answer listing every key is not mistaken for
        # the missing one.
        self.create_key("lc-present-" + uuid.uuid4().hex[:8])
        missing = "lc-missing-" + uuid.uuid4().hex[:8]
        with self.assertRaises(KeyPairDoesNotExistError) as cm:
            self.driver.get_key_pair(missing)
        self.assertEqual(cm.exception.name, missing)

    def test_delete_key_pair(self):
        name = "lc-delete-" + uuid.uuid4().hex[:8]
        kp = self.create_key(name)
        self.assertIs(self.driver.delete_key_pair(kp), True)
        self.assertNotIn(name, [k.name for k in self.driver.list_key_pairs()])
        with self.assertRaises(KeyPairDoesNotExistError):
            self.driver.get_key_pair(name)


class Tags(LibcloudTestCase):
    def test_create_describe_delete_tags(self):
        name = "lc-tags-" + uuid.uuid4().hex[:6]
        node = self.create_node(name=name, ex_metadata={"env": "test"})
        self.assertEqual(self.driver.ex_describe_tags(node), {"Name": name, "env": "test"})

        # libcloud numbers ResourceId and Tag from 0.
        self.assertIs(self.driver.ex_create_tags(node, {"k1": "v1", "k2": "v2", "k3": ""}), True)
        self.assertEqual(self.driver.ex_describe_tags(node),
                         {"Name": name, "env": "test", "k1": "v1", "k2": "v2", "k3": ""})
        self.assertEqual(self.fetch(node).extra["tags"],
                         {"Name": name, "env": "test", "k1": "v1", "k2": "v2", "k3": ""})

        # By key and value, and by key alone (value None: no Tag.N.Value).
        self.assertIs(self.driver.ex_delete_tags(node, {"k1": "v1", "k2": None}), True)
        self.assertEqual(self.driver.ex_describe_tags(node),
                         {"Name": name, "env": "test", "k3": ""})
        # A value that does not match deletes nothing.
        self.assertIs(self.driver.ex_delete_tags(node, {"env": "prod"}), True)
        self.assertEqual(self.driver.ex_describe_tags(node),
                         {"Name": name, "env": "test", "k3": ""})

    def test_image_tags(self):
        image = self.images[-1]
        key = "lc-" + uuid.uuid4().hex[:8]
        self.assertIs(self.driver.ex_create_tags(image, {key: "mine"}), True)
        self.addCleanup(self.driver.ex_delete_tags, image, {key: None})
        self.assertEqual(self.driver.ex_describe_tags(image).get(key), "mine")
        self.assertEqual(self.driver.get_image(image.id).extra["tags"].get(key), "mine")
        bob = cms_driver(ENDPOINT, REGION, *BOB)
        self.assertNotIn(key, bob.ex_describe_tags(image))


class Credentials(LibcloudTestCase):
    def test_a_wrong_secret_is_invalid_credentials(self):
        with self.assertRaises(InvalidCredsError):
            cms_driver(ENDPOINT, REGION, ALICE[0], "not-alices-secret-0123456789abcdefgh")

    def test_an_unknown_key_is_invalid_credentials(self):
        with self.assertRaises(InvalidCredsError):
            cms_driver(ENDPOINT, REGION, "AKIANOBODY0000000000", ALICE[1])


if __name__ == "__main__":
    unittest.main()
