//! CRM.CHECK and CRM.REPAIR: what is wrong with one meeting's listings, and the effects
//! that make the sets and sort indexes agree with its hash again. The hash is the truth
//! where it has a value; where it has none (data written before the module, with dates
//! only in the ZSET), the sets and scores are left as they are.

use super::types::{Bytes, Effect};
use super::values::sort_score;
use super::write::Schema;
use crate::error::printable;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftKind {
    /// Listed in the installation's sets or a sort index, but there is no hash.
    DanglingId,
    /// Listed under two or more values of one filter field.
    SeveralValues,
    /// Listed under a value its hash does not hold.
    WrongValue,
    /// Its hash holds a value whose set does not list it.
    MissingFromValueSet,
    /// Has a hash and is listed, but is not in the installation's set.
    MissingFromMeetingsSet,
    /// Its hash's sort value and the sort index disagree.
    SortMismatch,
}

impl DriftKind {
    pub const ALL: [DriftKind; 6] = [
        DriftKind::DanglingId,
        DriftKind::SeveralValues,
        DriftKind::WrongValue,
        DriftKind::MissingFromValueSet,
        DriftKind::MissingFromMeetingsSet,
        DriftKind::SortMismatch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DriftKind::DanglingId => "dangling_id",
            DriftKind::SeveralValues => "several_values",
            DriftKind::WrongValue => "wrong_value",
            DriftKind::MissingFromValueSet => "missing_from_value_set",
            DriftKind::MissingFromMeetingsSet => "missing_from_meetings_set",
            DriftKind::SortMismatch => "sort_mismatch",
        }
    }
}

/// Everything the keyspace says about one meeting id of an installation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeetingState {
    pub id: Bytes,
    /// The hash's value of each schema field (filter fields, then sort fields); `None`
    /// when there is no hash.
    pub hash: Option<Vec<Option<Bytes>>>,
    pub in_meetings_set: bool,
    /// `(filter field index, value)` of every value set that lists the id.
    pub listed: Vec<(usize, Bytes)>,
    /// The id's score in each sort field's index.
    pub scores: Vec<Option<f64>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub kind: DriftKind,
    pub detail: String,
}

