// CRM.MEETINGS on Redis Cluster with ioredis' cluster client. The module's key templates
// carry the installation as a hash tag, so each command is routed by its installation.
// Usage: node ioredis_cluster.mjs port [port ...]
import Redis from 'ioredis';

const ports = process.argv.slice(2).map(Number);
const cluster = new Redis.Cluster(ports.map((port) => ({ host: '127.0.0.1', port })));

for (let id = 1; id <= 25; id++) {
  const client = (id % 5) + 1;
  await cluster.call(
    'CRM.MEETING.SET', 'demo', String(id),
    'clientid', String(client),
    'date', `2024-01-${String(id).padStart(2, '0')}T09:00:00Z`,
    'details', JSON.stringify({ subject: `Meeting ${id} with client ${client}` }),
  );
}
// The user's clients live in the installation's slot too.
await cluster.sadd('{demo}:clients_for_user:u1', '1', '2', '3');
const [total, ...meetings] = await cluster.call('CRM.MEETINGS', 'demo', 'u1', 'LIMIT', '0', '5');
console.log(`user u1 sees ${total} of 25 meetings; first: ${meetings.map(([id]) => id).join(' ')}`);
cluster.disconnect();
