//! Writes that keep a meeting and its indexes consistent: CRM.MEETING.SET and
//! CRM.MEETING.DEL are parsed and validated here, and turned into a list of effects that
//! the store applies in one step (after checking every key it will touch).

use std::collections::HashMap;

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
    check_id(id)?;
    let mut fields: Vec<(Bytes, Bytes)> = Vec::with_capacity(pairs.len() / 2);
    // Where each field is in `fields`, so that many pairs stay linear.
    let mut positions: HashMap<&[u8], usize> = HashMap::new();
    for pair in pairs.chunks_exact(2) {
        let [field, value] = pair else { continue };
        if field.is_empty() {
            return Err(CrmError::BadArgument(
                "field names must not be empty".into(),
            ));
        }
        match positions.get(field).and_then(|&at| fields.get_mut(at)) {
            Some((_, old)) => *old = value.to_vec(),
            None => {
                positions.insert(field, fields.len());
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
    write: &MeetingWrite,
    stored: Option<&[(Bytes, Option<Bytes>)]>,
    schema: &Schema,
) -> Result<(bool, Vec<Effect>), CrmError> {
    validate(write, schema)?;
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
    let mut pairs = write.fields.clone();
    // A new meeting's hash names its installation, so that no other one may change it.
    if created
        && stored_value(INSTALLATION_FIELD).is_none()
        && !pairs.iter().any(|(field, _)| field == INSTALLATION_FIELD)
    {
        pairs.push((INSTALLATION_FIELD.to_vec(), write.installation.clone()));
    }
    let mut effects = vec![Effect::WriteHash(pairs)];
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

/// CRM.MEETING.SET: validates, reads the tracked fields, applies the effects. Returns
/// whether the meeting was created, and the effects applied.
pub fn set_meeting<S: MeetingWriter>(
    store: &S,
    write: &MeetingWrite,
    schema: &Schema,
) -> Result<(bool, Vec<Effect>), CrmError> {
    let stored = read_tracked(store, &write.installation, &write.id, schema)?;
    let (created, effects) = effects_of_set(write, stored.as_deref(), schema)?;
    store.apply(&write.installation, &write.id, &effects)?;
    Ok((created, effects))
}

/// CRM.MEETING.DEL: returns whether there was a meeting to delete, and the effects applied.
pub fn delete_meeting<S: MeetingWriter>(
    store: &S,
    installation: &[u8],
    id: &[u8],
    schema: &Schema,
) -> Result<(bool, Vec<Effect>), CrmError> {
    let stored = read_tracked(store, installation, id, schema)?;
    let effects = effects_of_delete(installation, id, stored.as_deref(), schema)?;
    store.apply(installation, id, &effects)?;
    Ok((stored.is_some(), effects))
}

type StoredFields = Vec<(Bytes, Option<Bytes>)>;

fn read_tracked<S: MeetingWriter>(
    store: &S,
    installation: &[u8],
    id: &[u8],
    schema: &Schema,
) -> Result<Option<StoredFields>, CrmError> {
    let fields = schema.tracked_fields();
    let values = store.stored_fields(installation, id, &fields)?;
    Ok(values.map(|values| {
        fields
            .iter()
            .map(|field| field.to_vec())
            .zip(values)
            .collect()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::seed()
    }

    fn write(words: &[&str]) -> Result<MeetingWrite, CrmError> {
        let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        parse_meeting_set(&args)
    }

    fn stored(pairs: &[(&str, Option<&str>)]) -> Vec<(Bytes, Option<Bytes>)> {
        pairs
            .iter()
            .map(|(f, v)| (f.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
            .collect()
    }

    fn b(text: &str) -> Bytes {
        text.as_bytes().to_vec()
    }

    #[test]
    fn parsing() {
        let w = write(&[
            "10", "11", "status", "open", "status", "close", "clientid", "2",
        ])
        .unwrap();
        assert_eq!(
            w.fields,
            vec![(b("status"), b("close")), (b("clientid"), b("2"))]
        );
        let arity = "ERR wrong number of arguments for 'crm.meeting.set' command";
        assert_eq!(write(&["10", "11"]).unwrap_err().to_string(), arity);
        assert_eq!(
            write(&["10", "11", "status"]).unwrap_err().to_string(),
            arity
        );
        assert_eq!(
            write(&["10", "", "a", "b"]).unwrap_err().to_string(),
            "ERR meeting id must not be empty"
        );
        assert_eq!(
            write(&["10", "1", "", "b"]).unwrap_err().to_string(),
            "ERR field names must not be empty"
        );
    }

    #[test]
    fn validation() {
        let check = |words: &[&str]| validate(&write(words).unwrap(), &schema());
        assert!(check(&[
            "10",
            "1",
            "details",
            "{\"a\":1}",
            "date",
            "2017-06-10T00:00:00Z"
        ])
        .is_ok());
        assert!(check(&["10", "1", "date", "1497052800"]).is_ok());
        assert_eq!(
            check(&["10", "1", "details", "{oops"])
                .unwrap_err()
                .to_string(),
            "ERR details of meeting '1' must be valid JSON"
        );
        assert_eq!(
            check(&["10", "1", "date", "10062017"]).map_err(|e| e.to_string()),
            Ok(())
        );
        assert_eq!(
            check(&["10", "1", "date", "tomorrow"])
                .unwrap_err()
                .to_string(),
            "ERR date must be a number, an RFC 3339 date-time or a YYYY-MM-DD date, got 'tomorrow'"
        );
        assert_eq!(
            check(&["10", "1", "date", "2025-03-04"]).map_err(|e| e.to_string()),
            Ok(())
        );
        assert_eq!(
            check(&["10", "1", "date", "99999999999"]).map_err(|e| e.to_string()),
            Ok(())
        );
        assert_eq!(
            check(&["10", "1", "date", "1718000000000"])
                .unwrap_err()
                .to_string(),
            "ERR date 1718000000000 looks like milliseconds: sort fields take Unix seconds \
             (divide by 1000), an RFC 3339 date-time or a YYYY-MM-DD date"
        );
    }

    #[test]
    fn create_requires_a_client() {
        let w = write(&["10", "11", "status", "open"]).unwrap();
        assert_eq!(
            effects_of_set(&w, None, &schema()).unwrap_err().to_string(),
            "ERR clientid is required to create meeting '11'"
        );
        let existing = stored(&[
            ("clientid", Some("2")),
            ("type", None),
            ("status", None),
            ("date", None),
        ]);
        assert!(!effects_of_set(&w, Some(&existing), &schema()).unwrap().0);
        // An existing hash without a client (written before the module) can be updated.
        let clientless = stored(&[("clientid", None), ("type", None)]);
        assert!(!effects_of_set(&w, Some(&clientless), &schema()).unwrap().0);
    }

    #[test]
    fn a_move_leaves_the_old_value() {
        let existing = stored(&[
            ("clientid", Some("2")),
            ("type", Some("email")),
            ("status", Some("open")),
        ]);
        let w = write(&[
            "10", "11", "status", "close", "type", "email", "date", "100",
        ])
        .unwrap();
        let (created, effects) = effects_of_set(&w, Some(&existing), &schema()).unwrap();
        assert!(!created);
        assert_eq!(
            effects,
            vec![
                Effect::WriteHash(w.fields.clone()),
                Effect::RemoveFromValueSet {
                    field: b("status"),
                    value: b("open")
                },
                Effect::AddToValueSet {
                    field: b("status"),
                    value: b("close")
                },
                Effect::AddToValueSet {
                    field: b("type"),
                    value: b("email")
                },
                Effect::SetSortScore {
                    field: b("date"),
                    score: 100.0
                },
                Effect::AddToMeetingsSet,
            ]
        );
    }

    #[test]
    fn delete_removes_every_listing() {
        let existing = stored(&[
            ("clientid", Some("2")),
            ("type", Some("sms")),
            ("status", None),
        ]);
        assert_eq!(
            effects_of_delete(b"10", b"5", Some(&existing), &schema()).unwrap(),
            vec![
                Effect::RemoveFromValueSet {
                    field: b("type"),
                    value: b("sms")
                },
                Effect::RemoveSortScore { field: b("date") },
                Effect::RemoveFromMeetingsSet,
                Effect::DeleteHash,
            ]
        );
        assert_eq!(
            effects_of_delete(b"10", b"5", None, &schema()).unwrap(),
            vec![Effect::DeleteHash]
        );
    }

    #[test]
    fn another_installations_meeting_is_refused() {
        let theirs = stored(&[("clientid", Some("2")), ("installation", Some("20"))]);
        let message = "ERR meeting '5' belongs to installation '20'";
        let error = effects_of_delete(b"10", b"5", Some(&theirs), &schema()).unwrap_err();
        assert_eq!(error.to_string(), message);
        let write = parse_meeting_set(&[b"10", b"5", b"details", b"{}"]).unwrap();
        let error = effects_of_set(&write, Some(&theirs), &schema()).unwrap_err();
        assert_eq!(error.to_string(), message);
        // Its own, and a hash written before the module (naming none), are written.
        let ours = stored(&[("clientid", Some("2")), ("installation", Some("10"))]);
        assert!(effects_of_set(&write, Some(&ours), &schema()).is_ok());
        assert!(
            effects_of_set(&write, Some(&stored(&[("clientid", Some("2"))])), &schema()).is_ok()
        );
        // A new meeting's hash is given its installation; another one may not be named.
        let new = parse_meeting_set(&[b"10", b"6", b"clientid", b"3"]).unwrap();
        let (_, effects) = effects_of_set(&new, None, &schema()).unwrap();
        assert_eq!(
            effects.first(),
            Some(&Effect::WriteHash(vec![
                (b("clientid"), b("3")),
                (b("installation"), b("10"))
            ]))
        );
        let other =
            parse_meeting_set(&[b"10", b"6", b"clientid", b"3", b"installation", b"20"]).unwrap();
        assert!(effects_of_set(&other, None, &schema()).is_err());
    }
}
