//! The core's [`MeetingStore`] on the Redis keyspace: key names come from the configured
//! templates, values are read through the key API (no command call per meeting).

use std::borrow::Cow;
use std::collections::HashMap;

use redis_module::{CallOptionsBuilder, CallResult, Context, RedisValue};

use super::access::{KeyGuard, Need};
use super::keys::{KeyRole, KeyTemplates, Placeholder};
use crate::core::index::{Part, SetName};
use crate::core::store::{IndexRow, IndexSource, MeetingRow, MeetingStore, MeetingWriter};
use crate::core::types::{Bytes, Effect, SetRef, CLIENT_FIELD};
use crate::error::{printable, CrmError, KeyKind};
use crate::ffi::key::{ReadKey, ScanCursor};
use crate::ffi::string::ModuleString;

pub struct KeyspaceStore<'a> {
    ctx: &'a Context,
    keys: KeyTemplates,
    guard: KeyGuard,
}

/// Members an index scan reads per opening of a set's key.
const SCAN_BATCH: usize = 256;

impl<'a> KeyspaceStore<'a> {
    pub fn new(ctx: &'a Context, keys: KeyTemplates, guard: KeyGuard) -> Self {
        KeyspaceStore { ctx, keys, guard }
    }

    /// The store of a command's caller: its user's permissions, its installation's slot.
    pub fn for_caller(
        ctx: &'a Context,
        keys: KeyTemplates,
        installation: &[u8],
    ) -> Result<Self, CrmError> {
        Ok(Self::new(
            ctx,
            keys,
            KeyGuard::for_caller(ctx, installation)?,
        ))
    }

    /// Opens a derived key for reading, once the guard allows it.
    pub fn open(&self, name: &[u8], role: KeyRole) -> Result<ReadKey, CrmError> {
        let key_name = ModuleString::new(name)?;
        self.guard.check(name, &key_name, role, Need::Read)?;
        ReadKey::open(self.ctx, &key_name, name)
    }

    /// Fails unless the caller may `need` the set (and, in cluster mode, it is in the slot).
    pub fn check_set(&self, set: SetRef<'_>, need: Need) -> Result<(), CrmError> {
        self.check_key(&self.set_key(set), Self::set_role(set), need)
    }

    /// Fails unless the caller may `need` the key from the template of `role`.
    pub fn check_key(&self, key: &[u8], role: KeyRole, need: Need) -> Result<(), CrmError> {
        self.guard.check(key, &ModuleString::new(key)?, role, need)
    }

    fn set_role(set: SetRef<'_>) -> KeyRole {
        match set {
            SetRef::Filter { .. } => KeyRole::Filter,
            SetRef::Meetings { .. } => KeyRole::Meetings,
            SetRef::VisibleClients { .. } => KeyRole::Clients,
        }
    }

    pub fn set_key(&self, set: SetRef<'_>) -> Bytes {
        match set {
            SetRef::Filter {
                installation,
                field,
                value,
            } => self.keys.filter.render(|slot| match slot {
                Placeholder::Installation => installation,
                Placeholder::Field => field,
                Placeholder::Value => value,
                Placeholder::User | Placeholder::Id => b"",
            }),
            SetRef::Meetings { installation } => self.keys.meetings.render(|slot| match slot {
                Placeholder::Installation => installation,
                _ => b"",
            }),
            SetRef::VisibleClients { installation, user } => {
                self.keys.clients.render(|slot| match slot {
                    Placeholder::Installation => installation,
                    Placeholder::User => user,
                    _ => b"",
                })
            }
        }
    }

    fn open_set(&self, set: SetRef<'_>) -> Result<ReadKey, CrmError> {
        let key = self.open(&self.set_key(set), Self::set_role(set))?;
        key.exists_as(KeyKind::Set)?;
        Ok(key)
    }

