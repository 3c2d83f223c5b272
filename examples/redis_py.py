"""CRM.MEETINGS from Python with redis-py: load a demo installation in one pipeline, then
page through one user's meetings, 10 at a time, with the array reply.
Usage: python3 redis_py.py [port]"""
import json
import sys

import redis

port = int(sys.argv[1]) if len(sys.argv) > 1 else 6379
r = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)

# 25 meetings of installation "demo"; user u1 sees clients 1, 2 and 3.
pipe = r.pipeline(transaction=False)
for id in range(1, 26):
    client = id % 5 + 1
    pipe.execute_command(
        "CRM.MEETING.SET", "demo", str(id),
        "clientid", str(client),
        "type", ["email", "call", "sms"][id % 3],
        "status", "open" if id % 2 else "close",
        "date", f"2024-01-{id:02d}T09:00:00Z",
        "details", json.dumps({"subject": f"Meeting {id} with client {client}"}),
    )
pipe.delete("clients_for_user:u1")
pipe.sadd("clients_for_user:u1", "1", "2", "3")
pipe.execute()
print("loaded 25 meetings into installation demo")

offset, total, page = 0, 0, 1
while True:
    # [total, [id, details], [id, details], ...]
    total, *meetings = r.execute_command(
        "CRM.MEETINGS", "demo", "u1", "SORTBY", "date", "ASC", "LIMIT", str(offset), "10"
    )
    lines = [f"{id}:{json.loads(details)['subject']}" for id, details in meetings]
    print(f"page {page}: {', '.join(lines)}")
    offset += 10
    page += 1
    if offset >= total:
        break
print(f"user u1 sees {total} of 25 meetings")
