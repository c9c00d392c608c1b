"""10,000 logins in the coffer-json export format, for bench/audit_get_bench.sh."""
import json
items=[{"type":"login","name":f"svc{i:05d}","folder":"Personal","fields":{"username":f"user{i:05d}","password":f"secret-{i:05d}-xyz"},"urls":[f"https://svc{i:05d}.example"],"created_ms":1764700000000,"updated_ms":1764700000000} for i in range(1,10001)]
json.dump({"format":"coffer-export","version":1,"exported_at_ms":1764748800000,"items":items},open("/tmp/coffer_audit_items.json","w"))