    /// The key an index part is loaded from, with the role of its template.
    pub fn part_key(&self, installation: &[u8], part: &Part) -> (Bytes, KeyRole) {
        let set = match part {
            Part::Sort(field) => return (self.sort_key(installation, field), KeyRole::Sort),
            Part::Set(SetName::Meetings) => SetRef::Meetings { installation },
            Part::Set(SetName::Value(field, value)) => SetRef::Filter {
                installation,
                field,
                value,
            },
            Part::Clients(user) => SetRef::VisibleClients { installation, user },
        };
        (self.set_key(set), Self::set_role(set))
    }

    pub fn sort_key(&self, installation: &[u8], field: &[u8]) -> Bytes {
        self.keys.sort.render(|slot| match slot {
            Placeholder::Installation => installation,
            Placeholder::Field => field,
            _ => b"",
        })
    }

    pub fn meeting_key(&self, installation: &[u8], id: &[u8], name: &mut Bytes) {
        self.keys.meeting.render_into(name, |slot| match slot {
            Placeholder::Installation => installation,
            Placeholder::Id => id,
            _ => b"",
        });
    }

    fn sort_member(&self, installation: &[u8], id: &[u8], member: &mut Bytes) {
        self.keys
            .sort_member
            .render_into(member, |slot| match slot {
                Placeholder::Installation => installation,
                Placeholder::Id => id,
                _ => b"",
            });
    }

    /// Opens each meeting's hash in turn and reads `fields` from it; `None` where the
    /// meeting has no hash. The key name buffer is reused across the batch.
    fn read_meetings(
        &self,
        installation: &[u8],
        ids: &[Bytes],
        fields: &[&[u8]],
    ) -> Result<Vec<Option<Vec<Option<Bytes>>>>, CrmError> {
        self.read_meetings_with(installation, ids, fields, |_, values| values)
    }

    /// `read_meetings`, with each hash's values passed through `row` with its open key.
    fn read_meetings_with<T>(
        &self,
        installation: &[u8],
        ids: &[Bytes],
        fields: &[&[u8]],
        row: impl Fn(&ReadKey, Vec<Option<Bytes>>) -> T,
    ) -> Result<Vec<Option<T>>, CrmError> {
        let fields: Vec<ModuleString> = fields
            .iter()
            .map(|field| ModuleString::new(field))
            .collect::<Result<_, _>>()?;
        let mut rows = Vec::with_capacity(ids.len());
        let mut name = Vec::new();
        for id in ids {
            self.meeting_key(installation, id, &mut name);
            let key = self.open(&name, KeyRole::Meeting)?;
            rows.push(if key.exists_as(KeyKind::Hash)? {
                let values = fields
                    .iter()
                    .map(|field| key.hash_field(field))
                    .collect::<Result<_, _>>()?;
                Some(row(&key, values))
            } else {
                None
            });
        }
        Ok(rows)
    }
}

