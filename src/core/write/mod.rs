//! Writes that keep a meeting and its indexes consistent: CRM.MEETING.SET and
//! CRM.MEETING.DEL are parsed and validated here, and turned into a list of effects that
//! the store applies in one step (after checking every key it will touch).

use std::collections::{HashMap, HashSet};

use super::store::MeetingWriter;
use super::types::{Bytes, Effect, CLIENT_FIELD, DETAILS_FIELD, INSTALLATION_FIELD};
use super::values::{is_json, parse_sort_value, sort_score, MILLISECONDS_FROM};
use crate::error::{printable, CrmError};

/// Which hash fields are indexed, from `crm.filter-fields` and `crm.sort-fields`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    /// Fields with one SET per value (`type`, `status`).
    pub filter_fields: Vec<Bytes>,
    /// Fields with a ZSET of their numeric value (`date`).
    pub sort_fields: Vec<Bytes>,
}

impl Schema {
    /// The seed's schema, the configuration's default: `type` and `status` as filter
    /// fields, `date` as sort field.
    pub fn seed() -> Schema {
        Schema {
            filter_fields: vec![b"type".to_vec(), b"status".to_vec()],
            sort_fields: vec![b"date".to_vec()],
        }
    }

    /// The hash fields a write reads before it changes a meeting: the client (to know
    /// whether it exists with one), its installation (to refuse another's meeting) and
    /// every indexed field (to move it out of old values).
    pub fn tracked_fields(&self) -> Vec<&[u8]> {
        let mut fields = vec![CLIENT_FIELD, INSTALLATION_FIELD];
        for field in self.filter_fields.iter().chain(&self.sort_fields) {
            if !fields.contains(&field.as_slice()) {
                fields.push(field);
            }
        }
        fields
    }
}

/// One CRM.MEETING.SET call.
#[derive(Debug, Clone, PartialEq)]
pub struct MeetingWrite {
    pub installation: Bytes,
    pub id: Bytes,
    /// Field/value pairs; a field given twice keeps its last value.
    pub fields: Vec<(Bytes, Bytes)>,
}

/// `<installation> <id> <field> <value> [<field> <value> ...]`
pub fn parse_meeting_set(args: &[&[u8]]) -> Result<MeetingWrite, CrmError> {
    let [installation, id, pairs @ ..] = args else {
        return Err(arity("crm.meeting.set"));
    };
    if pairs.is_empty() || pairs.len() % 2 != 0 {
        return Err(arity("crm.meeting.set"));
    }
    meeting_write(installation, id, pairs)
}

/// The most meetings one CRM.MEETING.MSET writes: a few milliseconds of the server's time
/// (about 7 µs a new meeting at 1,000,000 on the benchmark machine).
pub const MSET_MAX_MEETINGS: usize = 500;

/// `<installation> <id> <count> <field> <value> ... [<id> <count> <field> <value> ...]`,
/// `<count>` field/value pairs after each id; each meeting at most once.
pub fn parse_meeting_mset(args: &[&[u8]]) -> Result<Vec<MeetingWrite>, CrmError> {
    let [installation, meetings @ ..] = args else {
        return Err(arity("crm.meeting.mset"));
    };
    let mut rest = meetings;
    let mut writes: Vec<MeetingWrite> = Vec::new();
    let mut seen: HashSet<&[u8]> = HashSet::new();
    while let [id, count, after @ ..] = rest {
        let pairs = std::str::from_utf8(count)
            .ok()
            .filter(|text| text.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|text| text.parse::<usize>().ok())
            .filter(|&pairs| pairs > 0)
            .ok_or_else(|| {
                CrmError::BadArgument(format!(
                    "the field count of meeting '{}' must be a positive integer, got '{}'",
                    printable(id),
                    printable(count)
                ))
            })?;
        let Some(fields) = pairs.checked_mul(2).and_then(|len| after.get(..len)) else {
            return Err(arity("crm.meeting.mset"));
        };
        if !seen.insert(id) {
            return Err(CrmError::BadArgument(format!(
                "meeting '{}' is given twice: one CRM.MEETING.MSET writes each meeting once",
                printable(id)
            )));
        }
        if writes.len() == MSET_MAX_MEETINGS {
            return Err(CrmError::BadArgument(format!(
                "CRM.MEETING.MSET writes at most {MSET_MAX_MEETINGS} meetings a call: send the \
                 rest in another call"
            )));
        }
        writes.push(meeting_write(installation, id, fields)?);
        rest = after.get(fields.len()..).unwrap_or_default();
    }
    if writes.is_empty() || !rest.is_empty() {
        return Err(arity("crm.meeting.mset"));
    }
    Ok(writes)
}

