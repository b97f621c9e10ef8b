"""The cms EC2 frontend driven by boto3's resource API (``boto3.resource("ec2")``).

Run by ``cms-server/tests/ec2_clients.rs`` against a fresh ``cms-server`` with memory
providers (``local`` among them) and two tenants. Standalone::

    CMS_EC2_ENDPOINT=http://127.0.0.1:PORT/ec2 CMS_EC2_REGION=local \\
    CMS_ALICE_ID=... CMS_ALICE_SECRET=... CMS_BOB_ID=... CMS_BOB_SECRET=... \\
    .venv/bin/python boto3_resource_suite.py -v

The resource API loads resources lazily from Describe* answers and reads attributes
the client suite never looks at (block device mappings, security groups, instance
attributes, console output), and its batch actions act on what a filtered collection
lists. What is checked is what a user of ``ec2.Instance``, ``ec2.Image``,
``ec2.KeyPair`` and the collections sees. Every test removes what it made.
"""

import base64
import datetime
import os
import re
import unittest
import uuid

import boto3
from botocore.exceptions import ClientError

ENDPOINT = os.environ["CMS_EC2_ENDPOINT"]
REGION = os.environ.get("CMS_EC2_REGION", "local")
ALICE = (os.environ["CMS_ALICE_ID"], os.environ["CMS_ALICE_SECRET"])
BOB = (os.environ["CMS_BOB_ID"], os.environ["CMS_BOB_SECRET"])

WAIT = {"Delay": 1, "MaxAttempts": 60}
INSTANCE_ID = re.compile(r"^i-[0-9a-f]{17}$")
VOLUME_ID = re.compile(r"^vol-[0-9a-f]{17}$")
GROUP_ID = re.compile(r"^sg-[0-9a-f]{8,17}$")
KEY_PAIR_ID = re.compile(r"^key-[0-9a-f]{17}$")
MADE_UP_VPC = "vpc-0123456789abcdef0"
MADE_UP_SUBNET = "subnet-0123456789abcdef0"
MADE_UP_RESERVATION = "r-0123456789abcdef0"

_SESSION = boto3.session.Session()


def resource(creds=ALICE):
    return _SESSION.resource(
        "ec2", endpoint_url=ENDPOINT, region_name=REGION,
        aws_access_key_id=creds[0], aws_secret_access_key=creds[1],
    )


def tags_of(tags):
    return {t["Key"]: t["Value"] for t in tags or []}


