//! What each step of a query did, for CRM.EXPLAIN: a handful of entries per query, never
//! formatted unless recording.

use std::time::Instant;

/// What one step of a query did: its estimate from set sizes, what it found, how long.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceStep {
    pub name: &'static str,
    pub detail: String,
    pub estimated: u64,
    pub actual: u64,
    pub micros: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    pub steps: Vec<TraceStep>,
    /// Off for CRM.MEETINGS: the step details are then never formatted.
    recording: bool,
}

impl Trace {
    /// A trace that records every step (CRM.EXPLAIN).
    pub fn recording() -> Self {
        Trace {
            steps: Vec::new(),
            recording: true,
        }
    }

    pub(crate) fn record(
        &mut self,
        name: &'static str,
        detail: impl FnOnce() -> String,
        estimated: usize,
        actual: usize,
        since: Instant,
    ) {
        if !self.recording {
            return;
        }
        self.steps.push(TraceStep {
            name,
            detail: detail(),
            estimated: estimated as u64,
            actual: actual as u64,
            micros: u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX),
        });
    }
}
