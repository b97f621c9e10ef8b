"""The cms EC2 frontend driven by boto3, an EC2 client no one here wrote.

Run by ``cms-server/tests/ec2_clients.rs`` against a fresh ``cms-server`` with two
memory providers (``local``; ``other``, which only alice may use) and two tenants.
Standalone::

    CMS_EC2_ENDPOINT=http://127.0.0.1:PORT/ec2 CMS_EC2_REGION=local \\
    CMS_EC2_OTHER_REGION=other CMS_ALICE_ID=... CMS_ALICE_SECRET=... \\
    CMS_BOB_ID=... CMS_BOB_SECRET=... .venv/bin/python boto3_suite.py -v

What is checked is what a boto3 user sees: parsed shapes, error codes, HTTP statuses,
what boto3's own waiters and paginators make of the answers. Raw requests (signed
with botocore's own SigV4 signer and sent with ``requests``) are used only where
boto3 would refuse to send what is being tested. Every test removes what it made.
"""

import base64
import datetime
import hashlib
import os
import re
import time
import unittest
import uuid
import xml.etree.ElementTree as ET
from unittest import mock
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import boto3
import requests
from botocore import UNSIGNED
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, WaiterError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

ENDPOINT = os.environ["CMS_EC2_ENDPOINT"]
REGION = os.environ.get("CMS_EC2_REGION", "local")
OTHER_REGION = os.environ.get("CMS_EC2_OTHER_REGION", "other")
ALICE = (os.environ["CMS_ALICE_ID"], os.environ["CMS_ALICE_SECRET"])
BOB = (os.environ["CMS_BOB_ID"], os.environ["CMS_BOB_SECRET"])

WAIT = {"Delay": 1, "MaxAttempts": 60}
NS = "{http://ec2.amazonaws.com/doc/2016-11-15/}"
# Well formed, never issued.
MADE_UP_INSTANCE = "i-0123456789abcdef0"
MADE_UP_IMAGE = "ami-0123456789abcdef0"
MADE_UP_SUBNET = "subnet-0123456789abcdef0"
MADE_UP_VOLUME = "vol-0123456789abcdef0"
MADE_UP_SNAPSHOT = "snap-0123456789abcdef0"
MADE_UP_GROUP = "sg-0123456789abcdef0"
MADE_UP_ALLOCATION = "eipalloc-0123456789abcdef0"

INSTANCE_ID = re.compile(r"^i-[0-9a-f]{17}$")
RESERVATION_ID = re.compile(r"^r-[0-9a-f]{17}$")
IMAGE_ID = re.compile(r"^ami-[0-9a-f]{17}$")
KEY_PAIR_ID = re.compile(r"^key-[0-9a-f]{17}$")
VOLUME_ID = re.compile(r"^vol-[0-9a-f]{17}$")
SNAPSHOT_ID = re.compile(r"^snap-[0-9a-f]{17}$")
GROUP_ID = re.compile(r"^sg-[0-9a-f]{17}$")
RULE_ID = re.compile(r"^sgr-[0-9a-f]{17}$")
ALLOCATION_ID = re.compile(r"^eipalloc-[0-9a-f]{17}$")
ACCOUNT_ID = re.compile(r"^[0-9]{12}$")


# One session for every client: its loader reads the EC2 model once.
_SESSION = boto3.session.Session()


def client(creds=ALICE, region=REGION, **config):
    """An EC2 client for the server, as a user would make one; `creds` None: none."""
    session = _SESSION
    kwargs = {"region_name": region, "endpoint_url": ENDPOINT, "config": Config(**config)}
    if creds is not None:
        kwargs["aws_access_key_id"] = creds[0]
        kwargs["aws_secret_access_key"] = creds[1]
    return session.client("ec2", **kwargs)


def shifted_clock(minutes):
    """Patches the clock botocore signs with to be `minutes` off."""
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=minutes)

    def now(remove_tzinfo=True):
        return when.replace(tzinfo=None) if remove_tzinfo else when

    return mock.patch("botocore.auth.get_current_datetime", now)


def raw(params, creds=ALICE, region=REGION):
    """POSTs Query `params` signed by botocore's SigV4 signer, as boto3 would; answers
    (HTTP status, root element of the XML answer)."""
    body = urlencode(params)
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    req = AWSRequest(method="POST", url=ENDPOINT, data=body, headers=headers)
    SigV4Auth(Credentials(*creds), "ec2", region).add_auth(req)
    prepared = req.prepare()
    r = requests.post(prepared.url, data=prepared.body, headers=dict(prepared.headers), timeout=30)
    return r.status_code, ET.fromstring(r.content)


def xml_error(root):
    """(code, message, request id) of an EC2 error document."""
    err = root.find("Errors/Error")
    assert err is not None, ET.tostring(root)
    return err.findtext("Code"), err.findtext("Message"), root.findtext("RequestID")


def ids_of(reservations):
    return [i["InstanceId"] for r in reservations for i in r["Instances"]]


def instances_of(reservations):
    return [i for r in reservations for i in r["Instances"]]


def tags_of(resource):
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def ssh_fingerprint(openssh_public_key):
    """OpenSSH's SHA256 fingerprint digest (base64, no padding) of a public key line."""
    blob = base64.b64decode(openssh_public_key.split()[1])
    return base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


