//! Which events a reader asks for (`GET /api/event`'s filters), in which direction,
//! and the window of ids a filtered page reads.
//!
//! A filtered page walks the primary key in its direction and keeps the events that
//! match, reading at most `search.max_scan_rows` ids: a filter that matches rarely
//! gives a short (even empty) page whose token continues the walk where it stopped,
//! never a scan of the whole table in one request. Pages stay keyset either way: the
//! token is an id, and a deep page costs what the first one costs.

use crate::access::Applications;
use crate::timestamp::EventTimestamp;

/// The order of a page; the token continues in the same one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Direction {
    /// Newest first (the original's only order): the token is the id the next page
    /// stays below.
    #[default]
    Descending,
    /// Oldest first: the token is the id the next page stays above.
    Ascending,
}

/// What the events of a page must match; an empty filter matches every event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Any of these applications (none: any application).
    pub applications: Vec<String>,
    /// Any of these kinds (none: any kind).
    pub kinds: Vec<String>,
    /// `since <= event_ts`.
    pub since: Option<EventTimestamp>,
    /// `event_ts < until`.
    pub until: Option<EventTimestamp>,
    /// A JSON object, as text: events whose payload contains it, as `jsonb @>` means.
    pub payload_contains: Option<String>,
}

impl EventFilter {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// The applications a reader with `scope` may see of those this filter asks for:
    /// none means any; an empty list means that nothing can match.
    pub fn applications_within(&self, scope: &Applications) -> Option<Vec<String>> {
        match (scope, self.applications.is_empty()) {
            (Applications::All, true) => None,
            (Applications::All, false) => Some(self.applications.clone()),
            (Applications::Only(allowed), true) => Some(allowed.clone()),
            (Applications::Only(allowed), false) => Some(
                (self.applications.iter())
                    .filter(|name| allowed.contains(name))
                    .cloned()
                    .collect(),
            ),
        }
    }
}

/// The ids a filtered page reads: `low..=high`, walked from the end its direction
/// starts at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanWindow {
    pub low: i64,
    pub high: i64,
    /// Where the next page continues when this one is not filled: the window's far
    /// end, unless no event lies beyond it.
    pub continue_at: Option<i64>,
}

impl ScanWindow {
    /// The window of at most `scan` ids after the `token` (or from the newest or
    /// oldest event), in a table whose ids run from `lowest` to `highest` (none when
    /// it is empty).
    pub fn after(
        direction: Direction,
        token: Option<i64>,
        bounds: Option<(i64, i64)>,
        scan: i64,
    ) -> Option<Self> {
        let (lowest, highest) = bounds?;
        let span = scan.max(1) - 1;
        match direction {
            Direction::Descending => {
                let high = match token {
                    Some(below) => below.checked_sub(1)?.min(highest),
                    None => highest,
                };
                let low = high.saturating_sub(span);
                (high >= lowest).then_some(Self {
                    low,
                    high,
                    continue_at: (low > lowest).then_some(low),
                })
            }
            Direction::Ascending => {
                let low = match token {
                    Some(above) => above.checked_add(1)?.max(lowest),
                    None => lowest,
                };
                let high = low.saturating_add(span);
                (low <= highest).then_some(Self {
                    low,
                    high,
                    continue_at: (high < highest).then_some(high),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_walks_down_from_the_token_and_continues_below_itself() {
        let window = ScanWindow::after(Direction::Descending, Some(100), Some((1, 500)), 10);
        assert_eq!(
            window,
            Some(ScanWindow {
                low: 90,
                high: 99,
                continue_at: Some(90),
            })
        );
        let first = ScanWindow::after(Direction::Descending, None, Some((1, 500)), 10);
        assert_eq!(
            first.map(|window| (window.low, window.high)),
            Some((491, 500))
        );
        let last = ScanWindow::after(Direction::Descending, Some(8), Some((1, 500)), 10);
        assert_eq!(last.map(|window| window.continue_at), Some(None));
        assert_eq!(
            ScanWindow::after(Direction::Descending, Some(1), Some((1, 500)), 10),
            None
        );
    }

    #[test]
    fn a_window_walks_up_from_the_token_and_continues_above_itself() {
        let window = ScanWindow::after(Direction::Ascending, Some(100), Some((1, 500)), 10);
        assert_eq!(
            window,
            Some(ScanWindow {
                low: 101,
                high: 110,
                continue_at: Some(110),
            })
        );
        let first = ScanWindow::after(Direction::Ascending, None, Some((40, 500)), 10);
        assert_eq!(
            first.map(|window| (window.low, window.high)),
            Some((40, 49))
        );
        let last = ScanWindow::after(Direction::Ascending, Some(495), Some((1, 500)), 10);
        assert_eq!(last.map(|window| window.continue_at), Some(None));
        assert_eq!(
            ScanWindow::after(Direction::Ascending, Some(500), Some((1, 500)), 10),
            None
        );
    }

    #[test]
    fn windows_at_the_ends_of_the_id_range_do_not_overflow() {
        let top = ScanWindow::after(
            Direction::Ascending,
            Some(i64::MAX - 3),
            Some((1, i64::MAX)),
            10,
        );
        assert_eq!(top.map(|window| window.high), Some(i64::MAX));
        assert_eq!(
            ScanWindow::after(
                Direction::Ascending,
                Some(i64::MAX),
                Some((1, i64::MAX)),
                10
            ),
            None
        );
        let bottom = ScanWindow::after(
            Direction::Descending,
            Some(i64::MIN + 3),
            Some((i64::MIN, 5)),
            10,
        );
        assert_eq!(bottom.map(|window| window.low), Some(i64::MIN));
        assert_eq!(
            ScanWindow::after(Direction::Descending, None, None, 10),
            None
        );
    }

    #[test]
    fn the_filter_s_applications_are_narrowed_to_the_reader_s_scope() {
        let filter = EventFilter {
            applications: vec!["a".into(), "b".into()],
            ..EventFilter::default()
        };
        let only_b = Applications::Only(vec!["b".into(), "c".into()]);
        assert_eq!(
            filter.applications_within(&only_b),
            Some(vec!["b".to_owned()])
        );
        assert_eq!(
            EventFilter::default().applications_within(&only_b),
            Some(vec!["b".to_owned(), "c".to_owned()])
        );
        assert_eq!(
            EventFilter::default().applications_within(&Applications::All),
            None
        );
        let none = Applications::Only(vec!["z".into()]);
        assert_eq!(filter.applications_within(&none), Some(vec![]));
    }
}
