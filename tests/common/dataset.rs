//! Random CRM datasets with every awkward case (empty and missing sets, dangling ids,
//! hashes without clientid or details, missing and repeated sort values, odd ids), their
//! loading into a server, random queries, and a naive model of the expected answer.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use redis::Connection;

use super::model::{model_number, model_row_order};
use super::Answer;

/// splitmix64 (the `seeded` crate, crm-load's generator too): the same on every machine.
pub use seeded::Rng;

pub const FIELDS: [(&str, &[&str]); 2] = [
    ("type", &["email", "sms", "call"]),
    ("status", &["open", "close"]),
];
const ODD_IDS: [&str; 8] = [
    "0",
    "-3",
    "-12",
    "007",
    "a1",
    "B",
    "-0",
    "99999999999999999999",
];
/// The module settings the datasets' queries need (`loadmodule` arguments): `rank` and
/// `missing` are sorted from the meeting hash.
pub const DATASET_SETTINGS: [&str; 2] = ["hash-sort-fields", "rank missing"];

/// A RANGE bound as the module takes it, and the same as a number for the Lua reference.
pub type RangeBound = (&'static str, &'static str);

const BOUNDS: [RangeBound; 14] = [
    ("-inf", "-inf"),
    ("+inf", "+inf"),
    ("-200", "-200"),
    ("(-200", "(-200"),
    ("0", "0"),
    ("1970-01-01", "0"),
    ("(1970-01-01", "(0"),
    ("150", "150"),
    ("(300", "(300"),
    ("1970-01-01T00:05:00Z", "300"),
    ("(1970-01-01T01:05:00+01:00", "(300"),
    ("500", "500"),
    ("(500", "(500"),
    ("1e2", "100"),
];
/// The FIELDs of a CRM.FACETS query: every value, and one no meeting has.
pub const FACETS: [(&str, &[&str]); 2] = [
    ("status", &["open", "close"]),
    ("type", &["email", "sms", "call", "fax"]),
];
/// Hash sort values: numbers, words, and dates (two of them the same instant).
const RANKS: [&str; 12] = [
    "5",
    "-1.5",
    "tbd",
    "",
    "1e3",
    "5",
    "7",
    "0x10",
    "2017-06-10T09:30:00Z",
    "2017-06-10T11:30:00+02:00",
    "2017-06-10",
    "2017-02-30",
];

#[derive(Debug, Default, Clone)]
pub struct Dataset {
    pub installation: String,
    /// `(field, value)` to ids, for `installation`.
    pub filter_sets: BTreeMap<(String, String), BTreeSet<String>>,
    /// `meetings_ins_<installation>`; `None`: no such key.
    pub meetings: Option<BTreeSet<String>>,
    /// user to visible clients; users without a set are absent.
    pub users: BTreeMap<String, BTreeSet<String>>,
    /// meeting id to hash fields.
    pub hashes: BTreeMap<String, BTreeMap<String, String>>,
    /// `meeting_date` members `meeting:<id>` and scores; `None`: no such key.
    pub dates: Option<BTreeMap<String, f64>>,
}

impl Dataset {
    pub fn generate(rng: &mut Rng) -> Dataset {
        let installation = rng.pick(&["10", "ins-7", "42"]).to_string();
        let size = rng.below(60);
        let mut ids = BTreeSet::new();
        for _ in 0..size {
            let id = if rng.chance(80) {
                (1 + rng.below(80)).to_string()
            } else {
                rng.pick(&ODD_IDS).to_string()
            };
            ids.insert(id);
        }
        let mut data = Dataset {
            installation,
            ..Dataset::default()
        };
        let with_meetings_set = rng.chance(85);
        let with_dates = rng.chance(75);
        let mut meetings = BTreeSet::new();
        let mut dates = BTreeMap::new();
        for id in &ids {
            if with_meetings_set && rng.chance(90) {
                meetings.insert(id.clone());
            }
            if rng.chance(90) {
                let mut hash = BTreeMap::new();
                if rng.chance(90) {
                    hash.insert("clientid".to_string(), (1 + rng.below(8)).to_string());
                }
                if rng.chance(85) {
                    hash.insert(
                        "details".to_string(),
                        format!("{{\"id\":\"{id}\",\"n\":{}}}", rng.below(100)),
                    );
                }
                if rng.chance(70) {
                    hash.insert("rank".to_string(), rng.pick(&RANKS).to_string());
                }
                hash.insert("other".to_string(), "x".to_string());
                data.hashes.insert(id.clone(), hash);
            }
            for (field, values) in FIELDS {
                if rng.chance(85) {
                    let value = rng.pick(values).to_string();
                    data.filter_sets
                        .entry((field.to_string(), value))
                        .or_default()
                        .insert(id.clone());
                }
                if rng.chance(5) {
                    // Drift: listed under a second value of the same field.
                    let value = rng.pick(values).to_string();
                    data.filter_sets
                        .entry((field.to_string(), value))
                        .or_default()
                        .insert(id.clone());
                }
            }
            if with_dates && rng.chance(85) {
                // Few distinct scores, so ties are common; sometimes negative.
                let score = (rng.below(8) as f64 - 2.0) * 100.0;
                dates.insert(format!("meeting:{id}"), score);
            }
        }
        // An empty or unrelated ZSET member must not matter.
        if with_dates && rng.chance(30) {
            dates.insert("meeting:no-such".to_string(), 1.0);
        }
        data.meetings = with_meetings_set.then_some(meetings);
        data.dates = with_dates.then_some(dates);
        for user in ["u1", "u2", "u3", "u4"] {
            if rng.chance(85) {
                let clients = (1..=10)
                    .filter(|_| rng.chance(60))
                    .map(|c| c.to_string())
                    .collect();
                data.users.insert(user.to_string(), clients);
            }
        }
        data
    }

