// CRM.MEETINGS from Node.js with node-redis: load a demo installation, then page through
// one user's meetings, 10 at a time, with the JSON reply.
// Usage: node node_redis.mjs [port]
import { createClient } from 'redis';

const port = Number(process.argv[2] ?? 6379);
const client = createClient({ url: `redis://127.0.0.1:${port}` });
await client.connect();

// 25 meetings of installation "demo"; user u1 sees clients 1, 2 and 3.
for (let id = 1; id <= 25; id++) {
  const client_id = (id % 5) + 1;
  await client.sendCommand([
    'CRM.MEETING.SET', 'demo', String(id),
    'clientid', String(client_id),
    'type', ['email', 'call', 'sms'][id % 3],
    'status', id % 2 ? 'open' : 'close',
    'date', `2024-01-${String(id).padStart(2, '0')}T09:00:00Z`,
    'details', JSON.stringify({ subject: `Meeting ${id} with client ${client_id}` }),
  ]);
}
await client.sendCommand(['DEL', 'clients_for_user:u1']);
await client.sendCommand(['SADD', 'clients_for_user:u1', '1', '2', '3']);
console.log('loaded 25 meetings into installation demo');

let offset = 0;
let total = 0;
let page = 1;
do {
  const reply = await client.sendCommand([
    'CRM.MEETINGS', 'demo', 'u1', 'SORTBY', 'date', 'ASC', 'LIMIT', String(offset), '10', 'FORMAT', 'JSON',
  ]);
  const result = JSON.parse(reply);
  total = result.total;
  const lines = result.meetings.map((m) => `${m.id}:${m.details.subject}`);
  console.log(`page ${page}: ${lines.join(', ')}`);
  offset += 10;
  page += 1;
} while (offset < total);
console.log(`user u1 sees ${total} of 25 meetings`);
await client.quit();