class Ec2TestCase(unittest.TestCase):
    """Clients, the catalogue, and launches that are terminated after each test."""

    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.ec2 = client(ALICE)
        cls.bob = client(BOB)
        images = cls.ec2.describe_images()["Images"]
        cls.images = sorted(images, key=lambda i: i["Name"])
        cls.image = cls.images[0]["ImageId"]
        types = cls.ec2.describe_instance_types()["InstanceTypes"]
        cls.types = sorted(t["InstanceType"] for t in types)
        cls.itype = cls.types[0]

    def assertClientError(self, code, status, fn, *args, **kwargs):
        """Asserts the call fails with `code` and HTTP `status`; answers the error."""
        with self.assertRaises(ClientError) as cm:
            fn(*args, **kwargs)
        e = cm.exception
        self.assertEqual(e.response["Error"]["Code"], code, e.response)
        self.assertEqual(e.response["ResponseMetadata"]["HTTPStatusCode"], status, e.response)
        self.assertTrue(e.response["Error"].get("Message"), e.response)
        self.assertTrue(e.response["ResponseMetadata"].get("RequestId"), e.response)
        return e

    def launch(self, ec2=None, count=1, tags=None, **kwargs):
        """RunInstances, with a cleanup that terminates what it launched."""
        ec2 = ec2 or self.ec2
        kwargs.setdefault("ImageId", self.image)
        kwargs.setdefault("InstanceType", self.itype)
        kwargs.setdefault("MinCount", count)
        kwargs.setdefault("MaxCount", count)
        if tags:
            kwargs["TagSpecifications"] = [
                {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
            ]
        r = ec2.run_instances(**kwargs)
        ids = [i["InstanceId"] for i in r["Instances"]]
        self.addCleanup(self.terminate_quietly, ec2, ids)
        return r

    @staticmethod
    def terminate_quietly(ec2, ids):
        try:
            ec2.terminate_instances(InstanceIds=ids)
        except ClientError:
            pass

    def create_key(self, name, ec2=None):
        ec2 = ec2 or self.ec2
        k = ec2.create_key_pair(KeyName=name)
        self.addCleanup(ec2.delete_key_pair, KeyName=name)
        return k

    def describe(self, ec2=None, **kwargs):
        ec2 = ec2 or self.ec2
        return instances_of(ec2.describe_instances(**kwargs)["Reservations"])

    def state_of(self, instance_id, ec2=None):
        (i,) = self.describe(ec2, InstanceIds=[instance_id])
        return i["State"]["Code"], i["State"]["Name"]


class LifeCycle(Ec2TestCase):
    def test_run_wait_stop_start_reboot_terminate(self):
        zone = self.ec2.describe_availability_zones()["AvailabilityZones"][-1]["ZoneName"]
        subnet = self.ec2.describe_subnets()["Subnets"][0]
        key = "life-" + uuid.uuid4().hex[:8]
        self.create_key(key)
        before = datetime.datetime.now(datetime.timezone.utc)
        r = self.launch(
            tags={"Name": "life", "team": "blue"},
            KeyName=key,
            SubnetId=subnet["SubnetId"],
            Placement={"AvailabilityZone": zone},
            UserData="#!/bin/sh\necho hello\n",
        )
        self.assertRegex(r["ReservationId"], RESERVATION_ID)
        self.assertRegex(r["OwnerId"], ACCOUNT_ID)
        (inst,) = r["Instances"]
        iid = inst["InstanceId"]
        self.assertRegex(iid, INSTANCE_ID)
        self.assertEqual(inst["State"], {"Code": 0, "Name": "pending"})
        self.assertEqual(inst["ImageId"], self.image)
        self.assertEqual(inst["InstanceType"], self.itype)
        self.assertEqual(inst["KeyName"], key)
        self.assertEqual(inst["AmiLaunchIndex"], 0)
        self.assertEqual(inst["Placement"]["AvailabilityZone"], zone)
        self.assertEqual(inst["SubnetId"], subnet["SubnetId"])
        self.assertEqual(inst["VpcId"], subnet["VpcId"])
        self.assertEqual(tags_of(inst), {"Name": "life", "team": "blue"})
        self.assertIsInstance(inst["LaunchTime"], datetime.datetime)
        self.assertLess(abs((inst["LaunchTime"] - before).total_seconds()), 60)

        self.ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=WAIT)
        self.assertEqual(self.state_of(iid), (16, "running"))
        (described,) = self.describe(InstanceIds=[iid])
        for field in ("ImageId", "InstanceType", "KeyName", "SubnetId", "VpcId", "Placement"):
            self.assertEqual(described[field], inst[field], field)
        self.assertEqual(tags_of(described), {"Name": "life", "team": "blue"})
        reservations = self.ec2.describe_instances(InstanceIds=[iid])["Reservations"]
        self.assertEqual(reservations[0]["ReservationId"], r["ReservationId"])
        self.assertEqual(reservations[0]["OwnerId"], r["OwnerId"])
        status = self.ec2.describe_instance_status(InstanceIds=[iid])["InstanceStatuses"]
        self.assertEqual([s["InstanceId"] for s in status], [iid])
        self.assertEqual(status[0]["InstanceState"], {"Code": 16, "Name": "running"})
        self.assertEqual(status[0]["AvailabilityZone"], zone)
        self.assertEqual(status[0]["InstanceStatus"]["Status"], "ok")
        self.assertEqual(status[0]["SystemStatus"]["Status"], "ok")

        stop = self.ec2.stop_instances(InstanceIds=[iid])["StoppingInstances"]
        self.assertEqual(
            stop,
            [
                {
                    "InstanceId": iid,
                    "PreviousState": {"Code": 16, "Name": "running"},
                    "CurrentState": {"Code": 64, "Name": "stopping"},
                }
            ],
        )
        self.ec2.get_waiter("instance_stopped").wait(InstanceIds=[iid], WaiterConfig=WAIT)
        self.assertEqual(self.state_of(iid), (80, "stopped"))
        # Only running instances have a status, unless all are asked for.
        status = self.ec2.describe_instance_status(InstanceIds=[iid])["InstanceStatuses"]
        self.assertEqual(status, [])
        status = self.ec2.describe_instance_status(InstanceIds=[iid], IncludeAllInstances=True)
        self.assertEqual(status["InstanceStatuses"][0]["InstanceState"]["Name"], "stopped")

        start = self.ec2.start_instances(InstanceIds=[iid])["StartingInstances"]
        self.assertEqual(start[0]["PreviousState"], {"Code": 80, "Name": "stopped"})
        self.assertEqual(start[0]["CurrentState"], {"Code": 0, "Name": "pending"})
        self.ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=WAIT)

        reboot = self.ec2.reboot_instances(InstanceIds=[iid])
        self.assertEqual(reboot["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertEqual(self.state_of(iid)[1], "running")
        self.ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=WAIT)

        term = self.ec2.terminate_instances(InstanceIds=[iid])["TerminatingInstances"]
        self.assertEqual(term[0]["InstanceId"], iid)
        self.assertEqual(term[0]["PreviousState"], {"Code": 16, "Name": "running"})
        self.assertEqual(term[0]["CurrentState"], {"Code": 32, "Name": "shutting-down"})
        self.ec2.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig=WAIT)
        self.assertEqual(self.state_of(iid), (48, "terminated"))

        # A terminated instance cannot be started, and a waiter for it to run gives up
        # at once (terminated is one of the waiter's failure states).
        self.assertClientError(
            "IncorrectInstanceState", 400, self.ec2.start_instances, InstanceIds=[iid]
        )
        with self.assertRaises(WaiterError) as cm:
            self.ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=WAIT)
        self.assertIn("terminal failure state", str(cm.exception))

    def test_min_and_max_count(self):
        r = self.launch(MinCount=2, MaxCount=4)
        self.assertEqual(len(r["Instances"]), 4)
        self.assertEqual(sorted(i["AmiLaunchIndex"] for i in r["Instances"]), [0, 1, 2, 3])
        ids = [i["InstanceId"] for i in r["Instances"]]
        self.assertEqual(len(set(ids)), 4)
        reservations = self.ec2.describe_instances(InstanceIds=ids)["Reservations"]
        self.assertEqual([x["ReservationId"] for x in reservations], [r["ReservationId"]])
        self.assertEqual(sorted(ids_of(reservations)), sorted(ids))

        e = self.assertClientError(
            "InvalidParameterValue", 400, self.ec2.run_instances,
            ImageId=self.image, InstanceType=self.itype, MinCount=3, MaxCount=2,
        )
        self.assertIn("MinCount", e.response["Error"]["Message"])
        e = self.assertClientError(
            "InvalidParameterValue", 400, self.ec2.run_instances,
            ImageId=self.image, InstanceType=self.itype, MinCount=0, MaxCount=1,
        )
        self.assertIn("MinCount", e.response["Error"]["Message"])

    def test_client_token_makes_run_instances_idempotent(self):
        token = "tok-" + uuid.uuid4().hex
        first = self.launch(count=2, ClientToken=token, tags={"batch": token})
        again = self.ec2.run_instances(
            ImageId=self.image, InstanceType=self.itype, MinCount=2, MaxCount=2,
            ClientToken=token,
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "batch", "Value": token}]}],
        )
        self.assertEqual(again["ReservationId"], first["ReservationId"])
        self.assertEqual(
            sorted(i["InstanceId"] for i in again["Instances"]),
            sorted(i["InstanceId"] for i in first["Instances"]),
        )
        launched = self.describe(Filters=[{"Name": "tag:batch", "Values": [token]}])
        self.assertEqual(len(launched), 2, "one launch, however many times it is sent")

        e = self.assertClientError(
            "IdempotentParameterMismatch", 400, self.ec2.run_instances,
            ImageId=self.image, InstanceType=self.itype, MinCount=3, MaxCount=3,
            ClientToken=token,
        )
        self.assertIn(token, e.response["Error"]["Message"])
        self.assertEqual(len(self.describe(Filters=[{"Name": "tag:batch", "Values": [token]}])), 2)

        other = self.launch(count=1, ClientToken=token + "-b")
        self.assertNotIn(other["Instances"][0]["InstanceId"], [i["InstanceId"] for i in first["Instances"]])

    def test_user_data_is_accepted(self):
        # No DescribeInstanceAttribute to read it back: the launch must just work,
        # with text and with bytes (boto3 base64-encodes both).
        r = self.launch(UserData="#cloud-config\nruncmd:\n - [echo, 'héllo & <bye>']\n")
        self.assertRegex(r["Instances"][0]["InstanceId"], INSTANCE_ID)
        r = self.launch(UserData=b"#!/bin/sh\nexit 0\n")
        self.assertRegex(r["Instances"][0]["InstanceId"], INSTANCE_ID)

    def test_dry_run_launches_nothing(self):
        token = "dry-" + uuid.uuid4().hex
        e = self.assertClientError(
            "DryRunOperation", 412, self.ec2.run_instances, ImageId=self.image, InstanceType=self.itype,
            MinCount=1, MaxCount=1, DryRun=True,
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "batch", "Value": token}]}],
        )
        self.assertIn("DryRun", e.response["Error"]["Message"])
        self.assertEqual(self.describe(Filters=[{"Name": "tag:batch", "Values": [token]}]), [])

    def test_launch_refuses_what_does_not_exist(self):
        before = sorted(ids_of(self.ec2.describe_instances()["Reservations"]))
        run = self.ec2.run_instances
        base = {"ImageId": self.image, "InstanceType": self.itype, "MinCount": 1, "MaxCount": 1}
        self.assertClientError("InvalidAMIID.NotFound", 400, run, **{**base, "ImageId": MADE_UP_IMAGE})
        self.assertClientError("InvalidAMIID.Malformed", 400, run, **{**base, "ImageId": "ami-nothex"})
        e = self.assertClientError("InvalidParameterValue", 400, run, **{**base, "InstanceType": "m9.huge"})
        self.assertIn("m9.huge", e.response["Error"]["Message"])
        self.assertClientError("InvalidKeyPair.NotFound", 400, run, **{**base, "KeyName": "no-such-key"})
        self.assertClientError("InvalidSubnetID.NotFound", 400, run, **{**base, "SubnetId": MADE_UP_SUBNET})
        self.assertClientError(
            "InvalidParameterValue", 400, run, **{**base, "Placement": {"AvailabilityZone": "mars-1a"}}
        )
        self.assertEqual(sorted(ids_of(self.ec2.describe_instances()["Reservations"])), before)


