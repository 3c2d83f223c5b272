// Keeps the module's keys in step with PostgreSQL from Sequelize hooks: meetings through
// CRM.MEETING.SET and CRM.MEETING.DEL, grants (a user may see a client's meetings) through
// SADD and SREM on the user's clients set, each once its transaction has committed.
//
// The hooks only note which rows a write touched; after the commit those rows are read back
// and Redis gets what PostgreSQL holds. Sending the hooks' own values would go wrong in
// Sequelize 6: afterCommit callbacks also run when the COMMIT itself fails (a deferred
// constraint, a serialization failure: sequelize/sequelize#14902), and a savepoint rolled
// back inside a committed transaction undoes writes whose hooks have run.
import { Op } from 'sequelize';

const GRANT_COLUMNS = ['userid', 'clientid', 'installation'];

export async function attachCrmSync(redis, { Meeting, UserClient }) {
  const [, clientsKeyTemplate] = await redis.config('GET', 'crm.clients-key');
  const clientsKey = (grant) => clientsKeyTemplate
    .replaceAll('<user>', grant.userid)
    .replaceAll('<installation>', grant.installation);
  // Without <installation> in the key, one set holds the user's clients of every
  // installation: a client stays in it while any installation grants it.
  const grantScope = clientsKeyTemplate.includes('<installation>')
    ? GRANT_COLUMNS : ['userid', 'clientid'];
  const scopeKey = (grant) => JSON.stringify(grantScope.map((column) => grant[column]));

  // Changes noted per outermost transaction, written once it commits.
  const pending = new WeakMap();

  // Notes the rows a write touched; writes them after the commit, or at once without a
  // transaction (the rows are committed already).
  async function track(rows, options, note) {
    let transaction = options.transaction;
    if (!transaction) {
      const changes = { meetings: new Map(), grants: new Map() };
      for (const row of rows) note(changes, row);
      return write(changes);
    }
    // A savepoint's commit is not the commit.
    while (transaction.parent) transaction = transaction.parent;
    if (!pending.has(transaction)) {
      const changes = { meetings: new Map(), grants: new Map() };
      pending.set(transaction, changes);
      transaction.afterCommit(() => write(changes));
    }
    for (const row of rows) note(pending.get(transaction), row);
  }

  // Meeting id -> the installation Redis may hold it under: the first seen, before the
  // transaction's writes.
  function noteMeeting({ meetings }, meeting) {
    if (!meetings.has(meeting.id)) meetings.set(meeting.id, before(meeting, 'installation'));
  }

  // A grant as it was and as it is (an update may move it from one set to another).
  function noteGrant({ grants }, grant) {
    const was = Object.fromEntries(GRANT_COLUMNS.map((column) => [column, before(grant, column)]));
    for (const noted of [was, pick(grant.get(), GRANT_COLUMNS)]) {
      grants.set(JSON.stringify(noted), noted);
    }
  }

  async function write({ meetings, grants }) {
    try {
      // One MULTI: readers see a transaction's changes together.
      const multi = redis.multi();
      const rows = meetings.size === 0 ? []
        : await Meeting.findAll({ where: { id: [...meetings.keys()] }, transaction: null });
      const committed = new Map(rows.map((row) => [row.id, row]));
      for (const [id, installation] of meetings) {
        const row = committed.get(id);
        // Deleted, or moved: the module will not overwrite another installation's meeting.
        if (row?.installation !== installation) {
          multi.call('CRM.MEETING.DEL', installation, String(id));
        }
        if (row) multi.call('CRM.MEETING.SET', row.installation, String(id), ...meetingFields(row));
      }
      const grantRows = grants.size === 0 ? [] : await UserClient.findAll({
        where: { [Op.or]: [...grants.values()].map((grant) => pick(grant, grantScope)) },
        transaction: null,
      });
      const granted = new Set(grantRows.map(scopeKey));
      for (const grant of grants.values()) {
        const command = granted.has(scopeKey(grant)) ? 'SADD' : 'SREM';
        multi.call(command, clientsKey(grant), String(grant.clientid));
      }
      for (const [error] of await multi.exec()) {
        if (error) throw error;
      }
    } catch (error) {
      console.error(`crm-meetings sync failed, Redis misses meetings [${[...meetings.keys()]}]`
        + ` and grants [${[...grants.keys()]}]: ${error.message}`);
      throw error;
    }
  }

  for (const [model, note] of [[Meeting, noteMeeting], [UserClient, noteGrant]]) {
    const hook = (rows, options) => track(rows, options, note);
    model.addHook('afterCreate', (row, options) => hook([row], options));
    model.addHook('afterUpdate', (row, options) => hook([row], options));
    model.addHook('afterDestroy', (row, options) => hook([row], options));
    model.addHook('afterBulkCreate', hook);
    // Model.update and Model.destroy run the per-row hooks too: their where clause may no
    // longer find the rows once changed.
    model.addHook('beforeBulkUpdate', (options) => { options.individualHooks = true; });
    model.addHook('beforeBulkDestroy', (options) => { options.individualHooks = true; });
  }
}

// A column's value before the write being hooked (a new row has none).
function before(row, column) {
  return row.previous(column) ?? row.get(column);
}

function pick(object, columns) {
  return Object.fromEntries(columns.map((column) => [column, object[column]]));
}

// Every column NOT NULL: CRM.MEETING.SET writes the fields it is given and removes none.
function meetingFields(meeting) {
  return [
    'clientid', String(meeting.clientid),
    'type', meeting.type,
    'status', meeting.status,
    'date', meeting.date.toISOString(), // RFC 3339 in UTC
    'details', JSON.stringify(meeting.details),
  ];
}
