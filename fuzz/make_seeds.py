"""Writes the seed corpora of the server's fuzz targets into fuzz/seeds/ (run by
`scripts/fuzz seeds`; the OpenNebula seeds come from the driver's tests).

- sigv4, ec2_query: the requests botocore (boto3's engine) signs and serializes
  for the EC2 actions cms serves, header-signed and presigned, with the access key
  the target knows (cms_server::fuzz::FUZZ_ACCESS_KEY_ID). Requests are captured
  before they are sent; nothing listens.
- native: the native API's requests as the README's tour sends them.
- cimi: CIMI requests in JSON and XML as the README and DMTF's conventions write
  them, with collection queries.
- config: the TOML examples of the README and of the server's configuration
  documentation.

Seeds named `ok-*` must be accepted by their target: the replay tests check it.
"""

import base64
import json
import os
import re
import sys

import botocore.session
from botocore.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")
ACCESS_KEY = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
ENDPOINT = "http://127.0.0.1:8080/ec2/"
ED25519 = "ssh-ed25519 %s laptop" % base64.b64encode(
    b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(32))
).decode()


def write(target, name, data):
    folder = os.path.join(SEEDS, target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def framed(method, target, headers, body=b""):
    head = f"{method} {target}\n" + "".join(f"{k}: {v}\n" for k, v in headers)
    return head.encode() + b"\n" + (body if isinstance(body, bytes) else body.encode())


class Captured(Exception):
    pass


def ec2_client():
    session = botocore.session.get_session()
    client = session.create_client(
        "ec2",
        region_name="local",
        endpoint_url=ENDPOINT,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 1}, user_agent="botocore (cms fuzz seeds)"),
    )
    return client