class Filters(Ec2TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        ec2 = cls.ec2
        cls.batch = uuid.uuid4().hex
        cls.image_b = cls.images[1]["ImageId"]
        cls.type_b = cls.types[1]

        def run(tags, image, itype):
            spec = [{"ResourceType": "instance",
                     "Tags": [{"Key": k, "Value": v} for k, v in {**tags, "batch": cls.batch}.items()]}]
            r = ec2.run_instances(ImageId=image, InstanceType=itype, MinCount=1, MaxCount=1,
                                  TagSpecifications=spec)
            iid = r["Instances"][0]["InstanceId"]
            cls.addClassCleanup(cls.terminate_quietly, ec2, [iid])
            return iid

        cls.a = run({"Name": "web-a", "env": "prod", "pattern": "x*y"}, cls.image, cls.itype)
        cls.b = run({"Name": "db-b", "env": "dev"}, cls.image_b, cls.type_b)
        cls.c = run({"Name": "web-c", "role": "cache"}, cls.image, cls.itype)
        ec2.get_waiter("instance_running").wait(InstanceIds=[cls.a, cls.b, cls.c], WaiterConfig=WAIT)
        ec2.stop_instances(InstanceIds=[cls.c])
        ec2.get_waiter("instance_stopped").wait(InstanceIds=[cls.c], WaiterConfig=WAIT)

    def select(self, *filters, ids=None):
        fs = [{"Name": "tag:batch", "Values": [self.batch]}]
        fs += [{"Name": n, "Values": v if isinstance(v, list) else [v]} for n, v in filters]
        kwargs = {"Filters": fs}
        if ids:
            kwargs["InstanceIds"] = ids
        return sorted(i["InstanceId"] for i in self.describe(**kwargs))

    def test_instance_state_name(self):
        a, b, c = self.a, self.b, self.c
        self.assertEqual(self.select(("instance-state-name", "running")), sorted([a, b]))
        self.assertEqual(self.select(("instance-state-name", "stopped")), [c])
        self.assertEqual(self.select(("instance-state-name", ["stopped", "running"])), sorted([a, b, c]))
        self.assertEqual(self.select(("instance-state-name", "run*")), sorted([a, b]))
        self.assertEqual(self.select(("instance-state-name", "st?pped")), [c])
        self.assertEqual(self.select(("instance-state-name", "terminated")), [])

    def test_instance_id(self):
        a, b = self.a, self.b
        self.assertEqual(self.select(("instance-id", a)), [a])
        self.assertEqual(self.select(("instance-id", [a, b])), sorted([a, b]))
        self.assertEqual(self.select(("instance-id", a[:-4] + "*")), [a])
        self.assertEqual(self.select(("instance-id", a[:-1] + "?")), [a])
        self.assertEqual(self.select(("instance-id", MADE_UP_INSTANCE)), [])

    def test_image_id_and_instance_type(self):
        a, b, c = self.a, self.b, self.c
        self.assertEqual(self.select(("image-id", self.image)), sorted([a, c]))
        self.assertEqual(self.select(("image-id", self.image_b)), [b])
        self.assertEqual(self.select(("image-id", "ami-*")), sorted([a, b, c]))
        self.assertEqual(self.select(("instance-type", self.itype)), sorted([a, c]))
        self.assertEqual(self.select(("instance-type", self.type_b)), [b])
        prefix = self.type_b[:-2]
        self.assertEqual(self.select(("instance-type", prefix + "*")), sorted(
            i for i, t in ((a, self.itype), (b, self.type_b), (c, self.itype)) if t.startswith(prefix)
        ))
        self.assertIn(b, self.select(("instance-type", prefix + "??")))

    def test_tags(self):
        a, b, c = self.a, self.b, self.c
        self.assertEqual(self.select(("tag:Name", "web-*")), sorted([a, c]))
        self.assertEqual(self.select(("tag:Name", "db-b")), [b])
        self.assertEqual(self.select(("tag:env", "prod")), [a])
        self.assertEqual(self.select(("tag:env", ["prod", "dev"])), sorted([a, b]))
        self.assertEqual(self.select(("tag:env", "*")), sorted([a, b]))
        self.assertEqual(self.select(("tag:env", "PROD")), [], "values match case-sensitively")
        self.assertEqual(self.select(("tag:pattern", "x\\*y")), [a], "\\* is a literal star")
        self.assertEqual(self.select(("tag:pattern", "x\\*z")), [])
        self.assertEqual(self.select(("tag-key", "env")), sorted([a, b]))
        self.assertEqual(self.select(("tag-key", "ro*")), [c])
        self.assertEqual(self.select(("tag-key", "nothing")), [])

    def test_filters_combine_with_each_other_and_with_ids(self):
        a, b, c = self.a, self.b, self.c
        self.assertEqual(self.select(("tag:Name", "web-*"), ("instance-state-name", "running")), [a])
        self.assertEqual(self.select(("tag:Name", "web-*"), ("instance-type", self.type_b)), [])
        self.assertEqual(self.select(("tag-key", "Name"), ids=[b, c]), sorted([b, c]))
        self.assertEqual(self.select(("instance-state-name", "running"), ids=[b, c]), [b])
        self.assertEqual(self.ec2.describe_instances(
            Filters=[{"Name": "tag:batch", "Values": ["no-" + self.batch]}])["Reservations"], [])

    def test_an_unknown_filter_is_refused(self):
        e = self.assertClientError(
            "InvalidParameterValue", 400, self.ec2.describe_instances,
            Filters=[{"Name": "flavour", "Values": ["x"]}],
        )
        self.assertIn("flavour", e.response["Error"]["Message"])


class Pagination(Ec2TestCase):
    def test_describe_instances_paginator(self):
        batch = uuid.uuid4().hex
        launches = [self.launch(count=n, tags={"batch": batch}) for n in (3, 2, 1, 1)]
        reservation_of = {i["InstanceId"]: r["ReservationId"] for r in launches for i in r["Instances"]}
        paginator = self.ec2.get_paginator("describe_instances")
        pages = list(paginator.paginate(
            Filters=[{"Name": "tag:batch", "Values": [batch]}],
            PaginationConfig={"PageSize": 5},
        ))
        self.assertEqual([len(ids_of(p["Reservations"])) for p in pages], [5, 2])
        self.assertIn("NextToken", pages[0])
        self.assertNotIn("NextToken", pages[-1])
        seen = [i for p in pages for i in ids_of(p["Reservations"])]
        self.assertEqual(len(seen), len(set(seen)), "no instance twice")
        self.assertEqual(set(seen), set(reservation_of))
        for p in pages:
            for r in p["Reservations"]:
                for i in r["Instances"]:
                    self.assertEqual(r["ReservationId"], reservation_of[i["InstanceId"]])
        # build_full_result and MaxItems: what most callers use.
        full = paginator.paginate(
            Filters=[{"Name": "tag:batch", "Values": [batch]}],
            PaginationConfig={"PageSize": 5},
        ).build_full_result()
        self.assertEqual(sorted(ids_of(full["Reservations"])), sorted(reservation_of))

    def test_describe_images_paginator(self):
        pages = list(self.ec2.get_paginator("describe_images").paginate(PaginationConfig={"PageSize": 5}))
        images = [i for p in pages for i in p["Images"]]
        self.assertEqual(sorted(i["ImageId"] for i in images), sorted(i["ImageId"] for i in self.images))
        self.assertGreaterEqual(len(images), 1)
        for i in images:
            self.assertRegex(i["ImageId"], IMAGE_ID)
            self.assertEqual(i["State"], "available")
            self.assertTrue(i["Name"])
            self.assertRegex(i["OwnerId"], ACCOUNT_ID)
            self.assertEqual(i["ImageType"], "machine")
            self.assertIn(i["Architecture"], ("x86_64", "arm64", "i386"))
        first = self.images[0]
        self.assertEqual(
            [i["ImageId"] for i in self.ec2.describe_images(ImageIds=[first["ImageId"]])["Images"]],
            [first["ImageId"]],
        )
        named = self.ec2.describe_images(Filters=[{"Name": "name", "Values": [first["Name"][:3] + "*"]}])
        self.assertIn(first["ImageId"], [i["ImageId"] for i in named["Images"]])
        self.assertClientError("InvalidAMIID.NotFound", 400, self.ec2.describe_images, ImageIds=[MADE_UP_IMAGE])

    def test_describe_tags_paginator(self):
        tags = {f"key{n}": f"value{n}" for n in range(7)}
        r = self.launch(tags={"Name": "paged", **tags})
        iid = r["Instances"][0]["InstanceId"]
        pages = list(self.ec2.get_paginator("describe_tags").paginate(
            Filters=[{"Name": "resource-id", "Values": [iid]}],
            PaginationConfig={"PageSize": 5},
        ))
        self.assertEqual([len(p["Tags"]) for p in pages], [5, 3])
        got = [t for p in pages for t in p["Tags"]]
        self.assertEqual(
            sorted((t["ResourceId"], t["ResourceType"], t["Key"], t["Value"]) for t in got),
            sorted((iid, "instance", k, v) for k, v in {"Name": "paged", **tags}.items()),
        )


class TagsAndKeyPairs(Ec2TestCase):
    def test_tags_at_launch_create_delete_describe(self):
        r = self.launch(count=2, tags={"Name": "tagged", "env": "prod", "owner": "alice"})
        a, b = (i["InstanceId"] for i in r["Instances"])
        self.assertEqual(tags_of(r["Instances"][0]), {"Name": "tagged", "env": "prod", "owner": "alice"})

        def tags(iid):
            return tags_of(self.describe(InstanceIds=[iid])[0])

        # CreateTags adds and overwrites, on several resources at once.
        self.ec2.create_tags(Resources=[a, b], Tags=[{"Key": "team", "Value": "blue"},
                                                      {"Key": "env", "Value": "staging"}])
        want = {"Name": "tagged", "env": "staging", "owner": "alice", "team": "blue"}
        self.assertEqual(tags(a), want)
        self.assertEqual(tags(b), want)
        self.ec2.create_tags(Resources=[a], Tags=[{"Key": "empty", "Value": ""}])
        self.assertEqual(tags(a)["empty"], "")

        # DeleteTags without a value deletes whatever the value; with a value, only
        # when it is that value.
        self.ec2.delete_tags(Resources=[a], Tags=[{"Key": "team"}, {"Key": "empty"}])
        self.assertEqual(tags(a), {"Name": "tagged", "env": "staging", "owner": "alice"})
        self.ec2.delete_tags(Resources=[a], Tags=[{"Key": "env", "Value": "prod"}])
        self.assertEqual(tags(a)["env"], "staging", "a different value is not deleted")
        self.ec2.delete_tags(Resources=[a], Tags=[{"Key": "env", "Value": "staging"}])
        self.assertNotIn("env", tags(a))
        self.assertEqual(tags(b), want, "b is untouched")

        # DescribeTags and its filters.
        def described(*filters):
            fs = [{"Name": "resource-id", "Values": [a, b]}]
            fs += [{"Name": n, "Values": v} for n, v in filters]
            return sorted((t["ResourceId"], t["Key"], t["Value"]) for t in
                          self.ec2.describe_tags(Filters=fs)["Tags"])

        self.assertEqual(described(), sorted(
            [(a, "Name", "tagged"), (a, "owner", "alice")] + [(b, k, v) for k, v in want.items()]))
        self.assertEqual(described(("key", ["team"])), [(b, "team", "blue")])
        self.assertEqual(described(("key", ["o*"])), sorted([(a, "owner", "alice"), (b, "owner", "alice")]))
        self.assertEqual(described(("value", ["stag*"])), [(b, "env", "staging")])
        self.assertEqual(described(("resource-type", ["instance"]), ("key", ["Name"])),
                         sorted([(a, "Name", "tagged"), (b, "Name", "tagged")]))
        self.assertEqual(described(("resource-type", ["volume"])), [])
        for t in self.ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [a]}])["Tags"]:
            self.assertEqual(t["ResourceType"], "instance")

        # The tag filters of DescribeInstances see the changes.
        found = self.describe(Filters=[{"Name": "tag:team", "Values": ["blue"]},
                                       {"Name": "instance-id", "Values": [a, b]}])
        self.assertEqual([i["InstanceId"] for i in found], [b])

    def tags(self, iid):
        return tags_of(self.describe(InstanceIds=[iid])[0])

    def test_the_name_tag_is_the_instance_name(self):
        # cms keeps a name where EC2 keeps the Name tag: set at launch, shown as the
        # Name tag, and not changed by CreateTags/DeleteTags (cms has no rename), which
        # say so instead of pretending.
        iid = self.launch(tags={"Name": "first", "keep": "yes"})["Instances"][0]["InstanceId"]
        self.assertEqual(self.tags(iid), {"Name": "first", "keep": "yes"})
        self.assertClientError("UnsupportedOperation", 400, self.ec2.delete_tags,
                               Resources=[iid], Tags=[{"Key": "Name"}])
        self.assertClientError("UnsupportedOperation", 400, self.ec2.create_tags,
                               Resources=[iid], Tags=[{"Key": "Name", "Value": "second"}])
        # A refused request changes nothing, not even its other tags.
        self.assertClientError("UnsupportedOperation", 400, self.ec2.create_tags,
                               Resources=[iid], Tags=[{"Key": "x", "Value": "1"}, {"Key": "Name", "Value": "2"}])
        self.assertEqual(self.tags(iid), {"Name": "first", "keep": "yes"})
        # What changes nothing is fine: the same name, or a value that does not match.
        self.ec2.create_tags(Resources=[iid], Tags=[{"Key": "Name", "Value": "first"}])
        self.ec2.delete_tags(Resources=[iid], Tags=[{"Key": "Name", "Value": "other"}])
        # Deleting every tag keeps the name.
        self.ec2.delete_tags(Resources=[iid])
        self.assertEqual(self.tags(iid), {"Name": "first"})
        unnamed = self.launch(tags={"keep": "yes"})["Instances"][0]["InstanceId"]
        self.assertClientError("UnsupportedOperation", 400, self.ec2.create_tags,
                               Resources=[unnamed], Tags=[{"Key": "Name", "Value": "later"}])
        self.assertEqual(self.tags(unnamed), {"keep": "yes"})

    def test_delete_tags_with_an_empty_value_deletes_only_empty_values(self):
        iid = self.launch(tags={"full": "v", "empty": ""})["Instances"][0]["InstanceId"]
        self.ec2.delete_tags(Resources=[iid], Tags=[{"Key": "full", "Value": ""}, {"Key": "empty", "Value": ""}])
        self.assertEqual(self.tags(iid), {"full": "v"})

    def test_special_characters_round_trip(self):
        # Signed form bodies and XML answers both have to get these right.
        key, value = "k y+&=", "héllo <&> \"q\" 'a' ~+%20 日本\ttab"
        iid = self.launch(tags={key: value})["Instances"][0]["InstanceId"]
        self.assertEqual(self.tags(iid), {key: value})
        found = self.describe(Filters=[{"Name": f"tag:{key}", "Values": [value]}])
        self.assertEqual([i["InstanceId"] for i in found], [iid])
        got = self.ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [iid]}])["Tags"]
        self.assertEqual([(t["Key"], t["Value"]) for t in got], [(key, value)])

    def test_tagging_what_does_not_exist(self):
        self.assertClientError("InvalidInstanceID.NotFound", 400, self.ec2.create_tags,
                               Resources=[MADE_UP_INSTANCE], Tags=[{"Key": "k", "Value": "v"}])
        self.assertClientError("InvalidInstanceID.NotFound", 400, self.ec2.delete_tags,
                               Resources=[MADE_UP_INSTANCE], Tags=[{"Key": "k"}])

    def test_create_describe_delete_key_pair(self):
        name = "created-" + uuid.uuid4().hex[:8]
        k = self.create_key(name)
        self.assertEqual(k["KeyName"], name)
        self.assertRegex(k["KeyPairId"], KEY_PAIR_ID)
        # The material is a private key a user can load, matching the fingerprint.
        # EC2's default: RSA, PKCS#1 PEM, fingerprinted by the SHA-1 of its PKCS#8 form.
        material = k["KeyMaterial"].encode()
        self.assertTrue(material.startswith(b"-----BEGIN RSA PRIVATE KEY-----\n"), material[:40])
        private = serialization.load_pem_private_key(material, password=None)
        public = private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
        pkcs8 = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
        self.assertEqual(k["KeyFingerprint"], ":".join(f"{b:02x}" for b in hashlib.sha1(pkcs8).digest()))

        (d,) = self.ec2.describe_key_pairs(KeyNames=[name])["KeyPairs"]
        self.assertEqual((d["KeyName"], d["KeyPairId"], d["KeyFingerprint"]),
                         (name, k["KeyPairId"], k["KeyFingerprint"]))
        self.assertEqual(d["KeyType"], "ed25519" if public.startswith("ssh-ed25519") else "rsa")
        self.assertNotIn("KeyMaterial", d)
        (d,) = self.ec2.describe_key_pairs(KeyPairIds=[k["KeyPairId"]], IncludePublicKey=True)["KeyPairs"]
        self.assertEqual(d["KeyName"], name)
        self.assertEqual(d["PublicKey"].split()[:2], public.split()[:2])
        self.assertIn(name, [x["KeyName"] for x in self.ec2.describe_key_pairs()["KeyPairs"]])
        got = self.ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [name[:9] + "*"]}])
        self.assertEqual([x["KeyName"] for x in got["KeyPairs"]], [name])

        self.assertClientError("InvalidKeyPair.Duplicate", 400, self.ec2.create_key_pair, KeyName=name)
        self.ec2.delete_key_pair(KeyName=name)
        self.assertClientError("InvalidKeyPair.NotFound", 400, self.ec2.describe_key_pairs, KeyNames=[name])
        self.assertNotIn(name, [x["KeyName"] for x in self.ec2.describe_key_pairs()["KeyPairs"]])
        # As in EC2, deleting a key pair that is not there succeeds.
        self.ec2.delete_key_pair(KeyName=name)

        # By id.
        k = self.create_key(name + "-id")
        self.ec2.delete_key_pair(KeyPairId=k["KeyPairId"])
        self.assertClientError("InvalidKeyPair.NotFound", 400, self.ec2.describe_key_pairs,
                               KeyNames=[name + "-id"])

    def test_import_key_pair(self):
        private = ed25519.Ed25519PrivateKey.generate()
        public = private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        name = "imported-" + uuid.uuid4().hex[:8]
        k = self.ec2.import_key_pair(KeyName=name, PublicKeyMaterial=public + b" me@laptop\n")
        self.addCleanup(self.ec2.delete_key_pair, KeyName=name)
        self.assertEqual(k["KeyName"], name)
        self.assertRegex(k["KeyPairId"], KEY_PAIR_ID)
        self.assertNotIn("KeyMaterial", k)
        # EC2 shows an ed25519 key by its base64 SHA-256, padding kept.
        self.assertEqual(k["KeyFingerprint"], ssh_fingerprint(public.decode()) + "=")
        (d,) = self.ec2.describe_key_pairs(KeyNames=[name], IncludePublicKey=True)["KeyPairs"]
        self.assertEqual(d["KeyFingerprint"], k["KeyFingerprint"])
        self.assertEqual(d["KeyType"], "ed25519")
        self.assertEqual(d["PublicKey"].split()[:2], public.decode().split())
        self.assertClientError("InvalidKeyPair.Duplicate", 400, self.ec2.import_key_pair,
                               KeyName=name, PublicKeyMaterial=public)
        self.assertClientError("InvalidKey.Format", 400, self.ec2.import_key_pair,
                               KeyName=name + "-bad", PublicKeyMaterial=b"this is not a key")
        self.assertClientError("InvalidKeyPair.NotFound", 400, self.ec2.describe_key_pairs,
                               KeyNames=[name + "-bad"])
        # An instance launched with it says so.
        r = self.launch(KeyName=name)
        self.assertEqual(r["Instances"][0]["KeyName"], name)
        self.assertEqual(
            [i["InstanceId"] for i in self.describe(Filters=[{"Name": "key-name", "Values": [name]}])],
            [r["Instances"][0]["InstanceId"]],
        )

    def test_unknown_key_pair(self):
        self.assertClientError("InvalidKeyPair.NotFound", 400, self.ec2.describe_key_pairs,
                               KeyNames=["never-made-" + uuid.uuid4().hex[:8]])


