// Keeping Redis in sync from Sequelize: meetings and grants written to PostgreSQL reach the
// module once committed (the hooks of sync.mjs). After each step, prints the meetings user
// `ana` of installation 30 sees, by date: `<step>: <ids>`.
// Usage: node demo.mjs <postgres-url> <redis-port> [--step-by-step]
// (--step-by-step waits for a line on standard input after each step: tests/sequelize.rs
// reads both databases in between.)
import { createInterface } from 'node:readline';
import Redis from 'ioredis';
import { DataTypes, Deferrable, ForeignKeyConstraintError, Sequelize } from 'sequelize';
import { attachCrmSync } from './sync.mjs';

const [url, port] = process.argv.slice(2);
if (!url || !port) {
  console.error('usage: node demo.mjs <postgres-url> <redis-port> [--step-by-step]');
  process.exit(2);
}
const INSTALLATION = '30';
const USER = 'ana';
const { DATE, INTEGER, STRING } = DataTypes;
const table = (tableName) => ({ tableName, timestamps: false });

const sequelize = new Sequelize(url, { logging: false });
const redis = new Redis(Number(port), '127.0.0.1');

const Client = sequelize.define('Client', {
  id: { type: INTEGER, primaryKey: true },
  name: { type: STRING, allowNull: false },
}, table('clients'));
const Meeting = sequelize.define('Meeting', {
  id: { type: INTEGER, primaryKey: true },
  installation: { type: STRING, allowNull: false },
  // Checked at COMMIT: one step shows a commit that fails.
  clientid: {
    type: INTEGER,
    allowNull: false,
    references: { model: Client, key: 'id', deferrable: Deferrable.INITIALLY_DEFERRED },
  },
  type: { type: STRING, allowNull: false },
  status: { type: STRING, allowNull: false },
  date: { type: DATE, allowNull: false },
  details: { type: DataTypes.JSON, allowNull: false, defaultValue: {} },
}, table('meetings'));
// A grant: user `userid` sees the meetings of client `clientid` in `installation`.
const UserClient = sequelize.define('UserClient', {
  userid: { type: STRING, primaryKey: true },
  clientid: { type: INTEGER, primaryKey: true, references: { model: Client, key: 'id' } },
  installation: { type: STRING, primaryKey: true },
}, table('user_clients'));

await attachCrmSync(redis, { Meeting, UserClient });

const lines = process.argv.includes('--step-by-step')
  ? createInterface({ input: process.stdin }) : null;
const pauses = lines?.[Symbol.asyncIterator]();

async function show(step) {
  const [, ...page] = await redis.call(
    'CRM.MEETINGS', INSTALLATION, USER, 'SORTBY', 'date', 'ASC', 'LIMIT', '0', '100',
  );
  console.log(`${step}: ${page.map(([id]) => id).join(' ')}`);
  if (pauses && (await pauses.next()).done) process.exit(1);
}

const meeting = (id, clientid, type, status, day, subject) => ({
  id, installation: INSTALLATION, clientid, type, status,
  date: `2025-03-${day}T09:00:00Z`, details: { subject },
});

// A second run starts from the same state: the previous run's rows, deleted through the
// hooks, leave Redis too.
await sequelize.sync();
await UserClient.destroy({ where: {} });
await Meeting.destroy({ where: {} });
await Client.destroy({ where: {} });
await Client.bulkCreate([
  { id: 1, name: 'Acme' }, { id: 2, name: 'Globex' }, { id: 3, name: 'Initech' },
]);
await UserClient.bulkCreate([
  { userid: USER, clientid: 1, installation: INSTALLATION },
  { userid: USER, clientid: 2, installation: INSTALLATION },
]);

await Meeting.create(meeting(9001, 1, 'email', 'open', '03', 'Kick-off'));
await show('created 9001');

await Meeting.bulkCreate([
  meeting(9002, 2, 'call', 'open', '04', 'Pricing'),
  meeting(9003, 3, 'email', 'open', '05', 'Contract'),
  meeting(9004, 1, 'sms', 'close', '06', 'Reminder'),
  meeting(9005, 2, 'email', 'open', '07', 'Demo'),
]);
await show('bulk created 9002 to 9005');

const pricing = await Meeting.findByPk(9002);
await pricing.update({ status: 'close' });
await show('closed 9002');

await Meeting.update({ clientid: 3 }, { where: { id: 9005 } });
await show('moved 9005 to client 3');

await Meeting.destroy({ where: { id: 9004 } });
await show('destroyed 9004');

try {
  await sequelize.transaction(async (transaction) => {
    await Meeting.create(meeting(9006, 1, 'call', 'open', '08', 'Cancelled'), { transaction });
    await Meeting.update({ status: 'close' }, { where: { id: 9001 }, transaction });
    throw new Error('cancelled');
  });
} catch (error) {
  if (error.message !== 'cancelled') throw error;
}
await show('rolled back creating 9006 and closing 9001');

try {
  await sequelize.transaction(async (transaction) => {
    await Meeting.create(meeting(9007, 99, 'call', 'open', '09', 'Nobody'), { transaction });
    await Meeting.update({ status: 'close' }, { where: { id: 9001 }, transaction });
  });
} catch (error) {
  // Client 99 does not exist: the deferred foreign key fails the COMMIT.
  if (!(error instanceof ForeignKeyConstraintError)) throw error;
}
await show('commit failed creating 9007 and closing 9001');

await sequelize.transaction(async (transaction) => {
  await Meeting.create(meeting(9008, 2, 'visit', 'open', '10', 'Site visit'), { transaction });
  const contract = await Meeting.findByPk(9003, { transaction });
  await contract.update({ clientid: 1 }, { transaction });
  await show('inside a transaction creating 9008 and moving 9003 to client 1');
});
await show('committed');

await UserClient.create({ userid: USER, clientid: 3, installation: INSTALLATION });
await show('granted client 3');

await UserClient.destroy({ where: { userid: USER, clientid: 1 } });
await show('revoked client 1');

lines?.close();
await sequelize.close();
redis.disconnect();