CALLS = [
    ("describe-instances", "describe_instances", {}),
    (
        "describe-instances-filters",
        "describe_instances",
        {
            "Filters": [
                {"Name": "instance-state-name", "Values": ["running", "pending"]},
                {"Name": "tag:env", "Values": ["prod*"]},
                {"Name": "tag-key", "Values": ["team"]},
            ],
            "MaxResults": 5,
            "NextToken": "Y21zMTppLTAwMDE",
        },
    ),
    (
        "describe-instances-ids",
        "describe_instances",
        {"InstanceIds": ["i-0123456789abcdef0", "i-00000000000000001"]},
    ),
    (
        "run-instances",
        "run_instances",
        {
            "ImageId": "ami-0123456789abcdef0",
            "InstanceType": "t3.micro",
            "MinCount": 1,
            "MaxCount": 2,
            "KeyName": "laptop",
            "SubnetId": "subnet-0123456789abcdef0",
            "UserData": base64.b64encode(b"#cloud-config\nruncmd: [echo hi]\n").decode(),
            "ClientToken": "web-1",
            "TagSpecifications": [
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": "Name", "Value": "web-1"}, {"Key": "env", "Value": "demo"}],
                }
            ],
            "BlockDeviceMappings": [{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}}],
        },
    ),
    ("terminate-instances", "terminate_instances", {"InstanceIds": ["i-0123456789abcdef0"]}),
    ("stop-instances", "stop_instances", {"InstanceIds": ["i-0123456789abcdef0"], "Force": True}),
    ("start-instances", "start_instances", {"InstanceIds": ["i-0123456789abcdef0"]}),
    ("reboot-instances", "reboot_instances", {"InstanceIds": ["i-0123456789abcdef0"]}),
    (
        "create-tags",
        "create_tags",
        {"Resources": ["i-0123456789abcdef0"], "Tags": [{"Key": "team", "Value": "web & db"}]},
    ),
    (
        "delete-tags",
        "delete_tags",
        {"Resources": ["i-0123456789abcdef0"], "Tags": [{"Key": "team"}]},
    ),
    ("import-key-pair", "import_key_pair", {"KeyName": "laptop", "PublicKeyMaterial": ED25519.encode()}),
    ("create-key-pair", "create_key_pair", {"KeyName": "ci", "KeyType": "ed25519", "KeyFormat": "pem"}),
    ("describe-key-pairs", "describe_key_pairs", {"KeyNames": ["laptop"]}),
    (
        "describe-tags",
        "describe_tags",
        {"Filters": [{"Name": "resource-id", "Values": ["i-0123456789abcdef0"]}], "MaxResults": 50},
    ),
    ("delete-key-pair", "delete_key_pair", {"KeyName": "laptop"}),
    (
        "describe-images",
        "describe_images",
        {"Owners": ["self"], "Filters": [{"Name": "name", "Values": ["ubuntu-*"]}]},
    ),
    ("describe-instance-types", "describe_instance_types", {"InstanceTypes": ["t3.micro"]}),
    ("describe-subnets", "describe_subnets", {"Filters": [{"Name": "vpc-id", "Values": ["vpc-1"]}]}),
    ("describe-vpcs", "describe_vpcs", {}),
    ("describe-regions", "describe_regions", {"AllRegions": True}),
    ("describe-availability-zones", "describe_availability_zones", {}),
    (
        "describe-instance-status",
        "describe_instance_status",
        {"IncludeAllInstances": True, "MaxResults": 100},
    ),
    (
        "describe-instance-attribute",
        "describe_instance_attribute",
        {"InstanceId": "i-0123456789abcdef0", "Attribute": "userData"},
    ),
    ("get-console-output", "get_console_output", {"InstanceId": "i-0123456789abcdef0", "Latest": True}),
    ("describe-addresses", "describe_addresses", {}),
    ("describe-account-attributes", "describe_account_attributes", {}),
    (
        "create-volume",
        "create_volume",
        {
            "Size": 20,
            "AvailabilityZone": "local-a",
            "VolumeType": "gp3",
            "ClientToken": "db-data",
            "TagSpecifications": [{"ResourceType": "volume", "Tags": [{"Key": "Name", "Value": "db-data"}]}],
        },
    ),
    (
        "describe-volumes",
        "describe_volumes",
        {"Filters": [{"Name": "status", "Values": ["available", "in-use"]}, {"Name": "attachment.instance-id", "Values": ["i-0123456789abcdef0"]}], "MaxResults": 5},
    ),
    ("attach-volume", "attach_volume", {"VolumeId": "vol-0123456789abcdef0", "InstanceId": "i-0123456789abcdef0", "Device": "/dev/sdf"}),
    ("detach-volume", "detach_volume", {"VolumeId": "vol-0123456789abcdef0", "Force": True}),
    ("delete-volume", "delete_volume", {"VolumeId": "vol-0123456789abcdef0"}),
    ("create-snapshot", "create_snapshot", {"VolumeId": "vol-0123456789abcdef0", "Description": "nightly"}),
    ("describe-snapshots", "describe_snapshots", {"OwnerIds": ["self"], "SnapshotIds": ["snap-0123456789abcdef0"]}),
    ("create-image", "create_image", {"InstanceId": "i-0123456789abcdef0", "Name": "db-golden", "NoReboot": True}),
    ("deregister-image", "deregister_image", {"ImageId": "ami-0123456789abcdef0"}),
    (
        "create-security-group",
        "create_security_group",
        {"GroupName": "web", "Description": "ssh and http", "VpcId": "vpc-0123456789abcdef0"},
    ),
    (
        "authorize-security-group-ingress",
        "authorize_security_group_ingress",
        {
            "GroupId": "sg-0123456789abcdef0",
            "IpPermissions": [
                {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
                {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-0123456789abcdef1"}]},
                {"IpProtocol": "icmp", "FromPort": 8, "ToPort": -1, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
            ],
        },
    ),
    (
        "authorize-security-group-ingress-legacy",
        "authorize_security_group_ingress",
        {"GroupId": "sg-0123456789abcdef0", "IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "CidrIp": "0.0.0.0/0"},
    ),
    (
        "revoke-security-group-egress",
        "revoke_security_group_egress",
        {"GroupId": "sg-0123456789abcdef0", "IpPermissions": [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]},
    ),
    ("describe-security-groups", "describe_security_groups", {"GroupNames": ["web"], "Filters": [{"Name": "ip-permission.from-port", "Values": ["22"]}]}),
    ("delete-security-group", "delete_security_group", {"GroupId": "sg-0123456789abcdef0"}),
    ("allocate-address", "allocate_address", {"Domain": "vpc"}),
    ("associate-address", "associate_address", {"AllocationId": "eipalloc-0123456789abcdef0", "InstanceId": "i-0123456789abcdef0", "AllowReassociation": True}),
    ("disassociate-address", "disassociate_address", {"AssociationId": "eipassoc-0123456789abcdef0"}),
    ("release-address", "release_address", {"AllocationId": "eipalloc-0123456789abcdef0"}),
    (
        "run-instances-groups-volumes",
        "run_instances",
        {
            "ImageId": "ami-0123456789abcdef0",
            "InstanceType": "t3.micro",
            "MinCount": 1,
            "MaxCount": 1,
            "SecurityGroupIds": ["sg-0123456789abcdef0"],
            "SecurityGroups": ["web"],
            "BlockDeviceMappings": [
                {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 20, "DeleteOnTermination": False, "VolumeType": "gp3"}},
                {"DeviceName": "/dev/sdg", "Ebs": {"SnapshotId": "snap-0123456789abcdef0"}},
            ],
        },
    ),
]


def ec2_seeds():
    client = ec2_client()
    captured = {}

    def before_send(request, **_):
        captured["request"] = request
        raise Captured()

    client.meta.events.register("before-send", before_send)
    for name, method, args in CALLS:
        try:
            getattr(client, method)(**args)
        except Captured:
            pass
        r = captured.pop("request")
        body = r.body if isinstance(r.body, bytes) else (r.body or "").encode()
        headers = [("Host", "127.0.0.1:8080")] + [
            (k, v.decode() if isinstance(v, bytes) else v) for k, v in r.headers.items()
        ]
        path = r.url.split("127.0.0.1:8080", 1)[1]
        write("sigv4", f"ok-{name}", framed(r.method, path, headers, body))
        write("ec2_query", f"ok-{name}", body)
    # Presigned GETs, as generate_presigned_url makes them.
    for name, method, args in CALLS[:3]:
        url = client.generate_presigned_url(method, Params=args, ExpiresIn=300, HttpMethod="GET")
        target = url.split("127.0.0.1:8080", 1)[1]
        write("sigv4", f"ok-presigned-{name}", framed("GET", target, [("Host", "127.0.0.1:8080")]))
        write("ec2_query", f"ok-presigned-{name}", target.split("?", 1)[1])


def native_seeds():
    auth = ("Authorization", "Bearer devkey-change-me")
    js = ("Content-Type", "application/json")
    requests = {
        "providers": ("GET", "/v1/providers", [auth], ""),
        "images": ("GET", "/v1/providers/local/images?limit=10", [auth], ""),
        "flavors": ("GET", "/v1/providers/local/flavors", [auth], ""),
        "list": (
            "GET",
            "/v1/providers/local/instances?state=running&tag=env=demo&name=web-1&limit=100&page_token=abc",
            [auth],
            "",
        ),
        "list-ids": ("GET", "/v1/providers/local/instances?id=i-1&id=i%2F2", [auth], ""),
        "everywhere": ("GET", "/v1/instances?state=stopped", [auth], ""),
        "create": (
            "POST",
            "/v1/providers/local/instances",
            [auth, js, ("Idempotency-Key", "web-1")],
            json.dumps(
                {
                    "name": "web-1",
                    "image_id": "img-ubuntu-24.04",
                    "flavor_id": "flv-1cpu-1gb",
                    "network_ids": ["net-default"],
                    "location_id": "zone-a",
                    "key_name": "laptop",
                    "user_data": "#cloud-config\n",
                    "tags": {"env": "demo"},
                }
            ),
        ),
        "tags": (
            "PATCH",
            "/v1/providers/local/instances/i-1/tags",
            [auth, ("Content-Type", "application/merge-patch+json")],
            json.dumps({"team": "web", "env": None}),
        ),
        "stop": ("POST", "/v1/providers/local/instances/i-1/stop", [auth], ""),
        "console": ("GET", "/v1/providers/local/instances/i-1/console", [auth], ""),
        "delete": ("DELETE", "/v1/providers/local/instances/i-1", [auth], ""),
        "network": (
            "POST",
            "/v1/providers/local/networks",
            [auth, js],
            json.dumps({"name": "lan", "cidr": "10.1.0.0/24", "tags": {"team": "web"}}),
        ),
        "key-pair-import": (
            "POST",
            "/v1/providers/local/key-pairs",
            [auth, js],
            json.dumps({"name": "laptop", "public_key": ED25519}),
        ),
        "key-pair-generate": (
            "POST",
            "/v1/providers/local/key-pairs",
            [auth, js],
            json.dumps({"name": "ci"}),
        ),
        "healthz": ("GET", "/healthz", [], ""),
        "volumes": ("GET", "/v1/providers/local/volumes?limit=20", [auth], ""),
        "volume": (
            "POST",
            "/v1/providers/local/volumes",
            [auth, js, ("Idempotency-Key", "db-data")],
            json.dumps({"name": "db-data", "size_gib": 20, "location_id": "local-a", "tags": {"role": "db"}}),
        ),
        "volume-from-snapshot": (
            "POST",
            "/v1/providers/local/volumes",
            [auth, js],
            json.dumps({"snapshot_id": "snap-1"}),
        ),
        "attach": (
            "POST",
            "/v1/providers/local/volumes/vol-1/attach",
            [auth, js],
            json.dumps({"instance_id": "i-1", "device": "/dev/sdf"}),
        ),
        "detach": ("POST", "/v1/providers/local/volumes/vol-1/detach", [auth], ""),
        "snapshot": (
            "POST",
            "/v1/providers/local/snapshots",
            [auth, js],
            json.dumps({"volume_id": "vol-1", "name": "nightly", "description": "before the upgrade"}),
        ),
        "capture": (
            "POST",
            "/v1/providers/local/images",
            [auth, js],
            json.dumps({"instance_id": "i-1", "name": "db-golden"}),
        ),
        "security-group": (
            "POST",
            "/v1/providers/local/security-groups",
            [auth, js],
            json.dumps({"name": "web", "description": "ssh", "network_id": "net-default"}),
        ),
        "add-rules": (
            "POST",
            "/v1/providers/local/security-groups/sg-1/add-rules",
            [auth, js],
            json.dumps(
                {
                    "rules": [
                        {"direction": "ingress", "protocol": "tcp", "from_port": 22, "to_port": 22, "peer": {"cidr": "0.0.0.0/0"}},
                        {"direction": "ingress", "protocol": "icmp", "from_port": 8, "peer": {"cidr": "10.0.0.0/8"}},
                        {"direction": "egress", "protocol": "all", "peer": {"group": "sg-2"}},
                    ]
                }
            ),
        ),
        "address": ("POST", "/v1/providers/local/addresses", [auth, js], json.dumps({"tags": {"role": "web"}})),
        "associate": (
            "POST",
            "/v1/providers/local/addresses/eipalloc-1/associate",
            [auth, js],
            json.dumps({"instance_id": "i-1", "private_ip": "10.0.0.2"}),
        ),
        "create-with-groups-and-volumes": (
            "POST",
            "/v1/providers/local/instances",
            [auth, js],
            json.dumps(
                {
                    "image_id": "img-ubuntu-24.04",
                    "flavor_id": "flv-1cpu-1gb",
                    "security_group_ids": ["sg-1"],
                    "volumes": [{"device": "/dev/sdg", "size_gib": 5, "delete_on_termination": False}, {"snapshot_id": "snap-1"}],
                }
            ),
        ),
    }
    for name, (method, target, headers, body) in requests.items():
        write("native", f"ok-{name}", framed(method, target, headers, body))
    # Refused on purpose: a field the API does not know, and tags both set and removed
    # cannot be written in a merge patch, so an unknown field stands in.
    write(
        "native",
        "bad-rule-ports",
        framed(
            "POST",
            "/v1/providers/local/security-groups/sg-1/add-rules",
            [auth, js],
            '{"rules":[{"direction":"ingress","protocol":"tcp","from_port":80,"to_port":22,"peer":{"cidr":"0.0.0.0/0"}}]}',
        ),
    )
    write(
        "native",
        "bad-unknown-field",
        framed("POST", "/v1/providers/local/instances", [auth, js], '{"image_id":"a","flavor_id":"b","colour":"red"}'),
    )


def cimi_seeds():
    auth = ("Authorization", "Basic ZGV2OmtleQ==")
    js = ("Content-Type", "application/json")
    xml = ("Content-Type", "application/xml")
    base = "http://127.0.0.1:8080/cimi/local/"
    ns = "http://schemas.dmtf.org/cimi/1"
    create = {
        "resourceURI": ns + "/MachineCreate",
        "name": "web-1",
        "description": "a machine",
        "properties": {"tier": "web"},
        "machineTemplate": {
            "machineConfig": {"href": base + "machineConfigs/flv-1cpu-1gb"},
            "machineImage": {"href": base + "machineImages/img-debian-12"},
            "credential": {"key": ED25519},
            "networkInterfaces": [{"network": {"href": base + "networks/net-default"}}],
            "userData": "#cloud-config",
        },
    }
    requests = {
        "list-filter": ("GET", "/cimi/local/machines?$filter=" + "name%3D%27web-1%27%20and%20(cpu%3E%3D2%20or%20property%5B%27tier%27%5D%3D%27web%27)", [auth], ""),
        "list-window": ("GET", "/cimi/local/machines?$first=2&$last=5&$orderby=name:desc,created&$select=name,state&$expand=*", [auth], ""),
        "list-dates": ("GET", "/cimi/local/jobs?$filter=created%3E2026-01-01T00:00:00Z%20and%20state!%3D%27FAILED%27", [auth], ""),
        "create-json": ("POST", "/cimi/local/machines", [auth, js], json.dumps(create)),
        "create-by-value": ("POST", "/cimi/local/machines", [auth, js], json.dumps({"name": "v", "machineTemplate": {"machineConfig": {"cpu": 2, "memory": 2097152}, "machineImage": {"href": base + "machineImages/img-debian-12"}}})),
        "create-xml": (
            "POST",
            "/cimi/local/machines",
            [auth, xml],
            f'<?xml version="1.0"?>\n<c:MachineCreate xmlns:c="{ns}"><c:name> web-2 </c:name>'
            f'<c:property key="tier">web &amp; db</c:property><c:machineTemplate>'
            f'<c:machineConfig href="{base}machineConfigs/flv-1cpu-1gb"/>'
            f'<c:machineImage href="{base}machineImages/img-debian-12"/>'
            f'<c:networkInterface><c:network href="{base}networks/n1"/></c:networkInterface>'
            f"<c:userData><![CDATA[#cloud-config]]></c:userData></c:machineTemplate></c:MachineCreate>",
        ),
        "action-xml": ("POST", "/cimi/local/machines/i-1/stop", [auth, xml], f'<Action xmlns="{ns}"><action>{ns}/action/stop</action></Action>'),
        "action-json": ("POST", "/cimi/local/machines/i-1", [auth, js], json.dumps({"resourceURI": ns + "/Action", "action": ns + "/action/restart"})),
        "credential": ("POST", "/cimi/local/credentials", [auth, js], json.dumps({"name": "k", "credentialTemplate": {"key": ED25519}})),
        "volume-xml": ("POST", "/cimi/local/volumes", [auth, xml], f'<VolumeCreate xmlns="{ns}"><name>v</name><volumeTemplate><volumeConfig><capacity>1048576</capacity></volumeConfig></volumeTemplate></VolumeCreate>'),
        "machine-volume": ("POST", "/cimi/local/machines/i-1/volumes", [auth, xml], f'<MachineVolume xmlns="{ns}"><initialLocation>/dev/sdf</initialLocation><volume href="{base}volumes/vol-1"/></MachineVolume>'),
    }
    for name, (method, target, headers, body) in requests.items():
        write("cimi", f"ok-{name}", framed(method, target, headers, body))
    write("cimi", "bad-filter", framed("GET", "/cimi/local/machines?$filter=name%3D", [auth], ""))
    write("cimi", "bad-xml", framed("POST", "/cimi/local/machines", [auth, xml], "<MachineCreate><name>x</MachineCreate>"))
    write("cimi", "bad-json", framed("POST", "/cimi/local/machines", [auth, js], '["not", "an", "object"]'))


def xmlrpc_seeds():
    """XML-RPC as Python's xmlrpc.client writes it (the OpenNebula seeds proper come
    from the driver's tests, which write what the fake oned serves)."""
    import xmlrpc.client as x

    pool = "<VM_POOL><VM><ID>1</ID><UID>0</UID><UNAME>a</UNAME><NAME>n</NAME><STATE>8</STATE><LCM_STATE>0</LCM_STATE></VM></VM_POOL>"
    write("opennebula_xmlrpc", "ok-python-response", x.dumps(((True, pool, 0, -1),), methodresponse=True))
    write("opennebula_xmlrpc", "ok-python-failure", x.dumps(((False, "[one.vm.info] Error getting virtual machine [7].", 1024, -1),), methodresponse=True))
    write("opennebula_xmlrpc", "ok-python-fault", x.dumps(x.Fault(-32601, "method not found")))
    write("opennebula_xmlrpc", "ok-python-call-pool", x.dumps(("cms:secret", -2, -1, -1, -2), methodname="one.vmpool.info"))
    write("opennebula_xmlrpc", "ok-python-call-allocate", x.dumps(("cms:secret", 'NAME="a"\nCPU="0.5"', False), methodname="one.vm.allocate"))
    write("opennebula_xmlrpc", "ok-python-call-values", x.dumps(("cms:secret", 1.5, x.Binary(b"\x00\x01"), x.DateTime("20260101T00:00:00")), methodname="one.system.version"))


def config_seeds():
    texts = []
    readme = open(os.path.join(ROOT, "README.md")).read()
    texts += re.findall(r"```toml\n(.*?)```", readme, re.S)
    doc = open(os.path.join(ROOT, "cms-server", "src", "config.rs")).read()
    block = re.search(r"//! ```toml\n(.*?)//! ```", doc, re.S)
    if block:
        texts.append("".join(l[4:] + "\n" for l in block.group(1).splitlines()))
    if not texts:
        sys.exit("no TOML example found in README.md or cms-server/src/config.rs")
    for i, text in enumerate(texts):
        write("config", f"example-{i:02}", text)


if __name__ == "__main__":
    ec2_seeds()
    native_seeds()
    cimi_seeds()
    xmlrpc_seeds()
    config_seeds()
    print(f"seeds written under {SEEDS}")