class Catalogue(Ec2TestCase):
    def test_describe_regions_differs_per_tenant(self):
        regions = self.ec2.describe_regions()["Regions"]
        self.assertEqual(sorted(r["RegionName"] for r in regions), sorted([REGION, OTHER_REGION]))
        for r in regions:
            self.assertTrue(r["Endpoint"])
            self.assertEqual(r["OptInStatus"], "opt-in-not-required")
        self.assertEqual([r["RegionName"] for r in self.bob.describe_regions()["Regions"]], [REGION])
        got = self.ec2.describe_regions(RegionNames=[OTHER_REGION])["Regions"]
        self.assertEqual([r["RegionName"] for r in got], [OTHER_REGION])
        got = self.ec2.describe_regions(Filters=[{"Name": "region-name", "Values": ["oth*"]}])["Regions"]
        self.assertEqual([r["RegionName"] for r in got], [OTHER_REGION])
        # Bob may not use `other`: not even name it, nor sign for it.
        self.assertClientError("InvalidParameterValue", 400, self.bob.describe_regions,
                               RegionNames=[OTHER_REGION])
        e = self.assertClientError("AuthFailure", 401, client(BOB, OTHER_REGION).describe_instances)
        self.assertNotIn(BOB[1], e.response["Error"]["Message"])

    def test_regions_are_separate_providers(self):
        r = self.launch()
        iid = r["Instances"][0]["InstanceId"]
        elsewhere = client(ALICE, OTHER_REGION)
        self.assertEqual(ids_of(elsewhere.describe_instances()["Reservations"]), [])
        self.assertClientError("InvalidInstanceID.NotFound", 400, elsewhere.describe_instances,
                               InstanceIds=[iid])

    def test_describe_availability_zones(self):
        zones = self.ec2.describe_availability_zones()["AvailabilityZones"]
        self.assertGreaterEqual(len(zones), 1)
        for z in zones:
            self.assertTrue(z["ZoneName"])
            self.assertTrue(z["ZoneId"])
            self.assertEqual(z["State"], "available")
            self.assertEqual(z["RegionName"], REGION)
            self.assertEqual(z["ZoneType"], "availability-zone")
        name = zones[0]["ZoneName"]
        got = self.ec2.describe_availability_zones(ZoneNames=[name])["AvailabilityZones"]
        self.assertEqual([z["ZoneName"] for z in got], [name])
        got = self.ec2.describe_availability_zones(Filters=[{"Name": "zone-name", "Values": [name]}])
        self.assertEqual([z["ZoneName"] for z in got["AvailabilityZones"]], [name])

    def test_describe_vpcs_and_subnets(self):
        vpcs = self.ec2.describe_vpcs()["Vpcs"]
        self.assertGreaterEqual(len(vpcs), 1)
        for v in vpcs:
            self.assertRegex(v["VpcId"], r"^vpc-[0-9a-f]{17}$")
            self.assertEqual(v["State"], "available")
            self.assertRegex(v["CidrBlock"], r"^\d+\.\d+\.\d+\.\d+/\d+$")
            self.assertRegex(v["OwnerId"], ACCOUNT_ID)
            self.assertIsInstance(v["IsDefault"], bool)
        default = [v for v in vpcs if v["IsDefault"]]
        self.assertEqual(len(default), 1, vpcs)
        got = self.ec2.describe_vpcs(VpcIds=[default[0]["VpcId"]])["Vpcs"]
        self.assertEqual([v["VpcId"] for v in got], [default[0]["VpcId"]])
        got = self.ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
        self.assertEqual([v["VpcId"] for v in got], [default[0]["VpcId"]])

        subnets = self.ec2.describe_subnets()["Subnets"]
        zones = [z["ZoneName"] for z in self.ec2.describe_availability_zones()["AvailabilityZones"]]
        self.assertGreaterEqual(len(subnets), 1)
        for s in subnets:
            self.assertRegex(s["SubnetId"], r"^subnet-[0-9a-f]{17}$")
            self.assertIn(s["VpcId"], [v["VpcId"] for v in vpcs])
            self.assertEqual(s["State"], "available")
            self.assertIn(s["AvailabilityZone"], zones)
            self.assertIsInstance(s["AvailableIpAddressCount"], int)
            prefix = int(s["CidrBlock"].split("/")[1])
            self.assertEqual(s["AvailableIpAddressCount"], 2 ** (32 - prefix) - 5)
        got = self.ec2.describe_subnets(
            Filters=[{"Name": "vpc-id", "Values": [default[0]["VpcId"]]}])["Subnets"]
        self.assertEqual([s["VpcId"] for s in got], [default[0]["VpcId"]] * len(got))
        self.assertGreaterEqual(len(got), 1)
        self.assertClientError("InvalidSubnetID.NotFound", 400, self.ec2.describe_subnets,
                               SubnetIds=[MADE_UP_SUBNET])

    def test_describe_instance_types(self):
        types = self.ec2.describe_instance_types()["InstanceTypes"]
        self.assertGreaterEqual(len(types), 2)
        for t in types:
            self.assertTrue(t["InstanceType"])
            self.assertGreaterEqual(t["VCpuInfo"]["DefaultVCpus"], 1)
            self.assertGreater(t["MemoryInfo"]["SizeInMiB"], 0)
            self.assertIn("x86_64", t["ProcessorInfo"]["SupportedArchitectures"])
        one = types[0]["InstanceType"]
        got = self.ec2.describe_instance_types(InstanceTypes=[one])["InstanceTypes"]
        self.assertEqual([t["InstanceType"] for t in got], [one])
        got = self.ec2.describe_instance_types(Filters=[{"Name": "instance-type", "Values": [one]}])
        self.assertEqual([t["InstanceType"] for t in got["InstanceTypes"]], [one])
        self.assertClientError("InvalidInstanceType", 400, self.ec2.describe_instance_types,
                               InstanceTypes=["m9.huge"])

    def test_describe_account_attributes(self):
        attrs = self.ec2.describe_account_attributes()["AccountAttributes"]
        values = {a["AttributeName"]: [v["AttributeValue"] for v in a["AttributeValues"]] for a in attrs}
        self.assertEqual(values["supported-platforms"], ["VPC"])
        default = [v["VpcId"] for v in self.ec2.describe_vpcs()["Vpcs"] if v["IsDefault"]]
        self.assertEqual(values["default-vpc"], default)
        self.assertTrue(values["max-instances"][0].isdigit())
        got = self.ec2.describe_account_attributes(AttributeNames=["default-vpc"])["AccountAttributes"]
        self.assertEqual([a["AttributeName"] for a in got], ["default-vpc"])