/// The drift of one meeting and the effects that mend what can be mended.
pub fn examine(schema: &Schema, state: &MeetingState) -> (Vec<Finding>, Vec<Effect>) {
    let mut findings = Vec::new();
    let mut fixes = Vec::new();
    let id = printable(&state.id);
    let field_name = |index: usize| -> &[u8] {
        schema
            .filter_fields
            .get(index)
            .map_or(&b"?"[..], Vec::as_slice)
    };
    let Some(hash) = &state.hash else {
        let listed_anywhere = !state.listed.is_empty()
            || state.in_meetings_set
            || state.scores.iter().any(Option::is_some);
        if listed_anywhere {
            findings.push(Finding {
                kind: DriftKind::DanglingId,
                detail: format!("{id}: listed but has no hash"),
            });
            for (index, value) in &state.listed {
                fixes.push(Effect::RemoveFromValueSet {
                    field: field_name(*index).to_vec(),
                    value: value.clone(),
                });
            }
            if state.in_meetings_set {
                fixes.push(Effect::RemoveFromMeetingsSet);
            }
            for (field, score) in schema.sort_fields.iter().zip(&state.scores) {
                if score.is_some() {
                    fixes.push(Effect::RemoveSortScore {
                        field: field.clone(),
                    });
                }
            }
        }
        return (findings, fixes);
    };

    for (index, field) in schema.filter_fields.iter().enumerate() {
        let listed: Vec<&Bytes> = state
            .listed
            .iter()
            .filter(|(listed_index, _)| *listed_index == index)
            .map(|(_, value)| value)
            .collect();
        let name = printable(field);
        if listed.len() > 1 {
            let mut values: Vec<String> = listed.iter().map(|value| printable(value)).collect();
            values.sort();
            findings.push(Finding {
                kind: DriftKind::SeveralValues,
                detail: format!("{id}: {name} listed as {}", values.join(", ")),
            });
        }
        let Some(Some(held)) = hash.get(index) else {
            continue;
        };
        for value in &listed {
            if *value != held {
                findings.push(Finding {
                    kind: DriftKind::WrongValue,
                    detail: format!(
                        "{id}: listed as {name} {} but its hash says {}",
                        printable(value),
                        printable(held)
                    ),
                });
                fixes.push(Effect::RemoveFromValueSet {
                    field: field.clone(),
                    value: (*value).clone(),
                });
            }
        }
        if !listed.contains(&held) {
            findings.push(Finding {
                kind: DriftKind::MissingFromValueSet,
                detail: format!(
                    "{id}: hash says {name} {} but that set lacks it",
                    printable(held)
                ),
            });
            fixes.push(Effect::AddToValueSet {
                field: field.clone(),
                value: held.clone(),
            });
        }
    }
    if !state.in_meetings_set {
        findings.push(Finding {
            kind: DriftKind::MissingFromMeetingsSet,
            detail: format!("{id}: not in the installation's set"),
        });
        fixes.push(Effect::AddToMeetingsSet);
    }
    let sort_values = hash.iter().skip(schema.filter_fields.len());
    for ((field, raw), indexed) in schema
        .sort_fields
        .iter()
        .zip(sort_values)
        .zip(&state.scores)
    {
        let Some(score) = raw.as_deref().and_then(sort_score) else {
            continue;
        };
        if *indexed != Some(score) {
            let indexed = indexed.map_or("none".to_string(), |s| s.to_string());
            findings.push(Finding {
                kind: DriftKind::SortMismatch,
                detail: format!(
                    "{id}: {} is {score} but its index says {indexed}",
                    printable(field)
                ),
            });
            fixes.push(Effect::SetSortScore {
                field: field.clone(),
                score,
            });
        }
    }
    (findings, fixes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::seed()
    }

    fn b(text: &str) -> Bytes {
        text.as_bytes().to_vec()
    }

    fn state(
        hash: Option<[Option<&str>; 3]>,
        listed: &[(usize, &str)],
        in_set: bool,
        score: Option<f64>,
    ) -> MeetingState {
        MeetingState {
            id: b("7"),
            hash: hash.map(|values| values.iter().map(|v| v.map(b)).collect()),
            in_meetings_set: in_set,
            listed: listed.iter().map(|(i, v)| (*i, b(v))).collect(),
            scores: vec![score],
        }
    }

    fn kinds(findings: &[Finding]) -> Vec<DriftKind> {
        findings.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn consistent_meeting_has_no_findings() {
        let s = state(
            Some([Some("email"), Some("open"), Some("100")]),
            &[(0, "email"), (1, "open")],
            true,
            Some(100.0),
        );
        assert_eq!(examine(&schema(), &s), (vec![], vec![]));
    }

    #[test]
    fn lua_era_hash_without_indexed_fields_is_fine() {
        let s = state(
            Some([None, None, None]),
            &[(0, "email"), (1, "open")],
            true,
            Some(5.0),
        );
        assert_eq!(examine(&schema(), &s), (vec![], vec![]));
    }

    #[test]
    fn dangling_id_is_removed_everywhere() {
        let s = state(None, &[(1, "open")], true, Some(5.0));
        let (findings, fixes) = examine(&schema(), &s);
        assert_eq!(kinds(&findings), [DriftKind::DanglingId]);
        assert_eq!(
            fixes,
            [
                Effect::RemoveFromValueSet {
                    field: b("status"),
                    value: b("open")
                },
                Effect::RemoveFromMeetingsSet,
                Effect::RemoveSortScore { field: b("date") },
            ]
        );
    }

    #[test]
    fn moves_and_misses() {
        let s = state(
            Some([Some("email"), Some("close"), Some("2017-06-10T00:00:00Z")]),
            &[(1, "open"), (1, "close")],
            false,
            None,
        );
        let (findings, fixes) = examine(&schema(), &s);
        assert_eq!(
            kinds(&findings),
            [
                DriftKind::MissingFromValueSet,
                DriftKind::SeveralValues,
                DriftKind::WrongValue,
                DriftKind::MissingFromMeetingsSet,
                DriftKind::SortMismatch
            ]
        );
        assert_eq!(
            fixes,
            [
                Effect::AddToValueSet {
                    field: b("type"),
                    value: b("email")
                },
                Effect::RemoveFromValueSet {
                    field: b("status"),
                    value: b("open")
                },
                Effect::AddToMeetingsSet,
                Effect::SetSortScore {
                    field: b("date"),
                    score: 1_497_052_800.0
                },
            ]
        );
    }
}
