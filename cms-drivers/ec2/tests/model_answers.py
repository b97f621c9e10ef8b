"""Writes DescribeInstances answers from the EC2 API model that botocore carries.

    python model_answers.py COUNT > answers.json

Each answer is the XML a server speaking EC2's Query protocol would send for the
DescribeInstances output shape of botocore's model: every structure member under its
`locationName`, lists as `item` children, values of each member's type (enums from
the model's own values, timestamps in the forms EC2 writes, text that needs escaping).
Answers take turns being `full` (every member, two items in every list), `sparse`
(each optional member present or not at random) and `minimal` (an instance id and
little else, some instances without even that); some carry a `nextToken`, some are
indented, some use a namespace prefix. Every answer is read back with botocore's own
EC2 parser, which must find the instances written, so the generator cannot drift
from the protocol unnoticed.

Prints a JSON list of {"seed", "mode", "body", "instances"}.
"""

import json
import random
import sys

import botocore.session
from botocore import parsers

NAMESPACE = "http://ec2.amazonaws.com/doc/2016-11-15/"

TEXTS = [
    "plain",
    "a&b <c> \"d\" 'e'",
    "ünïcödé ☃ 𝄞",
    "",
    "  spaced  ",
    "two\nlines",
    "tab\there",
    "]]> not CDATA",
]

TIMES = [
    "2026-12-02T06:09:35.000Z",
    "2026-12-02T06:09:35Z",
    "2019-02-28T23:59:59.999Z",
    "2026-12-02T08:09:35+02:00",
]


def escape(text, rng):
    out = []
    for ch in text:
        if ch == "&":
            out.append("&amp;")
        elif ch == "<":
            out.append("&lt;")
        elif ch == ">":
            out.append("&gt;")
        elif ch == '"' and rng.random() < 0.5:
            out.append("&quot;")
        elif ch == "'" and rng.random() < 0.5:
            out.append("&apos;")
        elif ch.isalpha() and ord(ch) < 128 and rng.random() < 0.05:
            out.append("&#x%x;" % ord(ch) if rng.random() < 0.5 else "&#%d;" % ord(ch))
        else:
            out.append(ch)
    return "".join(out)


class Writer:
    def __init__(self, rng, mode, prefix, indent):
        self.rng = rng
        self.mode = mode
        self.prefix = prefix
        self.indent = indent
        self.parts = []

    def tag(self, name):
        return f"{self.prefix}{name}"

    def nl(self, depth):
        if self.indent:
            self.parts.append("\n" + "  " * depth)

    def scalar(self, name, shape, member_name):
        rng = self.rng
        t = shape.type_name
        if member_name == "InstanceId":
            value = "i-%017x" % rng.getrandbits(68)
        elif member_name == "Code" and shape.type_name == "integer":
            value = str(rng.choice([0, 16, 32, 48, 64, 80, 16 + 256, 7]))
        elif getattr(shape, "enum", None):
            value = rng.choice(list(shape.enum))
        elif t == "string":
            value = rng.choice(TEXTS) if rng.random() < 0.5 else f"{member_name}-{rng.randint(0, 999)}"
        elif t in ("integer", "long"):
            value = str(rng.randint(0, 100000))
        elif t == "boolean":
            value = rng.choice(["true", "false"])
        elif t == "timestamp":
            value = rng.choice(TIMES)
        elif t in ("double", "float"):
            value = rng.choice(["1.5", "0", "12.25"])
        elif t == "blob":
            value = "aGVsbG8="
        else:
            raise SystemExit(f"no value for type {t} ({member_name})")
        self.parts.append(f"<{self.tag(name)}>{escape(value, rng)}</{self.tag(name)}>")

    def present(self, member_name, required):
        if self.mode == "full" or member_name in required:
            return True
        if self.mode == "minimal":
            return member_name in ("InstanceId", "Reservations", "Instances") and self.rng.random() < 0.9
        return self.rng.random() < 0.5

    def value(self, name, shape, member_name, depth):
        t = shape.type_name
        if t == "structure":
            self.structure(name, shape, depth)
        elif t == "list":
            self.list(name, shape, depth)
        elif t == "map":
            raise SystemExit(f"maps are not in EC2's model ({member_name})")
        else:
            self.scalar(name, shape, member_name)

    def structure(self, name, shape, depth):
        self.parts.append(f"<{self.tag(name)}>")
        if depth < 14:
            members = list(shape.members.items())
            required = set(shape.required_members)
            for member_name, member in members:
                if not self.present(member_name, required):
                    continue
                self.nl(depth + 1)
                self.value(member.serialization.get("name", member_name), member, member_name, depth + 1)
        self.nl(depth)
        self.parts.append(f"</{self.tag(name)}>")

    def list(self, name, shape, depth):
        if self.mode == "full":
            count = 2
        elif shape.member.name == "Instance":
            count = self.rng.randint(1, 3)
        else:
            count = self.rng.randint(0, 2)
        if count == 0 and self.rng.random() < 0.5:
            self.parts.append(f"<{self.tag(name)}/>")
            return
        self.parts.append(f"<{self.tag(name)}>")
        item = shape.member.serialization.get("name", "member")
        for _ in range(count):
            self.nl(depth + 1)
            self.value(item, shape.member, shape.member.name, depth + 1)
        self.nl(depth)
        self.parts.append(f"</{self.tag(name)}>")


def answer(output, seed):
    rng = random.Random(seed)
    mode = ["full", "sparse", "minimal"][seed % 3]
    prefix = "ec2:" if seed % 5 == 4 else ""
    indent = seed % 2 == 1
    w = Writer(rng, mode, prefix, indent)
    root = "DescribeInstancesResponse"
    xmlns = f'xmlns:ec2="{NAMESPACE}"' if prefix else f'xmlns="{NAMESPACE}"'
    w.parts.append('<?xml version="1.0" encoding="UTF-8"?>\n')
    w.parts.append(f"<{w.tag(root)} {xmlns}>")
    w.nl(1)
    w.parts.append(f"<{w.tag('requestId')}>req-{seed}</{w.tag('requestId')}>")
    reservations = output.members["Reservations"]
    w.nl(1)
    w.parts.append(f"<{w.tag('reservationSet')}>")
    for _ in range(rng.randint(1, 3)):
        w.nl(2)
        w.structure("item", reservations.member, 2)
    w.nl(1)
    w.parts.append(f"</{w.tag('reservationSet')}>")
    if seed % 4 == 0:
        w.nl(1)
        w.scalar("nextToken", output.members["NextToken"], "NextToken")
    w.nl(0)
    w.parts.append(f"</{w.tag(root)}>")
    return mode, "".join(w.parts)


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    model = botocore.session.get_session().get_service_model("ec2")
    output = model.operation_model("DescribeInstances").output_shape
    parser = parsers.create_parser("ec2")
    docs = []
    for seed in range(count):
        mode, body = answer(output, seed)
        parsed = parser.parse(
            {"body": body.encode("utf-8"), "headers": {}, "status_code": 200}, output
        )
        if "Error" in parsed and parsed["Error"].get("Code"):
            raise SystemExit(f"botocore cannot read answer {seed}: {parsed['Error']}")
        written = body.count("<instanceId>") + body.count("<ec2:instanceId>")
        found = sum(
            1
            for r in parsed.get("Reservations", [])
            for i in r.get("Instances", [])
            if i.get("InstanceId")
        )
        if found != written:
            raise SystemExit(f"botocore read {found} instance ids of answer {seed}, {written} written")
        docs.append({"seed": seed, "mode": mode, "body": body, "instances": found})
    json.dump(docs, sys.stdout)


if __name__ == "__main__":
    main()