impl MeetingStore for KeyspaceStore<'_> {
    fn set_len(&self, set: SetRef<'_>) -> Result<usize, CrmError> {
        self.open_set(set)?.cardinality()
    }

    fn set_members(&self, set: SetRef<'_>) -> Result<Vec<Bytes>, CrmError> {
        self.open_set(set)?.set_members()
    }

    /// One SMISMEMBER for the whole batch: the key API has no set membership test.
    fn set_contains_each(&self, set: SetRef<'_>, ids: &[Bytes]) -> Result<Vec<bool>, CrmError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Opened (ACL, slot, type) like any read: SMISMEMBER runs as the module, not as the
        // caller, and a key of another type must answer WRONGTYPE, not an internal error.
        let key = self.set_key(set);
        if !self
            .open(&key, Self::set_role(set))?
            .exists_as(KeyKind::Set)?
        {
            return Ok(vec![false; ids.len()]);
        }
        let mut args: Vec<&[u8]> = Vec::with_capacity(ids.len() + 1);
        args.push(&key);
        args.extend(ids.iter().map(Vec::as_slice));
        match self.ctx.call("SMISMEMBER", args.as_slice()) {
            Ok(RedisValue::Array(found)) if found.len() == ids.len() => Ok(found
                .iter()
                .map(|member| matches!(member, RedisValue::Integer(1)))
                .collect()),
            Ok(other) => Err(CrmError::Internal(format!(
                "unexpected SMISMEMBER reply {other:?}"
            ))),
            Err(error) => Err(CrmError::Internal(format!("SMISMEMBER failed: {error}"))),
        }
    }

    fn has_sort_index(&self, installation: &[u8], field: &[u8]) -> Result<bool, CrmError> {
        self.open(&self.sort_key(installation, field), KeyRole::Sort)?
            .exists_as(KeyKind::SortedSet)
    }

    fn sort_scores(
        &self,
        installation: &[u8],
        field: &[u8],
        ids: &[Bytes],
    ) -> Result<Vec<Option<f64>>, CrmError> {
        let key = self.open(&self.sort_key(installation, field), KeyRole::Sort)?;
        if !key.exists_as(KeyKind::SortedSet)? {
            return Ok(vec![None; ids.len()]);
        }
        let mut member = Vec::new();
        ids.iter()
            .map(|id| {
                self.sort_member(installation, id, &mut member);
                key.zset_score(&ModuleString::new(&member)?)
            })
            .collect()
    }

    fn meeting_rows(
        &self,
        installation: &[u8],
        ids: &[Bytes],
        sort_field: Option<&[u8]>,
    ) -> Result<Vec<Option<MeetingRow>>, CrmError> {
        let fields: Vec<&[u8]> = std::iter::once(CLIENT_FIELD).chain(sort_field).collect();
        let rows = self.read_meetings(installation, ids, &fields)?;
        Ok(rows
            .into_iter()
            .map(|row| {
                row.map(|values| {
                    let mut values = values.into_iter();
                    MeetingRow {
                        client: values.next().flatten(),
                        sort_value: values.next().flatten(),
                    }
                })
            })
            .collect())
    }

    fn fields(
        &self,
        installation: &[u8],
        ids: &[Bytes],
        fields: &[&[u8]],
    ) -> Result<Vec<Vec<Option<Bytes>>>, CrmError> {
        let rows = self.read_meetings(installation, ids, fields)?;
        Ok(rows
            .into_iter()
            .map(|row| row.unwrap_or_else(|| vec![None; fields.len()]))
            .collect())
    }
}

impl MeetingWriter for KeyspaceStore<'_> {
    fn stored_fields(
        &self,
        installation: &[u8],
        ids: &[Bytes],
        fields: &[&[u8]],
    ) -> Result<Vec<Option<Vec<Option<Bytes>>>>, CrmError> {
        self.read_meetings(installation, ids, fields)
    }

    fn apply(&self, installation: &[u8], writes: &[(&[u8], &[Effect])]) -> Result<(), CrmError> {
        // One meeting's commands are one each already.
        let several = writes.len() > 1;
        let mut commands = self.commands_of(installation, writes, several);
        // Where two names render one key (field `type:x` value `y`, field `type` value
        // `x:y`), a meeting's add and removal there do not commute: each command in turn.
        let mut names: HashMap<&[u8], KeyName> = HashMap::new();
        let shared = several
            && commands
                .iter()
                .filter(|command| command.role != KeyRole::Meeting)
                .any(|command| {
                    let name = (command.role, command.named_by.0, command.named_by.1);
                    *names.entry(&command.key).or_insert(name) != name
                });
        if shared {
            commands = self.commands_of(installation, writes, false);
        }
        // Every key is checked (permission, slot, type) before the first write, and no key
        // may be asked to hold two types (templates that render the same name would otherwise
        // fail half-way through the write). Two roles of one type (a value set that is also
        // the installation's set) cannot fail half-way and are left to the configuration.
        let mut kinds: HashMap<&[u8], (KeyRole, KeyKind)> = HashMap::new();
        for WriteCommand {
            role, kind, key, ..
        } in &commands
        {
            match kinds.insert(key, (*role, *kind)) {
                Some((other, other_kind)) if other_kind != *kind => {
                    return Err(CrmError::BadArgument(format!(
                        "the templates crm.{} and crm.{} both name the key '{}': \
                         change one of them",
                        other.setting(),
                        role.setting(),
                        printable(key)
                    )))
                }
                Some(_) => {}
                None => {
                    let key_name = ModuleString::new(key)?;
                    self.guard.check(key, &key_name, *role, Need::Write)?;
                    ReadKey::open(self.ctx, &key_name, key)?.exists_as(*kind)?;
                }
            }
        }
        for command in &commands {
            self.write(command.name, &command.key, &command.args)?;
        }
        Ok(())
    }
}

