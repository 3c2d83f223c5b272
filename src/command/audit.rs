//! `CRM.CHECK <installation> [LIMIT n]` (read-only audit) and `CRM.REPAIR <installation>`
//! (rebuild the sets and sort indexes from the meeting hashes).
//!
//! Both run as a job in steps of about [`STEP_BUDGET`]: the client is blocked, and a timer
//! runs one step per event-loop turn, so other clients are served in between. Inside MULTI
//! or a script, where a client cannot block, the job runs to the end in one go.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use redis_module::{
    BlockedClient, Context, ContextFlags, RedisError, RedisValue, ThreadSafeContext,
};

use super::{caller_store, integer, spec};
use crate::config;
use crate::core::audit::{examine, DriftKind, MeetingState};
use crate::core::store::{MeetingStore, MeetingWriter};
use crate::core::types::{Bytes, SetRef};
use crate::core::write::Schema;
use crate::error::{printable, CrmError};
use crate::ffi::user::caller_name;
use crate::ffi::{select_db, selected_db};
use crate::store::access::{KeyGuard, Need};
use crate::store::index::writes::write_through;
use crate::store::installation_scan::{InstallationScan, Listing};
use crate::store::keys::{KeyRole, KeyTemplates};
use crate::store::keyspace::KeyspaceStore;

/// How long one step holds the server, give or take one unit of work (one hash bucket of
/// the keyspace or of a set, or one meeting).
pub const STEP_BUDGET: Duration = Duration::from_millis(1);
const DEFAULT_EXAMPLES: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Check,
    Repair,
}

pub fn check(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue, CrmError> {
    let (installation, examples) = match args {
        [installation] => (installation, DEFAULT_EXAMPLES),
        [installation, word, limit] if word.eq_ignore_ascii_case(b"LIMIT") => {
            let limit = std::str::from_utf8(limit)
                .ok()
                .filter(|text| text.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|text| text.parse::<usize>().ok())
                .ok_or_else(|| {
                    CrmError::BadArgument(format!(
                        "LIMIT must be a non-negative integer, got '{}'",
                        printable(limit)
                    ))
                })?;
            (installation, limit)
        }
        [_, word, ..] if !word.eq_ignore_ascii_case(b"LIMIT") => {
            return Err(CrmError::BadArgument(format!(
                "unknown option '{}': expected LIMIT",
                printable(word)
            )))
        }
        _ => {
            return Err(CrmError::WrongArity {
                command: spec::CHECK.name,
            })
        }
    };
    start(ctx, Mode::Check, installation, examples)
}

pub fn repair(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue, CrmError> {
    let [installation] = args else {
        return Err(CrmError::WrongArity {
            command: spec::REPAIR.name,
        });
    };
    start(ctx, Mode::Repair, installation, DEFAULT_EXAMPLES)
}

fn start(
    ctx: &Context,
    mode: Mode,
    installation: &[u8],
    examples: usize,
) -> Result<RedisValue, CrmError> {
    let schema = config::schema()?;
    // A repair writes: refuse it up front to a user who may not write the installation's
    // set or sort indexes (value sets are checked as the scan finds them, before any
    // write), even when there turns out to be nothing to mend.
    let need = match mode {
        Mode::Check => Need::Read,
        Mode::Repair => Need::Write,
    };
    let store = caller_store(ctx, installation)?;
    store.check_set(SetRef::Meetings { installation }, need)?;
    for field in &schema.sort_fields {
        store.check_key(&store.sort_key(installation, field), KeyRole::Sort, need)?;
    }
    let scan = InstallationScan::new(
        installation.to_vec(),
        store.templates().clone(),
        schema.clone(),
        need,
    )?;
    let mut job = AuditJob {
        mode,
        db: selected_db(ctx)?,
        keys: store.templates().clone(),
        schema,
        user: caller_name(ctx),
        scan,
        pending: VecDeque::new(),
        installation: installation.to_vec(),
        report: Report::new(examples),
    };
    let cannot_block = ctx
        .get_flags()
        .intersects(ContextFlags::MULTI | ContextFlags::LUA | ContextFlags::DENY_BLOCKING);
    if cannot_block {
        while !job.step(ctx, Duration::MAX)? {}
        return Ok(job.report.reply(mode));
    }
    let blocked = ctx.block_client();
    ctx.create_timer(Duration::ZERO, tick, (job, blocked));
    Ok(RedisValue::NoReply)
}

/// One step of a job from a timer; schedules the next one or answers the blocked client.
fn tick(ctx: &Context, (mut job, blocked): (AuditJob, BlockedClient)) {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        select_db(ctx, job.db)?;
        job.step(ctx, STEP_BUDGET)
    }));
    let reply = match outcome {
        Ok(Ok(false)) => {
            ctx.create_timer(Duration::ZERO, tick, (job, blocked));
            return;
        }
        Ok(Ok(true)) => Ok(job.report.reply(job.mode)),
        Ok(Err(error)) => Err(RedisError::String(error.to_string())),
        Err(_) => Err(RedisError::String(
            CrmError::Internal("the job failed; see the server log".into()).to_string(),
        )),
    };
    ThreadSafeContext::with_blocked_client(blocked).reply(reply);
}

