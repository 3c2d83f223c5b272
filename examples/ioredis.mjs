// CRM.MEETINGS from Node.js with ioredis: load a demo installation in one pipeline, then
// page through one user's meetings, 10 at a time, with the array reply.
// Usage: node ioredis.mjs [port]
import Redis from 'ioredis';

const port = Number(process.argv[2] ?? 6379);
const redis = new Redis(port, '127.0.0.1');

// 25 meetings of installation "demo"; user u1 sees clients 1, 2 and 3.
const pipeline = redis.pipeline();
for (let id = 1; id <= 25; id++) {
  const client = (id % 5) + 1;
  pipeline.call(
    'CRM.MEETING.SET', 'demo', String(id),
    'clientid', String(client),
    'type', ['email', 'call', 'sms'][id % 3],
    'status', id % 2 ? 'open' : 'close',
    'date', `2024-01-${String(id).padStart(2, '0')}T09:00:00Z`,
    'details', JSON.stringify({ subject: `Meeting ${id} with client ${client}` }),
  );
}
pipeline.del('clients_for_user:u1');
pipeline.sadd('clients_for_user:u1', '1', '2', '3');
for (const [error] of await pipeline.exec()) {
  if (error) throw error;
}
console.log('loaded 25 meetings into installation demo');

let offset = 0;
let total = 0;
let page = 1;
do {
  // [total, [id, details], [id, details], ...]
  const [count, ...meetings] = await redis.call(
    'CRM.MEETINGS', 'demo', 'u1', 'SORTBY', 'date', 'ASC', 'LIMIT', String(offset), '10',
  );
  total = count;
  const lines = meetings.map(([id, details]) => `${id}:${JSON.parse(details).subject}`);
  console.log(`page ${page}: ${lines.join(', ')}`);
  offset += 10;
  page += 1;
} while (offset < total);
console.log(`user u1 sees ${total} of 25 meetings`);
redis.disconnect();
