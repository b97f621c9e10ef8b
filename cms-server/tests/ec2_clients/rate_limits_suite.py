"""The cms EC2 frontend's per-tenant rate limits, as boto3 sees them.

Run by ``cms-server/tests/ec2_clients.rs`` against a server where alice's writes are
limited to 1 per second in bursts of 2 (her own ``[tenants.rate_limits]``) and bob
has no limit. What is checked is what a boto3 user gets: the error code AWS uses for
throttling (``RequestLimitExceeded``, HTTP 503), which botocore's retry modes treat as
throttling and retry with backoff until the call goes through; reads counted apart
from writes; one tenant's requests not counted against another.
"""

import os
import unittest

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["CMS_EC2_ENDPOINT"]
REGION = os.environ.get("CMS_EC2_REGION", "local")
ALICE = (os.environ["CMS_ALICE_ID"], os.environ["CMS_ALICE_SECRET"])
BOB = (os.environ["CMS_BOB_ID"], os.environ["CMS_BOB_SECRET"])

_SESSION = boto3.session.Session()


def client(keys, retries):
    return _SESSION.client(
        "ec2",
        endpoint_url=ENDPOINT,
        region_name=REGION,
        aws_access_key_id=keys[0],
        aws_secret_access_key=keys[1],
        config=Config(retries=retries),
    )


def image_and_type(ec2):
    image = ec2.describe_images()["Images"][0]["ImageId"]
    kind = ec2.describe_instance_types()["InstanceTypes"][0]["InstanceType"]
    return image, kind


class RateLimits(unittest.TestCase):
    def test_throttled_writes_say_request_limit_exceeded_and_boto3_retries_them(self):
        once = client(ALICE, {"total_max_attempts": 1})
        image, kind = image_and_type(once)
        made = []

        def run(ec2):
            r = ec2.run_instances(ImageId=image, InstanceType=kind, MinCount=1, MaxCount=1)
            made.append(r["Instances"][0]["InstanceId"])
            return r

        try:
            # The burst, then a refusal: nothing is made by the refused call.
            codes = []
            for _ in range(4):
                try:
                    run(once)
                    codes.append("ok")
                except ClientError as e:
                    codes.append(e.response["Error"]["Code"])
                    self.assertEqual(e.response["ResponseMetadata"]["HTTPStatusCode"], 503)
                    self.assertIn("rate limit for write requests", e.response["Error"]["Message"])
            self.assertEqual(codes[:2], ["ok", "ok"])
            self.assertIn("RequestLimitExceeded", codes)
            live = once.describe_instances(InstanceIds=made)["Reservations"]
            self.assertEqual(sum(len(r["Instances"]) for r in live), len(made))

            # Reads are counted apart: still served while writes are refused.
            once.describe_instances()

            # botocore's standard retry mode backs off and gets through.
            patient = client(ALICE, {"mode": "standard", "total_max_attempts": 10})
            # (The bucket is empty now, so the first of them is throttled; a later
            # one may find a token after boto3's backoff and need no retry.)
            retried = [run(patient)["ResponseMetadata"]["RetryAttempts"] for _ in range(3)]
            self.assertGreater(max(retried), 0, "boto3 should have been throttled and retried")

            # Another tenant is not limited by alice's requests.
            bob = client(BOB, {"total_max_attempts": 1})
            bobs = []
            for _ in range(5):
                r = bob.run_instances(ImageId=image, InstanceType=kind, MinCount=1, MaxCount=1)
                bobs.append(r["Instances"][0]["InstanceId"])
            bob.terminate_instances(InstanceIds=bobs)
        finally:
            if made:
                client(ALICE, {"mode": "standard", "total_max_attempts": 10}).terminate_instances(
                    InstanceIds=made
                )


if __name__ == "__main__":
    unittest.main()
