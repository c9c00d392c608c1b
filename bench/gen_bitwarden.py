#!/usr/bin/env python3
"""Writes an unencrypted Bitwarden JSON export with N logins (and a TOTP on
every tenth) across 20 folders: the input of bench/import_bench.sh."""
import json, sys, uuid

n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
folders = [{"id": str(uuid.UUID(int=i + 1)), "name": f"Team {i} / Ops"} for i in range(20)]
items = []
for i in range(n):
    items.append({
        "id": str(uuid.UUID(int=10_000_000 + i)),
        "folderId": folders[i % 20]["id"],
        "type": 1,
        "name": f"service {i:05d}",
        "notes": f"account {i}\nrotated yearly" if i % 3 == 0 else None,
        "favorite": False,
        "fields": [{"name": "pin", "value": f"{i % 10000:04d}", "type": 1}] if i % 5 == 0 else [],
        "login": {
            "uris": [{"match": None, "uri": f"https://svc{i:05d}.example.com/login"}],
            "username": f"user{i:05d}@example.com",
            "password": f"pw-{i:05d}-Xq7!vR2#",
            "totp": "otpauth://totp/Example:u?secret=JBSWY3DPEHPK3PXP&issuer=Example" if i % 10 == 0 else None,
        },
    })
json.dump({"encrypted": False, "folders": folders, "items": items}, sys.stdout)
