"""A CIMI (DMTF DSP0263) client for cms-server's `/cimi` frontend, written from the
standard's conventions alone, with nothing but Python's standard library.

Run by ``cms-server/tests/cimi_client.rs`` against a fresh ``cms-server`` whose
memory provider ``local`` takes 300 ms for every transition. Standalone::

    CMS_CIMI_ENTRY=http://127.0.0.1:PORT/cimi/cloudEntryPoint \\
    CMS_ALICE_TENANT=alice CMS_ALICE_KEY=... CMS_BOB_TENANT=bob CMS_BOB_KEY=... \\
    python3 client_suite.py

The suite runs twice, once in JSON and once in XML, with the same steps:

- the cloud entry point (Basic authentication) and every collection it references;
- 401 with a Basic challenge without credentials (and with a wrong key);
- a Credential from an OpenSSH public key, a MachineTemplate made of the first
  machine image and configuration and that credential;
- a Machine created by reference to the template and another one by value (a
  template of references), each followed through its Job until it is STARTED;
- the operations a machine offers in each state, and the stop, start and restart
  actions, each followed through its Job;
- tenant isolation (bob neither sees nor reads alice's machine);
- `$filter` (a match, and a malformed expression rejected with its position) and
  `$first`/`$last` paging;
- deleting both machines, the template and the credential through their `delete`
  operations, until each answers 404.

The client never composes a URL: apart from the entry point, every URL it requests
came from an answer (an `href` or `id`, a `Location` or `CIMI-Job-URI` header),
which every request checks; the only addition is a query string (`$filter`,
`$first`, `$last`) on a collection's URL. Relative references are resolved against
the entry point's `baseURI`, as CIMI prescribes.

It prints one line per step and a summary, and exits non-zero at the first failure
with the request and the answer that failed.
"""

import base64
import json
import os
import re
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

CIMI = "http://schemas.dmtf.org/cimi/1"
ACTION = CIMI + "/action/"

# One entry point URL, or several separated by spaces (one per provider): the suite
# runs in full from each.
ENTRIES = os.environ["CMS_CIMI_ENTRY"].split()
ENTRY = ENTRIES[0]
ALICE = (os.environ["CMS_ALICE_TENANT"], os.environ["CMS_ALICE_KEY"])
BOB = (os.environ["CMS_BOB_TENANT"], os.environ["CMS_BOB_KEY"])

POLL = 0.2
WAIT_LIMIT = 60.0
REQUEST_TIMEOUT = 20.0

FORMATS = {"json": "application/json", "xml": "application/xml"}

# The entry point's collection references: the suite needs the first six.
REQUIRED_COLLECTIONS = (
    "machines",
    "machineImages",
    "machineConfigs",
    "machineTemplates",
    "credentials",
    "jobs",
)
OPTIONAL_COLLECTIONS = ("networks", "volumes", "resourceMetadata")

# Real Ed25519 public keys, one per format (their private halves were thrown away).
PUBLIC_KEYS = {
    "json": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIENKCZJ0xXhaSlVrdmddBd2ZBMitf4Fj1NFBjKFNGVzI suite-json@cimi",
    "xml": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM4tbZ45V3pBHNUHshMzCf8ZIAqaShIrW8Ew4BbtERSi suite-xml@cimi",
}

# Machine states that end a wait in failure.
MACHINE_BROKEN = {"ERROR", "FAILED"}
# Job states that end a wait in failure.
JOB_BROKEN = {"FAILED", "STOPPED"}


class Failure(Exception):
    """A check that did not hold; its message says what and shows the exchange."""


# `Suite.fail`'s default: show the last exchange.
LAST = object()