class Authentication(Ec2TestCase):
    def test_an_unsigned_request_is_missing_authentication(self):
        unsigned = client(None, signature_version=UNSIGNED)
        self.assertClientError("MissingAuthenticationToken", 403, unsigned.describe_instances)

    def test_an_unknown_access_key_is_an_auth_failure(self):
        stranger = client(("AKIANOBODY0000000000", ALICE[1]))
        e = self.assertClientError("AuthFailure", 401, stranger.describe_instances)
        self.assertNotIn(ALICE[1], e.response["Error"]["Message"])

    def test_a_wrong_secret_does_not_match(self):
        forged = client((ALICE[0], "not-alices-secret-0123456789abcdefgh"))
        e = self.assertClientError("SignatureDoesNotMatch", 403, forged.describe_instances)
        self.assertNotIn(ALICE[1], e.response["Error"]["Message"])

    def test_a_request_signed_20_minutes_ago_or_ahead_has_expired(self):
        with shifted_clock(-20):
            self.assertClientError("RequestExpired", 400, self.ec2.describe_instances)
        with shifted_clock(+20):
            self.assertClientError("RequestExpired", 400, self.ec2.describe_instances)
        # 10 minutes off is within what AWS allows.
        with shifted_clock(-10):
            self.ec2.describe_regions()

    def test_a_presigned_get_url_works_and_cannot_be_changed(self):
        r = self.launch()
        iid = r["Instances"][0]["InstanceId"]
        url = self.ec2.generate_presigned_url(
            "describe_instances", Params={"InstanceIds": [iid]}, ExpiresIn=300, HttpMethod="GET")
        self.assertIn("X-Amz-Signature=", url)
        got = requests.get(url, timeout=30)
        self.assertEqual(got.status_code, 200, got.text)
        root = ET.fromstring(got.content)
        self.assertEqual(root.tag, NS + "DescribeInstancesResponse")
        self.assertEqual([e.text for e in root.iter(NS + "instanceId")], [iid])

        # Pointing it at another instance breaks the signature.
        parts = urlsplit(url)
        query = [(k, MADE_UP_INSTANCE if k == "InstanceId.1" else v) for k, v in parse_qsl(parts.query)]
        tampered = urlunsplit(parts._replace(query=urlencode(query)))
        got = requests.get(tampered, timeout=30)
        self.assertEqual(got.status_code, 403, got.text)
        self.assertEqual(xml_error(ET.fromstring(got.content))[0], "SignatureDoesNotMatch")

        # A presigned URL made 20 minutes ago for 60 seconds has expired.
        with shifted_clock(-20):
            old = self.ec2.generate_presigned_url(
                "describe_instances", Params={"InstanceIds": [iid]}, ExpiresIn=60, HttpMethod="GET")
        got = requests.get(old, timeout=30)
        self.assertEqual(got.status_code, 400, got.text)
        self.assertEqual(xml_error(ET.fromstring(got.content))[0], "RequestExpired")

    def test_nothing_is_done_for_a_caller_who_fails_authentication(self):
        token = "auth-" + uuid.uuid4().hex
        key = "auth-" + uuid.uuid4().hex[:8]
        before = sorted(ids_of(self.ec2.describe_instances()["Reservations"]))
        run = {"ImageId": self.image, "InstanceType": self.itype, "MinCount": 2, "MaxCount": 2,
               "ClientToken": token}
        failures = [
            ("MissingAuthenticationToken", 403, client(None, signature_version=UNSIGNED)),
            ("AuthFailure", 401, client(("AKIANOBODY0000000000", ALICE[1]))),
            ("SignatureDoesNotMatch", 403, client((ALICE[0], "not-alices-secret-0123456789abcdefgh"))),
        ]
        for code, status, c in failures:
            self.assertClientError(code, status, c.run_instances, **run)
            self.assertClientError(code, status, c.create_key_pair, KeyName=key)
        with shifted_clock(-20):
            self.assertClientError("RequestExpired", 400, self.ec2.run_instances, **run)
            self.assertClientError("RequestExpired", 400, self.ec2.create_key_pair, KeyName=key)
        self.assertEqual(sorted(ids_of(self.ec2.describe_instances()["Reservations"])), before)
        self.assertClientError("InvalidKeyPair.NotFound", 400, self.ec2.describe_key_pairs, KeyNames=[key])
        # The token was not used either: a launch with other parameters may take it.
        r = self.launch(count=1, ClientToken=token)
        self.assertEqual(len(r["Instances"]), 1)
        self.create_key(key)

    def test_an_unknown_action_is_invalid(self):
        status, root = raw({"Action": "LaunchTheRocket", "Version": "2016-11-15"})
        code, message, request_id = xml_error(root)
        self.assertEqual((status, code), (400, "InvalidAction"))
        self.assertIn("LaunchTheRocket", message)
        self.assertTrue(request_id)

    def test_a_signed_raw_request_is_served(self):
        # The raw helper itself, so that the failures above and below mean something.
        status, root = raw({"Action": "DescribeRegions", "Version": "2016-11-15"})
        self.assertEqual(status, 200, ET.tostring(root))
        self.assertEqual(root.tag, NS + "DescribeRegionsResponse")
        self.assertIn(REGION, [e.text for e in root.iter(NS + "regionName")])


class MalformedParameters(Ec2TestCase):
    def assertInvalidValue(self, params, names):
        status, root = raw({"Version": "2016-11-15", **params})
        code, message, _ = xml_error(root)
        self.assertEqual((status, code), (400, "InvalidParameterValue"), message)
        self.assertIn(names, message)

    def test_a_number_that_is_not_one(self):
        self.assertInvalidValue({"Action": "DescribeInstances", "MaxResults": "abc"}, "MaxResults")
        self.assertInvalidValue({"Action": "DescribeImages", "MaxResults": "1e3"}, "MaxResults")
        self.assertInvalidValue({"Action": "RunInstances", "ImageId": self.image, "MinCount": "one",
                                 "MaxCount": "1"}, "MinCount")

    def test_a_number_out_of_range(self):
        e = self.assertClientError("InvalidParameterValue", 400, self.ec2.describe_instances, MaxResults=3)
        self.assertIn("MaxResults", e.response["Error"]["Message"])
        e = self.assertClientError("InvalidParameterValue", 400, self.ec2.run_instances,
                                   ImageId=self.image, MinCount=0, MaxCount=0)
        self.assertIn("MinCount", e.response["Error"]["Message"])

    def test_a_boolean_that_is_not_one(self):
        self.assertInvalidValue(
            {"Action": "DescribeInstanceStatus", "IncludeAllInstances": "perhaps"}, "IncludeAllInstances")

    def test_a_malformed_id_or_token(self):
        self.assertClientError("InvalidInstanceID.Malformed", 400, self.ec2.describe_instances,
                               InstanceIds=["i-xyz"])
        self.assertClientError("InvalidPaginationToken", 400, self.ec2.describe_instances,
                               MaxResults=5, NextToken="not-a-token")
        self.assertClientError("MissingParameter", 400, self.ec2.stop_instances, InstanceIds=[])

    def test_a_filter_without_values(self):
        status, root = raw({"Action": "DescribeInstances", "Version": "2016-11-15",
                            "Filter.1.Name": "instance-state-name"})
        code, message, _ = xml_error(root)
        self.assertEqual((status, code), (400, "InvalidParameterValue"))
        self.assertIn("Filter.1.Value", message)


class TenantIsolation(Ec2TestCase):
    def assertSameAsMadeUp(self, call, theirs):
        """`call` for another tenant's instance answers exactly as for a made-up id."""
        def answer(iid):
            with self.assertRaises(ClientError) as cm:
                call(InstanceIds=[iid])
            r = cm.exception.response
            return (r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"],
                    r["Error"]["Message"].replace(iid, "<id>"))

        got = answer(theirs)
        self.assertEqual(got[:2], ("InvalidInstanceID.NotFound", 400), got)
        self.assertEqual(got, answer(MADE_UP_INSTANCE))

    def test_bob_cannot_see_or_touch_alices_instances(self):
        r = self.launch(tags={"Name": "alices", "owner": "alice"})
        theirs = r["Instances"][0]["InstanceId"]
        mine = self.launch(self.bob, tags={"Name": "bobs"})["Instances"][0]["InstanceId"]
        self.ec2.get_waiter("instance_running").wait(InstanceIds=[theirs], WaiterConfig=WAIT)

        his_view = ids_of(self.bob.describe_instances()["Reservations"])
        self.assertIn(mine, his_view)
        self.assertNotIn(theirs, his_view)
        self.assertNotIn(mine, ids_of(self.ec2.describe_instances()["Reservations"]))
        got = self.bob.describe_instances(Filters=[{"Name": "instance-id", "Values": [theirs]}])
        self.assertEqual(got["Reservations"], [])
        got = self.bob.describe_instances(Filters=[{"Name": "tag:owner", "Values": ["alice"]}])
        self.assertEqual(got["Reservations"], [])
        status = self.bob.describe_instance_status(IncludeAllInstances=True)["InstanceStatuses"]
        self.assertNotIn(theirs, [s["InstanceId"] for s in status])
        tags = self.bob.describe_tags()["Tags"]
        self.assertNotIn(theirs, [t["ResourceId"] for t in tags])
        self.assertEqual(self.bob.describe_tags(
            Filters=[{"Name": "resource-id", "Values": [theirs]}])["Tags"], [])

        self.assertSameAsMadeUp(self.bob.describe_instances, theirs)
        self.assertSameAsMadeUp(self.bob.describe_instance_status, theirs)
        self.assertSameAsMadeUp(self.bob.stop_instances, theirs)
        self.assertSameAsMadeUp(self.bob.start_instances, theirs)
        self.assertSameAsMadeUp(self.bob.reboot_instances, theirs)
        self.assertSameAsMadeUp(self.bob.terminate_instances, theirs)
        for call, extra in ((self.bob.create_tags, {"Tags": [{"Key": "owner", "Value": "bob"}]}),
                            (self.bob.delete_tags, {"Tags": [{"Key": "owner"}]})):
            answers = []
            for iid in (theirs, MADE_UP_INSTANCE):
                with self.assertRaises(ClientError) as cm:
                    call(Resources=[iid], **extra)
                e = cm.exception.response
                answers.append((e["Error"]["Code"], e["ResponseMetadata"]["HTTPStatusCode"],
                                e["Error"]["Message"].replace(iid, "<id>")))
            self.assertEqual(answers[0][:2], ("InvalidInstanceID.NotFound", 400))
            self.assertEqual(answers[0], answers[1])
        # A list with one of his and one of hers is refused whole: his is untouched.
        self.assertClientError("InvalidInstanceID.NotFound", 400, self.bob.stop_instances,
                               InstanceIds=[mine, theirs])

        # Alice's instance is as she left it.
        (inst,) = self.describe(InstanceIds=[theirs])
        self.assertEqual(inst["State"]["Name"], "running")
        self.assertEqual(tags_of(inst), {"Name": "alices", "owner": "alice"})
        self.assertNotEqual(self.state_of(mine, self.bob)[1], "stopping")

    def test_client_tokens_are_per_tenant(self):
        token = "shared-" + uuid.uuid4().hex
        hers = self.launch(ClientToken=token)
        his = self.launch(self.bob, ClientToken=token)
        self.assertNotEqual(his["ReservationId"], hers["ReservationId"])
        self.assertNotEqual(his["Instances"][0]["InstanceId"], hers["Instances"][0]["InstanceId"])
        self.assertEqual(ids_of(self.bob.describe_instances(
            InstanceIds=[his["Instances"][0]["InstanceId"]])["Reservations"]),
            [his["Instances"][0]["InstanceId"]])

    def test_key_pairs_are_per_tenant(self):
        name = "alices-" + uuid.uuid4().hex[:8]
        k = self.create_key(name)
        self.assertNotIn(name, [x["KeyName"] for x in self.bob.describe_key_pairs()["KeyPairs"]])
        made_up = "never-" + uuid.uuid4().hex[:8]

        def not_found(**kwargs):
            e = self.assertClientError("InvalidKeyPair.NotFound", 400, self.bob.describe_key_pairs, **kwargs)
            return e.response["Error"]["Message"]

        self.assertEqual(not_found(KeyNames=[name]).replace(name, "<k>"),
                         not_found(KeyNames=[made_up]).replace(made_up, "<k>"))
        self.assertClientError("InvalidKeyPair.NotFound", 400, self.bob.describe_key_pairs,
                               KeyPairIds=[k["KeyPairId"]])
        self.assertClientError("InvalidKeyPair.NotFound", 400, self.bob.run_instances,
                               ImageId=self.image, InstanceType=self.itype, MinCount=1, MaxCount=1,
                               KeyName=name)
        # Bob deleting it leaves it alone: by name it succeeds as for a key that is not
        # there (as EC2 does); by id it answers as a made-up id does.
        self.bob.delete_key_pair(KeyName=name)
        by_id = []
        for key_id in (k["KeyPairId"], "key-0123456789abcdef0"):
            e = self.assertClientError("InvalidKeyPair.NotFound", 400, self.bob.delete_key_pair,
                                       KeyPairId=key_id)
            by_id.append(e.response["Error"]["Message"].replace(key_id, "<id>"))
        self.assertEqual(by_id[0], by_id[1])
        (d,) = self.ec2.describe_key_pairs(KeyNames=[name])["KeyPairs"]
        self.assertEqual(d["KeyFingerprint"], k["KeyFingerprint"])

    def test_key_pair_names_are_per_tenant(self):
        # As in EC2 (names are per account): bob may have a key of the same name, and
        # learns nothing of alice's.
        name = "same-name-" + uuid.uuid4().hex[:8]
        hers = self.create_key(name)
        his = self.create_key(name, self.bob)
        self.assertNotEqual(his["KeyFingerprint"], hers["KeyFingerprint"])
        (d,) = self.ec2.describe_key_pairs(KeyNames=[name])["KeyPairs"]
        self.assertEqual(d["KeyFingerprint"], hers["KeyFingerprint"])
        (d,) = self.bob.describe_key_pairs(KeyNames=[name])["KeyPairs"]
        self.assertEqual(d["KeyFingerprint"], his["KeyFingerprint"])