/// A score as ZADD takes it: the same text as `f64`'s, by the cheaper integer formatting for
/// the usual whole seconds (zero keeps its sign through the float's).
fn score_text(score: f64) -> Bytes {
    if score.fract() == 0.0 && score != 0.0 && score.abs() < 1e15 {
        (score as i64).to_string().into_bytes()
    } else {
        score.to_string().into_bytes()
    }
}

/// What renders a set's or sorted set's key: its role, field and value.
type KeyName<'e> = (KeyRole, &'e [u8], &'e [u8]);

/// One command of a write: its name, the setting its key comes from, the kind that key must
/// hold, the key, and the arguments after it (borrowed from the effects where they can be).
struct WriteCommand<'e> {
    name: &'static str,
    role: KeyRole,
    kind: KeyKind,
    key: Bytes,
    /// The field and value the key is rendered from (empty for the meeting's hash).
    named_by: (&'e [u8], &'e [u8]),
    args: Vec<Cow<'e, [u8]>>,
}

/// A field name or value as part of a map key, compared inline: these few bytes cost less
/// than a call to `memcmp` (measured: a CRM.MEETING.MSET spent 7% of its time there).
struct Inline<'a>(&'a [u8]);

impl PartialEq for Inline<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && self.0.iter().zip(other.0).all(|(a, b)| a == b)
    }
}

impl Eq for Inline<'_> {}