# --------------------------------------------------------------------------------------
# Representation layer: JSON and XML answers both become plain dicts.
#
# XML (CIMI 1): elements are read by their local name, whatever their namespace or
# prefix; attributes become keys (`href`, `resourceURI`, ...); repeated
# `<operation rel href/>` become the `operations` list; `<property key="k">v</property>`
# become the `properties` dict; elements holding only text become strings (`count`
# becomes an int); elements with attributes or children become dicts (so a reference
# `<machines href="..."/>` becomes {"href": "..."}); an element that appears more than
# once becomes a list. In a collection (root `<Collection>` or `<XxxCollection>`), the
# member elements (named after the member type, hence capitalised) become one list
# under the lower-camel plural of their type, as in JSON. A document's `resourceURI`,
# when the XML does not carry one, is the namespace plus the root element's name.
# --------------------------------------------------------------------------------------


def local_name(tag):
    """`{namespace}name` or `prefix:name` without the namespace or prefix."""
    return tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1]


def lower_plural(type_name):
    return type_name[:1].lower() + type_name[1:] + "s"


def xml_value(name, el):
    text = (el.text or "").strip()
    if len(el) or el.attrib:
        value = xml_element(el)
        if text:
            value["value"] = text
        return value
    if name == "count":
        try:
            return int(text)
        except ValueError:
            return text
    return text


def xml_element(el, collection=False):
    out = {}
    for k, v in el.attrib.items():
        out[local_name(k)] = v
    repeated = set()
    for child in el:
        if not isinstance(child.tag, str):  # a comment or processing instruction
            continue
        name = local_name(child.tag)
        if name == "operation":
            out.setdefault("operations", []).append(
                {local_name(k): v for k, v in child.attrib.items()}
            )
        elif name == "property":
            out.setdefault("properties", {})[child.get("key", "")] = child.text or ""
        elif collection and name[:1].isupper():
            out.setdefault(lower_plural(name), []).append(xml_element(child))
        else:
            value = xml_value(name, child)
            if name in out:
                if name not in repeated:
                    out[name] = [out[name]]
                    repeated.add(name)
                out[name].append(value)
            else:
                out[name] = value
    return out


def parse_xml(raw):
    root = ET.fromstring(raw)
    name = local_name(root.tag)
    collection = name == "Collection" or name.endswith("Collection")
    doc = xml_element(root, collection)
    if not isinstance(doc.get("resourceURI"), str) or not doc["resourceURI"]:
        doc["resourceURI"] = f"{CIMI}/{name}"
    return doc


def parse_json(raw):
    doc = json.loads(raw)
    if not isinstance(doc, dict):
        raise ValueError(f"a JSON {type(doc).__name__}, not an object")
    return doc


def encode(fmt, type_name, fields):
    """A request body of CIMI type `type_name`: JSON with its `resourceURI`, or XML
    whose root is named after the type in the CIMI namespace. A dict holding only
    `href` is a reference (`<x href="..."/>` in XML); other dicts nest."""
    if fmt == "json":
        body = {"resourceURI": f"{CIMI}/{type_name}"}
        body.update(fields)
        return json.dumps(body).encode()
    root = ET.Element(f"{{{CIMI}}}{type_name}")
    xml_children(root, fields)
    return ET.tostring(root, encoding="unicode").encode()


def xml_children(parent, fields):
    for k, v in fields.items():
        child = ET.SubElement(parent, f"{{{CIMI}}}{k}")
        if isinstance(v, dict):
            if set(v) == {"href"}:
                child.set("href", v["href"])
            else:
                xml_children(child, v)
        else:
            child.text = str(v)


ET.register_namespace("", CIMI)


def members_of(doc):
    """A collection's members: its one list-valued field other than `operations`
    (none when the collection is empty). Answers (name, list)."""
    lists = [(k, v) for k, v in doc.items() if isinstance(v, list) and k != "operations"]
    if len(lists) > 1:
        raise Failure(f"a collection with several lists of members: {[k for k, _ in lists]}")
    return lists[0] if lists else (None, [])


def is_job(doc):
    return isinstance(doc, dict) and str(doc.get("resourceURI", "")).endswith("/Job")


# --------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would be a URL no answer gave: it is answered as it is."""

    def redirect_request(self, *args, **kwargs):
        return None


