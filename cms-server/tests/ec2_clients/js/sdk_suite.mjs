// The cms EC2 frontend driven by the AWS SDK for JavaScript v3 (@aws-sdk/client-ec2,
// pinned in package.json / package-lock.json, installed by scripts/node-env).
//
// Run by cms-server/tests/ec2_clients.rs against a fresh cms-server with memory
// providers `local`, `other` and `slow` (slow transitions; alice only) and two tenants.
// Standalone (after scripts/node-env):
//
//   CMS_EC2_ENDPOINT=http://127.0.0.1:PORT/ec2 CMS_EC2_REGION=local \
//   CMS_EC2_SLOW_REGION=slow CMS_ALICE_ID=... CMS_ALICE_SECRET=... \
//   CMS_BOB_ID=... CMS_BOB_SECRET=... AWS_EC2_METADATA_DISABLED=true \
//   AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true \
//   node --test-reporter=spec cms-server/tests/ec2_clients/js/sdk_suite.mjs
//
// The client is configured as a user would for an EC2-compatible endpoint: static
// credentials, the region (the cms provider), the endpoint, one attempt (errors are
// seen as they are, not retried), defaultsMode "standard", no FIPS or dual-stack.
// What is checked is what an SDK user sees: the parsed shapes, error names and HTTP
// statuses, what the SDK's own waiters and paginators make of the answers. Expected
// fingerprints are computed here with node's crypto by AWS's rules. Whatever a test
// launches is terminated at the end, whatever it makes is deleted.

import assert from "node:assert/strict";
import crypto from "node:crypto";
import { after, before, describe, test } from "node:test";

import {
  AttachVolumeCommand,
  CreateKeyPairCommand,
  CreateSnapshotCommand,
  CreateVolumeCommand,
  DeleteSnapshotCommand,
  DeleteVolumeCommand,
  DescribeAvailabilityZonesCommand,
  DescribeSnapshotsCommand,
  DescribeVolumesCommand,
  DetachVolumeCommand,
  CreateTagsCommand,
  DeleteKeyPairCommand,
  DeleteTagsCommand,
  DescribeImagesCommand,
  DescribeInstanceTypesCommand,
  DescribeInstancesCommand,
  DescribeKeyPairsCommand,
  DescribeTagsCommand,
  EC2Client,
  ImportKeyPairCommand,
  RebootInstancesCommand,
  RunInstancesCommand,
  StartInstancesCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
  paginateDescribeInstances,
  paginateDescribeVolumes,
  waitUntilInstanceExists,
  waitUntilInstanceRunning,
  waitUntilInstanceStatusOk,
  waitUntilInstanceStopped,
  waitUntilInstanceTerminated,
  waitUntilSnapshotCompleted,
  waitUntilSystemStatusOk,
  waitUntilVolumeAvailable,
  waitUntilVolumeDeleted,
  waitUntilVolumeInUse,
} from "@aws-sdk/client-ec2";

const need = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`set ${name}`);
  return v;
};

const ENDPOINT = need("CMS_EC2_ENDPOINT");
const REGION = process.env.CMS_EC2_REGION || "local";
const SLOW_REGION = process.env.CMS_EC2_SLOW_REGION || "slow";
const ALICE = { accessKeyId: need("CMS_ALICE_ID"), secretAccessKey: need("CMS_ALICE_SECRET") };
const BOB = { accessKeyId: need("CMS_BOB_ID"), secretAccessKey: need("CMS_BOB_SECRET") };

const INSTANCE_ID = /^i-[0-9a-f]{17}$/;
const RESERVATION_ID = /^r-[0-9a-f]{17}$/;
const IMAGE_ID = /^ami-[0-9a-f]{17}$/;
const KEY_PAIR_ID = /^key-[0-9a-f]{17}$/;
const ACCOUNT_ID = /^[0-9]{12}$/;

const PENDING = { Code: 0, Name: "pending" };
const RUNNING = { Code: 16, Name: "running" };
const SHUTTING_DOWN = { Code: 32, Name: "shutting-down" };
const TERMINATED = { Code: 48, Name: "terminated" };
const STOPPING = { Code: 64, Name: "stopping" };
const STOPPED = { Code: 80, Name: "stopped" };

function ec2(credentials, region = REGION) {
  return new EC2Client({
    endpoint: ENDPOINT,
    region,
    credentials,
    maxAttempts: 1,
    defaultsMode: "standard",
    useFipsEndpoint: false,
    useDualstackEndpoint: false,
  });
}

const alice = ec2(ALICE);
const bob = ec2(BOB);
const slow = ec2(ALICE, SLOW_REGION);

/** Waiter options: short delays (memory transitions take 300 ms; `slow`'s 4 s). */
const waiting = (client) => ({ client, minDelay: 0.2, maxDelay: 1, maxWaitTime: 30 });

const unique = (prefix) => `${prefix}-${crypto.randomBytes(4).toString("hex")}`;

// ---- what the tests made, removed at the end -----------------------------------------

const launched = new Map(); // instance id -> client
const keyNames = new Map(); // key name -> client
const volumes = new Map(); // volume id -> client
const snapshots = new Map(); // snapshot id -> client
const imageTags = []; // [client, image id, key]

after(async () => {
  const byClient = new Map();
  for (const [id, client] of launched) {
    if (!byClient.has(client)) byClient.set(client, []);
    byClient.get(client).push(id);
  }
  for (const [client, ids] of byClient) {
    await client.send(new TerminateInstancesCommand({ InstanceIds: ids })).catch(() => {});
  }
  for (const [id, client] of snapshots) {
    await client.send(new DeleteSnapshotCommand({ SnapshotId: id })).catch(() => {});
  }
  for (const [id, client] of volumes) {
    await client.send(new DetachVolumeCommand({ VolumeId: id })).catch(() => {});
    await waitUntilVolumeAvailable(waiting(client), { VolumeIds: [id] }).catch(() => {});
    await client.send(new DeleteVolumeCommand({ VolumeId: id })).catch(() => {});
  }
  for (const [name, client] of keyNames) {
    await client.send(new DeleteKeyPairCommand({ KeyName: name })).catch(() => {});
  }
  for (const [client, id, key] of imageTags) {
    await client.send(new DeleteTagsCommand({ Resources: [id], Tags: [{ Key: key }] })).catch(() => {});
  }
});

