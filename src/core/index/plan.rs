//! The index's plans and the choice between them, from cardinalities alone (pure, so the
//! cost model is tested without an index).

/// How a query is answered from the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanKind {
    /// The filter bitmaps intersected, then each candidate's client checked; page by heap.
    FilterFirst,
    /// The user's visible meetings (union of their clients' bitmaps, cached) intersected
    /// with the filter bitmaps; page by heap.
    ClientFirst,
    /// As client-first for the total, then a walk in sort order that stops once the page
    /// is full.
    SortWalk,
}

impl PlanKind {
    pub const ALL: [PlanKind; 3] = [
        PlanKind::FilterFirst,
        PlanKind::ClientFirst,
        PlanKind::SortWalk,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PlanKind::FilterFirst => "filter-first",
            PlanKind::ClientFirst => "client-first",
            PlanKind::SortWalk => "sort-walk",
        }
    }
}

/// The `crm.index-plan` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanSetting {
    /// The planner picks from the cardinalities.
    Auto,
    Forced(PlanKind),
    /// Every query takes the keyspace path.
    Keyspace,
}

pub fn parse_plan_setting(text: &str) -> Result<PlanSetting, String> {
    match text.to_ascii_lowercase().as_str() {
        "auto" => Ok(PlanSetting::Auto),
        "keyspace" => Ok(PlanSetting::Keyspace),
        name => PlanKind::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .map(PlanSetting::Forced)
            .ok_or_else(|| {
                "must be auto, filter-first, client-first, sort-walk or keyspace".to_string()
            }),
    }
}

/// Forced plans win; otherwise client-first when the union of the user's client bitmaps
/// (`union_cost`, 0 when cached) costs at most a few times the candidates: a cached union
/// serves every later query of the user. Filter-first checks each candidate's client.
pub fn client_first(forced: Option<PlanKind>, union_cost: u64, candidates: u64) -> bool {
    match forced {
        Some(kind) => kind != PlanKind::FilterFirst,
        None => union_cost <= candidates.saturating_mul(UNION_WORTH),
    }
}

/// How many times the candidates a union may cost and still be built.
const UNION_WORTH: u64 = 4;
/// What intersecting one score range costs, in heap steps (one score lookup each).
const WALK_RANGE_COST: u64 = 16;

/// Whether the page comes from walking the score ranges (a bitmap intersection per range
/// until `keep` matches are seen, of `ranges`) rather than from a heap over all `total`
/// matches (a score lookup each).
pub fn walk_ranges(forced: Option<PlanKind>, ranges: u64, keep: u64, total: u64) -> bool {
    match forced {
        Some(kind) => kind == PlanKind::SortWalk,
        None => {
            let needed = (ranges.saturating_mul(keep) / total.max(1)).clamp(1, ranges.max(1));
            needed.saturating_mul(WALK_RANGE_COST) < total
        }
    }
}

/// The plan the two choices make, as INFO and CRM.EXPLAIN name it.
pub fn plan_kind(client_first: bool, walk: bool) -> PlanKind {
    match (walk, client_first) {
        (true, _) => PlanKind::SortWalk,
        (false, true) => PlanKind::ClientFirst,
        (false, false) => PlanKind::FilterFirst,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_union_is_built_when_it_costs_a_few_times_the_candidates() {
        assert!(client_first(None, 0, 0));
        assert!(client_first(None, 400, 100));
        assert!(!client_first(None, 401, 100));
        assert!(!client_first(Some(PlanKind::FilterFirst), 0, 100));
        assert!(client_first(Some(PlanKind::SortWalk), 10_000, 1));
    }

    #[test]
    fn early_pages_of_many_matches_walk_deep_pages_use_a_heap() {
        // 250 ranges, 100,000 matches: the first 10 lie in about one range.
        assert!(walk_ranges(None, 250, 10, 100_000));
        // A page that reaches the last of 1,000 matches walks every range: the heap.
        assert!(!walk_ranges(None, 250, 1_000, 1_000));
        // Few matches: the heap.
        assert!(!walk_ranges(None, 250, 10, 12));
        assert!(walk_ranges(Some(PlanKind::SortWalk), 250, 10, 1));
        assert!(!walk_ranges(Some(PlanKind::ClientFirst), 250, 10, 100_000));
        assert_eq!(plan_kind(true, true), PlanKind::SortWalk);
        assert_eq!(plan_kind(false, true), PlanKind::SortWalk);
        assert_eq!(plan_kind(true, false), PlanKind::ClientFirst);
        assert_eq!(plan_kind(false, false), PlanKind::FilterFirst);
    }
}