# No proxy: the server is on the loopback interface, whatever the environment says.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirects())


class Answer:
    """One exchange: the request sent and the answer received."""

    def __init__(self, method, url, headers, body, who):
        self.method = method
        self.url = url
        self.req_headers = headers
        self.req_body = body
        self.who = who
        self.status = None
        self.headers = {}
        self.raw = b""
        self.doc = None

    def header(self, name):
        for k, v in self.headers.items():
            if k.lower() == name.lower():
                return v
        return None

    @property
    def text(self):
        return self.raw.decode("utf-8", errors="replace")

    def describe(self):
        lines = [f"request: {self.method} {self.url} (as {self.who})"]
        for k, v in self.req_headers.items():
            if k == "Authorization":
                v = v.split(" ", 1)[0] + " ..."
            lines.append(f"  {k}: {v}")
        if self.req_body:
            lines.append("  body: " + self.req_body.decode("utf-8", errors="replace"))
        if self.status is None:
            lines.append("answer: none")
        else:
            lines.append(f"answer: {self.status}")
            for k, v in self.headers.items():
                lines.append(f"  {k}: {v}")
            text = self.text
            if len(text) > 6000:
                text = text[:6000] + f"... ({len(self.raw)} bytes)"
            lines.append("  body: " + (text if text else "(empty)"))
        return "\n".join(lines)