class FamiliesTestCase(Ec2TestCase):
    """Volumes, snapshots, images, groups and addresses made by a test and removed
    after it (in reverse order)."""

    def zone(self):
        return self.ec2.describe_availability_zones()["AvailabilityZones"][0]["ZoneName"]

    def quietly(self, fn, **kwargs):
        try:
            fn(**kwargs)
        except ClientError:
            pass

    def create_volume(self, ec2=None, tags=None, **kwargs):
        ec2 = ec2 or self.ec2
        kwargs.setdefault("AvailabilityZone", self.zone())
        if "SnapshotId" not in kwargs:
            kwargs.setdefault("Size", 1)
        if tags:
            kwargs["TagSpecifications"] = [
                {"ResourceType": "volume", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
            ]
        v = ec2.create_volume(**kwargs)
        self.addCleanup(self.delete_volume_quietly, ec2, v["VolumeId"])
        return v

    def delete_volume_quietly(self, ec2, vid):
        try:
            ec2.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig={"Delay": 1, "MaxAttempts": 10})
        except (ClientError, WaiterError):
            pass
        self.quietly(ec2.delete_volume, VolumeId=vid)

    def running(self, ec2=None, **kwargs):
        ec2 = ec2 or self.ec2
        iid = self.launch(ec2, **kwargs)["Instances"][0]["InstanceId"]
        ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=WAIT)
        return iid

    def create_group(self, name=None, ec2=None, **kwargs):
        ec2 = ec2 or self.ec2
        name = name or "grp-" + uuid.uuid4().hex[:8]
        g = ec2.create_security_group(GroupName=name, Description=f"group {name}", **kwargs)
        self.addCleanup(self.delete_group_eventually, ec2, g["GroupId"])
        return g["GroupId"], name

    def delete_group_eventually(self, ec2, gid):
        # Instances terminated by earlier cleanups leave the group as they end.
        for _ in range(40):
            try:
                ec2.delete_security_group(GroupId=gid)
                return
            except ClientError as e:
                if e.response["Error"]["Code"] != "DependencyViolation":
                    return
                time.sleep(0.5)


class Volumes(FamiliesTestCase):
    def test_life_cycle_with_every_volume_waiter(self):
        zone = self.zone()
        v = self.create_volume(Size=2, VolumeType="gp3", tags={"Name": "data", "team": "blue"})
        vid = v["VolumeId"]
        self.assertRegex(vid, VOLUME_ID)
        self.assertEqual((v["State"], v["Size"], v["AvailabilityZone"]), ("creating", 2, zone))
        self.assertEqual(tags_of(v), {"Name": "data", "team": "blue"})
        self.assertIsInstance(v["CreateTime"], datetime.datetime)
        self.ec2.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=WAIT)

        iid = self.running(Placement={"AvailabilityZone": zone})
        att = self.ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
        self.assertEqual((att["VolumeId"], att["InstanceId"], att["Device"], att["State"]),
                         (vid, iid, "/dev/sdf", "attaching"))
        (seen,) = self.ec2.describe_volumes(VolumeIds=[vid])["Volumes"]
        self.assertEqual(seen["State"], "in-use")
        self.assertIn(seen["Attachments"][0]["State"], ("attaching", "attached"))
        self.ec2.get_waiter("volume_in_use").wait(VolumeIds=[vid], WaiterConfig=WAIT)
        for _ in range(50):
            (seen,) = self.ec2.describe_volumes(VolumeIds=[vid])["Volumes"]
            if seen["Attachments"][0]["State"] == "attached":
                break
            time.sleep(0.1)
        self.assertEqual(seen["Attachments"][0]["InstanceId"], iid)
        self.assertEqual(seen["Attachments"][0]["Device"], "/dev/sdf")
        (inst,) = self.describe(InstanceIds=[iid])
        mappings = {m["DeviceName"]: m["Ebs"] for m in inst["BlockDeviceMappings"]}
        self.assertEqual(mappings["/dev/sdf"]["VolumeId"], vid)
        self.assertEqual(mappings["/dev/sdf"]["Status"], "attached")
        self.assertIn(inst["RootDeviceName"], mappings)

        det = self.ec2.detach_volume(VolumeId=vid)
        self.assertEqual((det["State"], det["InstanceId"]), ("detaching", iid))
        self.ec2.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=WAIT)
        self.ec2.delete_volume(VolumeId=vid)
        self.ec2.get_waiter("volume_deleted").wait(VolumeIds=[vid], WaiterConfig=WAIT)
        self.assertClientError("InvalidVolume.NotFound", 400, self.ec2.describe_volumes, VolumeIds=[vid])

    def test_errors_are_ebs_errors(self):
        v = self.create_volume()
        vid = v["VolumeId"]
        self.assertClientError("InvalidVolume.NotFound", 400, self.ec2.describe_volumes, VolumeIds=[MADE_UP_VOLUME])
        self.assertClientError("InvalidVolume.Malformed", 400, self.ec2.describe_volumes, VolumeIds=["vol-nope"])
        self.assertClientError("InvalidParameterValue", 400, self.ec2.create_volume,
                               Size=1, AvailabilityZone=self.zone(), VolumeType="turbo")
        self.assertClientError("InvalidParameterValue", 400, self.ec2.create_volume,
                               Size=1, AvailabilityZone="nowhere-1z")
        self.assertClientError("UnknownParameter", 400, self.ec2.create_volume,
                               Size=1, AvailabilityZone=self.zone(), Iops=3000)
        self.assertClientError("UnsupportedOperation", 400, self.ec2.create_volume,
                               Size=1, AvailabilityZone=self.zone(), Encrypted=True)
        token = "vol-" + uuid.uuid4().hex
        first = self.create_volume(ClientToken=token, Size=3)
        self.assertEqual(self.ec2.create_volume(ClientToken=token, Size=3, AvailabilityZone=self.zone())["VolumeId"],
                         first["VolumeId"])
        self.assertClientError("IdempotentParameterMismatch", 400, self.ec2.create_volume,
                               ClientToken=token, Size=4, AvailabilityZone=self.zone())
        self.ec2.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=WAIT)
        self.assertClientError("IncorrectState", 400, self.ec2.detach_volume, VolumeId=vid)
        iid = self.running(Placement={"AvailabilityZone": self.zone()})
        self.ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdg")
        self.assertClientError("VolumeInUse", 400, self.ec2.attach_volume,
                               VolumeId=vid, InstanceId=iid, Device="/dev/sdh")
        self.assertClientError("VolumeInUse", 400, self.ec2.delete_volume, VolumeId=vid)
        self.assertClientError("InvalidAttachment.NotFound", 400, self.ec2.detach_volume,
                               VolumeId=vid, Device="/dev/sdz")
        self.ec2.get_waiter("volume_in_use").wait(VolumeIds=[vid], WaiterConfig=WAIT)
        for _ in range(50):
            (v,) = self.ec2.describe_volumes(VolumeIds=[vid])["Volumes"]
            if v["Attachments"][0]["State"] == "attached":
                break
            time.sleep(0.1)
        self.ec2.detach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdg", Force=True)

    def test_filters(self):
        batch = uuid.uuid4().hex[:10]
        a = self.create_volume(Size=1, tags={"batch": batch, "role": "a"})["VolumeId"]
        b = self.create_volume(Size=2, tags={"batch": batch, "role": "b"})["VolumeId"]

        def select(*filters):
            fs = [{"Name": "tag:batch", "Values": [batch]}] + [{"Name": n, "Values": v} for n, v in filters]
            return sorted(v["VolumeId"] for v in self.ec2.describe_volumes(Filters=fs)["Volumes"])

        self.assertEqual(select(), sorted([a, b]))
        self.assertEqual(select(("size", ["2"])), [b])
        self.assertEqual(select(("tag:role", ["a"])), [a])
        self.assertEqual(select(("tag-key", ["role"])), sorted([a, b]))
        self.assertEqual(select(("volume-id", [a])), [a])
        self.assertEqual(select(("availability-zone", [self.zone()])), sorted([a, b]))
        self.assertEqual(select(("volume-type", ["gp2"]), ("encrypted", ["false"])), sorted([a, b]))
        self.assertEqual(select(("status", ["deleted"])), [])
        self.assertEqual(select(("attachment.instance-id", [MADE_UP_INSTANCE])), [])
        self.assertClientError("InvalidParameterValue", 400, self.ec2.describe_volumes,
                               Filters=[{"Name": "fast-restored", "Values": ["true"]}])
        self.assertClientError("InvalidParameterValue", 400, self.ec2.describe_volumes,
                               Filters=[{"Name": "no-such-filter", "Values": ["x"]}])

    def test_paginators(self):
        batch = uuid.uuid4().hex[:10]
        made = sorted(self.create_volume(tags={"batch": batch})["VolumeId"] for _ in range(7))
        for config in ({"PageSize": 5}, {"PageSize": 5, "MaxItems": 6}):
            pages = list(self.ec2.get_paginator("describe_volumes").paginate(
                Filters=[{"Name": "tag:batch", "Values": [batch]}], PaginationConfig=config))
            got = [v["VolumeId"] for p in pages for v in p["Volumes"]]
            self.assertEqual(len(got), len(set(got)))
            if "MaxItems" in config:
                self.assertEqual(len(got), 6)
            else:
                self.assertEqual([len(p["Volumes"]) for p in pages], [5, 2])
                self.assertEqual(sorted(got), made)
        # Without filters: the service's own pages of the tenant's volumes.
        every = self.ec2.get_paginator("describe_volumes").paginate(
            PaginationConfig={"PageSize": 5}).build_full_result()["Volumes"]
        self.assertTrue(set(made) <= {v["VolumeId"] for v in every})
        self.ec2.get_waiter("volume_available").wait(VolumeIds=made[:1], WaiterConfig=WAIT)
        snaps = [self.ec2.create_snapshot(VolumeId=made[0], Description=f"page {n}")["SnapshotId"] for n in range(6)]
        for sid in snaps:
            self.addCleanup(self.quietly, self.ec2.delete_snapshot, SnapshotId=sid)
        pages = list(self.ec2.get_paginator("describe_snapshots").paginate(
            OwnerIds=["self"], Filters=[{"Name": "volume-id", "Values": [made[0]]}],
            PaginationConfig={"PageSize": 5}))
        self.assertEqual([len(p["Snapshots"]) for p in pages], [5, 1])
        self.assertEqual(sorted(s["SnapshotId"] for p in pages for s in p["Snapshots"]), sorted(snaps))