    /// Writes the dataset, and a neighbour installation `other` with different members,
    /// into an empty server.
    pub fn load(&self, con: &mut Connection) {
        redis::cmd("FLUSHALL").query::<()>(con).expect("FLUSHALL");
        self.write(con);
    }

    /// Writes the dataset into the selected database as it is.
    pub fn write(&self, con: &mut Connection) {
        let mut pipe = redis::pipe();
        for ((field, value), ids) in &self.filter_sets {
            if !ids.is_empty() {
                pipe.cmd("SADD")
                    .arg(format!("meeting_{field}:{value}_ins_{}", self.installation))
                    .arg(ids)
                    .ignore();
            }
            // The neighbour installation lists every meeting under every value.
            if !self.hashes.is_empty() {
                let every: Vec<&String> = self.hashes.keys().collect();
                pipe.cmd("SADD")
                    .arg(format!("meeting_{field}:{value}_ins_other"))
                    .arg(every)
                    .ignore();
            }
        }
        if let Some(meetings) = &self.meetings {
            if !meetings.is_empty() {
                pipe.cmd("SADD")
                    .arg(format!("meetings_ins_{}", self.installation))
                    .arg(meetings)
                    .ignore();
            }
        }
        for (user, clients) in &self.users {
            if !clients.is_empty() {
                pipe.cmd("SADD")
                    .arg(format!("clients_for_user:{user}"))
                    .arg(clients)
                    .ignore();
            }
        }
        for (id, hash) in &self.hashes {
            let pairs: Vec<(&String, &String)> = hash.iter().collect();
            pipe.cmd("HSET")
                .arg(format!("meeting:{id}"))
                .arg(pairs)
                .ignore();
        }
        if let Some(dates) = &self.dates {
            for (member, score) in dates {
                pipe.cmd("ZADD")
                    .arg("meeting_date")
                    .arg(*score)
                    .arg(member)
                    .ignore();
            }
        }
        pipe.query::<()>(con).expect("load dataset");
    }

    pub fn random_query(&self, rng: &mut Rng) -> Query {
        let filters = field_values(rng, &[0, 1, 1, 2, 2, 3], 90);
        let excludes = field_values(rng, &[0, 0, 0, 0, 0, 1, 1, 2], 70);
        let mut ranges = Vec::new();
        for _ in 0..*rng.pick(&[0, 0, 0, 0, 0, 1, 1, 2]) {
            let (mut min, mut max) = (*rng.pick(&BOUNDS), *rng.pick(&BOUNDS));
            // Mostly in order (an inverted range matches nothing); sometimes inverted.
            let number = |(_, lua): (&str, &str)| match lua.trim_start_matches('(') {
                "-inf" => f64::NEG_INFINITY,
                "+inf" => f64::INFINITY,
                number => number.parse().expect("a numeric bound"),
            };
            if number(min) > number(max) && rng.chance(85) {
                std::mem::swap(&mut min, &mut max);
            }
            ranges.push((min, max));
        }
        // AFTER a meeting that has a hash (a missing one is an error, tested apart).
        let ids: Vec<&String> = self.hashes.keys().collect();
        let after = (!ids.is_empty() && rng.chance(25)).then(|| rng.pick(&ids).to_string());
        Query {
            after,
            facets: false,
            installation: if rng.chance(95) {
                self.installation.clone()
            } else {
                "nowhere".into()
            },
            user: rng
                .pick(&["u1", "u2", "u3", "u4", "u1", "u2", "nobody"])
                .to_string(),
            filters,
            excludes,
            ranges,
            sort_field: rng.pick(&["date", "date", "rank", "missing"]).to_string(),
            descending: rng.chance(50),
            offset: *rng.pick(&[0u64, 0, 0, 1, 3, 50]),
            count: *rng.pick(&[0u64, 1, 5, 10, 10, 1000]),
        }
    }

