"""Fills a folder by N separate `item.add` requests over one socket
connection: N changes, N envelopes (the worst case for an initial sync).

Usage: fill_edits.py N SOCKET FOLDER [DIGITS]  (DIGITS pads the names, default 6)
"""
import json
import socket
import sys

n, path, folder = int(sys.argv[1]), sys.argv[2], sys.argv[3]
digits = int(sys.argv[4]) if len(sys.argv) > 4 else 6
s = socket.socket(socket.AF_UNIX)
s.connect(path)
f = s.makefile("rwb")
for i in range(n):
    k = f"{i:0{digits}}"
    req = {"jsonrpc": "2.0", "id": i + 1, "method": "item.add", "params": {
        "folder": folder, "item_type": "login", "name": f"svc{k}",
        "fields": {"username": f"user{i}", "password": f"pw-{k}-0123456789abcdef"},
        "urls": [f"https://svc{k}.example"]}}
    f.write(json.dumps(req).encode() + b"\n")
    f.flush()
    while True:
        msg = json.loads(f.readline())
        if msg.get("id") == i + 1:
            if "error" in msg:
                sys.exit(f"item.add failed: {msg['error']}")
            break
