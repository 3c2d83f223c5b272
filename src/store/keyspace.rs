//! The core's [`MeetingStore`] on the Redis keyspace: key names come from the configured
//! templates, values are read through the key API (no command call per meeting).

use redis_module::{Context, RedisValue};

use super::keys::{KeyTemplates, Placeholder};
use super::redis_key::{ModuleString, ReadKey};
use crate::core::query::Bytes;
use crate::core::store::{MeetingRow, MeetingStore, SetRef};
use crate::error::{CrmError, KeyKind};

const CLIENT_FIELD: &[u8] = b"clientid";
const DETAILS_FIELD: &[u8] = b"details";

pub struct KeyspaceStore<'a> {
    ctx: &'a Context,
    keys: KeyTemplates,
}

impl<'a> KeyspaceStore<'a> {
    pub fn new(ctx: &'a Context, keys: KeyTemplates) -> Self {
        KeyspaceStore { ctx, keys }
    }

    fn set_key(&self, set: SetRef<'_>) -> Bytes {
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
        let key = ReadKey::open(self.ctx, &self.set_key(set))?;
        key.expect(KeyKind::Set)?;
        Ok(key)
    }

    fn sort_key(&self, installation: &[u8], field: &[u8]) -> Bytes {
        self.keys.sort.render(|slot| match slot {
            Placeholder::Installation => installation,
            Placeholder::Field => field,
            _ => b"",
        })
    }

    /// Opens each meeting's hash in turn and reads `fields` from it; `None` where the
    /// meeting has no hash. The key name buffer is reused across the batch.
    fn read_meetings(
        &self,
        installation: &[u8],
        ids: &[Bytes],
        fields: &[&[u8]],
    ) -> Result<Vec<Option<[Option<Bytes>; 2]>>, CrmError> {
        let fields: Vec<ModuleString> = fields
            .iter()
            .map(|field| ModuleString::new(field))
            .collect::<Result<_, _>>()?;
        let fields: Vec<&ModuleString> = fields.iter().collect();
        let mut rows = Vec::with_capacity(ids.len());
        let mut name = Vec::new();
        for id in ids {
            self.keys.meeting.render_into(&mut name, |slot| match slot {
                Placeholder::Installation => installation,
                Placeholder::Id => id,
                _ => b"",
            });
            let key = ReadKey::open(self.ctx, &name)?;
            rows.push(if key.expect(KeyKind::Hash)? {
                Some(key.hash_get(&fields)?)
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
        let key = self.set_key(set);
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
        ReadKey::open(self.ctx, &self.sort_key(installation, field))?.expect(KeyKind::SortedSet)
    }

    fn sort_scores(
        &self,
        installation: &[u8],
        field: &[u8],
        ids: &[Bytes],
    ) -> Result<Vec<Option<f64>>, CrmError> {
        let key = ReadKey::open(self.ctx, &self.sort_key(installation, field))?;
        if !key.expect(KeyKind::SortedSet)? {
            return Ok(vec![None; ids.len()]);
        }
        let mut member = Vec::new();
        ids.iter()
            .map(|id| {
                self.keys
                    .sort_member
                    .render_into(&mut member, |slot| match slot {
                        Placeholder::Installation => installation,
                        Placeholder::Id => id,
                        _ => b"",
                    });
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
            .map(|row| row.map(|[client, sort_value]| MeetingRow { client, sort_value }))
            .collect())
    }

    fn details(&self, installation: &[u8], ids: &[Bytes]) -> Result<Vec<Option<Bytes>>, CrmError> {
        let rows = self.read_meetings(installation, ids, &[DETAILS_FIELD])?;
        Ok(rows
            .into_iter()
            .map(|row| row.and_then(|[details, _]| details))
            .collect())
    }
}