    /// A meeting's sort value for `query`: its score in `meeting_date` when sorting by date
    /// and that key exists, else its hash field when a plain number.
    fn sort_value(&self, query: &Query, id: &str) -> Option<f64> {
        if query.sort_field == "date" && self.dates.is_some() {
            self.dates
                .as_ref()
                .and_then(|dates| dates.get(&format!("meeting:{id}")).copied())
        } else {
            self.hashes
                .get(id)
                .and_then(|hash| hash.get(&query.sort_field))
                .and_then(|raw| model_number(raw))
        }
    }

    /// The expected answer, computed the naive way: check every id, sort everything.
    pub fn model(&self, query: &Query) -> Answer {
        let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (field, value) in &query.filters {
            groups.entry(field).or_default().push(value);
        }
        let same_installation = query.installation == self.installation;
        let in_set = |field: &str, value: &str, id: &str| {
            same_installation
                && self
                    .filter_sets
                    .get(&(field.to_string(), value.to_string()))
                    .is_some_and(|ids| ids.contains(id))
        };
        let mut universe: BTreeSet<String> = self.hashes.keys().cloned().collect();
        for ids in self.filter_sets.values() {
            universe.extend(ids.iter().cloned());
        }
        let candidates: Vec<&String> = if groups.is_empty() {
            match (&self.meetings, same_installation) {
                (Some(meetings), true) => meetings.iter().collect(),
                _ => Vec::new(),
            }
        } else {
            universe
                .iter()
                .filter(|id| {
                    groups
                        .iter()
                        .all(|(field, values)| values.iter().any(|value| in_set(field, value, id)))
                })
                .collect()
        };
        let candidates = candidates.into_iter().filter(|id| {
            !query
                .excludes
                .iter()
                .any(|(field, value)| in_set(field, value, id))
        });
        let date_of = |id: &str| {
            self.dates
                .as_ref()
                .and_then(|dates| dates.get(&format!("meeting:{id}")).copied())
        };
        let candidates = candidates.filter(|id| {
            query.ranges.iter().all(|((_, min), (_, max))| {
                date_of(id).is_some_and(|date| {
                    model_bound(min, date, true) && model_bound(max, date, false)
                })
            })
        });
        let empty = BTreeSet::new();
        let clients = self.users.get(&query.user).unwrap_or(&empty);
        let mut rows: Vec<(Option<f64>, &String)> = Vec::new();
        for id in candidates {
            let Some(hash) = self.hashes.get(id) else {
                continue;
            };
            let Some(client) = hash.get("clientid") else {
                continue;
            };
            if !clients.contains(client) {
                continue;
            }
            rows.push((self.sort_value(query, id), id));
        }
        rows.sort_by(|(a_value, a_id), (b_value, b_id)| {
            model_row_order((*a_value, a_id), (*b_value, b_id), query.descending)
        });
        // AFTER: the rows ranking after the cursor (a meeting with a hash, by the rule of
        // `random_query`).
        let offset = match &query.after {
            Some(after) => {
                let cursor = (self.sort_value(query, after), after.as_str());
                rows.iter()
                    .take_while(|(value, id)| {
                        model_row_order((*value, id), cursor, query.descending) != Ordering::Greater
                    })
                    .count()
            }
            None => query.offset as usize,
        };
        let page = rows
            .iter()
            .skip(offset)
            .take(query.count as usize)
            .map(|(_, id)| {
                let details = self
                    .hashes
                    .get(*id)
                    .and_then(|hash| hash.get("details"))
                    .map(|d| d.as_bytes().to_vec());
                (id.as_bytes().to_vec(), details)
            })
            .collect();
        if query.facets {
            let ids: Vec<&String> = rows.iter().map(|(_, id)| *id).collect();
            let facets = FACETS
                .iter()
                .map(|(field, values)| {
                    let counts = values
                        .iter()
                        .map(|value| {
                            let count = ids.iter().filter(|id| in_set(field, value, id)).count();
                            (value.as_bytes().to_vec(), count as i64)
                        })
                        .collect();
                    (field.as_bytes().to_vec(), counts)
                })
                .collect();
            return Answer {
                total: rows.len() as i64,
                facets,
                ..Answer::default()
            };
        }
        Answer {
            total: rows.len() as i64,
            page,
            ..Answer::default()
        }
    }
}