impl std::hash::Hash for Inline<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl IndexSource for KeyspaceStore<'_> {
    type Cursor = ScanCursor;

    fn cursor(&self) -> Result<ScanCursor, CrmError> {
        ScanCursor::new()
    }

    fn index_rows(
        &self,
        installation: &[u8],
        ids: &[Bytes],
    ) -> Result<Vec<Option<IndexRow>>, CrmError> {
        // A field TTL counts too: past it the client reads as missing, deleted or not.
        self.read_meetings_with(installation, ids, &[CLIENT_FIELD], |key, values| IndexRow {
            client: values.into_iter().next().flatten(),
            expires: key.has_expire().unwrap_or(false) || key.has_field_expire().unwrap_or(false),
        })
    }

    fn scan_set(
        &self,
        set: SetRef<'_>,
        cursor: &ScanCursor,
        out: &mut Vec<Bytes>,
    ) -> Result<bool, CrmError> {
        let key = self.open_set(set)?;
        // One ScanKey call returns a bucket or two: a batch of them per opening.
        let start = out.len();
        while key.scan_step(cursor, out)? {
            if out.len() - start >= SCAN_BATCH {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl KeyspaceStore<'_> {
    /// Each effect as the command that performs it, in order. With `merge`, the adds to (or
    /// removals from) one set or sorted set, named by one field and value, are one command
    /// for all the meetings: they are distinct, so these commute unless two names render
    /// one key (see `apply`).
    fn commands_of<'e>(
        &self,
        installation: &[u8],
        writes: &[(&'e [u8], &'e [Effect])],
        merge: bool,
    ) -> Vec<WriteCommand<'e>> {
        let mut commands: Vec<WriteCommand> = Vec::new();
        let mut merged: HashMap<(bool, KeyRole, Inline, Inline), usize> = HashMap::new();
        for &(id, effects) in writes {
            let mut meeting = Vec::new();
            self.meeting_key(installation, id, &mut meeting);
            let mut member = Vec::new();
            self.sort_member(installation, id, &mut member);
            for effect in effects {
                let (command, role, kind, field, value, args): (_, _, _, &[u8], &[u8], _) =
                    match effect {
                        Effect::WriteHash(pairs) => {
                            let args = pairs
                                .iter()
                                .flat_map(|(field, value)| [field, value])
                                .map(|part| Cow::Borrowed(part.as_slice()))
                                .collect();
                            commands.push(WriteCommand {
                                name: "HSET",
                                role: KeyRole::Meeting,
                                kind: KeyKind::Hash,
                                key: meeting.clone(),
                                named_by: (&[], &[]),
                                args,
                            });
                            continue;
                        }
                        Effect::DeleteHash => {
                            commands.push(WriteCommand {
                                name: "DEL",
                                role: KeyRole::Meeting,
                                kind: KeyKind::Hash,
                                key: meeting.clone(),
                                named_by: (&[], &[]),
                                args: Vec::new(),
                            });
                            continue;
                        }
                        Effect::AddToValueSet { field, value } => {
                            let args = vec![Cow::Borrowed(id)];
                            ("SADD", KeyRole::Filter, KeyKind::Set, field, value, args)
                        }
                        Effect::RemoveFromValueSet { field, value } => {
                            let args = vec![Cow::Borrowed(id)];
                            ("SREM", KeyRole::Filter, KeyKind::Set, field, value, args)
                        }
                        Effect::AddToMeetingsSet => {
                            let args = vec![Cow::Borrowed(id)];
                            ("SADD", KeyRole::Meetings, KeyKind::Set, &[], &[], args)
                        }
                        Effect::RemoveFromMeetingsSet => {
                            let args = vec![Cow::Borrowed(id)];
                            ("SREM", KeyRole::Meetings, KeyKind::Set, &[], &[], args)
                        }
                        Effect::SetSortScore { field, score } => {
                            let score = Cow::Owned(score_text(*score));
                            let args = vec![score, Cow::Owned(member.clone())];
                            ("ZADD", KeyRole::Sort, KeyKind::SortedSet, field, &[], args)
                        }
                        Effect::RemoveSortScore { field } => {
                            let args = vec![Cow::Owned(member.clone())];
                            ("ZREM", KeyRole::Sort, KeyKind::SortedSet, field, &[], args)
                        }
                    };
                // A command adds (SADD, ZADD) or removes (SREM, ZREM) for its role.
                let adds = matches!(command, "SADD" | "ZADD");
                let mut new_command = || {
                    let key = match role {
                        KeyRole::Filter => self.set_key(SetRef::Filter {
                            installation,
                            field,
                            value,
                        }),
                        KeyRole::Meetings => self.set_key(SetRef::Meetings { installation }),
                        _ => self.sort_key(installation, field),
                    };
                    commands.push(WriteCommand {
                        name: command,
                        role,
                        kind,
                        key,
                        named_by: (field, value),
                        args: Vec::new(),
                    });
                    commands.len() - 1
                };
                let at = match merge {
                    true => *merged
                        .entry((adds, role, Inline(field), Inline(value)))
                        .or_insert_with(new_command),
                    false => new_command(),
                };
                if let Some(merged) = commands.get_mut(at) {
                    merged.args.extend(args);
                }
            }
        }
        commands
    }

    /// The templates the store names keys with.
    pub fn templates(&self) -> &KeyTemplates {
        &self.keys
    }

    /// Runs one write command and propagates it to replicas and the AOF. The module
    /// propagates these effects (the server wraps one call's effects in MULTI/EXEC), never
    /// its own command, so replicas and AOF loading need no module to stay exact.
    fn write(&self, command: &str, key: &[u8], args: &[Cow<[u8]>]) -> Result<(), CrmError> {
        let options = CallOptionsBuilder::new()
            .replicate()
            .errors_as_replies()
            .build();
        let args: Vec<&[u8]> = std::iter::once(key)
            .chain(args.iter().map(|arg| arg.as_ref()))
            .collect();
        let result: CallResult = self.ctx.call_ext(command, &options, args.as_slice());
        result.map(|_| ()).map_err(|error| {
            CrmError::Internal(format!("{command} failed after validation: {error}"))
        })
    }
}
