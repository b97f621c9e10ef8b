"""EC2's answer to every state-changing action in every instance state, with boto3.

Run by ``cms-server/tests/ec2_clients.rs`` against a fresh ``cms-server`` whose
memory provider ``slow`` (alice only) takes 4 s for every transition, so that an
instance can be acted on while it is ``pending``, ``stopping`` or ``shutting-down``.
Standalone::

    CMS_EC2_ENDPOINT=http://127.0.0.1:PORT/ec2 CMS_EC2_SLOW_REGION=slow \\
    CMS_ALICE_ID=... CMS_ALICE_SECRET=... .venv/bin/python state_table_suite.py -v

For each state, four instances are brought to it and StartInstances,
StopInstances, RebootInstances and TerminateInstances are sent at once, one to each
instance, in parallel (a transient state lasts 4 s). The answers must be AWS's:

============= ===================== ===================== ============= ===================
state         Start                 Stop                  Reboot        Terminate
============= ===================== ===================== ============= ===================
pending       no-op pending         error (never running) success       -> shutting-down
running       no-op running         -> stopping           success       -> shutting-down
stopping      error (started)       no-op stopping        error         -> shutting-down
stopped       -> pending            no-op stopped         error         -> shutting-down
shutting-down error (started)       error (stopped)       success       no-op shutting-down
terminated    error (started)       error (stopped)       success       no-op terminated
============= ===================== ===================== ============= ===================

Errors are HTTP 400 ``IncorrectInstanceState`` naming the instance (the wording is
not checked). A stopped instance that is terminated may answer ``terminated`` at
once instead of ``shutting-down``, as EC2 sometimes does.
"""

import os
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["CMS_EC2_ENDPOINT"]
SLOW_REGION = os.environ.get("CMS_EC2_SLOW_REGION", "slow")
ALICE = (os.environ["CMS_ALICE_ID"], os.environ["CMS_ALICE_SECRET"])

WAIT = {"Delay": 1, "MaxAttempts": 30}
CODES = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}
ACTIONS = ("start", "stop", "reboot", "terminate")


def change(previous, *current):
    """A state change answer: previous state, and the current state (or one of them)."""
    return ("change", previous, current)


ERROR = ("error",)
SUCCESS = ("success",)

TABLE = {
    "pending": {"start": change("pending", "pending"), "stop": ERROR, "reboot": SUCCESS,
                "terminate": change("pending", "shutting-down")},
    "running": {"start": change("running", "running"), "stop": change("running", "stopping"),
                "reboot": SUCCESS, "terminate": change("running", "shutting-down")},
    "stopping": {"start": ERROR, "stop": change("stopping", "stopping"), "reboot": ERROR,
                 "terminate": change("stopping", "shutting-down")},
    "stopped": {"start": change("stopped", "pending"), "stop": change("stopped", "stopped"),
                "reboot": ERROR, "terminate": change("stopped", "shutting-down", "terminated")},
    "shutting-down": {"start": ERROR, "stop": ERROR, "reboot": SUCCESS,
                      "terminate": change("shutting-down", "shutting-down")},
    "terminated": {"start": ERROR, "stop": ERROR, "reboot": SUCCESS,
                   "terminate": change("terminated", "terminated")},
}


