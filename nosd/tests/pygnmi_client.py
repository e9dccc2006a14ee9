#!/usr/bin/env python3
"""Interop client for nosd's gNMI server, driven by nosd/tests/gnmi_pygnmi.rs.

Uses pygnmi (a third-party client from PyPI, on grpcio) over TLS with the
server's certificate as its trust root and a username/password:

  pygnmi_client.py HOST PORT CERT USER PASSWORD

Prints one JSON object per line: {"event": "synced"} once the STREAM
subscription has its initial values (the test then changes the
configuration), and finally {"event": "done", "result": {...}} with what it
saw. Exits non-zero on an unexpected error (after printing {"event":
"error", ...}).
"""

import json
import sys
import time
import traceback

from pygnmi.client import gNMIclient

OPER = "/interfaces/interface[name=eth1]/state/oper-status"
STATIC = (
    "/network-instances/network-instance[name=DEFAULT]/protocols/"
    "protocol[identifier=STATIC][name=STATIC]/static-routes"
)
ROUTE = "203.0.113.0/24"
DESCRIPTION = "/interfaces/interface[name=eth1]/config/description"


def emit(obj):
    print(json.dumps(obj, default=str), flush=True)


def updates_of(msg):
    """(path, value) pairs of a parsed notification, with its prefix."""
    out = []
    upd = msg.get("update") or {}
    prefix = upd.get("prefix")
    for u in upd.get("update") or []:
        path = u.get("path") or ""
        if prefix:
            path = prefix.rstrip("/") + "/" + path
        out.append((path, u.get("val")))
    return out


def deletes_of(msg):
    return [d for d in (msg.get("update") or {}).get("delete") or []]


def main():
    host, port, cert, user, password = sys.argv[1:6]
    target = (host, int(port))
    result = {}

    # A wrong password is refused (pygnmi calls Capabilities on connect).
    try:
        with gNMIclient(
            target=target, username=user, password=password + "-wrong", path_cert=cert, gnmi_timeout=10
        ):
            result["wrong_password"] = "accepted"
    except Exception as e:  # pygnmi wraps the gRPC error
        result["wrong_password"] = f"{e} {getattr(e, 'orig_exc', '')}"

    with gNMIclient(target=target, username=user, password=password, path_cert=cert, gnmi_timeout=10) as gc:
        caps = gc.capabilities()
        result["capabilities"] = {
            "gnmi_version": caps.get("gnmi_version"),
            "models": sorted(m.get("name") for m in caps.get("supported_models", [])),
            "encodings": caps.get("supported_encodings"),
        }

        got = gc.get(path=["/system/config/hostname"], encoding="json")
        result["hostname"] = [v for n in got["notification"] for (_, v) in updates_of({"update": n})]

        # pygnmi sends a str value as it is, so it must already be JSON (a
        # quoted string); anything else it JSON-encodes itself.
        setr = gc.set(update=[(DESCRIPTION, json.dumps("set by pygnmi"))], encoding="json")
        result["set"] = [r.get("op") for r in setr.get("response", [])]
        got = gc.get(path=[DESCRIPTION], encoding="json")
        result["description"] = [v for n in got["notification"] for (_, v) in updates_of({"update": n})]

        once = gc.subscribe2(
            subscribe={
                "mode": "once",
                "encoding": "json",
                "subscription": [{"path": "/interfaces/interface[name=eth1]/state"}],
            }
        )
        leaves = {}
        synced = False
        deadline = time.time() + 20
        while not synced and time.time() < deadline:
            msg = once.get_update(timeout=max(0.1, deadline - time.time()))
            if msg.get("sync_response"):
                synced = True
            for path, val in updates_of(msg):
                leaves[path] = val
        once.close()
        result["once"] = {"synced": synced, "leaves": leaves}

        stream = gc.subscribe2(
            subscribe={
                "mode": "stream",
                "encoding": "json",
                "subscription": [
                    {"path": OPER, "mode": "on_change"},
                    {"path": STATIC, "mode": "on_change"},
                ],
            }
        )
        initial = stream.get_update(timeout=20)
        result["stream_initial"] = {
            "synced": bool(initial.get("sync_response")),
            "leaves": dict(updates_of(initial)),
        }
        emit({"event": "synced"})

        seen = []
        oper_down = False
        route_seen = False
        deadline = time.time() + 30
        while not (oper_down and route_seen) and time.time() < deadline:
            try:
                msg = stream.get_update(timeout=max(0.1, deadline - time.time()))
            except TimeoutError:
                break
            for path, val in updates_of(msg):
                seen.append([path, val])
                if path.endswith("state/oper-status") and val == "DOWN":
                    oper_down = True
                if ROUTE in path:
                    route_seen = True
            for d in deletes_of(msg):
                seen.append(["delete", d])
        stream.close()
        result["stream"] = {"oper_down": oper_down, "route_seen": route_seen, "updates": seen}

    emit({"event": "done", "result": result})


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        emit({"event": "error", "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()})
        sys.exit(1)