/// One meeting's write from its field/value pairs (an even number of them).
fn meeting_write(
    installation: &[u8],
    id: &[u8],
    pairs: &[&[u8]],
) -> Result<MeetingWrite, CrmError> {
    check_id(id)?;
    let mut fields: Vec<(Bytes, Bytes)> = Vec::with_capacity(pairs.len() / 2);
    // Where each field is in `fields`, so that many pairs stay linear (a meeting's few
    // fields are looked up in `fields` itself: cheaper than hashing them).
    let mut positions: HashMap<&[u8], usize> = HashMap::new();
    let many = pairs.len() > 32;
    for pair in pairs.chunks_exact(2) {
        let [field, value] = pair else { continue };
        if field.is_empty() {
            return Err(CrmError::BadArgument(
                "field names must not be empty".into(),
            ));
        }
        let at = match many {
            true => positions.get(field).copied(),
            false => fields.iter().position(|(name, _)| name == field),
        };
        match at.and_then(|at| fields.get_mut(at)) {
            Some((_, old)) => *old = value.to_vec(),
            None => {
                if many {
                    positions.insert(field, fields.len());
                }
                fields.push((field.to_vec(), value.to_vec()));
            }
        }
    }
    Ok(MeetingWrite {
        installation: installation.to_vec(),
        id: id.to_vec(),
        fields,
    })
}

/// `<installation> <id>`
pub fn parse_meeting_del(args: &[&[u8]]) -> Result<(Bytes, Bytes), CrmError> {
    let [installation, id] = args else {
        return Err(arity("crm.meeting.del"));
    };
    check_id(id)?;
    Ok((installation.to_vec(), id.to_vec()))
}

fn check_id(id: &[u8]) -> Result<(), CrmError> {
    if id.is_empty() {
        return Err(CrmError::BadArgument("meeting id must not be empty".into()));
    }
    Ok(())
}

fn arity(command: &'static str) -> CrmError {
    CrmError::WrongArity { command }
}

/// Checks what the module can check before anything is written.
pub fn validate(write: &MeetingWrite, schema: &Schema) -> Result<(), CrmError> {
    for (field, value) in &write.fields {
        if field == DETAILS_FIELD && !is_json(value) {
            return Err(CrmError::BadArgument(format!(
                "details of meeting '{}' must be valid JSON",
                printable(&write.id)
            )));
        }
        if schema.sort_fields.contains(field) {
            let Some(score) = sort_score(value) else {
                return Err(CrmError::BadArgument(format!(
                    "{} must be a number, an RFC 3339 date-time or a YYYY-MM-DD date, got '{}'",
                    printable(field),
                    printable(value)
                )));
            };
            if score.abs() >= MILLISECONDS_FROM && parse_sort_value(value).is_some() {
                return Err(CrmError::BadArgument(format!(
                    "{} {} looks like milliseconds: sort fields take Unix seconds (divide by \
                     1000), an RFC 3339 date-time or a YYYY-MM-DD date",
                    printable(field),
                    printable(value)
                )));
            }
        }
        if field == CLIENT_FIELD && value.is_empty() {
            return Err(CrmError::BadArgument("clientid must not be empty".into()));
        }
        if field == INSTALLATION_FIELD && *value != write.installation {
            return Err(CrmError::BadArgument(format!(
                "field installation of meeting '{}' must be '{}', the installation written, not '{}'",
                printable(&write.id),
                printable(&write.installation),
                printable(value)
            )));
        }
    }
    Ok(())
}

/// The effects of a SET, given the meeting's tracked fields as stored (`None`: no hash).
/// Returns whether the meeting is created.
pub fn effects_of_set(
    write: MeetingWrite,
    stored: Option<&[(Bytes, Option<Bytes>)]>,
    schema: &Schema,
) -> Result<(bool, Vec<Effect>), CrmError> {
    validate(&write, schema)?;
    check_owner(stored, &write.installation, &write.id)?;
    let stored_value = |field: &[u8]| stored_value(stored, field);
    let created = stored.is_none();
    let has_client = write.fields.iter().any(|(field, _)| field == CLIENT_FIELD)
        || stored_value(CLIENT_FIELD).is_some();
    // A hash written before the module may lack a client: it can be updated, and stays
    // invisible until it gets one.
    if created && !has_client {
        return Err(CrmError::BadArgument(format!(
            "clientid is required to create meeting '{}'",
            printable(&write.id)
        )));
    }
    // A new meeting's hash names its installation, so that no other one may change it.
    let name_installation = created
        && stored_value(INSTALLATION_FIELD).is_none()
        && !write
            .fields
            .iter()
            .any(|(field, _)| field == INSTALLATION_FIELD);
    let mut effects = Vec::with_capacity(write.fields.len() + 3);
    for (field, value) in &write.fields {
        if schema.filter_fields.contains(field) {
            match stored_value(field) {
                Some(old) if old == value => {}
                Some(old) => effects.push(Effect::RemoveFromValueSet {
                    field: field.clone(),
                    value: old.clone(),
                }),
                None => {}
            }
            // Added even when unchanged, so that a write also mends a missing listing.
            effects.push(Effect::AddToValueSet {
                field: field.clone(),
                value: value.clone(),
            });
        }
        if schema.sort_fields.contains(field) {
            if let Some(score) = sort_score(value) {
                effects.push(Effect::SetSortScore {
                    field: field.clone(),
                    score,
                });
            }
        }
    }
    effects.push(Effect::AddToMeetingsSet);
    // The pairs move into the hash write, first of the effects (not copied: an import
    // writes hundreds of thousands of them).
    let MeetingWrite {
        installation,
        fields: mut pairs,
        ..
    } = write;
    if name_installation {
        pairs.push((INSTALLATION_FIELD.to_vec(), installation));
    }
    effects.insert(0, Effect::WriteHash(pairs));
    Ok((created, effects))
}