def tag_spec(tags):
    return [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def launch_time_filter(t):
    """EC2's launch-time filter value: ISO 8601 UTC with milliseconds."""
    t = t.astimezone(datetime.timezone.utc)
    return f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond // 1000:03d}Z"


class ResourceTestCase(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.ec2 = resource(ALICE)
        cls.bob = resource(BOB)
        cls.client = cls.ec2.meta.client
        cls.images = sorted(cls.ec2.images.all(), key=lambda i: i.name)
        cls.image = cls.images[0]
        types = cls.client.describe_instance_types()["InstanceTypes"]
        cls.types = sorted(t["InstanceType"] for t in types)
        cls.itype = cls.types[0]

    def create(self, ec2=None, count=1, **kwargs):
        """create_instances, terminated after the test."""
        ec2 = ec2 or self.ec2
        kwargs.setdefault("ImageId", self.image.id)
        kwargs.setdefault("InstanceType", self.itype)
        instances = ec2.create_instances(MinCount=count, MaxCount=count, **kwargs)
        self.addCleanup(self.terminate_quietly, ec2, [i.id for i in instances])
        return instances

    @staticmethod
    def terminate_quietly(ec2, ids):
        try:
            ec2.meta.client.terminate_instances(InstanceIds=ids)
        except ClientError:
            pass

    def default_group(self):
        """The VPC's default security group, as DescribeInstances shows it on an
        instance launched without groups."""
        (probe,) = self.create()
        probe.load()
        groups = probe.security_groups
        self.assertTrue(groups, f"DescribeInstances shows no security group on {probe.id}")
        return groups[0]

    def assertClientError(self, code, status, fn, *args, **kwargs):
        with self.assertRaises(ClientError) as cm:
            fn(*args, **kwargs)
        e = cm.exception
        self.assertEqual(e.response["Error"]["Code"], code, e.response)
        self.assertEqual(e.response["ResponseMetadata"]["HTTPStatusCode"], status, e.response)
        return e


class Instances(ResourceTestCase):
    def test_create_instances_and_what_the_instance_shows(self):
        group = self.default_group()
        key = "res-" + uuid.uuid4().hex[:8]
        self.ec2.create_key_pair(KeyName=key)
        self.addCleanup(self.client.delete_key_pair, KeyName=key)
        user_data = "#cloud-config\nruncmd:\n - [echo, 'hello from boto3']\n"
        (inst,) = self.create(
            KeyName=key, UserData=user_data, SecurityGroupIds=[group["GroupId"]],
            TagSpecifications=tag_spec({"Name": "res-life", "team": "blue"}),
        )
        self.assertRegex(inst.id, INSTANCE_ID)
        # create_instances fills the resource from the RunInstances answer.
        self.assertEqual(inst.state, {"Code": 0, "Name": "pending"})
        self.assertEqual(inst.key_name, key)
        self.assertEqual(tags_of(inst.tags), {"Name": "res-life", "team": "blue"})

        inst.wait_until_running(WaiterConfig=WAIT)
        inst.reload()
        self.assertEqual(inst.state, {"Code": 16, "Name": "running"})
        self.assertEqual(inst.image_id, self.image.id)
        self.assertEqual(inst.instance_type, self.itype)
        self.assertEqual(inst.key_name, key)
        self.assertEqual(tags_of(inst.tags), {"Name": "res-life", "team": "blue"})
        self.assertIn(group["GroupId"], [g["GroupId"] for g in inst.security_groups])
        self.assertTrue(inst.private_ip_address)
        self.assertTrue(inst.private_dns_name)
        self.assertTrue(inst.vpc_id.startswith("vpc-"))
        self.assertTrue(inst.subnet_id.startswith("subnet-"))
        self.assertTrue(inst.placement["AvailabilityZone"])
        self.assertIsInstance(inst.launch_time, datetime.datetime)
        # The related resources load.
        self.assertEqual(inst.image.id, self.image.id)
        self.assertEqual(inst.vpc.id, inst.vpc_id)
        self.assertEqual(inst.subnet.id, inst.subnet_id)
        self.assertEqual(inst.key_pair.name, key)

    def test_reboot_then_stop_at_once_then_start(self):
        (inst,) = self.create()
        inst.wait_until_running(WaiterConfig=WAIT)
        inst.reboot()
        stop = inst.stop()
        self.assertEqual(stop["StoppingInstances"], [{
            "InstanceId": inst.id,
            "PreviousState": {"Code": 16, "Name": "running"},
            "CurrentState": {"Code": 64, "Name": "stopping"},
        }])
        inst.wait_until_stopped(WaiterConfig=WAIT)
        self.assertEqual(inst.state["Name"], "stopped")
        start = inst.start()
        self.assertEqual(start["StartingInstances"][0]["PreviousState"], {"Code": 80, "Name": "stopped"})
        self.assertEqual(start["StartingInstances"][0]["CurrentState"], {"Code": 0, "Name": "pending"})
        inst.wait_until_running(WaiterConfig=WAIT)
        self.assertEqual(inst.state["Name"], "running")

    def test_batch_actions_act_on_a_filtered_collection(self):
        instances = self.create(count=3)
        ids = sorted(i.id for i in instances)
        waiter = self.client.get_waiter
        waiter("instance_running").wait(InstanceIds=ids, WaiterConfig=WAIT)
        collection = self.ec2.instances.filter(InstanceIds=ids)
        self.assertEqual(sorted(i.id for i in collection), ids)

        def changed(answers, key):
            return sorted((c["InstanceId"], c["PreviousState"]["Name"], c["CurrentState"]["Name"])
                          for a in answers for c in a[key])

        self.assertEqual(changed(collection.stop(), "StoppingInstances"),
                         [(i, "running", "stopping") for i in ids])
        waiter("instance_stopped").wait(InstanceIds=ids, WaiterConfig=WAIT)
        self.assertEqual(changed(collection.start(), "StartingInstances"),
                         [(i, "stopped", "pending") for i in ids])
        waiter("instance_running").wait(InstanceIds=ids, WaiterConfig=WAIT)
        self.assertEqual(changed(collection.terminate(), "TerminatingInstances"),
                         [(i, "running", "shutting-down") for i in ids])
        waiter("instance_terminated").wait(InstanceIds=ids, WaiterConfig=WAIT)
        self.assertEqual({i.state["Name"] for i in self.ec2.instances.filter(InstanceIds=ids)},
                         {"terminated"})

    def test_describe_attribute(self):
        group = self.default_group()
        user_data = "#!/bin/sh\necho 'attributes & <more>'\n"
        (inst,) = self.create(UserData=user_data, SecurityGroupIds=[group["GroupId"]])
        inst.wait_until_running(WaiterConfig=WAIT)

        def attribute(name):
            got = inst.describe_attribute(Attribute=name)
            self.assertEqual(got["InstanceId"], inst.id, got)
            return got

        self.assertEqual(attribute("instanceType")["InstanceType"], {"Value": self.itype})
        encoded = attribute("userData")["UserData"]["Value"]
        self.assertEqual(base64.b64decode(encoded).decode(), user_data)
        self.assertEqual(attribute("disableApiTermination")["DisableApiTermination"], {"Value": False})
        self.assertEqual(attribute("instanceInitiatedShutdownBehavior")["InstanceInitiatedShutdownBehavior"],
                         {"Value": "stop"})
        self.assertEqual(attribute("rootDeviceName")["RootDeviceName"], {"Value": inst.root_device_name})
        mappings = attribute("blockDeviceMapping")["BlockDeviceMappings"]
        self.assertEqual([m["DeviceName"] for m in mappings],
                         [m["DeviceName"] for m in inst.block_device_mappings])
        self.assertIn(inst.root_device_name, [m["DeviceName"] for m in mappings])
        groups = attribute("groupSet")["Groups"]
        self.assertIn(group["GroupId"], [g["GroupId"] for g in groups])

        e = self.assertClientError("InvalidParameterValue", 400, inst.describe_attribute, Attribute="bogus")
        self.assertIn("bogus", e.response["Error"]["Message"])

    def test_a_launch_without_user_data_has_none(self):
        (inst,) = self.create()
        got = inst.describe_attribute(Attribute="userData")
        self.assertEqual(got["InstanceId"], inst.id)
        self.assertNotIn("Value", got.get("UserData", {}))

    def test_console_output(self):
        (inst,) = self.create()
        inst.wait_until_running(WaiterConfig=WAIT)
        out = inst.console_output()
        self.assertEqual(out["InstanceId"], inst.id)
        if "Output" in out:
            # botocore decodes EC2's base64 into text.
            self.assertIsInstance(out["Output"], str)
        if "Timestamp" in out:
            self.assertIsInstance(out["Timestamp"], datetime.datetime)
        latest = inst.console_output(Latest=True)
        self.assertEqual(latest["InstanceId"], inst.id)

    def test_block_device_mappings_and_root_device(self):
        (inst,) = self.create()
        inst.wait_until_running(WaiterConfig=WAIT)
        inst.reload()
        self.assertEqual(inst.root_device_type, "ebs")
        self.assertTrue(inst.root_device_name.startswith("/dev/"), inst.root_device_name)
        roots = [m for m in inst.block_device_mappings if m["DeviceName"] == inst.root_device_name]
        self.assertEqual(len(roots), 1, inst.block_device_mappings)
        ebs = roots[0]["Ebs"]
        self.assertRegex(ebs["VolumeId"], VOLUME_ID)
        self.assertEqual(ebs["Status"], "attached")
        self.assertIs(ebs["DeleteOnTermination"], True)
        self.assertIsInstance(ebs["AttachTime"], datetime.datetime)

    def test_security_groups(self):
        (inst,) = self.create()
        inst.load()
        groups = inst.security_groups
        self.assertTrue(groups, "an instance is in its VPC's default group")
        for g in groups:
            self.assertRegex(g["GroupId"], GROUP_ID)
        self.assertIn("default", [g["GroupName"] for g in groups])


class InstanceFilters(ResourceTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        ec2 = cls.ec2
        cls.batch = uuid.uuid4().hex
        cls.key = "res-filter-" + uuid.uuid4().hex[:8]
        ec2.create_key_pair(KeyName=cls.key)
        cls.addClassCleanup(cls.client.delete_key_pair, KeyName=cls.key)
        zones = [z["ZoneName"] for z in cls.client.describe_availability_zones()["AvailabilityZones"]]
        cls.zones = zones

        def launch(tags, **kwargs):
            (inst,) = ec2.create_instances(
                MinCount=1, MaxCount=1, TagSpecifications=tag_spec({**tags, "batch": cls.batch}), **kwargs)
            cls.addClassCleanup(cls.terminate_quietly, ec2, [inst.id])
            return inst

        cls.a = launch({"Name": "filter-a", "env": "prod"}, ImageId=cls.image.id, InstanceType=cls.itype,
                       KeyName=cls.key, Placement={"AvailabilityZone": zones[0]})
        cls.b = launch({"Name": "filter-b", "role": "db"}, ImageId=cls.images[1].id, InstanceType=cls.types[1],
                       Placement={"AvailabilityZone": zones[-1]})
        cls.client.get_waiter("instance_running").wait(InstanceIds=[cls.a.id, cls.b.id], WaiterConfig=WAIT)
        cls.b.stop()
        cls.b.wait_until_stopped(WaiterConfig=WAIT)
        cls.a.reload()
        cls.b.reload()

    def select(self, name, values):
        filters = [{"Name": "tag:batch", "Values": [self.batch]},
                   {"Name": name, "Values": values if isinstance(values, list) else [values]}]
        return sorted(i.id for i in self.ec2.instances.filter(Filters=filters))

    def check(self, name, positive, expected, negative):
        """`positive` selects exactly `expected` (instances), `negative` none."""
        with self.subTest(filter=name, values=positive):
            self.assertEqual(self.select(name, positive), sorted(i.id for i in expected))
        with self.subTest(filter=name, values=negative):
            self.assertEqual(self.select(name, negative), [])

    def test_private_dns_name(self):
        self.check("private-dns-name", self.a.private_dns_name, [self.a], "ip-10-255-255-254.ec2.internal")

    def test_private_ip_address(self):
        self.check("private-ip-address", self.a.private_ip_address, [self.a], "10.255.255.254")

    def test_dns_name_and_ip_address(self):
        # Public names and addresses: memory instances have none, so only what no
        # instance has can be asked for (and is accepted, matching nothing).
        for name, value, nothing in (("dns-name", self.a.public_dns_name, "ec2-203-0-113-9.compute.amazonaws.com"),
                                     ("ip-address", self.a.public_ip_address, "203.0.113.9")):
            if value:
                self.check(name, value, [self.a], nothing)
            else:
                with self.subTest(filter=name):
                    self.assertEqual(self.select(name, nothing), [])

    def test_vpc_and_subnet(self):
        self.assertEqual(self.a.vpc_id, self.b.vpc_id)
        self.check("vpc-id", self.a.vpc_id, [self.a, self.b], MADE_UP_VPC)
        if self.a.subnet_id == self.b.subnet_id:
            self.check("subnet-id", self.a.subnet_id, [self.a, self.b], MADE_UP_SUBNET)
        else:
            self.check("subnet-id", self.a.subnet_id, [self.a], MADE_UP_SUBNET)

    def test_availability_zone(self):
        self.assertEqual(self.a.placement["AvailabilityZone"], self.zones[0])
        if len(self.zones) > 1:
            self.check("availability-zone", self.zones[0], [self.a], self.zones[-1] + "-nowhere")
            self.check("availability-zone", self.zones[-1], [self.b], "nowhere-1z")
        else:
            self.check("availability-zone", self.zones[0], [self.a, self.b], "nowhere-1z")

    def test_key_name(self):
        self.check("key-name", self.key, [self.a], "no-such-key-" + self.batch[:6])
        self.check("key-name", "res-filter-*", [self.a], "res-nothing-*")

    def test_launch_time(self):
        exact = launch_time_filter(self.a.launch_time)
        self.check("launch-time", exact, [self.a], "2001-01-01T00:00:00.000Z")
        day = {launch_time_filter(i.launch_time)[:10] for i in (self.a, self.b)}
        if len(day) == 1:
            self.check("launch-time", day.pop() + "T*", [self.a, self.b], "2001-01-01T*")

    def test_reservation_id(self):
        def reservation_of(inst):
            (r,) = self.client.describe_instances(InstanceIds=[inst.id])["Reservations"]
            return r["ReservationId"]

        self.check("reservation-id", reservation_of(self.a), [self.a], MADE_UP_RESERVATION)
        self.check("reservation-id", reservation_of(self.b), [self.b], MADE_UP_RESERVATION)

    def test_instance_state_name(self):
        self.check("instance-state-name", "running", [self.a], "terminated")
        self.check("instance-state-name", "stopped", [self.b], "pending")

    def test_tags(self):
        self.check("tag:env", "prod", [self.a], "dev")
        self.check("tag:Name", "filter-*", [self.a, self.b], "nothing-*")
        self.check("tag-key", "role", [self.b], "no-such-tag-key")

    def test_image_and_instance_type(self):
        self.check("image-id", self.image.id, [self.a], "ami-0123456789abcdef0")
        self.check("image-id", self.images[1].id, [self.b], "ami-0123456789abcdef0")
        self.check("instance-type", self.itype, [self.a], "m9.huge")
        self.check("instance-type", self.types[1], [self.b], "m9.huge")


class Images(ResourceTestCase):
    def test_block_device_mappings(self):
        image = self.ec2.Image(self.image.id)
        image.load()
        self.assertEqual(image.root_device_type, "ebs")
        roots = [m for m in image.block_device_mappings if m["DeviceName"] == image.root_device_name]
        self.assertEqual(len(roots), 1, image.block_device_mappings)
        ebs = roots[0]["Ebs"]
        self.assertIsInstance(ebs["VolumeSize"], int)
        self.assertGreater(ebs["VolumeSize"], 0)
        image.wait_until_exists(WaiterConfig=WAIT)

    def test_image_tags_are_the_tenants_own(self):
        image = self.ec2.Image(self.images[-1].id)
        key = "res-" + uuid.uuid4().hex[:8]
        image.create_tags(Tags=[{"Key": key, "Value": "alices"}])
        self.addCleanup(self.client.delete_tags, Resources=[image.id], Tags=[{"Key": key}])
        image.reload()
        self.assertEqual(tags_of(image.tags).get(key), "alices")
        his = self.bob.Image(image.id)
        his.load()
        self.assertNotIn(key, tags_of(his.tags))
        described = self.bob.meta.client.describe_tags(Filters=[{"Name": "resource-id", "Values": [image.id]}])
        self.assertNotIn(key, [t["Key"] for t in described["Tags"]])


class KeyPairs(ResourceTestCase):
    def test_create_describe_delete(self):
        name = "res-key-" + uuid.uuid4().hex[:8]
        kp = self.ec2.create_key_pair(KeyName=name)
        self.addCleanup(self.client.delete_key_pair, KeyName=name)
        self.assertEqual(kp.name, name)
        self.assertTrue(kp.key_material.startswith("-----BEGIN RSA PRIVATE KEY-----"), kp.key_material[:40])
        self.assertRegex(kp.key_pair_id, KEY_PAIR_ID)
        self.assertTrue(kp.key_fingerprint)

        info = self.ec2.KeyPair(name)
        info.load()
        self.assertEqual(info.key_fingerprint, kp.key_fingerprint)
        self.assertEqual(info.key_pair_id, kp.key_pair_id)
        self.assertEqual(info.key_type, "rsa")
        self.assertIsInstance(info.create_time, datetime.datetime)

        listed = {k.name: k for k in self.ec2.key_pairs.all()}
        self.assertIn(name, listed)
        self.assertEqual(listed[name].key_fingerprint, kp.key_fingerprint)
        self.assertEqual([k.name for k in self.ec2.key_pairs.filter(KeyNames=[name])], [name])
        self.assertNotIn(name, [k.name for k in self.bob.key_pairs.all()])

        self.ec2.KeyPair(name).delete()
        self.assertNotIn(name, [k.name for k in self.ec2.key_pairs.all()])
        self.assertClientError("InvalidKeyPair.NotFound", 400, self.ec2.KeyPair(name).load)


class Volumes(ResourceTestCase):
    def test_create_attach_snapshot_detach_delete(self):
        zone = self.client.describe_availability_zones()["AvailabilityZones"][0]["ZoneName"]
        vol = self.ec2.create_volume(
            Size=2, AvailabilityZone=zone,
            TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "Name", "Value": "res-data"}]}])
        self.addCleanup(self.quietly, vol.delete)
        self.assertRegex(vol.id, VOLUME_ID)
        self.assertEqual((vol.size, vol.availability_zone), (2, zone))
        self.assertEqual(tags_of(vol.tags), {"Name": "res-data"})
        self.client.get_waiter("volume_available").wait(VolumeIds=[vol.id], WaiterConfig=WAIT)
        vol.reload()
        self.assertEqual(vol.state, "available")

        (inst,) = self.create(Placement={"AvailabilityZone": zone})
        inst.wait_until_running(WaiterConfig=WAIT)
        att = vol.attach_to_instance(Device="/dev/sdf", InstanceId=inst.id)
        self.assertEqual((att["State"], att["InstanceId"]), ("attaching", inst.id))
        self.client.get_waiter("volume_in_use").wait(VolumeIds=[vol.id], WaiterConfig=WAIT)
        vol.reload()
        self.assertEqual(vol.attachments[0]["InstanceId"], inst.id)
        # The instance's resource lists it, and the volume's instance loads.
        self.assertIn(vol.id, [v.id for v in inst.volumes.all()])
        inst.reload()
        self.assertIn("/dev/sdf", [m["DeviceName"] for m in inst.block_device_mappings])

        snap = vol.create_snapshot(Description="res snapshot")
        self.addCleanup(self.quietly, snap.delete)
        self.assertEqual((snap.volume_id, snap.state), (vol.id, "pending"))
        snap.wait_until_completed(WaiterConfig=WAIT)
        snap.reload()
        self.assertEqual((snap.state, snap.progress, snap.volume_size), ("completed", "100%", 2))
        self.assertEqual(snap.volume.id, vol.id)
        self.assertIn(snap.id, [s.id for s in vol.snapshots.all()])
        self.assertIn(snap.id, [s.id for s in self.ec2.snapshots.filter(OwnerIds=["self"])])

        det = vol.detach_from_instance()
        self.assertEqual(det["State"], "detaching")
        self.client.get_waiter("volume_available").wait(VolumeIds=[vol.id], WaiterConfig=WAIT)
        copy = self.ec2.create_volume(SnapshotId=snap.id, AvailabilityZone=zone)
        self.addCleanup(self.quietly, copy.delete)
        self.assertEqual((copy.snapshot_id, copy.size), (snap.id, 2))
        self.client.get_waiter("volume_available").wait(VolumeIds=[copy.id], WaiterConfig=WAIT)
        copy.delete()
        vol.delete()
        self.client.get_waiter("volume_deleted").wait(VolumeIds=[vol.id, copy.id], WaiterConfig=WAIT)
        self.assertNotIn(vol.id, [v.id for v in self.ec2.volumes.all()])
        self.assertClientError("InvalidVolume.NotFound", 400, vol.load)

    @staticmethod
    def quietly(fn, **kwargs):
        try:
            fn(**kwargs)
        except ClientError:
            pass