// ---- helpers -------------------------------------------------------------------------

let catalogue;

before(async () => {
  const images = (await alice.send(new DescribeImagesCommand({}))).Images;
  images.sort((a, b) => a.Name.localeCompare(b.Name));
  const types = (await alice.send(new DescribeInstanceTypesCommand({}))).InstanceTypes;
  catalogue = { images, image: images[0].ImageId, itype: types.map((t) => t.InstanceType).sort()[0] };
});

// Image ids are per region (provider), as in EC2: another provider's image of the
// same name, for clients of other regions.
const imageIds = new Map();

async function imageFor(client) {
  if (client === alice || client === bob) return catalogue.image;
  if (!imageIds.has(client)) {
    const images = (await client.send(new DescribeImagesCommand({}))).Images;
    const same = images.find((i) => i.Name === catalogue.images[0].Name) ?? images[0];
    imageIds.set(client, same.ImageId);
  }
  return imageIds.get(client);
}

async function run(params = {}, client = alice) {
  const out = await client.send(new RunInstancesCommand({
    ImageId: await imageFor(client),
    InstanceType: catalogue.itype,
    MinCount: 1,
    MaxCount: 1,
    ...params,
  }));
  for (const i of out.Instances) launched.set(i.InstanceId, client);
  return out;
}

async function runOne(params = {}, client = alice) {
  return (await run(params, client)).Instances[0].InstanceId;
}

async function running(id, client = alice) {
  const r = await waitUntilInstanceRunning(waiting(client), { InstanceIds: [id] });
  assert.equal(r.state, "SUCCESS");
}

const instancesOf = (out) => out.Reservations.flatMap((r) => r.Instances);

async function describeOne(id, client = alice) {
  const got = instancesOf(await client.send(new DescribeInstancesCommand({ InstanceIds: [id] })));
  assert.deepEqual(got.map((i) => i.InstanceId), [id]);
  return got[0];
}

/** The one InstanceStateChange of a Start/Stop/Terminate answer, checked for `id`. */
function change(list, id) {
  assert.equal(list.length, 1, JSON.stringify(list));
  assert.equal(list[0].InstanceId, id);
  return { previous: list[0].PreviousState, current: list[0].CurrentState };
}

/** Asserts `promise` fails with EC2 error `code` and HTTP `status`; answers the error. */
async function rejectsWith(promise, code, status = 400) {
  let error;
  await assert.rejects(promise, (e) => {
    error = e;
    return true;
  });
  assert.equal(error.name, code, `${error.name}: ${error.message}`);
  assert.equal(error.$metadata?.httpStatusCode, status, `${error.name}: ${error.message}`);
  assert.ok(error.message, "an error message");
  return error;
}

const tagMap = (tags = []) => Object.fromEntries(tags.map((t) => [t.Key, t.Value]));

// ---- keys and fingerprints, by AWS's rules ---------------------------------------------

const colonHex = (buf) => [...buf].map((b) => b.toString(16).padStart(2, "0")).join(":");
const b64 = (buf) => Buffer.from(buf).toString("base64");

function sshString(buf) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(buf.length);
  return Buffer.concat([len, Buffer.from(buf)]);
}

function bigFromB64url(s) {
  return BigInt("0x" + (Buffer.from(s, "base64url").toString("hex") || "0"));
}

function b64urlFromBig(n) {
  let hex = n.toString(16);
  if (hex.length % 2) hex = "0" + hex;
  return Buffer.from(hex, "hex").toString("base64url");
}