/// The effects of a DEL: out of the value sets its hash names, out of every sort index
/// and the installation's set, then the hash itself. Without a hash only the (no-op)
/// delete of the hash remains, so that the caller's write permission is still checked.
pub fn effects_of_delete(
    installation: &[u8],
    id: &[u8],
    stored: Option<&[(Bytes, Option<Bytes>)]>,
    schema: &Schema,
) -> Result<Vec<Effect>, CrmError> {
    check_owner(stored, installation, id)?;
    let Some(stored) = stored else {
        return Ok(vec![Effect::DeleteHash]);
    };
    let mut effects = Vec::new();
    for (field, value) in stored {
        if let (true, Some(value)) = (schema.filter_fields.contains(field), value) {
            effects.push(Effect::RemoveFromValueSet {
                field: field.clone(),
                value: value.clone(),
            });
        }
    }
    effects.extend(
        schema
            .sort_fields
            .iter()
            .map(|field| Effect::RemoveSortScore {
                field: field.clone(),
            }),
    );
    effects.push(Effect::RemoveFromMeetingsSet);
    effects.push(Effect::DeleteHash);
    Ok(effects)
}

fn stored_value<'s>(
    stored: Option<&'s [(Bytes, Option<Bytes>)]>,
    field: &[u8],
) -> Option<&'s Bytes> {
    stored?
        .iter()
        .find(|(name, _)| name == field)
        .and_then(|(_, value)| value.as_ref())
}

/// Refuses a meeting whose hash names another installation (a hash naming none, written
/// before the module, is taken as it is).
fn check_owner(
    stored: Option<&[(Bytes, Option<Bytes>)]>,
    installation: &[u8],
    id: &[u8],
) -> Result<(), CrmError> {
    match stored_value(stored, INSTALLATION_FIELD) {
        Some(owner) if owner != installation => Err(CrmError::BadArgument(format!(
            "meeting '{}' belongs to installation '{}'",
            printable(id),
            printable(owner)
        ))),
        _ => Ok(()),
    }
}

/// CRM.MEETING.SET and CRM.MEETING.MSET: every write (each of another meeting, of one installation) is
/// validated against what is stored before the first is applied, then all are applied in
/// one step. Returns, for each, whether the meeting was created and the effects applied.
pub fn set_meetings<S: MeetingWriter>(
    store: &S,
    writes: Vec<MeetingWrite>,
    schema: &Schema,
) -> Result<Vec<(bool, Vec<Effect>)>, CrmError> {
    let Some(installation) = writes.first().map(|write| write.installation.clone()) else {
        return Ok(Vec::new());
    };
    let ids: Vec<Bytes> = writes.iter().map(|write| write.id.clone()).collect();
    let stored = read_tracked(store, &installation, &ids, schema)?;
    let written = writes
        .into_iter()
        .zip(stored)
        .map(|(write, stored)| effects_of_set(write, stored.as_deref(), schema))
        .collect::<Result<Vec<_>, CrmError>>()?;
    let batch: Vec<(&[u8], &[Effect])> = ids
        .iter()
        .zip(&written)
        .map(|(id, (_, effects))| (id.as_slice(), effects.as_slice()))
        .collect();
    store.apply(&installation, &batch)?;
    Ok(written)
}

/// CRM.MEETING.DEL: returns whether there was a meeting to delete, and the effects applied.
pub fn delete_meeting<S: MeetingWriter>(
    store: &S,
    installation: &[u8],
    id: &[u8],
    schema: &Schema,
) -> Result<(bool, Vec<Effect>), CrmError> {
    let stored = read_tracked(store, installation, &[id.to_vec()], schema)?
        .pop()
        .flatten();
    let effects = effects_of_delete(installation, id, stored.as_deref(), schema)?;
    store.apply(installation, &[(id, &effects)])?;
    Ok((stored.is_some(), effects))
}

type StoredFields = Vec<(Bytes, Option<Bytes>)>;

/// Each meeting's tracked fields as stored (`None` where it has no hash), read in one pass.
fn read_tracked<S: MeetingWriter>(
    store: &S,
    installation: &[u8],
    ids: &[Bytes],
    schema: &Schema,
) -> Result<Vec<Option<StoredFields>>, CrmError> {
    let fields = schema.tracked_fields();
    let rows = store.stored_fields(installation, ids, &fields)?;
    Ok(rows
        .into_iter()
        .map(|values| {
            values.map(|values| {
                fields
                    .iter()
                    .map(|field| field.to_vec())
                    .zip(values)
                    .collect()
            })
        })
        .collect())
}

#[cfg(test)]
mod tests;
