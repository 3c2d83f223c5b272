// Infinite scroll with keyset paging (AFTER), from Node.js with ioredis: each page starts
// after the last meeting shown, so a meeting added above the reader's position while they
// scroll shifts nothing: no row repeats, none is skipped (LIMIT <offset> would repeat one).
// Usage: node infinite_scroll.mjs [port]
import Redis from 'ioredis';

const port = Number(process.argv[2] ?? 6379);
const redis = new Redis(port, '127.0.0.1');

// 25 meetings of installation "scroll" in January 2024; user u1 sees clients 1, 2 and 3.
const pipeline = redis.pipeline();
for (let id = 1; id <= 25; id++) {
  const client = (id % 5) + 1;
  pipeline.call(
    'CRM.MEETING.SET', 'scroll', String(id),
    'clientid', String(client),
    'status', id % 2 ? 'open' : 'close',
    'date', `2024-01-${String(id).padStart(2, '0')}`,
    'details', JSON.stringify({ subject: `Meeting ${id}` }),
  );
}
pipeline.del('clients_for_user:u1');
pipeline.sadd('clients_for_user:u1', '1', '2', '3');
for (const [error] of await pipeline.exec()) {
  if (error) throw error;
}

// [total, [id, details], ...]: the first page by LIMIT, every later one AFTER the last id.
async function page(after) {
  const paging = after === undefined ? ['LIMIT', '0', '6'] : ['AFTER', after, '6'];
  const [total, ...meetings] = await redis.call(
    'CRM.MEETINGS', 'scroll', 'u1', 'SORTBY', 'date', 'DESC', ...paging,
  );
  return { total, ids: meetings.map(([id]) => id) };
}

const seen = [];
let last;
for (let n = 1; ; n++) {
  const { total, ids } = await page(last);
  if (ids.length === 0) break;
  console.log(`page ${n} (of ${total} meetings): ${ids.join(' ')}`);
  seen.push(...ids);
  last = ids[ids.length - 1];
  if (n === 1) {
    // Meanwhile a newer meeting arrives, above the reader's position.
    await redis.call(
      'CRM.MEETING.SET', 'scroll', '100', 'clientid', '1', 'status', 'open',
      'date', '2024-02-01', 'details', JSON.stringify({ subject: 'Meeting 100' }),
    );
  }
}
const repeated = seen.length - new Set(seen).size;
console.log(`${seen.length} meetings shown, ${repeated} repeated`);
redis.disconnect();