function mpint(b64url) {
  let bytes = Buffer.from(b64url, "base64url");
  if (bytes[0] & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return sshString(bytes);
}

/** The SSH wire blob of a node KeyObject (public or private) of type rsa or ed25519. */
function sshBlob(key) {
  const pub = key.type === "private" ? crypto.createPublicKey(key) : key;
  if (pub.asymmetricKeyType === "ed25519") {
    const raw = pub.export({ format: "der", type: "spki" }).subarray(-32);
    return Buffer.concat([sshString("ssh-ed25519"), sshString(raw)]);
  }
  const { n, e } = pub.export({ format: "jwk" });
  return Buffer.concat([sshString("ssh-rsa"), mpint(e), mpint(n)]);
}

const opensshLine = (key, comment) =>
  `${key.asymmetricKeyType === "ed25519" ? "ssh-ed25519" : "ssh-rsa"} ${b64(sshBlob(key))}${comment ? " " + comment : ""}`;

/** EC2: a created RSA key: SHA-1 of the DER PKCS#8 private key, colon hex. */
const createdRsaFingerprint = (privateKey) =>
  colonHex(crypto.createHash("sha1").update(privateKey.export({ format: "der", type: "pkcs8" })).digest());

/** EC2: an imported RSA key: MD5 of the DER SubjectPublicKeyInfo, colon hex. */
const importedRsaFingerprint = (publicKey) =>
  colonHex(crypto.createHash("md5").update(publicKey.export({ format: "der", type: "spki" })).digest());

/** EC2: an ed25519 key: base64 SHA-256 of the SSH public blob, `=` padding kept. */
const ed25519Fingerprint = (blob) => b64(crypto.createHash("sha256").update(blob).digest());

class Reader {
  constructor(buf) {
    this.buf = buf;
    this.at = 0;
  }
  u32() {
    const v = this.buf.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }
  string() {
    const n = this.u32();
    const v = this.buf.subarray(this.at, this.at + n);
    assert.equal(v.length, n, "truncated SSH string");
    this.at += n;
    return v;
  }
  mpint() {
    return BigInt("0x" + (this.string().toString("hex") || "0"));
  }
}

/** The public blob of an unencrypted `-----BEGIN OPENSSH PRIVATE KEY-----` text. */
function opensshPrivateKeyPublicBlob(pem) {
  const lines = pem.trim().split("\n");
  assert.equal(lines[0], "-----BEGIN OPENSSH PRIVATE KEY-----");
  assert.equal(lines.at(-1), "-----END OPENSSH PRIVATE KEY-----");
  const raw = Buffer.from(lines.slice(1, -1).join(""), "base64");
  const magic = Buffer.from("openssh-key-v1\0");
  assert.ok(raw.subarray(0, magic.length).equals(magic), "openssh-key-v1 magic");
  const r = new Reader(raw.subarray(magic.length));
  assert.equal(r.string().toString(), "none", "cipher");
  assert.equal(r.string().toString(), "none", "kdf");
  r.string();
  assert.equal(r.u32(), 1, "one key");
  return r.string();
}

/**
 * Parses an unencrypted PuTTY key file (PPK 2 or 3) and checks its MAC as PuTTY
 * would; answers { algorithm, publicBlob, privateBlob }.
 */
function parsePpk(text) {
  const lines = text.replace(/\r\n/g, "\n").trim().split("\n");
  const header = /^PuTTY-User-Key-File-([23]): (\S+)$/.exec(lines[0]);
  assert.ok(header, `a PuTTY key file header: ${lines[0]}`);
  const version = header[1];
  const fields = {};
  let i = 1;
  const blob = (name) => {
    const m = new RegExp(`^${name}: (\\d+)$`).exec(lines[i]);
    assert.ok(m, `${name} at line ${i + 1}: ${lines[i]}`);
    const n = Number(m[1]);
    const value = Buffer.from(lines.slice(i + 1, i + 1 + n).join(""), "base64");
    i += 1 + n;
    return value;
  };
  const field = (name) => {
    const m = new RegExp(`^${name}: (.*)$`).exec(lines[i]);
    assert.ok(m, `${name} at line ${i + 1}: ${lines[i]}`);
    i += 1;
    return m[1];
  };
  fields.encryption = field("Encryption");
  assert.equal(fields.encryption, "none");
  fields.comment = field("Comment");
  const publicBlob = blob("Public-Lines");
  const privateBlob = blob("Private-Lines");
  const mac = field("Private-MAC");
  const macData = Buffer.concat([
    sshString(header[2]), sshString(fields.encryption), sshString(fields.comment),
    sshString(publicBlob), sshString(privateBlob),
  ]);
  const expected = version === "3"
    ? crypto.createHmac("sha256", Buffer.alloc(0)).update(macData).digest("hex")
    : crypto.createHmac("sha1", crypto.createHash("sha1").update("putty-private-key-file-mac-key").digest())
      .update(macData).digest("hex");
  assert.equal(mac, expected, "Private-MAC as PuTTY computes it");
  assert.equal(new Reader(publicBlob).string().toString(), header[2], "the public blob's algorithm");
  return { algorithm: header[2], publicBlob, privateBlob };
}

/** The node private KeyObject of an RSA PPK (its public and private blobs). */
function ppkRsaPrivateKey({ publicBlob, privateBlob }) {
  const pub = new Reader(publicBlob);
  pub.string();
  const e = pub.mpint();
  const n = pub.mpint();
  const priv = new Reader(privateBlob);
  const d = priv.mpint();
  const p = priv.mpint();
  const q = priv.mpint();
  const qi = priv.mpint();
  const jwk = {
    kty: "RSA",
    n: b64urlFromBig(n), e: b64urlFromBig(e), d: b64urlFromBig(d),
    p: b64urlFromBig(p), q: b64urlFromBig(q),
    dp: b64urlFromBig(d % (p - 1n)), dq: b64urlFromBig(d % (q - 1n)), qi: b64urlFromBig(qi),
  };
  return crypto.createPrivateKey({ key: jwk, format: "jwk" });
}

// Keep the helpers honest: a key made here gives the fingerprints AWS documents.
test("fingerprint helpers agree with node's own key handling", () => {
  const { privateKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
  const jwk = privateKey.export({ format: "jwk" });
  assert.equal(bigFromB64url(jwk.n) > 0n, true);
  const blob = sshBlob(privateKey);
  const r = new Reader(blob);
  assert.equal(r.string().toString(), "ssh-rsa");
  assert.equal(b64urlFromBig(r.mpint()), jwk.e);
  assert.equal(b64urlFromBig(r.mpint()), jwk.n);
  assert.match(createdRsaFingerprint(privateKey), /^([0-9a-f]{2}:){19}[0-9a-f]{2}$/);
  assert.match(importedRsaFingerprint(crypto.createPublicKey(privateKey)), /^([0-9a-f]{2}:){15}[0-9a-f]{2}$/);
  const ed = crypto.generateKeyPairSync("ed25519").publicKey;
  assert.equal(sshBlob(ed).length, 51);
  assert.match(ed25519Fingerprint(sshBlob(ed)), /^[A-Za-z0-9+/]{43}=$/);
});

// ---- instances -----------------------------------------------------------------------

describe("RunInstances", () => {
  test("launches a pending instance with what was asked", async () => {
    const name = unique("sdk-run");
    const before = Date.now();
    const out = await run({
      TagSpecifications: [{ ResourceType: "instance", Tags: [{ Key: "Name", Value: name }, { Key: "suite", Value: "sdk" }] }],
      UserData: Buffer.from("#!/bin/sh\necho hello\n").toString("base64"),
    });
    assert.match(out.ReservationId, RESERVATION_ID);
    assert.match(out.OwnerId, ACCOUNT_ID);
    assert.equal(out.Instances.length, 1);
    const [i] = out.Instances;
    assert.match(i.InstanceId, INSTANCE_ID);
    assert.deepEqual(i.State, PENDING);
    assert.equal(i.ImageId, catalogue.image);
    assert.equal(i.InstanceType, catalogue.itype);
    assert.equal(i.AmiLaunchIndex, 0);
    assert.ok(i.LaunchTime instanceof Date);
    assert.ok(Math.abs(i.LaunchTime.getTime() - before) < 60_000);
    assert.deepEqual(tagMap(i.Tags), { Name: name, suite: "sdk" });
    const d = await describeOne(i.InstanceId);
    assert.deepEqual(tagMap(d.Tags), { Name: name, suite: "sdk" });
    assert.equal(d.ImageId, catalogue.image);
  });
});

describe("every instance waiter", () => {
  let id;
  const byId = () => ({ InstanceIds: [id] });

  before(async () => {
    id = await runOne();
  });

  test("waitUntilInstanceExists", async () => {
    const r = await waitUntilInstanceExists(waiting(alice), byId());
    assert.equal(r.state, "SUCCESS");
  });

  test("waitUntilInstanceRunning", async () => {
    const r = await waitUntilInstanceRunning(waiting(alice), byId());
    assert.equal(r.state, "SUCCESS");
    assert.deepEqual((await describeOne(id)).State, RUNNING);
  });

  test("waitUntilInstanceStatusOk", async () => {
    const r = await waitUntilInstanceStatusOk(waiting(alice), byId());
    assert.equal(r.state, "SUCCESS");
    assert.equal(r.reason.InstanceStatuses[0].InstanceStatus.Status, "ok");
  });

  test("waitUntilSystemStatusOk", async () => {
    const r = await waitUntilSystemStatusOk(waiting(alice), byId());
    assert.equal(r.state, "SUCCESS");
    assert.equal(r.reason.InstanceStatuses[0].SystemStatus.Status, "ok");
  });

  test("waitUntilInstanceStopped", async () => {
    await alice.send(new StopInstancesCommand(byId()));
    const r = await waitUntilInstanceStopped(waiting(alice), byId());
    assert.equal(r.state, "SUCCESS");
    assert.deepEqual((await describeOne(id)).State, STOPPED);
  });

  test("waitUntilInstanceTerminated", async () => {
    await alice.send(new TerminateInstancesCommand(byId()));
    const r = await waitUntilInstanceTerminated(waiting(alice), byId());
    assert.equal(r.state, "SUCCESS");
    assert.deepEqual((await describeOne(id)).State, TERMINATED);
  });
});

describe("paginateDescribeInstances", () => {
  const batch = unique("page");
  const mine = new Set();

  before(async () => {
    for (const n of [5, 4, 2, 1]) {
      const out = await run({
        MinCount: n, MaxCount: n,
        TagSpecifications: [{ ResourceType: "instance", Tags: [{ Key: "batch", Value: batch }] }],
      });
      for (const i of out.Instances) mine.add(i.InstanceId);
    }
  });

  const collect = async (input, pageSize) => {
    const pages = [];
    for await (const page of paginateDescribeInstances({ client: alice, pageSize }, input)) {
      pages.push(instancesOf(page).map((i) => i.InstanceId));
    }
    return pages;
  };

  test("pages of a filter hold each match once, full unless last", async () => {
    const pages = await collect({ Filters: [{ Name: "tag:batch", Values: [batch] }] }, 5);
    assert.deepEqual(pages.map((p) => p.length), [5, 5, 2]);
    const seen = pages.flat();
    assert.equal(new Set(seen).size, seen.length, "no instance twice");
    assert.deepEqual(new Set(seen), mine);
  });

  test("pages of everything hold each of the tenant's instances once", async () => {
    const pages = await collect({}, 5);
    assert.ok(pages.length >= 3, `several pages: ${pages.length}`);
    const seen = pages.flat();
    assert.equal(new Set(seen).size, seen.length, "no instance twice");
    const all = instancesOf(await alice.send(new DescribeInstancesCommand({}))).map((i) => i.InstanceId);
    assert.deepEqual(new Set(seen), new Set(all));
    for (const id of mine) assert.ok(seen.includes(id), id);
    const his = instancesOf(await bob.send(new DescribeInstancesCommand({}))).map((i) => i.InstanceId);
    for (const id of his) assert.ok(!seen.includes(id), `bob's ${id} is not alice's`);
  });
});

describe("state changes in every order that matters", () => {
  test("Reboot then Stop at once: the stop succeeds", async () => {
    const id = await runOne();
    await running(id);
    const reboot = await alice.send(new RebootInstancesCommand({ InstanceIds: [id] }));
    assert.equal(reboot.$metadata.httpStatusCode, 200);
    const stop = await alice.send(new StopInstancesCommand({ InstanceIds: [id] }));
    assert.deepEqual(change(stop.StoppingInstances, id), { previous: RUNNING, current: STOPPING });
    const r = await waitUntilInstanceStopped(waiting(alice), { InstanceIds: [id] });
    assert.equal(r.state, "SUCCESS");
  });

  test("Reboot keeps the instance running", async () => {
    const id = await runOne();
    await running(id);
    await alice.send(new RebootInstancesCommand({ InstanceIds: [id] }));
    assert.deepEqual((await describeOne(id)).State, RUNNING);
  });

  test("Start on a running instance is a no-op: running/running", async () => {
    const id = await runOne();
    await running(id);
    const start = await alice.send(new StartInstancesCommand({ InstanceIds: [id] }));
    assert.deepEqual(change(start.StartingInstances, id), { previous: RUNNING, current: RUNNING });
    assert.deepEqual((await describeOne(id)).State, RUNNING);
  });

  test("Stop on a stopped instance is a no-op: stopped/stopped; Start then runs it", async () => {
    const id = await runOne();
    await running(id);
    await alice.send(new StopInstancesCommand({ InstanceIds: [id] }));
    await waitUntilInstanceStopped(waiting(alice), { InstanceIds: [id] });
    const stop = await alice.send(new StopInstancesCommand({ InstanceIds: [id] }));
    assert.deepEqual(change(stop.StoppingInstances, id), { previous: STOPPED, current: STOPPED });
    assert.deepEqual((await describeOne(id)).State, STOPPED);
    const start = await alice.send(new StartInstancesCommand({ InstanceIds: [id] }));
    assert.deepEqual(change(start.StartingInstances, id), { previous: STOPPED, current: PENDING });
    await running(id);
  });

  test("Stop on a stopping instance is a no-op: stopping/stopping", async () => {
    // The slow provider stays 4 s in stopping.
    const id = await runOne({}, slow);
    await running(id, slow);
    const first = await slow.send(new StopInstancesCommand({ InstanceIds: [id] }));
    assert.deepEqual(change(first.StoppingInstances, id), { previous: RUNNING, current: STOPPING });
    const again = await slow.send(new StopInstancesCommand({ InstanceIds: [id] }));
    assert.deepEqual(change(again.StoppingInstances, id), { previous: STOPPING, current: STOPPING });
  });

  test("Terminate twice: both succeed, the second changes nothing", async () => {
    const id = await runOne();
    await running(id);
    const first = await alice.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
    assert.deepEqual(change(first.TerminatingInstances, id), { previous: RUNNING, current: SHUTTING_DOWN });
    const again = await alice.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
    const second = change(again.TerminatingInstances, id);
    assert.deepEqual(second.previous, second.current);
    assert.ok(["shutting-down", "terminated"].includes(second.current.Name), JSON.stringify(second));
    await waitUntilInstanceTerminated(waiting(alice), { InstanceIds: [id] });
    const third = await alice.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
    assert.deepEqual(change(third.TerminatingInstances, id), { previous: TERMINATED, current: TERMINATED });
  });
});

// ---- images --------------------------------------------------------------------------

describe("DescribeImages", () => {
  test("lists the catalogue, by id and by name", async () => {
    const { images } = catalogue;
    assert.ok(images.length >= 1);
    for (const i of images) {
      assert.match(i.ImageId, IMAGE_ID);
      assert.equal(i.State, "available");
      assert.ok(i.Name);
      assert.match(i.OwnerId, ACCOUNT_ID);
      assert.equal(i.ImageType, "machine");
      assert.equal(i.RootDeviceType, "ebs");
      assert.ok(Array.isArray(i.BlockDeviceMappings));
    }
    const first = images[0];
    const byId = await alice.send(new DescribeImagesCommand({ ImageIds: [first.ImageId] }));
    assert.deepEqual(byId.Images.map((i) => i.ImageId), [first.ImageId]);
    const byName = await alice.send(new DescribeImagesCommand({ Filters: [{ Name: "name", Values: [first.Name] }] }));
    assert.deepEqual(byName.Images.map((i) => i.ImageId), [first.ImageId]);
    await rejectsWith(alice.send(new DescribeImagesCommand({ ImageIds: ["ami-0123456789abcdef0"] })), "InvalidAMIID.NotFound");
  });
});

// ---- key pairs -----------------------------------------------------------------------

describe("key pairs", () => {
  const purpose = unique("keys");
  const tagSpec = (extra = {}) => [{
    ResourceType: "key-pair",
    Tags: Object.entries({ purpose, ...extra }).map(([Key, Value]) => ({ Key, Value })),
  }];
  const made = {}; // label -> { name, id, fingerprint, type, publicBlob }

  async function create(label, params) {
    const name = unique(`sdk-${label}`);
    keyNames.set(name, alice);
    const out = await alice.send(new CreateKeyPairCommand({ KeyName: name, ...params }));
    made[label] = { name, id: out.KeyPairId, fingerprint: out.KeyFingerprint, type: params.KeyType ?? "rsa" };
    assert.equal(out.KeyName, name);
    assert.match(out.KeyPairId, KEY_PAIR_ID);
    return out;
  }

  test("CreateKeyPair: rsa by default, pem: PKCS#1, SHA-1 of the PKCS#8 key", async () => {
    const out = await create("rsaPem", { TagSpecifications: tagSpec({ kind: "rsa-pem" }) });
    assert.ok(out.KeyMaterial.startsWith("-----BEGIN RSA PRIVATE KEY-----\n"), out.KeyMaterial.slice(0, 40));
    assert.ok(out.KeyMaterial.trim().endsWith("-----END RSA PRIVATE KEY-----"));
    const key = crypto.createPrivateKey(out.KeyMaterial);
    assert.equal(key.asymmetricKeyType, "rsa");
    assert.ok(key.asymmetricKeyDetails.modulusLength >= 2048);
    assert.equal(out.KeyFingerprint, createdRsaFingerprint(key));
    assert.deepEqual(tagMap(out.Tags), { purpose, kind: "rsa-pem" });
    made.rsaPem.publicBlob = sshBlob(key);
  });

  test("CreateKeyPair: ed25519, pem: an OpenSSH private key, base64 SHA-256", async () => {
    const out = await create("edPem", { KeyType: "ed25519", KeyFormat: "pem", TagSpecifications: tagSpec({ kind: "ed-pem" }) });
    assert.ok(out.KeyMaterial.startsWith("-----BEGIN OPENSSH PRIVATE KEY-----\n"), out.KeyMaterial.slice(0, 40));
    const blob = opensshPrivateKeyPublicBlob(out.KeyMaterial);
    assert.equal(new Reader(blob).string().toString(), "ssh-ed25519");
    assert.equal(blob.length, 51);
    assert.equal(out.KeyFingerprint, ed25519Fingerprint(blob));
    assert.deepEqual(tagMap(out.Tags), { purpose, kind: "ed-pem" });
    made.edPem.publicBlob = blob;
  });

  test("CreateKeyPair: rsa, ppk: a PuTTY key file of the same fingerprint rule", async () => {
    const out = await create("rsaPpk", { KeyType: "rsa", KeyFormat: "ppk", TagSpecifications: tagSpec() });
    assert.ok(out.KeyMaterial.startsWith("PuTTY-User-Key-File-"), out.KeyMaterial.slice(0, 40));
    const ppk = parsePpk(out.KeyMaterial);
    assert.equal(ppk.algorithm, "ssh-rsa");
    const key = ppkRsaPrivateKey(ppk);
    assert.ok(sshBlob(key).equals(ppk.publicBlob));
    assert.equal(out.KeyFingerprint, createdRsaFingerprint(key));
    made.rsaPpk.publicBlob = ppk.publicBlob;
  });

  test("CreateKeyPair: ed25519, ppk", async () => {
    const out = await create("edPpk", { KeyType: "ed25519", KeyFormat: "ppk", TagSpecifications: tagSpec() });
    assert.ok(out.KeyMaterial.startsWith("PuTTY-User-Key-File-"), out.KeyMaterial.slice(0, 40));
    const ppk = parsePpk(out.KeyMaterial);
    assert.equal(ppk.algorithm, "ssh-ed25519");
    assert.equal(ppk.publicBlob.length, 51);
    assert.equal(new Reader(ppk.privateBlob).string().length, 32, "the 32-byte ed25519 private key");
    assert.equal(out.KeyFingerprint, ed25519Fingerprint(ppk.publicBlob));
    made.edPpk.publicBlob = ppk.publicBlob;
  });

  async function importKey(label, publicKey, comment, fingerprint) {
    const name = unique(`sdk-imp-${label}`);
    keyNames.set(name, alice);
    const line = opensshLine(publicKey, comment);
    const out = await alice.send(new ImportKeyPairCommand({
      KeyName: name,
      PublicKeyMaterial: new TextEncoder().encode(line),
      TagSpecifications: tagSpec({ kind: `imported-${label}` }),
    }));
    made[`${label}Imported`] = {
      name, id: out.KeyPairId, fingerprint: out.KeyFingerprint,
      type: publicKey.asymmetricKeyType, publicBlob: sshBlob(publicKey),
    };
    assert.equal(out.KeyName, name);
    assert.match(out.KeyPairId, KEY_PAIR_ID);
    assert.equal(out.KeyFingerprint, fingerprint, "the fingerprint");
    assert.deepEqual(tagMap(out.Tags), { purpose, kind: `imported-${label}` });
    return out;
  }

  test("ImportKeyPair: ed25519, tagged: base64 SHA-256", async () => {
    const { publicKey } = crypto.generateKeyPairSync("ed25519");
    await importKey("ed", publicKey, "me@laptop", ed25519Fingerprint(sshBlob(publicKey)));
  });

  test("ImportKeyPair: RSA, tagged: MD5 of the SubjectPublicKeyInfo", async () => {
    const { publicKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
    await importKey("rsa", publicKey, undefined, importedRsaFingerprint(publicKey));
  });

  // The tests below look at the keys made above (those that could be made: a failed
  // create is reported by its own test).

  test("DescribeKeyPairs: type, fingerprint, createTime, tags, public keys", async () => {
    const labels = Object.keys(made);
    assert.ok(labels.length > 0, "no key pair could be made");
    const out = await alice.send(new DescribeKeyPairsCommand({
      KeyNames: labels.map((l) => made[l].name), IncludePublicKey: true,
    }));
    const byName = new Map(out.KeyPairs.map((k) => [k.KeyName, k]));
    assert.deepEqual([...byName.keys()].sort(), labels.map((l) => made[l].name).sort());
    for (const label of labels) {
      const want = made[label];
      const got = byName.get(want.name);
      assert.equal(got.KeyPairId, want.id, label);
      assert.equal(got.KeyType, want.type, label);
      assert.equal(got.KeyFingerprint, want.fingerprint, `${label}: as when it was made`);
      assert.ok(got.CreateTime instanceof Date, `${label}: CreateTime`);
      assert.ok(Math.abs(Date.now() - got.CreateTime.getTime()) < 120_000, `${label}: ${got.CreateTime}`);
      assert.equal(tagMap(got.Tags).purpose, purpose, `${label}: tags ${JSON.stringify(got.Tags)}`);
      assert.ok(got.PublicKey, `${label}: PublicKey with IncludePublicKey`);
      const [algo, blob] = got.PublicKey.trim().split(/\s+/);
      assert.equal(algo, want.type === "rsa" ? "ssh-rsa" : "ssh-ed25519", label);
      if (want.publicBlob) assert.equal(blob, b64(want.publicBlob), `${label}: the public key`);
    }
    const plain = await alice.send(new DescribeKeyPairsCommand({ KeyNames: [made[labels[0]].name] }));
    assert.equal(plain.KeyPairs[0].PublicKey, undefined, "no PublicKey unless asked");
    assert.deepEqual(labels.sort(), ["edImported", "edPem", "edPpk", "rsaImported", "rsaPem", "rsaPpk"],
      "every kind of key pair could be made");
  });

  test("DescribeKeyPairs: filters by tag, tag-key, name, id and fingerprint", async () => {
    const labels = Object.keys(made);
    assert.ok(labels.length > 0, "no key pair could be made");
    const names = async (Filters) =>
      (await alice.send(new DescribeKeyPairsCommand({ Filters }))).KeyPairs.map((k) => k.KeyName).sort();
    const all = labels.map((l) => made[l].name).sort();
    assert.deepEqual(await names([{ Name: "tag:purpose", Values: [purpose] }]), all);
    const kinds = labels.filter((l) => ["rsaPem", "edPem", "edImported", "rsaImported"].includes(l));
    assert.deepEqual(await names([{ Name: "tag:kind", Values: ["imported-*"] }, { Name: "tag:purpose", Values: [purpose] }]),
      kinds.filter((l) => l.endsWith("Imported")).map((l) => made[l].name).sort());
    assert.deepEqual(await names([{ Name: "tag:purpose", Values: [`no-${purpose}`] }]), []);
    const withKind = await names([{ Name: "tag-key", Values: ["kind"] }]);
    for (const l of labels) assert.equal(withKind.includes(made[l].name), kinds.includes(l), l);
    for (const l of labels) {
      const { name, id, fingerprint } = made[l];
      assert.deepEqual(await names([{ Name: "key-name", Values: [name] }]), [name], `${l}: key-name`);
      assert.deepEqual(await names([{ Name: "key-pair-id", Values: [id] }]), [name], `${l}: key-pair-id`);
      assert.deepEqual(await names([{ Name: "fingerprint", Values: [fingerprint] }]), [name], `${l}: fingerprint`);
      const byId = await alice.send(new DescribeKeyPairsCommand({ KeyPairIds: [id] }));
      assert.deepEqual(byId.KeyPairs.map((k) => k.KeyName), [name], `${l}: KeyPairIds`);
    }
    // Bob sees none of them.
    const his = (await bob.send(new DescribeKeyPairsCommand({}))).KeyPairs.map((k) => k.KeyName);
    for (const name of all) assert.ok(!his.includes(name), name);
  });

  test("DeleteKeyPair by name and by id", async () => {
    const a = await create("del-a", {});
    const b = await create("del-b", {});
    delete made["del-a"];
    delete made["del-b"];
    const byName = await alice.send(new DeleteKeyPairCommand({ KeyName: a.KeyName }));
    assert.equal(byName.Return, true);
    const byId = await alice.send(new DeleteKeyPairCommand({ KeyPairId: b.KeyPairId }));
    assert.equal(byId.Return, true);
    for (const name of [a.KeyName, b.KeyName]) {
      await rejectsWith(alice.send(new DescribeKeyPairsCommand({ KeyNames: [name] })), "InvalidKeyPair.NotFound");
    }
  });
});

// ---- tags ----------------------------------------------------------------------------

describe("tags", () => {
  test("CreateTags, DescribeTags, DeleteTags on instances", async () => {
    const name = unique("sdk-tags");
    const out = await run({
      MinCount: 2, MaxCount: 2,
      TagSpecifications: [{ ResourceType: "instance", Tags: [{ Key: "Name", Value: name }] }],
    });
    const ids = out.Instances.map((i) => i.InstanceId).sort();
    await alice.send(new CreateTagsCommand({
      Resources: ids, Tags: [{ Key: "env", Value: "test" }, { Key: "owner", Value: "" }, { Key: "team", Value: "blue" }],
    }));
    const described = async () =>
      (await alice.send(new DescribeTagsCommand({ Filters: [{ Name: "resource-id", Values: ids }] }))).Tags
        .map((t) => `${t.ResourceId} ${t.ResourceType} ${t.Key}=${t.Value}`).sort();
    const rows = (pairs) => ids.flatMap((id) => pairs.map((p) => `${id} instance ${p}`)).sort();
    assert.deepEqual(await described(), rows([`Name=${name}`, "env=test", "owner=", "team=blue"]));

    const byKey = await alice.send(new DescribeTagsCommand({
      Filters: [{ Name: "resource-id", Values: ids }, { Name: "key", Values: ["team"] }],
    }));
    assert.deepEqual(byKey.Tags.map((t) => t.ResourceId).sort(), ids);

    // By key alone, by key and value; a value that does not match deletes nothing.
    await alice.send(new DeleteTagsCommand({ Resources: ids, Tags: [{ Key: "env" }, { Key: "owner", Value: "" }] }));
    await alice.send(new DeleteTagsCommand({ Resources: ids, Tags: [{ Key: "team", Value: "red" }] }));
    assert.deepEqual(await described(), rows([`Name=${name}`, "team=blue"]));
    assert.deepEqual(tagMap((await describeOne(ids[0])).Tags), { Name: name, team: "blue" });
  });

  test("tags on an image are the tenant's own", async () => {
    const image = catalogue.images.at(-1).ImageId;
    const key = unique("sdk-img");
    imageTags.push([alice, image, key]);
    await alice.send(new CreateTagsCommand({ Resources: [image], Tags: [{ Key: key, Value: "alices" }] }));
    const mine = await alice.send(new DescribeTagsCommand({
      Filters: [{ Name: "resource-id", Values: [image] }, { Name: "key", Values: [key] }],
    }));
    assert.deepEqual(mine.Tags.map((t) => [t.ResourceId, t.ResourceType, t.Key, t.Value]), [[image, "image", key, "alices"]]);
    const shown = (await alice.send(new DescribeImagesCommand({ ImageIds: [image] }))).Images[0];
    assert.equal(tagMap(shown.Tags)[key], "alices");

    const his = await bob.send(new DescribeTagsCommand({ Filters: [{ Name: "resource-id", Values: [image] }] }));
    assert.deepEqual(his.Tags.filter((t) => t.Key === key), []);
    const hisImage = (await bob.send(new DescribeImagesCommand({ ImageIds: [image] }))).Images[0];
    assert.equal(tagMap(hisImage.Tags)[key], undefined);

    await alice.send(new DeleteTagsCommand({ Resources: [image], Tags: [{ Key: key }] }));
    const gone = await alice.send(new DescribeTagsCommand({
      Filters: [{ Name: "resource-id", Values: [image] }, { Name: "key", Values: [key] }],
    }));
    assert.deepEqual(gone.Tags, []);
  });
});

describe("volumes", () => {
  const VOLUME_ID = /^vol-[0-9a-f]{17}$/;
  const SNAPSHOT_ID = /^snap-[0-9a-f]{17}$/;
  let zone;

  before(async () => {
    const zones = await alice.send(new DescribeAvailabilityZonesCommand({}));
    zone = zones.AvailabilityZones[0].ZoneName;
  });

  async function createVolume(params = {}, client = alice) {
    const v = await client.send(new CreateVolumeCommand({ Size: 1, AvailabilityZone: zone, ...params }));
    volumes.set(v.VolumeId, client);
    return v;
  }

  const volume = async (id, client = alice) =>
    (await client.send(new DescribeVolumesCommand({ VolumeIds: [id] }))).Volumes[0];

  test("a life cycle with every volume waiter and a snapshot", async () => {
    const made = await createVolume({
      Size: 2,
      TagSpecifications: [{ ResourceType: "volume", Tags: [{ Key: "Name", Value: "sdk-data" }] }],
    });
    assert.match(made.VolumeId, VOLUME_ID);
    assert.equal(made.State, "creating");
    assert.equal(made.Size, 2);
    assert.equal(made.AvailabilityZone, zone);
    assert.ok(made.CreateTime instanceof Date);
    assert.deepEqual(tagMap(made.Tags), { Name: "sdk-data" });
    const id = made.VolumeId;
    let r = await waitUntilVolumeAvailable(waiting(alice), { VolumeIds: [id] });
    assert.equal(r.state, "SUCCESS");

    const vm = await runOne({ Placement: { AvailabilityZone: zone } });
    await running(vm);
    const att = await alice.send(new AttachVolumeCommand({ VolumeId: id, InstanceId: vm, Device: "/dev/sdf" }));
    assert.deepEqual([att.VolumeId, att.InstanceId, att.Device, att.State], [id, vm, "/dev/sdf", "attaching"]);
    assert.ok(att.AttachTime instanceof Date);
    r = await waitUntilVolumeInUse(waiting(alice), { VolumeIds: [id] });
    assert.equal(r.state, "SUCCESS");
    const mappings = (await describeOne(vm)).BlockDeviceMappings;
    assert.equal(mappings.find((m) => m.DeviceName === "/dev/sdf")?.Ebs?.VolumeId, id);
    await rejectsWith(alice.send(new DeleteVolumeCommand({ VolumeId: id })), "VolumeInUse");

    const snap = await alice.send(new CreateSnapshotCommand({ VolumeId: id, Description: "sdk" }));
    snapshots.set(snap.SnapshotId, alice);
    assert.match(snap.SnapshotId, SNAPSHOT_ID);
    assert.equal(snap.State, "pending");
    r = await waitUntilSnapshotCompleted(waiting(alice), { SnapshotIds: [snap.SnapshotId] });
    assert.equal(r.state, "SUCCESS");
    const mine = await alice.send(new DescribeSnapshotsCommand({ OwnerIds: ["self"] }));
    const done = mine.Snapshots.find((s) => s.SnapshotId === snap.SnapshotId);
    assert.deepEqual([done.State, done.Progress, done.VolumeId, done.VolumeSize], ["completed", "100%", id, 2]);

    const det = await alice.send(new DetachVolumeCommand({ VolumeId: id }));
    assert.deepEqual([det.State, det.InstanceId], ["detaching", vm]);
    r = await waitUntilVolumeAvailable(waiting(alice), { VolumeIds: [id] });
    assert.equal(r.state, "SUCCESS");
    await alice.send(new DeleteVolumeCommand({ VolumeId: id }));
    r = await waitUntilVolumeDeleted(waiting(alice), { VolumeIds: [id] });
    assert.equal(r.state, "SUCCESS");
    volumes.delete(id);
    await rejectsWith(alice.send(new DescribeVolumesCommand({ VolumeIds: [id] })), "InvalidVolume.NotFound");
    await alice.send(new DeleteSnapshotCommand({ SnapshotId: snap.SnapshotId }));
    snapshots.delete(snap.SnapshotId);
  });

  test("paginateDescribeVolumes holds each volume once, pages full unless last", async () => {
    const batch = unique("sdk-vols");
    const made = [];
    for (let n = 0; n < 6; n++) {
      const v = await createVolume({
        TagSpecifications: [{ ResourceType: "volume", Tags: [{ Key: "batch", Value: batch }] }],
      });
      made.push(v.VolumeId);
    }
    const sizes = [];
    const seen = [];
    for await (const page of paginateDescribeVolumes(
      { client: alice, pageSize: 5 },
      { Filters: [{ Name: "tag:batch", Values: [batch] }] },
    )) {
      sizes.push(page.Volumes.length);
      seen.push(...page.Volumes.map((v) => v.VolumeId));
    }
    assert.deepEqual(sizes, [5, 1]);
    assert.deepEqual(seen.sort(), made.sort());
  });

  test("another tenant's volume is not found, as one that never was", async () => {
    const { VolumeId: id } = await createVolume();
    const theirs = await rejectsWith(bob.send(new DescribeVolumesCommand({ VolumeIds: [id] })), "InvalidVolume.NotFound");
    const madeUp = await rejectsWith(
      bob.send(new DescribeVolumesCommand({ VolumeIds: ["vol-0123456789abcdef0"] })),
      "InvalidVolume.NotFound",
    );
    assert.equal(theirs.message.replace(id, "<id>"), madeUp.message.replace("vol-0123456789abcdef0", "<id>"));
    await rejectsWith(bob.send(new DeleteVolumeCommand({ VolumeId: id })), "InvalidVolume.NotFound");
    const his = await bob.send(new DescribeVolumesCommand({}));
    assert.ok(!his.Volumes.some((v) => v.VolumeId === id));
    await rejectsWith(alice.send(new DescribeVolumesCommand({ VolumeIds: ["vol-nope"] })), "InvalidVolume.Malformed");
  });
});
