"""Checks EC2 answers against the EC2 API model that botocore carries.

    python check_answers.py < answers.json

Reads a JSON list of {"operation": "DescribeVolumes", "body": "<xml…>"} and walks
each body against the operation's output shape in botocore's model: every element
must be a member of its structure (under its `locationName`), list members `item`,
and every value of its member's type (integers, booleans, timestamps, enums from the
model's values). The body must also be readable by botocore's own EC2 parser.

Prints a JSON list of {"operation", "problems": [...]} and exits 0; the caller decides
which problems are expected (moto's known differences) and which are not.
"""

import json
import sys
import xml.etree.ElementTree as ET

import botocore.session
from botocore import parsers

TIMESTAMP_FORMATS = ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ")


def local(tag):
    return tag.rsplit("}", 1)[-1]


def check_scalar(path, shape, text, problems):
    t = shape.type_name
    text = text or ""
    if t in ("integer", "long"):
        try:
            int(text)
        except ValueError:
            problems.append(f"{path}: `{text}` is not an {t}")
    elif t == "boolean":
        if text not in ("true", "false"):
            problems.append(f"{path}: `{text}` is not a boolean")
    elif t in ("double", "float"):
        try:
            float(text)
        except ValueError:
            problems.append(f"{path}: `{text}` is not a {t}")
    elif t == "timestamp":
        from datetime import datetime

        for f in TIMESTAMP_FORMATS:
            try:
                datetime.strptime(text, f)
                break
            except ValueError:
                pass
        else:
            try:
                datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                problems.append(f"{path}: `{text}` is not a timestamp")
    elif t == "string":
        enum = getattr(shape, "enum", None)
        if enum and text not in enum:
            problems.append(f"{path}: `{text}` is not one of the model's values")


def walk(path, el, shape, problems):
    t = shape.type_name
    if t == "structure":
        by_name = {}
        for name, member in shape.members.items():
            by_name[member.serialization.get("name", name)] = member
        for child in el:
            name = local(child.tag)
            member = by_name.get(name)
            if member is None:
                problems.append(f"{path}/{name}: not in the model's {shape.name}")
                continue
            walk(f"{path}/{name}", child, member, problems)
    elif t == "list":
        item = shape.member.serialization.get("name", "member")
        for child in el:
            name = local(child.tag)
            if name != item:
                problems.append(f"{path}/{name}: list members are `{item}`")
                continue
            walk(f"{path}/{name}", child, shape.member, problems)
    else:
        if len(el):
            problems.append(f"{path}: a {t} with elements in it")
        check_scalar(path, shape, el.text, problems)


def main():
    model = botocore.session.get_session().get_service_model("ec2")
    parser = parsers.create_parser("ec2")
    out = []
    for answer in json.load(sys.stdin):
        op = model.operation_model(answer["operation"])
        shape = op.output_shape
        body = answer["body"]
        problems = []
        root = ET.fromstring(body.encode("utf-8"))
        if local(root.tag) != f"{answer['operation']}Response":
            problems.append(f"root element {local(root.tag)}")
        by_name = {
            m.serialization.get("name", n): m for n, m in shape.members.items()
        } if shape is not None else {}
        for child in root:
            name = local(child.tag)
            if name == "requestId":
                continue
            member = by_name.get(name)
            if member is None:
                problems.append(f"/{name}: not in the model's output")
                continue
            walk(f"/{name}", child, member, problems)
        parsed = parser.parse(
            {"body": body.encode("utf-8"), "headers": {}, "status_code": 200}, shape
        )
        if "Error" in parsed and parsed["Error"].get("Code"):
            problems.append(f"botocore cannot read it: {parsed['Error']}")
        out.append({"operation": answer["operation"], "problems": sorted(set(problems))})
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