struct AuditJob {
    mode: Mode,
    db: i32,
    keys: KeyTemplates,
    schema: Schema,
    installation: Bytes,
    /// The user who started the job: its steps run with this user's key permissions.
    user: Option<Bytes>,
    scan: InstallationScan,
    /// Ids handed out by the scan and not examined yet.
    pending: VecDeque<(Bytes, Listing)>,
    report: Report,
}

impl AuditJob {
    /// Works for about `budget`; `Ok(true)` when the job is done.
    fn step(&mut self, ctx: &Context, budget: Duration) -> Result<bool, CrmError> {
        let started = Instant::now();
        let deadline = started
            .checked_add(budget)
            .unwrap_or(started + Duration::from_secs(86_400));
        let done = self.work(ctx, deadline)?;
        self.report.steps += 1;
        self.report.longest_step = self.report.longest_step.max(started.elapsed());
        Ok(done)
    }

    fn work(&mut self, ctx: &Context, deadline: Instant) -> Result<bool, CrmError> {
        let guard = KeyGuard::new(ctx, self.user.as_deref(), &self.installation)?;
        let store = KeyspaceStore::new(ctx, self.keys.clone(), guard);
        loop {
            if self.pending.is_empty() {
                match self.scan.next_batch(ctx, &store, deadline)? {
                    Some(batch) => self.pending.extend(batch),
                    None => return Ok(true),
                }
            }
            while let Some((id, listing)) = self.pending.pop_front() {
                self.report.meetings += 1;
                let state = self.meeting_state(&store, id, listing)?;
                let (findings, fixes) = examine(&self.schema, &state);
                for finding in findings {
                    self.report.add(finding.kind, finding.detail);
                }
                if self.mode == Mode::Repair && !fixes.is_empty() {
                    let writes = fixes.len() as u64;
                    // The same write path as CRM.MEETING.SET: the index follows the mend.
                    let id = state.id.as_slice();
                    write_through(ctx, &store, &self.installation, &[id], || {
                        store.apply(&self.installation, &[(id, &fixes)])?;
                        Ok(vec![fixes])
                    })?;
                    self.report.writes += writes;
                }
                if Instant::now() >= deadline {
                    return Ok(false);
                }
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
        }
    }

    fn meeting_state(
        &self,
        store: &KeyspaceStore<'_>,
        id: Bytes,
        listing: Listing,
    ) -> Result<MeetingState, CrmError> {
        let fields: Vec<&[u8]> = self
            .schema
            .filter_fields
            .iter()
            .chain(&self.schema.sort_fields)
            .map(Vec::as_slice)
            .collect();
        let ids = std::slice::from_ref(&id);
        let hash = store
            .stored_fields(&self.installation, ids, &fields)?
            .pop()
            .flatten();
        let mut scores = Vec::with_capacity(self.schema.sort_fields.len());
        for field in &self.schema.sort_fields {
            scores.push(
                store
                    .sort_scores(&self.installation, field, ids)?
                    .pop()
                    .flatten(),
            );
        }
        Ok(MeetingState {
            id,
            hash,
            in_meetings_set: listing.in_meetings_set,
            listed: listing.listed,
            scores,
        })
    }
}

struct Report {
    meetings: u64,
    counts: [u64; DriftKind::ALL.len()],
    examples: Vec<Vec<String>>,
    max_examples: usize,
    writes: u64,
    steps: u64,
    longest_step: Duration,
}

impl Report {
    fn new(max_examples: usize) -> Self {
        Report {
            meetings: 0,
            counts: [0; DriftKind::ALL.len()],
            examples: vec![Vec::new(); DriftKind::ALL.len()],
            max_examples,
            writes: 0,
            steps: 0,
            longest_step: Duration::ZERO,
        }
    }

    fn add(&mut self, kind: DriftKind, detail: String) {
        let index = DriftKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        if let Some(count) = self.counts.get_mut(index) {
            *count += 1;
        }
        if let Some(examples) = self.examples.get_mut(index) {
            if examples.len() < self.max_examples {
                examples.push(detail);
            }
        }
    }

    /// `meetings N <kind> [count [examples...]] ... [writes W] steps S longest_step_us U`
    fn reply(&self, mode: Mode) -> RedisValue {
        let mut items = vec![
            RedisValue::SimpleStringStatic("meetings"),
            integer(self.meetings),
        ];
        for ((kind, count), examples) in DriftKind::ALL.iter().zip(self.counts).zip(&self.examples)
        {
            items.push(RedisValue::SimpleStringStatic(kind.name()));
            let examples = examples
                .iter()
                .cloned()
                .map(RedisValue::BulkString)
                .collect();
            items.push(RedisValue::Array(vec![
                integer(count),
                RedisValue::Array(examples),
            ]));
        }
        if mode == Mode::Repair {
            items.push(RedisValue::SimpleStringStatic("writes"));
            items.push(integer(self.writes));
        }
        items.push(RedisValue::SimpleStringStatic("steps"));
        items.push(integer(self.steps));
        items.push(RedisValue::SimpleStringStatic("longest_step_us"));
        items.push(integer(
            u64::try_from(self.longest_step.as_micros()).unwrap_or(u64::MAX),
        ));
        RedisValue::Array(items)
    }
}