#[derive(Debug, Clone)]
pub struct Query {
    pub installation: String,
    pub user: String,
    pub filters: Vec<(String, String)>,
    /// EXCLUDE field/value pairs.
    pub excludes: Vec<(String, String)>,
    /// AFTER this meeting instead of the offset.
    pub after: Option<String>,
    /// CRM.FACETS with the FIELDs of [`FACETS`] instead of CRM.MEETINGS (no sort, no page).
    pub facets: bool,
    /// RANGE date min max.
    pub ranges: Vec<(RangeBound, RangeBound)>,
    pub sort_field: String,
    pub descending: bool,
    pub offset: u64,
    pub count: u64,
}

impl Query {
    /// The module command this query is.
    pub fn command(&self) -> &'static str {
        if self.facets {
            "CRM.FACETS"
        } else {
            "CRM.MEETINGS"
        }
    }

    pub fn module_args(&self) -> Vec<String> {
        let mut args = vec![self.installation.clone(), self.user.clone()];
        for (field, value) in &self.filters {
            args.extend(["FILTER".to_string(), field.clone(), value.clone()]);
        }
        for (field, value) in &self.excludes {
            args.extend(["EXCLUDE".to_string(), field.clone(), value.clone()]);
        }
        for ((min, _), (max, _)) in &self.ranges {
            args.extend(["RANGE", "date", min, max].map(String::from));
        }
        if self.facets {
            for (field, values) in FACETS {
                args.extend([
                    "FIELD".to_string(),
                    field.to_string(),
                    values.len().to_string(),
                ]);
                args.extend(values.iter().map(|value| value.to_string()));
            }
            return args;
        }
        args.extend([
            "SORTBY".to_string(),
            self.sort_field.clone(),
            self.direction().to_string(),
        ]);
        match &self.after {
            Some(id) => args.extend(["AFTER".to_string(), id.clone(), self.count.to_string()]),
            None => args.extend([
                "LIMIT".to_string(),
                self.offset.to_string(),
                self.count.to_string(),
            ]),
        }
        args
    }

    pub fn lua_args(&self) -> Vec<String> {
        let mut args = vec![
            self.installation.clone(),
            self.user.clone(),
            self.sort_field.clone(),
            self.direction().to_string(),
            match &self.after {
                Some(id) => format!("@{id}"),
                None => self.offset.to_string(),
            },
            self.count.to_string(),
        ];
        for (field, value) in &self.filters {
            args.extend([field.clone(), value.clone()]);
        }
        for (field, value) in &self.excludes {
            args.extend([format!("-{field}"), value.clone()]);
        }
        for ((_, min), (_, max)) in &self.ranges {
            args.extend(["~date".to_string(), format!("{min} {max}")]);
        }
        if self.facets {
            for (field, values) in FACETS {
                args.extend(
                    values
                        .iter()
                        .flat_map(|value| [format!("#{field}"), value.to_string()]),
                );
            }
        }
        args
    }

    fn direction(&self) -> &'static str {
        if self.descending {
            "DESC"
        } else {
            "ASC"
        }
    }
}

/// Field/value pairs for FILTER or EXCLUDE: as many as one of `counts`, each value one the
/// data has `known_percent` of the time, else one it never has.
fn field_values(rng: &mut Rng, counts: &[usize], known_percent: u64) -> Vec<(String, String)> {
    (0..*rng.pick(counts))
        .map(|_| {
            let (field, values) = *rng.pick(&FIELDS);
            let value = if rng.chance(known_percent) {
                *rng.pick(values)
            } else {
                "fax"
            };
            (field.to_string(), value.to_string())
        })
        .collect()
}

/// Whether `score` is on the inner side of a RANGE bound written as a number (`(` for
/// exclusive, `-inf`/`+inf`): above it for a min, below it for a max.
fn model_bound(bound: &str, score: f64, is_min: bool) -> bool {
    let (exclusive, number) = match bound.strip_prefix('(') {
        Some(number) => (true, number),
        None => (false, bound),
    };
    let limit: f64 = number.parse().expect("a numeric bound");
    match (is_min, exclusive) {
        (true, true) => score > limit,
        (true, false) => score >= limit,
        (false, true) => score < limit,
        (false, false) => score <= limit,
    }
}
