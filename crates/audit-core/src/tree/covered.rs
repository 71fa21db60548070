//! Which ids a round need not read from `events`: those its seal batches hold, and
//! those recent rounds sealed above the floor (`order`). What is left are the gaps,
//! ranges of ids the round reads rows from: ids of transactions that wrote no batch,
//! of transactions still running, or never used (rolled back).

/// Ids sealed by recent rounds, as sorted, disjoint, inclusive ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoveredIds(Vec<(i64, i64)>);

/// Ranges of ids, each exclusive at both ends: `after[i] < id < before[i]`, as the
/// sealer's statement takes them (two arrays).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gaps {
    pub after: Vec<i64>,
    pub before: Vec<i64>,
}

impl CoveredIds {
    /// Adds ids, in any order.
    pub fn add(&mut self, ids: impl IntoIterator<Item = i64>) {
        let mut ids: Vec<i64> = ids.into_iter().collect();
        if ids.is_empty() {
            return;
        }
        ids.sort_unstable();
        let mut ranges = std::mem::take(&mut self.0);
        ranges.extend(runs(&ids));
        self.0 = merged(ranges);
    }

    /// Forgets ids at or below `floor`: no round reads there.
    pub fn prune(&mut self, floor: i64) {
        self.0.retain(|&(_, last)| last > floor);
    }

    /// The ranges above `floor` that neither these ids nor `more` (sorted) cover; the
    /// last one is open above.
    pub fn gaps(&self, floor: i64, more: &[i64]) -> Gaps {
        let mut ranges = self.0.clone();
        ranges.extend(runs(more));
        let mut gaps = Gaps::default();
        let mut after = floor;
        for (first, last) in merged(ranges) {
            if last <= after {
                continue;
            }
            if first > after + 1 {
                gaps.after.push(after);
                gaps.before.push(first);
            }
            after = last;
        }
        gaps.after.push(after);
        gaps.before.push(i64::MAX);
        gaps
    }
}

/// The runs of consecutive ids in sorted `ids`, as inclusive ranges.
fn runs(ids: &[i64]) -> Vec<(i64, i64)> {
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for &id in ids {
        match runs.last_mut() {
            Some((_, last)) if id <= last.saturating_add(1) => *last = (*last).max(id),
            _ => runs.push((id, id)),
        }
    }
    runs
}

/// Sorts ranges and joins those that overlap or touch.
fn merged(mut ranges: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    ranges.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        match merged.last_mut() {
            Some((_, end)) if first <= end.saturating_add(1) => *end = (*end).max(last),
            _ => merged.push((first, last)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(pairs: &[(i64, i64)]) -> Gaps {
        Gaps {
            after: pairs.iter().map(|pair| pair.0).collect(),
            before: pairs.iter().map(|pair| pair.1).collect(),
        }
    }

    #[test]
    fn with_nothing_covered_everything_above_the_floor_is_one_gap() {
        assert_eq!(CoveredIds::default().gaps(10, &[]), gaps(&[(10, i64::MAX)]));
    }

    #[test]
    fn gaps_are_the_ids_between_covered_runs_and_above_the_last() {
        let mut covered = CoveredIds::default();
        covered.add([12, 11, 13]);

        // 14 and 17 are nobody's; 15-16 and 18 come from this round's batches.
        assert_eq!(
            covered.gaps(10, &[15, 16, 18]),
            gaps(&[(13, 15), (16, 18), (18, i64::MAX)])
        );
        assert_eq!(covered.gaps(9, &[]), gaps(&[(9, 11), (13, i64::MAX)]));
    }

    #[test]
    fn pruning_forgets_what_lies_at_or_below_the_floor() {
        let mut covered = CoveredIds::default();
        covered.add([1, 2, 5, 6, 7]);

        covered.prune(4);

        assert_eq!(covered, {
            let mut expected = CoveredIds::default();
            expected.add([5, 6, 7]);
            expected
        });
        assert_eq!(covered.gaps(2, &[]), gaps(&[(2, 5), (7, i64::MAX)]));
    }

    #[test]
    fn ids_below_the_floor_never_make_a_gap() {
        let mut covered = CoveredIds::default();
        covered.add([3, 4, 20]);

        assert_eq!(covered.gaps(10, &[]), gaps(&[(10, 20), (20, i64::MAX)]));
    }
}
