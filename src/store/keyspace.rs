//! The core's [`MeetingStore`] on the Redis keyspace: key names come from the configured
//! templates, values are read through the key API (no command call per meeting).

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
        id: &[u8],
        fields: &[&[u8]],
    ) -> Result<Option<Vec<Option<Bytes>>>, CrmError> {
        let rows = self.read_meetings(installation, &[id.to_vec()], fields)?;
        Ok(rows.into_iter().next().flatten())
    }

    fn apply(&self, installation: &[u8], id: &[u8], effects: &[Effect]) -> Result<(), CrmError> {
        let mut meeting = Vec::new();
        self.meeting_key(installation, id, &mut meeting);
        let mut member = Vec::new();
        self.sort_member(installation, id, &mut member);
        let meetings_set = self.set_key(SetRef::Meetings { installation });
        let value_set = |field: &[u8], value: &[u8]| {
            self.set_key(SetRef::Filter {
                installation,
                field,
                value,
            })
        };
        // Each effect as the command that performs it: (command, the setting its key comes
        // from, the kind that key must hold, the arguments, key first).
        let mut commands: Vec<(&str, KeyRole, KeyKind, Vec<Bytes>)> =
            Vec::with_capacity(effects.len());
        for effect in effects {
            commands.push(match effect {
                Effect::WriteHash(pairs) => {
                    let mut args = vec![meeting.clone()];
                    for (field, value) in pairs {
                        args.extend([field.clone(), value.clone()]);
                    }
                    ("HSET", KeyRole::Meeting, KeyKind::Hash, args)
                }
                Effect::DeleteHash => (
                    "DEL",
                    KeyRole::Meeting,
                    KeyKind::Hash,
                    vec![meeting.clone()],
                ),
                Effect::AddToValueSet { field, value } => {
                    let args = vec![value_set(field, value), id.to_vec()];
                    ("SADD", KeyRole::Filter, KeyKind::Set, args)
                }
                Effect::RemoveFromValueSet { field, value } => {
                    let args = vec![value_set(field, value), id.to_vec()];
                    ("SREM", KeyRole::Filter, KeyKind::Set, args)
                }
                Effect::AddToMeetingsSet => {
                    let args = vec![meetings_set.clone(), id.to_vec()];
                    ("SADD", KeyRole::Meetings, KeyKind::Set, args)
                }
                Effect::RemoveFromMeetingsSet => {
                    let args = vec![meetings_set.clone(), id.to_vec()];
                    ("SREM", KeyRole::Meetings, KeyKind::Set, args)
                }
                Effect::SetSortScore { field, score } => {
                    let args = vec![
                        self.sort_key(installation, field),
                        score.to_string().into_bytes(),
                        member.clone(),
                    ];
                    ("ZADD", KeyRole::Sort, KeyKind::SortedSet, args)
                }
                Effect::RemoveSortScore { field } => {
                    let args = vec![self.sort_key(installation, field), member.clone()];
                    ("ZREM", KeyRole::Sort, KeyKind::SortedSet, args)
                }
            });
        }
        // Every key is checked (permission, slot, type) before the first write, and no key
        // may be asked to hold two types (templates that render the same name would otherwise
        // fail half-way through the write). Two roles of one type (a value set that is also
        // the installation's set) cannot fail half-way and are left to the configuration.
        let mut kinds: HashMap<&[u8], (KeyRole, KeyKind)> = HashMap::new();
        for (_, role, kind, args) in &commands {
            if let Some(key) = args.first() {
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
                    _ => {}
                }
                let key_name = ModuleString::new(key)?;
                self.guard.check(key, &key_name, *role, Need::Write)?;
                ReadKey::open(self.ctx, &key_name, key)?.exists_as(*kind)?;
            }
        }
        for (command, _, _, args) in &commands {
            self.write(command, args)?;
        }
        Ok(())
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
    /// The templates the store names keys with.
    pub fn templates(&self) -> &KeyTemplates {
        &self.keys
    }

    /// Runs one write command and propagates it to replicas and the AOF. The module
    /// propagates these effects (the server wraps one call's effects in MULTI/EXEC), never
    /// its own command, so replicas and AOF loading need no module to stay exact.
    fn write(&self, command: &str, args: &[Bytes]) -> Result<(), CrmError> {
        let options = CallOptionsBuilder::new()
            .replicate()
            .errors_as_replies()
            .build();
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let result: CallResult = self.ctx.call_ext(command, &options, args.as_slice());
        result.map(|_| ()).map_err(|error| {
            CrmError::Internal(format!("{command} failed after validation: {error}"))
        })
    }
}