class CapturedImages(ResourceTestCase):
    def test_instance_create_image(self):
        (inst,) = self.create()
        inst.wait_until_running(WaiterConfig=WAIT)
        image = inst.create_image(Name="res-" + uuid.uuid4().hex[:8], Description="from the resource API")
        self.addCleanup(Volumes.quietly, image.deregister)
        self.assertIn(image.state, ("pending", "available"))
        self.assertFalse(image.public)
        image.wait_until_exists(WaiterConfig=WAIT)
        self.client.get_waiter("image_available").wait(ImageIds=[image.id], WaiterConfig=WAIT)
        image.reload()
        self.assertEqual((image.state, image.description), ("available", "from the resource API"))
        self.assertIn(image.id, [i.id for i in self.ec2.images.filter(Owners=["self"])])
        (child,) = self.create(ImageId=image.id)
        self.assertEqual(child.image_id, image.id)
        self.assertNotIn(image.id, [i.id for i in self.bob.images.all()])
        image.deregister()
        self.assertNotIn(image.id, [i.id for i in self.ec2.images.filter(Owners=["self"])])


class SecurityGroups(ResourceTestCase):
    def test_create_authorize_launch_revoke_delete(self):
        vpc = [v for v in self.ec2.vpcs.all() if v.is_default][0]
        name = "res-" + uuid.uuid4().hex[:8]
        sg = self.ec2.create_security_group(GroupName=name, Description="resource group", VpcId=vpc.id)
        self.assertRegex(sg.id, GROUP_ID)
        self.assertEqual((sg.group_name, sg.description, sg.vpc_id), (name, "resource group", vpc.id))
        got = sg.authorize_ingress(IpProtocol="tcp", FromPort=22, ToPort=22, CidrIp="0.0.0.0/0")
        self.assertTrue(got["Return"])
        sg.authorize_ingress(IpPermissions=[{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
                                             "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        sg.reload()
        self.assertEqual(sorted(p["FromPort"] for p in sg.ip_permissions), [22, 443])
        self.assertIn(sg.id, [g.id for g in vpc.security_groups.all()])
        with self.assertRaises(ClientError) as cm:
            sg.authorize_ingress(IpProtocol="tcp", FromPort=22, ToPort=22, CidrIp="0.0.0.0/0")
        self.assertEqual(cm.exception.response["Error"]["Code"], "InvalidPermission.Duplicate")

        (inst,) = self.create(SecurityGroupIds=[sg.id])
        inst.load()
        self.assertEqual(inst.security_groups, [{"GroupId": sg.id, "GroupName": name}])
        self.assertIn(inst.id, [i.id for i in self.ec2.instances.filter(
            Filters=[{"Name": "instance.group-id", "Values": [sg.id]}])])
        inst.terminate()
        inst.wait_until_terminated(WaiterConfig=WAIT)
        sg.revoke_ingress(IpProtocol="tcp", FromPort=443, ToPort=443, CidrIp="0.0.0.0/0")
        sg.reload()
        self.assertEqual([p["FromPort"] for p in sg.ip_permissions], [22])
        sg.delete()
        self.assertClientError("InvalidGroup.NotFound", 400, sg.load)


class Addresses(ResourceTestCase):
    def test_vpc_address_associate_and_release(self):
        self.assertEqual(list(self.ec2.classic_addresses.all()), [])
        alloc = self.client.allocate_address(Domain="vpc")
        address = self.ec2.VpcAddress(alloc["AllocationId"])
        address.load()
        self.assertEqual((address.public_ip, address.domain), (alloc["PublicIp"], "vpc"))
        self.assertIsNone(address.association_id)
        self.assertIn(address.allocation_id, [a.allocation_id for a in self.ec2.vpc_addresses.all()])
        (inst,) = self.create()
        inst.wait_until_running(WaiterConfig=WAIT)
        got = address.associate(InstanceId=inst.id)
        address.reload()
        self.assertEqual((address.instance_id, address.association_id),
                         (inst.id, got["AssociationId"]))
        inst.reload()
        self.assertEqual(inst.public_ip_address, address.public_ip)
        association = self.ec2.NetworkInterfaceAssociation(address.association_id)
        self.assertEqual(association.id, got["AssociationId"])
        self.assertClientError("InvalidIPAddress.InUse", 400, address.release)
        self.client.disassociate_address(AssociationId=address.association_id)
        address.reload()
        self.assertIsNone(address.instance_id)
        address.release()
        self.assertNotIn(alloc["AllocationId"], [a.allocation_id for a in self.ec2.vpc_addresses.all()])
        got = self.client.describe_addresses(Filters=[{"Name": "instance-id", "Values": [inst.id]}])
        self.assertEqual(got["Addresses"], [])


if __name__ == "__main__":
    unittest.main()