class Suite:
    def __init__(self):
        # Every URL an answer gave (and the entry point): the only ones requested.
        self.seen = {ENTRY}
        self.base_uri = ENTRY
        self.relative = set()
        self.steps = 0
        self.requests = 0
        self.fmt = "-"
        self.last = None
        self.notes = []

    # ---- reporting ----------------------------------------------------------------

    def step(self, text):
        self.steps += 1
        print(f"[{self.fmt}] {text}", flush=True)

    def note(self, text):
        self.notes.append(f"[{self.fmt}] {text}")
        print(f"[{self.fmt}]   note: {text}", flush=True)

    def fail(self, message, answer=LAST):
        if answer is LAST:
            answer = self.last
        detail = f"\n{answer.describe()}" if answer is not None else ""
        raise Failure(f"[{self.fmt}] {message}{detail}")

    # ---- URLs ---------------------------------------------------------------------

    def resolve(self, ref):
        """An absolute URL for a reference from an answer (relative ones are relative
        to the entry point's `baseURI`)."""
        if urllib.parse.urlsplit(ref).scheme:
            return ref
        self.relative.add(ref)
        return urllib.parse.urljoin(self.base_uri, ref)

    def harvest(self, node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("href", "id") and isinstance(v, str) and v:
                    self.seen.add(self.resolve(v))
                else:
                    self.harvest(v)
        elif isinstance(node, list):
            for v in node:
                self.harvest(v)

    # ---- requests -----------------------------------------------------------------

    def call(self, method, ref, who=ALICE, body=None, query=None, auth=True):
        """Sends a request to `ref` (a URL some answer gave, plus an optional query
        string) in the current format, as `who` (a (tenant, key) pair) unless `auth`
        is false. `body` is (type name, fields) or raw bytes."""
        url = self.resolve(ref)
        if url not in self.seen:
            self.fail(f"about to request {url}, which no answer gave", answer=None)
        if query:
            url += ("&" if "?" in url else "?") + query
        accept = FORMATS[self.fmt]
        headers = {"Accept": accept}
        if auth:
            token = base64.b64encode(f"{who[0]}:{who[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else encode(self.fmt, *body)
            headers["Content-Type"] = accept
        answer = Answer(method, url, headers, data, who[0] if auth else "nobody")
        self.last = answer
        self.requests += 1
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with OPENER.open(request, timeout=REQUEST_TIMEOUT) as r:
                answer.status = r.status
                answer.headers = dict(r.headers.items())
                answer.raw = r.read()
        except urllib.error.HTTPError as e:
            answer.status = e.code
            answer.headers = dict(e.headers.items()) if e.headers else {}
            answer.raw = e.read() or b""
        except (urllib.error.URLError, OSError) as e:
            self.fail(f"{method} {url} got no answer: {e}", answer)
        for h in ("Location", "CIMI-Job-URI"):
            v = answer.header(h)
            if v:
                self.seen.add(self.resolve(v.strip()))
        self.parse(answer)
        self.harvest(answer.doc)
        return answer

    def parse(self, answer):
        ctype = (answer.header("Content-Type") or "").lower()
        if not answer.raw.strip():
            return
        ok = 200 <= answer.status < 300
        if ok and self.fmt not in ctype:
            self.fail(f"asked for {FORMATS[self.fmt]}, got Content-Type {ctype!r}", answer)
        try:
            if "json" in ctype:
                answer.doc = parse_json(answer.raw)
            elif "xml" in ctype:
                answer.doc = parse_xml(answer.raw)
        except (ValueError, ET.ParseError) as e:
            if ok:
                self.fail(f"the body is not valid {self.fmt}: {e}", answer)

    def expect(self, answer, *statuses):
        if answer.status not in statuses:
            want = " or ".join(str(s) for s in statuses)
            self.fail(f"expected {want}, got {answer.status}", answer)
        return answer

    def get(self, ref, who=ALICE, query=None):
        a = self.expect(self.call("GET", ref, who=who, query=query), 200)
        if a.doc is None:
            self.fail("a 200 without a document", a)
        return a

    # ---- document helpers -----------------------------------------------------------

    def field(self, doc, name, answer=None, kind=str):
        if name not in doc:
            self.fail(f"the answer has no `{name}`", answer)
        value = doc[name]
        if kind is str and not (isinstance(value, str) and value):
            self.fail(f"`{name}` is not a non-empty string: {value!r}", answer)
        if kind is dict and not isinstance(value, dict):
            self.fail(f"`{name}` is not an object: {value!r}", answer)
        return value

    def operation(self, doc, rel, answer=None):
        """The href of `doc`'s operation `rel` (resolved)."""
        for op in doc.get("operations") or []:
            if isinstance(op, dict) and op.get("rel") == rel:
                if not op.get("href"):
                    self.fail(f"operation {rel} has no href", answer)
                return self.resolve(op["href"])
        self.fail(f"no operation {rel} among {self.rels(doc)}", answer)

    @staticmethod
    def rels(doc):
        return [op.get("rel") for op in doc.get("operations") or [] if isinstance(op, dict)]

    def collection(self, ref, who=ALICE, query=None, paged=False):
        """GETs a collection and checks it: `id`, an integer `count` equal to the
        number of members shown (unless `paged`), members with ids. Answers
        (answer, members)."""
        a = self.get(ref, who=who, query=query)
        doc = a.doc
        self.field(doc, "id", a)
        uri = doc.get("resourceURI")
        if uri is not None and not str(uri).endswith("Collection"):
            self.fail(f"resourceURI {uri!r} is not a collection's", a)
        count = doc.get("count")
        if type(count) is not int:
            self.fail(f"`count` is not an integer: {count!r}", a)
        _, members = members_of(doc)
        if not paged and count != len(members):
            self.fail(f"`count` is {count} but {len(members)} members are shown", a)
        for m in members:
            if not isinstance(m, dict):
                self.fail(f"a member is not an object: {m!r}", a)
        return a, members

    def member_ids(self, members, answer):
        ids = []
        for m in members:
            if not isinstance(m.get("id"), str) or not m["id"]:
                self.fail(f"a member without an id: {m!r}", answer)
            ids.append(self.resolve(m["id"]))
        return ids

    # ---- jobs and states ------------------------------------------------------------

    def job_of(self, answer):
        """The job URL an answer points to: its `CIMI-Job-URI` header, or its body
        when that is a Job. None when there is neither."""
        header = answer.header("CIMI-Job-URI")
        if header:
            return self.resolve(header.strip())
        if is_job(answer.doc) and answer.doc.get("id"):
            return self.resolve(answer.doc["id"])
        return None

    def follow_job(self, url, what):
        """Polls a Job until its state is SUCCESS (failing on FAILED or STOPPED)."""
        started = time.monotonic()
        while True:
            a = self.get(url)
            job = a.doc
            if not is_job(job):
                self.fail(f"the job of {what} is not a Job (resourceURI {job.get('resourceURI')!r})", a)
            state = job.get("state")
            if state == "SUCCESS":
                self.step(f"  job of {what}: SUCCESS after {time.monotonic() - started:.1f} s")
                return job
            if state in JOB_BROKEN:
                self.fail(f"the job of {what} ended {state}", a)
            if time.monotonic() - started > WAIT_LIMIT:
                self.fail(f"the job of {what} is still {state!r} after {WAIT_LIMIT:.0f} s", a)
            time.sleep(POLL)

    def wait_state(self, url, want, what):
        """Polls a machine until its state is `want`; answers its document."""
        started = time.monotonic()
        seen_states = []
        while True:
            a = self.get(url)
            uri = a.doc.get("resourceURI")
            if uri is not None and uri != f"{CIMI}/Machine":
                self.fail(f"{what} has resourceURI {uri!r}, not {CIMI}/Machine", a)
            state = a.doc.get("state")
            if not seen_states or seen_states[-1] != state:
                seen_states.append(state)
            if state == want:
                self.step(f"  {what} is {want} ({' -> '.join(map(str, seen_states))})")
                return a
            if state in MACHINE_BROKEN:
                self.fail(f"{what} went {state} while waiting for {want}", a)
            if time.monotonic() - started > WAIT_LIMIT:
                self.fail(f"{what} is still {state!r} after {WAIT_LIMIT:.0f} s, waiting for {want}", a)
            time.sleep(POLL)

    def wait_gone(self, url, what):
        """Polls until `url` answers 404; meanwhile only a 200 without a state or in
        state DELETING is accepted."""
        started = time.monotonic()
        while True:
            a = self.call("GET", url)
            if a.status == 404:
                self.step(f"  {what} is gone (404 after {time.monotonic() - started:.1f} s)")
                return
            if a.status != 200:
                self.fail(f"{what} answered {a.status} after its deletion (expected 404)", a)
            state = (a.doc or {}).get("state")
            if state is not None and state != "DELETING":
                self.fail(f"{what} is {state!r} after its deletion (expected DELETING, then 404)", a)
            if time.monotonic() - started > WAIT_LIMIT:
                self.fail(f"{what} still answers 200 {WAIT_LIMIT:.0f} s after its deletion", a)
            time.sleep(POLL)

    # ---- composite steps ------------------------------------------------------------

    def create(self, add_href, type_name, fields, what):
        """POSTs a creation to a collection's `add` operation: 201 or 202 with a
        Location; a job (if any) is followed to SUCCESS. Answers the Location."""
        a = self.expect(self.call("POST", add_href, body=(type_name, fields)), 201, 202)
        location = a.header("Location")
        if not location:
            self.fail(f"{a.status} for {what} without a Location header", a)
        location = self.resolve(location.strip())
        job = self.job_of(a)
        self.step(f"created {what}: {a.status}, Location {location}" + (f", job {job}" if job else ""))
        if a.status == 202:
            if not job:
                self.fail(f"202 for {what} without CIMI-Job-URI or a Job body", a)
            self.follow_job(job, what)
        elif job:
            self.follow_job(job, what)
        return location

    def act(self, machine, doc, verb, then, what):
        """Runs action `verb` through the machine's operation: 202, its job to SUCCESS,
        then the machine reaches state `then`. Answers the machine's new answer."""
        href = self.operation(doc, ACTION + verb)
        a = self.expect(
            self.call("POST", href, body=("Action", {"action": ACTION + verb})), 202
        )
        job = self.job_of(a)
        if not job:
            self.fail(f"202 for {verb} without CIMI-Job-URI or a Job body", a)
        self.step(f"{verb} {what}: 202, job {job}")
        self.follow_job(job, f"{verb} {what}")
        return self.wait_state(machine, then, what)

    def delete(self, doc, url, what):
        """DELETE through the `delete` operation: 200, 202 or 204, its job (if any) to
        SUCCESS, then 404."""
        href = self.operation(doc, "delete")
        a = self.expect(self.call("DELETE", href), 200, 202, 204)
        job = self.job_of(a)
        self.step(f"delete {what}: {a.status}" + (f", job {job}" if job else ""))
        if job:
            self.follow_job(job, f"delete {what}")
        elif a.status == 202:
            self.note(f"202 for deleting {what} without a job")
        self.wait_gone(url, what)

    def check_operations(self, doc, present, absent, what, answer):
        rels = self.rels(doc)
        for rel in present:
            if rel not in rels:
                self.fail(f"{what} lacks operation {rel}; it has {rels}", answer)
        for rel in absent:
            if rel in rels:
                self.fail(f"{what} offers operation {rel} it should not; it has {rels}", answer)
        short = [r[len(ACTION):] if r.startswith(ACTION) else r for r in rels]
        self.step(f"  {what} operations: {', '.join(short)}")

    # ---- the suite --------------------------------------------------------------------

    def run(self, fmt):
        self.fmt = fmt
        started = time.monotonic()

        # Entry point.
        a = self.get(ENTRY)
        ep = a.doc
        if ep.get("resourceURI") != f"{CIMI}/CloudEntryPoint":
            self.fail(f"resourceURI is {ep.get('resourceURI')!r}, not {CIMI}/CloudEntryPoint", a)
        ep_id = self.field(ep, "id", a)
        base = self.field(ep, "baseURI", a)
        if not urllib.parse.urlsplit(base).scheme:
            self.fail(f"baseURI {base!r} is not absolute", a)
        self.base_uri = base
        driver = self.field(ep, "driver", a)
        provider = self.field(ep, "provider", a)
        refs = {}
        for name in REQUIRED_COLLECTIONS + OPTIONAL_COLLECTIONS:
            if name not in ep:
                if name in REQUIRED_COLLECTIONS:
                    self.fail(f"the entry point has no `{name}` reference", a)
                continue
            ref = self.field(ep, name, a, kind=dict)
            href = ref.get("href")
            parts = urllib.parse.urlsplit(href or "")
            if not (parts.scheme in ("http", "https") and parts.netloc):
                self.fail(f"`{name}` has no absolute href: {ref!r}", a)
            refs[name] = href
        self.step(
            f"entry point {ep_id}: baseURI {base}, driver {driver!r}, provider {provider!r}, "
            f"collections {', '.join(refs)}"
        )
        collections = {}
        for name, href in refs.items():
            ca, members = self.collection(href)
            collections[name] = (ca, members)
            self.step(f"  {name}: {ca.doc['count']} member(s), members key {members_of(ca.doc)[0]!r}")

        # Authentication.
        a = self.call("GET", ENTRY, auth=False)
        self.expect(a, 401)
        challenge = a.header("WWW-Authenticate") or ""
        if "basic" not in challenge.lower():
            self.fail(f"401 without a Basic challenge (WWW-Authenticate: {challenge!r})", a)
        self.step(f"without credentials: 401, WWW-Authenticate: {challenge}")
        a = self.call("GET", ENTRY, who=(ALICE[0], ALICE[1] + "-wrong"))
        self.expect(a, 401)
        self.step("with a wrong key: 401")

        # The first image and configuration.
        ia, images = collections["machineImages"]
        if not images:
            self.fail("no machine image to start a machine from", ia)
        image = self.member_ids(images, ia)[0]
        ca, configs = collections["machineConfigs"]
        if not configs:
            self.fail("no machine configuration to start a machine with", ca)
        config = self.member_ids(configs, ca)[0]
        self.step(f"image {image}, configuration {config}")

        # Credential.
        cred_name = f"suite-key-{fmt}"
        cred_url = self.create(
            self.operation(collections["credentials"][0].doc, "add", collections["credentials"][0]),
            "CredentialCreate",
            {"name": cred_name, "credentialTemplate": {"key": PUBLIC_KEYS[fmt]}},
            f"credential {cred_name}",
        )
        a = self.get(cred_url)
        cred = a.doc
        if cred.get("name") != cred_name:
            self.fail(f"the credential's name is {cred.get('name')!r}, not {cred_name!r}", a)
        cred_id = self.resolve(self.field(cred, "id", a))
        self.step(f"  credential {cred_id} shows name {cred_name!r}")

        # MachineTemplate.
        tpl_name = f"suite-template-{fmt}"
        tpl_url = self.create(
            self.operation(collections["machineTemplates"][0].doc, "add", collections["machineTemplates"][0]),
            "MachineTemplate",
            {
                "name": tpl_name,
                "machineConfig": {"href": config},
                "machineImage": {"href": image},
                "credential": {"href": cred_id},
            },
            f"machine template {tpl_name}",
        )
        a = self.get(tpl_url)
        tpl = a.doc
        if tpl.get("name") != tpl_name:
            self.fail(f"the template's name is {tpl.get('name')!r}, not {tpl_name!r}", a)
        tpl_id = self.resolve(self.field(tpl, "id", a))
        for key, want in (("machineConfig", config), ("machineImage", image), ("credential", cred_id)):
            ref = tpl.get(key)
            if ref is None:
                self.note(f"the template does not show `{key}`")
            elif not (isinstance(ref, dict) and ref.get("href") and self.resolve(ref["href"]) == want):
                self.fail(f"the template's `{key}` is {ref!r}, not a reference to {want}", a)
        self.step(f"  template {tpl_id} shows name {tpl_name!r}")

        # Machines: by reference to the template, and by value with references.
        machines_doc = collections["machines"][0].doc
        add = self.operation(machines_doc, "add", collections["machines"][0])
        name1 = f"suite-{fmt}"
        m1 = self.create(
            add,
            "MachineCreate",
            {"name": name1, "machineTemplate": {"href": tpl_id}},
            f"machine {name1} (template by reference)",
        )
        name2 = f"suite-{fmt}-by-value"
        m2 = self.create(
            add,
            "MachineCreate",
            {
                "name": name2,
                "machineTemplate": {"machineConfig": {"href": config}, "machineImage": {"href": image}},
            },
            f"machine {name2} (template by value)",
        )
        a = self.wait_state(m1, "STARTED", name1)
        if a.doc.get("name") != name1:
            self.fail(f"the machine's name is {a.doc.get('name')!r}, not {name1!r}", a)
        m1_id = self.resolve(self.field(a.doc, "id", a))
        started_ops = ([ACTION + "stop", ACTION + "restart", "delete"], [ACTION + "start"])
        self.check_operations(a.doc, *started_ops, name1, a)
        b = self.wait_state(m2, "STARTED", name2)
        if b.doc.get("name") != name2:
            self.fail(f"the machine's name is {b.doc.get('name')!r}, not {name2!r}", b)
        m2_id = self.resolve(self.field(b.doc, "id", b))

        # Actions.
        a = self.act(m1, a.doc, "stop", "STOPPED", name1)
        self.check_operations(a.doc, [ACTION + "start", "delete"], [ACTION + "stop"], name1, a)
        a = self.act(m1, a.doc, "start", "STARTED", name1)
        self.check_operations(a.doc, *started_ops, name1, a)
        a = self.act(m1, a.doc, "restart", "STARTED", name1)
        self.check_operations(a.doc, *started_ops, name1, a)
        m1_doc = a.doc

        # Tenant isolation.
        a = self.call("GET", m1, who=BOB)
        self.expect(a, 404)
        self.step(f"bob GETting {m1}: 404")
        bob_ep = self.get(ENTRY, who=BOB)
        bob_machines = self.field(bob_ep.doc, "machines", bob_ep, kind=dict).get("href")
        if not bob_machines:
            self.fail("bob's entry point has no machines href", bob_ep)
        ba, bob_members = self.collection(bob_machines, who=BOB)
        bob_ids = self.member_ids(bob_members, ba)
        if m1_id in bob_ids or m2_id in bob_ids:
            self.fail("bob's machines collection lists alice's machine", ba)
        self.step(f"bob's machines collection: {len(bob_ids)} member(s), none of alice's")

        # $filter.
        machines_href = refs["machines"]
        query = "$filter=" + urllib.parse.quote(f"name='{name1}'", safe="'")
        fa, found = self.collection(machines_href, query=query)
        found_ids = self.member_ids(found, fa)
        if found_ids != [m1_id]:
            self.fail(f"$filter=name='{name1}' should list exactly {m1_id}, listed {found_ids}", fa)
        self.step(f"$filter=name='{name1}': exactly {m1_id}")
        bad = self.call("GET", machines_href, query="$filter=" + urllib.parse.quote("name=", safe=""))
        self.expect(bad, 400)
        text = bad.text
        if not re.search(r"\b(position|column|col|offset|character|char|index|at)\b\W{0,3}\d+", text, re.I):
            self.fail("the 400 for `$filter=name=` does not mention a position", bad)
        self.step(f"$filter=name= : 400 ({' '.join(text.split())[:160]})")

        # $first / $last.
        aa, everything = self.collection(machines_href)
        total = aa.doc["count"]
        if total < 2:
            self.fail(f"alice should have at least 2 machines, the collection counts {total}", aa)
        pa, page = self.collection(machines_href, query="$first=1&$last=1", paged=True)
        if len(page) != 1:
            self.fail(f"$first=1&$last=1 shows {len(page)} members, not 1", pa)
        count = pa.doc["count"]
        if count == total:
            how = f"count {count} counts the whole collection"
        elif count == 1:
            how = "count 1 counts the members shown"
        else:
            self.fail(f"$first=1&$last=1: count {count} is neither the total {total} nor 1", pa)
        self.step(f"$first=1&$last=1: one member, {how}")

        # Deletions.
        self.delete(m1_doc, m1, name1)
        self.delete(b.doc, m2, name2)
        a = self.get(tpl_url)
        self.delete(a.doc, tpl_url, tpl_name)
        a = self.get(cred_url)
        self.delete(a.doc, cred_url, cred_name)
        la, left = self.collection(machines_href)
        left_ids = self.member_ids(left, la)
        if m1_id in left_ids or m2_id in left_ids:
            self.fail("the machines collection still lists a deleted machine", la)
        self.step(f"machines collection after the deletions: {len(left_ids)} member(s)")

        took = time.monotonic() - started
        self.step(f"{fmt} done in {took:.1f} s")
        return took


def main():
    global ENTRY
    suite = Suite()
    started = time.monotonic()
    took = {"json": 0.0, "xml": 0.0}
    try:
        for entry in ENTRIES:
            ENTRY = entry
            suite.seen.add(entry)
            print(f"== entry point {entry}", flush=True)
            for fmt in ("json", "xml"):
                took[fmt] += suite.run(fmt)
    except Failure as e:
        print(f"\nFAILED {e}", flush=True)
        return 1
    except Exception:  # a bug or an answer of an unexpected shape
        print(f"\nFAILED [{suite.fmt}] unexpected error:\n{traceback.format_exc()}", flush=True)
        if suite.last is not None:
            print("last exchange:\n" + suite.last.describe(), flush=True)
        return 2
    print(
        f"\nPASSED: {suite.steps} steps, {suite.requests} requests in "
        f"{time.monotonic() - started:.1f} s "
        f"(json {took['json']:.1f} s, xml {took['xml']:.1f} s); "
        f"{len(suite.seen)} URLs from answers, {len(suite.relative)} relative references resolved against baseURI",
        flush=True,
    )
    for n in suite.notes:
        print(f"  note: {n}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