class Snapshots(FamiliesTestCase):
    def test_snapshot_and_a_volume_from_it(self):
        vid = self.create_volume(Size=3)["VolumeId"]
        self.ec2.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=WAIT)
        s = self.ec2.create_snapshot(
            VolumeId=vid, Description="nightly",
            TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": "Name", "Value": "n1"}]}])
        sid = s["SnapshotId"]
        self.addCleanup(self.quietly, self.ec2.delete_snapshot, SnapshotId=sid)
        self.assertRegex(sid, SNAPSHOT_ID)
        self.assertEqual((s["State"], s["VolumeId"], s["VolumeSize"], s["Description"]),
                         ("pending", vid, 3, "nightly"))
        self.assertRegex(s["OwnerId"], ACCOUNT_ID)
        self.assertTrue(s["Progress"].endswith("%"))
        self.assertEqual(tags_of(s), {"Name": "n1"})
        self.ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[sid], WaiterConfig=WAIT)
        (done,) = self.ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"]
        self.assertEqual((done["State"], done["Progress"]), ("completed", "100%"))
        mine = self.ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
        self.assertIn(sid, [x["SnapshotId"] for x in mine])
        by_account = self.ec2.describe_snapshots(OwnerIds=[s["OwnerId"]])["Snapshots"]
        self.assertIn(sid, [x["SnapshotId"] for x in by_account])
        self.assertEqual(self.ec2.describe_snapshots(OwnerIds=["amazon"])["Snapshots"], [])
        completed = self.ec2.describe_snapshots(Filters=[{"Name": "status", "Values": ["completed"]},
                                                         {"Name": "volume-id", "Values": [vid]}])["Snapshots"]
        self.assertEqual([x["SnapshotId"] for x in completed], [sid])

        copy = self.create_volume(SnapshotId=sid)
        self.assertEqual((copy["SnapshotId"], copy["Size"]), (sid, 3))
        self.assertClientError("InvalidSnapshot.NotFound", 400, self.ec2.describe_snapshots,
                               SnapshotIds=[MADE_UP_SNAPSHOT])
        self.assertClientError("InvalidSnapshot.NotFound", 400, self.ec2.create_volume,
                               SnapshotId=MADE_UP_SNAPSHOT, AvailabilityZone=self.zone())
        self.assertClientError("InvalidSnapshot.Malformed", 400, self.ec2.delete_snapshot, SnapshotId="snap-x")
        self.assertClientError("InvalidVolume.NotFound", 400, self.ec2.create_snapshot, VolumeId=MADE_UP_VOLUME)
        self.ec2.delete_snapshot(SnapshotId=sid)
        self.assertClientError("InvalidSnapshot.NotFound", 400, self.ec2.describe_snapshots, SnapshotIds=[sid])


class CapturedImages(FamiliesTestCase):
    def test_create_image_wait_launch_deregister(self):
        iid = self.running()
        name = "golden-" + uuid.uuid4().hex[:8]
        ami = self.ec2.create_image(InstanceId=iid, Name=name, Description="golden image", NoReboot=True)["ImageId"]
        self.addCleanup(self.quietly, self.ec2.deregister_image, ImageId=ami)
        self.assertRegex(ami, IMAGE_ID)
        (img,) = self.ec2.describe_images(ImageIds=[ami])["Images"]
        self.assertEqual((img["Public"], img["Name"], img["Description"]), (False, name, "golden image"))
        self.assertIn(img["State"], ("pending", "available"))
        owner = self.ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["OwnerId"]
        self.assertEqual(img["OwnerId"], owner)
        self.ec2.get_waiter("image_available").wait(ImageIds=[ami], WaiterConfig=WAIT)
        mine = [i["ImageId"] for i in self.ec2.describe_images(Owners=["self"])["Images"]]
        self.assertIn(ami, mine)
        self.assertFalse(set(mine) & {i["ImageId"] for i in self.images}, "the catalogue is not alice's")
        self.assertIn(ami, [i["ImageId"] for i in self.ec2.describe_images(Owners=[owner])["Images"]])
        public = self.ec2.describe_images(Filters=[{"Name": "is-public", "Values": ["true"]}])["Images"]
        self.assertNotIn(ami, [i["ImageId"] for i in public])
        self.assertEqual(sorted(i["ImageId"] for i in self.ec2.describe_images(ExecutableUsers=["all"])["Images"]),
                         sorted(i["ImageId"] for i in self.images))
        self.assertClientError("InvalidAMIName.Duplicate", 400, self.ec2.create_image, InstanceId=iid, Name=name)

        launched = self.launch(ImageId=ami)["Instances"][0]
        self.assertEqual(launched["ImageId"], ami)
        self.assertClientError("UnauthorizedOperation", 403, self.ec2.deregister_image, ImageId=self.image)
        self.assertEqual(self.ec2.deregister_image(ImageId=ami)["Return"], True)
        self.assertNotIn(ami, [i["ImageId"] for i in self.ec2.describe_images(Owners=["self"])["Images"]])


class SecurityGroups(FamiliesTestCase):
    def test_create_authorize_describe_revoke_delete(self):
        vpc = [v["VpcId"] for v in self.ec2.describe_vpcs()["Vpcs"] if v["IsDefault"]][0]
        gid, name = self.create_group(VpcId=vpc, TagSpecifications=[
            {"ResourceType": "security-group", "Tags": [{"Key": "team", "Value": "blue"}]}])
        self.assertRegex(gid, GROUP_ID)
        self.ec2.get_waiter("security_group_exists").wait(GroupIds=[gid], WaiterConfig={"Delay": 1, "MaxAttempts": 5})
        got = self.ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
            {"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
        ])
        self.assertTrue(got["Return"])
        rules = got["SecurityGroupRules"]
        self.assertEqual(len(rules), 2)
        for r in rules:
            self.assertRegex(r["SecurityGroupRuleId"], RULE_ID)
            self.assertEqual((r["GroupId"], r["IsEgress"]), (gid, False))
        # The legacy form, and AWS's refusal of a rule held already.
        self.ec2.authorize_security_group_ingress(GroupId=gid, IpProtocol="tcp", FromPort=80, ToPort=80,
                                                  CidrIp="0.0.0.0/0")
        e = self.assertClientError("InvalidPermission.Duplicate", 400, self.ec2.authorize_security_group_ingress,
                                   GroupId=gid, IpProtocol="tcp", FromPort=22, ToPort=22, CidrIp="0.0.0.0/0")
        self.assertIn("already exists", e.response["Error"]["Message"])
        self.assertClientError("InvalidParameterValue", 400, self.ec2.authorize_security_group_ingress,
                               GroupId=gid, IpProtocol="tcp", CidrIp="0.0.0.0/0")
        self.assertClientError("InvalidParameterValue", 400, self.ec2.authorize_security_group_ingress,
                               GroupId=gid, IpProtocol="gre", CidrIp="0.0.0.0/0")
        self.ec2.authorize_security_group_egress(GroupId=gid, IpPermissions=[
            {"IpProtocol": "17", "FromPort": 53, "ToPort": 53, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])

        (g,) = self.ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"]
        self.assertEqual((g["GroupName"], g["Description"], g["VpcId"]), (name, f"group {name}", vpc))
        self.assertRegex(g["OwnerId"], ACCOUNT_ID)
        self.assertEqual(tags_of(g), {"team": "blue"})
        ingress = {(p["IpProtocol"], p.get("FromPort"), p.get("ToPort")): [r["CidrIp"] for r in p["IpRanges"]]
                   for p in g["IpPermissions"]}
        self.assertEqual(ingress, {("tcp", 22, 22): ["0.0.0.0/0"], ("tcp", 80, 80): ["0.0.0.0/0"],
                                   ("icmp", -1, -1): ["10.0.0.0/8"]})
        egress = {(p["IpProtocol"], p.get("FromPort")) for p in g["IpPermissionsEgress"]}
        self.assertEqual(egress, {("-1", None), ("udp", 53)})
        by_name = self.ec2.describe_security_groups(GroupNames=[name])["SecurityGroups"]
        self.assertEqual([x["GroupId"] for x in by_name], [gid])
        for f, v in (("ip-permission.from-port", "80"), ("ip-permission.cidr", "10.0.0.0/8"),
                     ("egress.ip-permission.protocol", "udp"), ("tag:team", "blue"), ("group-name", name)):
            got = self.ec2.describe_security_groups(Filters=[{"Name": f, "Values": [v]}])["SecurityGroups"]
            self.assertEqual([x["GroupId"] for x in got], [gid], f)

        # Instances in it, by id and by name.
        iid = self.launch(SecurityGroupIds=[gid])["Instances"][0]["InstanceId"]
        other = self.launch(SecurityGroups=[name])["Instances"][0]["InstanceId"]
        for i in (iid, other):
            (inst,) = self.describe(InstanceIds=[i])
            self.assertEqual(inst["SecurityGroups"], [{"GroupId": gid, "GroupName": name}])
        got = self.describe(Filters=[{"Name": "instance.group-id", "Values": [gid]}])
        self.assertEqual(sorted(i["InstanceId"] for i in got), sorted([iid, other]))
        self.assertClientError("InvalidGroup.NotFound", 400, self.ec2.run_instances, ImageId=self.image,
                               InstanceType=self.itype, MinCount=1, MaxCount=1, SecurityGroupIds=[MADE_UP_GROUP])
        self.assertClientError("DependencyViolation", 400, self.ec2.delete_security_group, GroupId=gid)

        # Revoking: what it does not hold is not found; a rule id revokes its rule.
        self.assertClientError("InvalidPermission.NotFound", 400, self.ec2.revoke_security_group_ingress,
                               GroupId=gid, IpProtocol="tcp", FromPort=443, ToPort=443, CidrIp="0.0.0.0/0")
        some = self.ec2.revoke_security_group_ingress(GroupId=gid, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
            {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        ])
        self.assertTrue(some["Return"])
        self.assertEqual([(p["IpProtocol"], p["FromPort"]) for p in some["UnknownIpPermissions"]], [("tcp", 443)])
        self.ec2.revoke_security_group_ingress(GroupId=gid, SecurityGroupRuleIds=[rules[0]["SecurityGroupRuleId"]])
        (g,) = self.ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"]
        self.assertEqual([p["IpProtocol"] for p in g["IpPermissions"]], ["icmp"])

    def test_default_groups_group_peers_and_errors(self):
        default = self.ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]
        self.assertClientError("CannotDelete", 400, self.ec2.delete_security_group, GroupId=default["GroupId"])
        self.assertClientError("UnauthorizedOperation", 403, self.ec2.authorize_security_group_ingress,
                               GroupId=default["GroupId"], IpProtocol="tcp", FromPort=22, ToPort=22,
                               CidrIp="0.0.0.0/0")
        web, web_name = self.create_group()
        db, _ = self.create_group()
        self.assertClientError("InvalidGroup.Duplicate", 400, self.ec2.create_security_group,
                               GroupName=web_name, Description="again")
        self.assertClientError("MissingParameter", 400, self.ec2.create_security_group,
                               GroupName="no-description", Description="")
        self.ec2.authorize_security_group_ingress(GroupId=db, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "UserIdGroupPairs": [{"GroupId": web}]}])
        (g,) = self.ec2.describe_security_groups(GroupIds=[db])["SecurityGroups"]
        pairs = g["IpPermissions"][0]["UserIdGroupPairs"]
        self.assertEqual([p["GroupId"] for p in pairs], [web])
        self.assertRegex(pairs[0]["UserId"], ACCOUNT_ID)
        self.assertClientError("DependencyViolation", 400, self.ec2.delete_security_group, GroupId=web)
        self.ec2.revoke_security_group_ingress(GroupId=db, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "UserIdGroupPairs": [{"GroupId": web}]}])
        self.ec2.delete_security_group(GroupName=web_name)
        self.assertClientError("InvalidGroup.NotFound", 400, self.ec2.describe_security_groups, GroupIds=[web])
        self.assertClientError("InvalidGroup.NotFound", 400, self.ec2.describe_security_groups,
                               GroupIds=[MADE_UP_GROUP])
        self.assertClientError("InvalidGroupId.Malformed", 400, self.ec2.describe_security_groups,
                               GroupIds=["sg-zz"])
        self.assertClientError("InvalidGroup.NotFound", 400, self.ec2.describe_security_groups,
                               GroupNames=["no-such-group-" + uuid.uuid4().hex[:6]])

    def test_paginator(self):
        made = sorted(self.create_group()[0] for _ in range(6))
        pages = list(self.ec2.get_paginator("describe_security_groups").paginate(PaginationConfig={"PageSize": 5}))
        got = [g["GroupId"] for p in pages for g in p["SecurityGroups"]]
        self.assertEqual(len(got), len(set(got)))
        self.assertTrue(set(made) <= set(got))
        self.assertTrue(all(len(p["SecurityGroups"]) == 5 for p in pages[:-1]))