class StateTable(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        # Several threads share the client: as many connections as requests in flight.
        cls.ec2 = boto3.session.Session().client(
            "ec2", endpoint_url=ENDPOINT, region_name=SLOW_REGION,
            aws_access_key_id=ALICE[0], aws_secret_access_key=ALICE[1],
            config=Config(max_pool_connections=16, retries={"max_attempts": 1}),
        )
        cls.image = sorted(cls.ec2.describe_images()["Images"], key=lambda i: i["Name"])[0]["ImageId"]
        cls.itype = sorted(t["InstanceType"] for t in cls.ec2.describe_instance_types()["InstanceTypes"])[0]
        cls.pool = ThreadPoolExecutor(max_workers=8)
        cls.addClassCleanup(cls.pool.shutdown)

    def launch(self):
        r = self.ec2.run_instances(ImageId=self.image, InstanceType=self.itype, MinCount=4, MaxCount=4)
        ids = [i["InstanceId"] for i in r["Instances"]]
        self.addCleanup(self.terminate_quietly, ids)
        return ids

    def terminate_quietly(self, ids):
        try:
            self.ec2.terminate_instances(InstanceIds=ids)
        except ClientError:
            pass

    def wait(self, waiter, ids):
        self.ec2.get_waiter(waiter).wait(InstanceIds=ids, WaiterConfig=WAIT)

    def states(self, ids):
        r = self.ec2.describe_instances(InstanceIds=ids)["Reservations"]
        got = {i["InstanceId"]: i["State"]["Name"] for res in r for i in res["Instances"]}
        return [got.get(i) for i in ids]

    def act(self, action, iid):
        """Sends `action` for `iid`: ("ok", answer) or ("error", ClientError)."""
        call = {
            "start": self.ec2.start_instances,
            "stop": self.ec2.stop_instances,
            "reboot": self.ec2.reboot_instances,
            "terminate": self.ec2.terminate_instances,
        }[action]
        try:
            return "ok", call(InstanceIds=[iid])
        except ClientError as e:
            return "error", e

    def check_table_row(self, state, ids):
        """Confirms the four instances are in `state`, sends the four actions at once,
        and checks each answer against the table."""
        self.assertEqual(self.states(ids), [state] * 4, f"setup: four instances {state}")
        futures = {a: self.pool.submit(self.act, a, iid) for a, iid in zip(ACTIONS, ids)}
        answers = {a: f.result() for a, f in futures.items()}
        for (action, (kind, answer)), iid in zip(answers.items(), ids):
            expected = TABLE[state][action]
            with self.subTest(state=state, action=action):
                if expected[0] == "error":
                    self.assertEqual(kind, "error", f"{action} of a {state} instance must fail: {answer}")
                    r = answer.response
                    self.assertEqual(r["Error"]["Code"], "IncorrectInstanceState", r)
                    self.assertEqual(r["ResponseMetadata"]["HTTPStatusCode"], 400, r)
                    self.assertIn(iid, r["Error"]["Message"])
                    continue
                self.assertEqual(kind, "ok", f"{action} of a {state} instance must succeed: {answer}")
                self.assertEqual(answer["ResponseMetadata"]["HTTPStatusCode"], 200)
                if expected[0] == "success":
                    continue
                key = {"start": "StartingInstances", "stop": "StoppingInstances",
                       "terminate": "TerminatingInstances"}[action]
                (got,) = answer[key]
                self.assertEqual(got["InstanceId"], iid)
                _, previous, current = expected
                self.assertEqual(got["PreviousState"], {"Code": CODES[previous], "Name": previous}, got)
                self.assertIn(got["CurrentState"]["Name"], current, got)
                self.assertEqual(got["CurrentState"]["Code"], CODES[got["CurrentState"]["Name"]], got)
        return answers

    def test_pending(self):
        ids = self.launch()
        self.check_table_row("pending", ids)

    def test_running(self):
        ids = self.launch()
        self.wait("instance_running", ids)
        self.check_table_row("running", ids)
        # A reboot leaves it running (EC2 has no rebooting state).
        self.assertEqual(self.states([ids[2]]), ["running"])

    def test_stopping(self):
        ids = self.launch()
        self.wait("instance_running", ids)
        self.ec2.stop_instances(InstanceIds=ids)
        self.check_table_row("stopping", ids)

    def test_stopped(self):
        ids = self.launch()
        self.wait("instance_running", ids)
        self.ec2.stop_instances(InstanceIds=ids)
        self.wait("instance_stopped", ids)
        self.check_table_row("stopped", ids)

    def test_shutting_down(self):
        ids = self.launch()
        self.wait("instance_running", ids)
        self.ec2.terminate_instances(InstanceIds=ids)
        self.check_table_row("shutting-down", ids)

    def test_terminated(self):
        ids = self.launch()
        self.wait("instance_running", ids)
        self.ec2.terminate_instances(InstanceIds=ids)
        self.wait("instance_terminated", ids)
        self.check_table_row("terminated", ids)


if __name__ == "__main__":
    started = time.time()
    try:
        unittest.main()
    finally:
        print(f"state table: {time.time() - started:.1f} s")
