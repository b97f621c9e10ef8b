"""The `cms` command line under a pseudo-terminal, as a person runs it: the spinner of
`--wait` shows the state as it changes, and Ctrl-C stops the waiting, not the
operation.

Usage: pty_suite.py CMS_BINARY URL API_KEY IMAGE FLAVOR
Exits non-zero, with what it saw, when a check fails.
"""

import json
import os
import pty
import select
import signal
import sys
import time
import urllib.request

CMS, URL, KEY, IMAGE, FLAVOR = sys.argv[1:6]
ENV = dict(os.environ, CMS_URL=URL, CMS_API_KEY=KEY, TERM="xterm")
ENV.pop("CMS_PROVIDER", None)


def run(args, interrupt_on=None, timeout=60):
    """Runs cms with a terminal as stdin, stdout and stderr; sends Ctrl-C (the byte,
    as a keyboard does) once `interrupt_on` was printed. Returns (exit code, output)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(CMS, [CMS] + args, ENV)
    out = b""
    sent = False
    deadline = time.time() + timeout
    while True:
        if time.time() > deadline:
            os.kill(pid, signal.SIGKILL)
            sys.exit(f"cms {args} did not end; it printed:\n{out.decode(errors='replace')}")
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        if interrupt_on and not sent and interrupt_on.encode() in out:
            time.sleep(0.3)
            os.write(fd, b"\x03")
            sent = True
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def api(path):
    req = urllib.request.Request(URL + path, headers={"Authorization": "Bearer " + KEY})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def check(ok, what, output):
    if not ok:
        sys.exit(f"FAILED: {what}; cms printed:\n{output}")
    print(f"ok: {what}")


# On a terminal the default output is a table, and --wait shows a spinner whose
# message follows the states.
code, out = run(["instances", "create", "--provider", "slowboot", "--image", IMAGE,
                 "--flavor", FLAVOR, "--name", "pty-web", "--wait"])
check(code == 0, "create --wait exits 0", out)
check("waiting for i-" in out and "to be running: pending" in out,
      "the spinner names the instance, the goal and the state", out)
check("pending → running" in out, "the spinner shows the state change", out)
check(any(f in out for f in "⠁⠂⠄⡀⢀⠠⠐⠈"), "the spinner spins", out)
check("FIELD" in out and "VALUE" in out, "the result is a table", out)
vm = next(line.split()[1] for line in out.splitlines() if line.startswith("id "))
check(api(f"/v1/providers/slowboot/instances/{vm}")["state"] == "running", "it is running", out)

# Ctrl-C while waiting for a stop: the wait ends (130), the stop goes on.
code, out = run(["instances", "stop", "--provider", "slowboot", vm, "--wait"],
                interrupt_on="to be stopped")
check(code == 130, f"Ctrl-C exits 130 (got {code})", out)
check("stopped waiting" in out and "not canceled" in out, "it says the stop goes on", out)
state = api(f"/v1/providers/slowboot/instances/{vm}")["state"]
check(state in ("stopping", "stopped"), f"the instance is {state}, not running", out)
deadline = time.time() + 30
while api(f"/v1/providers/slowboot/instances/{vm}")["state"] != "stopped":
    check(time.time() < deadline, "the stop finished on its own", out)
    time.sleep(0.2)
print("ok: the stop finished after the wait was interrupted")