class ElasticIps(FamiliesTestCase):
    def test_allocate_associate_describe_release(self):
        a = self.ec2.allocate_address(Domain="vpc", TagSpecifications=[
            {"ResourceType": "elastic-ip", "Tags": [{"Key": "app", "Value": "web"}]}])
        alloc, ip = a["AllocationId"], a["PublicIp"]
        self.addCleanup(self.quietly, self.ec2.release_address, AllocationId=alloc)
        self.assertRegex(alloc, ALLOCATION_ID)
        self.assertEqual(a["Domain"], "vpc")
        iid = self.running()
        assoc = self.ec2.associate_address(AllocationId=alloc, InstanceId=iid)["AssociationId"]
        self.assertEqual(assoc, "eipassoc-" + alloc.split("-", 1)[1])
        (inst,) = self.describe(InstanceIds=[iid])
        self.assertEqual(inst["PublicIpAddress"], ip)
        (got,) = self.ec2.describe_addresses(AllocationIds=[alloc])["Addresses"]
        self.assertEqual((got["PublicIp"], got["InstanceId"], got["AssociationId"], got["Domain"]),
                         (ip, iid, assoc, "vpc"))
        self.assertEqual(got["PrivateIpAddress"], inst["PrivateIpAddress"])
        self.assertEqual(tags_of(got), {"app": "web"})
        for f, v in (("instance-id", iid), ("association-id", assoc), ("public-ip", ip),
                     ("allocation-id", alloc), ("domain", "vpc"), ("tag:app", "web"),
                     ("private-ip-address", inst["PrivateIpAddress"])):
            listed = self.ec2.describe_addresses(Filters=[{"Name": f, "Values": [v]}])["Addresses"]
            self.assertEqual([x["AllocationId"] for x in listed], [alloc], f)
        self.assertEqual(self.ec2.describe_addresses(PublicIps=[ip])["Addresses"][0]["AllocationId"], alloc)
        # DescribeAddresses has no pages in the EC2 API: botocore has no paginator.
        self.assertFalse(self.ec2.can_paginate("describe_addresses"))

        other = self.running()
        self.assertClientError("Resource.AlreadyAssociated", 400, self.ec2.associate_address,
                               AllocationId=alloc, InstanceId=other)
        self.ec2.associate_address(PublicIp=ip, InstanceId=other, AllowReassociation=True)
        self.assertClientError("InvalidIPAddress.InUse", 400, self.ec2.release_address, AllocationId=alloc)
        self.ec2.disassociate_address(PublicIp=ip)
        self.assertClientError("InvalidAssociationID.NotFound", 400, self.ec2.disassociate_address,
                               AssociationId=assoc)
        self.ec2.release_address(AllocationId=alloc)
        self.assertClientError("InvalidAllocationID.NotFound", 400, self.ec2.describe_addresses,
                               AllocationIds=[alloc])
        self.assertClientError("InvalidAddress.NotFound", 400, self.ec2.describe_addresses, PublicIps=[ip])
        self.assertClientError("InvalidAllocationID.Malformed", 400, self.ec2.release_address,
                               AllocationId="eipalloc-x")
        self.assertClientError("UnsupportedOperation", 400, self.ec2.allocate_address, Domain="standard")
        attrs = {a["AttributeName"]: a["AttributeValues"][0]["AttributeValue"]
                 for a in self.ec2.describe_account_attributes()["AccountAttributes"]}
        self.assertEqual(attrs["vpc-max-elastic-ips"], "5")


class FamiliesTenantIsolation(FamiliesTestCase):
    def assertSameAsMadeUp(self, call, key, theirs, made_up, code, **extra):
        """`call` naming another tenant's object answers exactly as for a made-up id."""
        answers = []
        for oid in (theirs, made_up):
            with self.assertRaises(ClientError) as cm:
                call(**{key: [oid] if key.endswith("s") else oid}, **extra)
            r = cm.exception.response
            answers.append((r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"],
                            r["Error"]["Message"].replace(oid, "<id>")))
        self.assertEqual(answers[0][:2], (code, 400), answers)
        self.assertEqual(answers[0], answers[1])

    def test_bob_sees_and_touches_none_of_alices(self):
        vid = self.create_volume()["VolumeId"]
        self.ec2.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=WAIT)
        sid = self.ec2.create_snapshot(VolumeId=vid)["SnapshotId"]
        self.addCleanup(self.quietly, self.ec2.delete_snapshot, SnapshotId=sid)
        gid, _ = self.create_group()
        alloc = self.ec2.allocate_address(Domain="vpc")["AllocationId"]
        self.addCleanup(self.quietly, self.ec2.release_address, AllocationId=alloc)
        iid = self.running()
        ami = self.ec2.create_image(InstanceId=iid, Name="iso-" + uuid.uuid4().hex[:8])["ImageId"]
        self.addCleanup(self.quietly, self.ec2.deregister_image, ImageId=ami)

        bob = self.bob
        self.assertNotIn(vid, [v["VolumeId"] for v in bob.describe_volumes()["Volumes"]])
        self.assertNotIn(sid, [s["SnapshotId"] for s in bob.describe_snapshots(OwnerIds=["self"])["Snapshots"]])
        self.assertNotIn(gid, [g["GroupId"] for g in bob.describe_security_groups()["SecurityGroups"]])
        self.assertNotIn(alloc, [a["AllocationId"] for a in bob.describe_addresses()["Addresses"]])
        self.assertNotIn(ami, [i["ImageId"] for i in bob.describe_images()["Images"]])
        self.assertSameAsMadeUp(bob.describe_volumes, "VolumeIds", vid, MADE_UP_VOLUME, "InvalidVolume.NotFound")
        self.assertSameAsMadeUp(bob.delete_volume, "VolumeId", vid, MADE_UP_VOLUME, "InvalidVolume.NotFound")
        self.assertSameAsMadeUp(bob.create_snapshot, "VolumeId", vid, MADE_UP_VOLUME, "InvalidVolume.NotFound")
        self.assertSameAsMadeUp(bob.describe_snapshots, "SnapshotIds", sid, MADE_UP_SNAPSHOT,
                                "InvalidSnapshot.NotFound")
        self.assertSameAsMadeUp(bob.delete_snapshot, "SnapshotId", sid, MADE_UP_SNAPSHOT, "InvalidSnapshot.NotFound")
        self.assertSameAsMadeUp(bob.describe_security_groups, "GroupIds", gid, MADE_UP_GROUP, "InvalidGroup.NotFound")
        self.assertSameAsMadeUp(bob.delete_security_group, "GroupId", gid, MADE_UP_GROUP, "InvalidGroup.NotFound")
        self.assertSameAsMadeUp(bob.release_address, "AllocationId", alloc, MADE_UP_ALLOCATION,
                                "InvalidAllocationID.NotFound")
        self.assertSameAsMadeUp(bob.describe_images, "ImageIds", ami, MADE_UP_IMAGE, "InvalidAMIID.NotFound")
        self.assertSameAsMadeUp(bob.deregister_image, "ImageId", ami, MADE_UP_IMAGE, "InvalidAMIID.NotFound")
        his = self.running(bob)
        self.assertSameAsMadeUp(bob.attach_volume, "VolumeId", vid, MADE_UP_VOLUME, "InvalidVolume.NotFound",
                                InstanceId=his, Device="/dev/sdf")
        self.assertSameAsMadeUp(bob.associate_address, "AllocationId", alloc, MADE_UP_ALLOCATION,
                                "InvalidAllocationID.NotFound", InstanceId=his)
        # Nor may alice use bob's instance.
        self.assertClientError("InvalidInstanceID.NotFound", 400, self.ec2.attach_volume,
                               VolumeId=vid, InstanceId=his, Device="/dev/sdf")
        # Alice's are as she left them.
        (v,) = self.ec2.describe_volumes(VolumeIds=[vid])["Volumes"]
        self.assertEqual(v["Attachments"], [])


if __name__ == "__main__":
    unittest.main()
