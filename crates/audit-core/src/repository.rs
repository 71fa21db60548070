//! The events table: reading pages newest first, and readiness. Writes go through
//! `writer::EventWriter`.

use std::cell::Cell;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::{StreamExt, pin_mut};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use crate::access::Applications;
use crate::event::StoredEvent;
use crate::filter::{Direction, EventFilter, ScanWindow};
use crate::migrations;
use crate::postings::{self, Candidates, PostingPlan};
use crate::replicas::Replicas;
use crate::search_index::{self, SearchIndex, SearchIndexes};
use crate::storage_error::{
    StorageError, bounded, call_deadline, classify, connection_from, statement_timed_out,
};
use crate::thread_pools::ThreadPools;
use crate::timestamp::EventTimestamp;

/// The first page: no bound to check. (One statement for both, with the first page
/// read below the largest id, cost PostgreSQL 10-15 us more CPU per first page in four
/// side-by-side benchmark runs; see the commit that brought this back.)
const FIRST_PAGE: &str = "SELECT id, event_ts, application_name, event_kind, payload::text \
     FROM events ORDER BY id DESC LIMIT ";
/// The pages after it: the events below the previous page's last id.
const PAGE_BELOW: &str = "SELECT id, event_ts, application_name, event_kind, payload::text \
     FROM events WHERE id < $1 ORDER BY id DESC LIMIT ";

/// The limits the page statements are prepared with, as literals: a page asks for the
/// smallest that holds it, and reads no more rows than it asked for.
///
/// Not `LIMIT $n`: with the limit unknown, PostgreSQL's generic plan costs a tenth of
/// the table, so it plans every execution again with the value, and planning a query
/// over a partitioned table costs more than running it (pgbench, 2M events in four
/// partitions: 10.7k pages/s with `LIMIT $1`, 23.5k with the literal). A fixed, small
/// set of limits keeps the statements each connection prepares bounded, whatever page
/// sizes clients ask for.
const LITERAL_LIMITS: [i64; 7] = [11, 21, 51, 101, 201, 501, 1001];

/// The first-page and next-page statements of each literal limit.
static PAGE_STATEMENTS: LazyLock<Vec<(i64, String, String)>> = LazyLock::new(|| {
    LITERAL_LIMITS
        .iter()
        .map(|limit| {
            (
                *limit,
                format!("{FIRST_PAGE}{limit}"),
                format!("{PAGE_BELOW}{limit}"),
            )
        })
        .collect()
});

/// The statement of a page of `limit` events, newest first, below `below` if given;
/// `None` past the largest literal limit.
fn page_statement(below: Option<i64>, limit: i64) -> Option<&'static str> {
    let (_, first, next) = PAGE_STATEMENTS
        .iter()
        .find(|(at_most, _, _)| *at_most >= limit)?;
    Some(if below.is_some() { next } else { first })
}

/// A scoped page without the index: the events of the scope among the `$2` ids below
/// `$1`, and one marker row (null `event_ts`) whose id says where the next page
/// continues if this one is short (null when no id is below the range). Each page
/// reads at most `$2` entries of the primary key, however rare the scope's events are.
const SCOPED_SCAN_BELOW: &str = "(SELECT id, event_ts, application_name, event_kind, \
         payload::text FROM events \
     WHERE application_name = ANY($3) AND id < $1 AND id >= $1 - $2 \
     ORDER BY id DESC LIMIT $4) \
     UNION ALL \
     SELECT CASE WHEN $1 - $2 > (SELECT min(id) FROM events) THEN $1 - $2 END, \
         NULL, NULL, NULL, NULL";
/// The same for the first page: the `$1` ids up to the largest (`$2` the scope,
/// `$3` the limit).
const SCOPED_SCAN_FIRST: &str = "(SELECT id, event_ts, application_name, event_kind, \
         payload::text FROM events \
     WHERE application_name = ANY($2) AND id > (SELECT max(id) FROM events) - $1 \
     ORDER BY id DESC LIMIT $3) \
     UNION ALL \
     SELECT CASE WHEN bounds.floor > bounds.lowest THEN bounds.floor END, \
         NULL, NULL, NULL, NULL \
     FROM (SELECT (SELECT max(id) FROM events) + 1 - $1 AS floor, \
                  (SELECT min(id) FROM events) AS lowest) AS bounds";

/// The pages of a reader scoped to some applications, with the index: one keyset
/// range of `(application_name, id)` per application, merged. A page reads at most
/// `limit` index entries per application, however rare its events are in the table,
/// and never an event of another application. The first page passes `i64::MAX`.
const SCOPED_PAGE_BELOW: &str = "SELECT page.id, page.event_ts, page.application_name, \
     page.event_kind, page.payload::text \
     FROM unnest($1::text[]) AS scope (application_name) \
     CROSS JOIN LATERAL ( \
         SELECT id, event_ts, application_name, event_kind, payload FROM events \
         WHERE events.application_name = scope.application_name AND id < $2 \
         ORDER BY id DESC LIMIT $3 \
     ) AS page \
     ORDER BY page.id DESC LIMIT $3";

/// The same for a reader of one application: a single range of the index, without
/// the merge (measured: about half the PostgreSQL CPU of the merged statement).
const ONE_APPLICATION_PAGE_BELOW: &str = "SELECT id, event_ts, application_name, event_kind, \
     payload::text FROM events WHERE application_name = $1 AND id < $2 \
     ORDER BY id DESC LIMIT $3";

/// The start of every statement that builds its conditions at run time
/// ([`FilterValues`]): the columns of an event, as the pages read them.
pub(crate) const SELECT_EVENTS_WHERE: &str =
    "SELECT id, event_ts, application_name, event_kind, payload::text FROM events WHERE ";

/// Oldest first, unfiltered: the events above the token.
const PAGE_ABOVE: &str = "SELECT id, event_ts, application_name, event_kind, payload::text \
     FROM events WHERE id > $1 ORDER BY id LIMIT $2";

/// The ids a filtered page's window is cut from.
const ID_BOUNDS: &str = "SELECT min(id), max(id) FROM events";
/// The ids above the postings' floor, which a page walks without them.
const UNPOSTED_IDS: &str = "SELECT min(id), max(id) FROM events WHERE id > $1";

/// Where a read ended, besides the rows handed over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageEnd {
    /// A read that looks at a bounded window of ids (a scoped read without the index,
    /// a filtered read) looked at every id up to here and found fewer events than
    /// asked: the next page continues from this id, in the page's direction.
    pub continue_at: Option<i64>,
}

/// Reads events through a connection pool.
#[derive(Clone, Debug)]
pub struct EventRepository {
    /// The calling thread's connections ([`ThreadPools`]).
    pools: ThreadPools,
    /// Bound of every call, from the statement timeout: a frozen server cannot hang it.
    deadline: Duration,
    /// The optional indexes that exist and are valid, as last checked
    /// ([`SearchIndexes`] bits).
    search_indexes: Arc<AtomicU8>,
    /// Where page reads go first, when configured (`postgres.read_dsns`).
    replicas: Option<Replicas>,
}

impl EventRepository {
    pub fn new(pools: ThreadPools, statement_timeout: Duration) -> Self {
        Self {
            pools,
            deadline: call_deadline(statement_timeout),
            search_indexes: Arc::default(),
            replicas: None,
        }
    }

    /// Page reads, exports and tails read from these replicas while one is usable.
    #[must_use]
    pub fn with_replicas(mut self, replicas: Option<Replicas>) -> Self {
        self.replicas = replicas;
        self
    }

    pub fn replicas(&self) -> Option<&Replicas> {
        self.replicas.as_ref()
    }

    /// The calling thread's pool of a usable replica, else of the primary: for reads
    /// that may be a little behind the primary (at most `postgres.max_read_lag_ms`).
    pub fn read_pool(&self) -> Pool {
        match self.replicas.as_ref().and_then(Replicas::choose) {
            Some((_, pool)) => pool,
            None => self.pools.current(),
        }
    }

    /// Runs `read` on a usable replica, handing rows to `accept`; if that fails for want
    /// of the replica before any row was handed on, the replica is set aside and `read`
    /// runs on the primary. A failing replica therefore never costs a reader a 5xx.
    async fn read_with_fallback(
        &self,
        mut accept: impl FnMut(StoredEvent<'_>) -> ControlFlow<()>,
        mut read: impl AsyncFnMut(
            &Pool,
            &mut dyn FnMut(StoredEvent<'_>) -> ControlFlow<()>,
        ) -> Result<PageEnd, StorageError>,
    ) -> Result<PageEnd, StorageError> {
        let handed = Cell::new(false);
        let mut noting = |event: StoredEvent<'_>| {
            handed.set(true);
            accept(event)
        };
        if let Some(replicas) = &self.replicas
            && let Some((index, pool)) = replicas.choose()
        {
            match read(&pool, &mut noting).await {
                Err(StorageError::Unavailable(error) | StorageError::OutcomeUnknown(error))
                    if !handed.get() =>
                {
                    tracing::warn!(%error, "a read replica failed; reading from the primary");
                    replicas.mark_failed(index);
                }
                other => return other,
            }
        }
        read(&self.pools.current(), &mut noting).await
    }

    /// The optional indexes reads go through, as last checked.
    pub fn search_indexes(&self) -> SearchIndexes {
        SearchIndexes::from_bits(self.search_indexes.load(Ordering::Relaxed))
    }

    /// Checks which optional indexes exist and are valid (not a concurrent build in
    /// progress), and reads accordingly from now on.
    pub async fn refresh_search_indexes(&self) -> Result<SearchIndexes, StorageError> {
        let client = connection_from(&self.pools.current()).await?;
        let found = bounded(client, self.deadline, statement_timed_out, async |client| {
            search_index::existing(client).await
        })
        .await?;
        self.search_indexes.store(found.bits(), Ordering::Relaxed);
        Ok(found)
    }

    /// The calling thread's pool: its connections' I/O runs on this thread.
    pub fn pool(&self) -> Pool {
        self.pools.current()
    }

    /// Every thread's connections, as one pool's status with `pool_size` its largest.
    pub fn pool_status(&self) -> deadpool_postgres::Status {
        self.pools.status()
    }

    /// Hands up to `limit` events of the applications in `scope`, newest first, with
    /// ids below `below` (or from the newest event), to `accept` one at a time as they arrive from the
    /// database; `accept` stops the read by answering `Break`. Rows are never all held
    /// at once, so a page of large events takes the memory of what `accept` keeps.
    pub async fn read_page(
        &self,
        scope: &Applications,
        below: Option<i64>,
        limit: i64,
        max_scan_rows: i64,
        accept: impl FnMut(StoredEvent<'_>) -> ControlFlow<()>,
    ) -> Result<PageEnd, StorageError> {
        self.read_with_fallback(accept, async |pool, accept| {
            self.read_page_on(pool, scope, below, limit, max_scan_rows, accept)
                .await
        })
        .await
    }

    async fn read_page_on(
        &self,
        pool: &Pool,
        scope: &Applications,
        below: Option<i64>,
        limit: i64,
        max_scan_rows: i64,
        accept: impl FnMut(StoredEvent<'_>) -> ControlFlow<()>,
    ) -> Result<PageEnd, StorageError> {
        let client = connection_from(pool).await?;
        let indexed = self.search_indexes().contains(SearchIndex::Application);
        bounded(client, self.deadline, statement_timed_out, async |client| {
            if let (Applications::Only(applications), false) = (scope, indexed) {
                let everything = EventFilter::default();
                if let Some(values) = FilterValues::new(Some(applications), &everything)
                    && let Some(plan) = PostingPlan::for_filter(Some(applications), &everything)
                    && let Some(floor) = postings::posted_floor(client).await?
                {
                    let page = FilteredPage {
                        values: &values,
                        direction: Direction::Descending,
                        token: below,
                        limit,
                        max_scan_rows,
                    };
                    let posted = Postings { plan, floor };
                    return read_with_postings(client, page, posted, accept).await;
                }
                return read_scanned(client, applications, below, limit, max_scan_rows, accept)
                    .await;
            }
            let applications = match scope {
                Applications::All => return read_newest(client, below, limit, accept).await,
                Applications::Only(applications) => applications,
            };
            let rows = match (applications, below) {
                (applications, below) if applications.len() == 1 => {
                    let statement = client
                        .prepare_cached(ONE_APPLICATION_PAGE_BELOW)
                        .await
                        .map_err(classify)?;
                    let below = below.unwrap_or(i64::MAX);
                    let parameters: [&(dyn ToSql + Sync); 3] = [&applications[0], &below, &limit];
                    client.query_raw(&statement, parameters).await
                }
                (applications, below) => {
                    let statement = client
                        .prepare_cached(SCOPED_PAGE_BELOW)
                        .await
                        .map_err(classify)?;
                    let below = below.unwrap_or(i64::MAX);
                    let parameters: [&(dyn ToSql + Sync); 3] = [applications, &below, &limit];
                    client.query_raw(&statement, parameters).await
                }
            }
            .map_err(classify)?;
            hand_over(rows, accept).await?;
            Ok(PageEnd::default())
        })
        .await
    }

    /// Hands up to `limit` events matching `filter` in `direction`, after `token`, to
    /// `accept` (as [`Self::read_page`] does). `applications` is the filter's narrowed
    /// to the reader's scope ([`EventFilter::applications_within`]): none for any.
    /// With anything to match, the read looks at one window of at most
    /// `max_scan_rows` ids ([`ScanWindow`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn read_filtered_page(
        &self,
        applications: Option<&[String]>,
        filter: &EventFilter,
        direction: Direction,
        token: Option<i64>,
        limit: i64,
        max_scan_rows: i64,
        accept: impl FnMut(StoredEvent<'_>) -> ControlFlow<()>,
    ) -> Result<PageEnd, StorageError> {
        let Some(values) = FilterValues::new(applications, filter) else {
            return Ok(PageEnd::default());
        };
        self.read_with_fallback(accept, async |pool, accept| {
            let page = FilteredPage {
                values: &values,
                direction,
                token,
                limit,
                max_scan_rows,
            };
            self.read_filtered_page_on(pool, page, accept).await
        })
        .await
    }

    async fn read_filtered_page_on(
        &self,
        pool: &Pool,
        page: FilteredPage<'_>,
        accept: impl FnMut(StoredEvent<'_>) -> ControlFlow<()>,
    ) -> Result<PageEnd, StorageError> {
        let FilteredPage {
            values,
            direction,
            token,
            limit,
            max_scan_rows,
        } = page;
        let indexes = self.search_indexes();
        let client = connection_from(pool).await?;
        bounded(client, self.deadline, statement_timed_out, async |client| {
            if !values.has_conditions() {
                return read_unfiltered(client, direction, token, limit, accept).await;
            }
            if values.served_by(indexes) {
                return read_indexed(client, values, direction, token, limit, accept).await;
            }
            if let Some(plan) = PostingPlan::for_filter(values.applications, values.filter)
                && let Some(floor) = postings::posted_floor(client).await?
            {
                let posted = Postings { plan, floor };
                return read_with_postings(client, page, posted, accept).await;
            }
            let row = client.query_one(ID_BOUNDS, &[]).await.map_err(classify)?;
            let lowest: Option<i64> = row.try_get(0).map_err(classify)?;
            let highest: Option<i64> = row.try_get(1).map_err(classify)?;
            let bounds = lowest.zip(highest);
            let Some(window) = ScanWindow::after(direction, token, bounds, max_scan_rows) else {
                return Ok(PageEnd::default());
            };
            read_window(client, values, direction, window, limit, accept).await
        })
        .await
    }

    /// Succeeds when the database answers and has every migration of this build.
    pub async fn check_ready(&self) -> Result<(), StorageError> {
        let client = connection_from(&self.pools.current()).await?;
        bounded(client, self.deadline, statement_timed_out, async |client| {
            check_schema(client).await
        })
        .await
    }
}

/// What a filtered page asks for, past the pool it is read from.
#[derive(Clone, Copy)]
struct FilteredPage<'a> {
    values: &'a FilterValues<'a>,
    direction: Direction,
    token: Option<i64>,
    limit: i64,
    max_scan_rows: i64,
}

/// The postings a page reads, and the id floor up to which they hold every event.
struct Postings {
    plan: PostingPlan,
    floor: i64,
}

/// Candidates examined by the first read of a page's postings, after which each read
/// takes four times as many: a filter its postings serve exactly fills a page at
/// once, one they narrow less (a day and an application) soon.
const FIRST_CANDIDATES: i64 = 16;

/// A filtered page through the search postings: the ids above their floor (not all
/// posted yet) by a walk of the primary key, those at or below it through the
/// postings, in the page's order; at most `max_scan_rows` ids looked at in all.
async fn read_with_postings(
    client: &deadpool_postgres::Client,
    page: FilteredPage<'_>,
    posted: Postings,
    accept: impl FnMut(StoredEvent<'_>) -> ControlFlow<()>,
) -> Result<PageEnd, StorageError> {
    let (values, direction, token, limit) = (page.values, page.direction, page.token, page.limit);
    let handed = Cell::new(0i64);
    let mut accept = at_most(limit, accept);
    let mut counted = |event: StoredEvent<'_>| {
        handed.set(handed.get() + 1);
        accept(event)
    };
    let floor = posted.floor;
    let mut budget = page.max_scan_rows.max(1);
    if direction == Direction::Descending && token.is_none_or(|token| token > floor + 1) {
        let unposted = unposted_ids(client, floor).await?;
        if let Some(window) = ScanWindow::after(direction, token, unposted, budget) {
            let window = ScanWindow {
                low: window.low.max(floor + 1),
                ..window
            };
            let end = read_window(client, values, direction, window, limit, &mut counted).await?;
            if handed.get() >= limit || end.continue_at.is_some() {
                return Ok(end);
            }
            budget -= window.high - window.low + 1;
        }
    }
    let (low, high) = match direction {
        Direction::Descending => (i64::MIN, token.unwrap_or(i64::MAX).min(floor + 1)),
        Direction::Ascending => (token.unwrap_or(i64::MIN), floor + 1),
    };
    let mut plan = posted.plan;
    let narrowing = plan.take_narrowing();
    let mut candidates = Candidates::new(plan, direction, low, high);
    let mut wanted = FIRST_CANDIDATES;
    let mut examined = None;
    if low < high - 1 {
        loop {
            if budget <= 0 {
                return Ok(PageEnd {
                    continue_at: Some(examined.unwrap_or(match direction {
                        Direction::Descending => high,
                        Direction::Ascending => low,
                    })),
                });
            }
            let take = usize::try_from(wanted.min(budget)).unwrap_or(1);
            let ids = candidates.next(client, take).await?;
            let Some(&last) = ids.last() else { break };
            budget -= ids.len() as i64;
            examined = Some(last);
            let ids = match &narrowing {
                Some(narrowing) => narrowing.retain(client, ids).await?,
                None => ids,
            };
            wanted = wanted.saturating_mul(4);
            if ids.is_empty() {
                continue;
            }
            let rest = limit - handed.get();
            let parameters: Vec<&(dyn ToSql + Sync)> = vec![&ids, &rest];
            let order = match direction {
                Direction::Descending => " ORDER BY id DESC LIMIT $2",
                Direction::Ascending => " ORDER BY id LIMIT $2",
            };
            let statement = Built::new("id = ANY($1)", values, parameters, order);
            let prepared = (client.prepare_cached(&statement.query).await).map_err(classify)?;
            statement.run(client, &prepared, &mut counted).await?;
            if handed.get() >= limit {
                return Ok(PageEnd::default());
            }
        }
    }
    if direction == Direction::Descending {
        return Ok(PageEnd::default());
    }
    if budget <= 0 {
        return Ok(PageEnd {
            continue_at: Some(low.max(floor)),
        });
    }
    let unposted = unposted_ids(client, floor).await?;
    let from = token.unwrap_or(i64::MIN).max(floor);
    let Some(window) = ScanWindow::after(direction, Some(from), unposted, budget) else {
        return Ok(PageEnd::default());
    };
    read_window(
        client,
        values,
        direction,
        window,
        limit - handed.get(),
        counted,
    )
    .await
}

/// The first and last id above the postings' `floor` (none when there is none).
async fn unposted_ids(
    client: &deadpool_postgres::Client,
    floor: i64,
) -> Result<Option<(i64, i64)>, StorageError> {
    let statement = client
        .prepare_cached(UNPOSTED_IDS)
        .await
        .map_err(classify)?;
    let row = client
        .query_one(&statement, &[&floor])
        .await
        .map_err(classify)?;
    let lowest: Option<i64> = row.try_get(0).map_err(classify)?;
    let highest: Option<i64> = row.try_get(1).map_err(classify)?;
    Ok(lowest.zip(highest))
}

/// A scoped page without the index ([`SCOPED_SCAN_BELOW`], [`SCOPED_SCAN_FIRST`]).
async fn read_scanned(
    client: &deadpool_postgres::Client,
    applications: &[String],
    below: Option<i64>,
    limit: i64,
    max_scan_rows: i64,
    mut accept: impl FnMut(StoredEvent<'_>) -> ControlFlow<()>,
) -> Result<PageEnd, StorageError> {
    let rows = match below {
        Some(below) => {
            let statement = client
                .prepare_cached(SCOPED_SCAN_BELOW)
                .await
                .map_err(classify)?;
            let parameters: [&(dyn ToSql + Sync); 4] =
                [&below, &max_scan_rows, &applications, &limit];
            client.query_raw(&statement, parameters).await
        }
        None => {
            let statement = client
                .prepare_cached(SCOPED_SCAN_FIRST)
                .await
                .map_err(classify)?;
            let parameters: [&(dyn ToSql + Sync); 3] = [&max_scan_rows, &applications, &limit];
            client.query_raw(&statement, parameters).await
        }
    }
    .map_err(classify)?;
    pin_mut!(rows);
    let mut end = PageEnd::default();
    while let Some(row) = rows.next().await {
        let row = row.map_err(classify)?;
        let marker = row
            .try_get::<_, Option<time::OffsetDateTime>>(1)
            .map_err(classify)?
            .is_none();
        if marker {
            end.continue_at = row.try_get(0).map_err(classify)?;
        } else if accept(stored_event_from_row(&row, 0)?).is_break() {
            break;
        }
    }
    Ok(end)
}

/// An unfiltered page in either direction: a keyset range of the primary key.
async fn read_unfiltered(
    client: &deadpool_postgres::Client,
    direction: Direction,
    token: Option<i64>,
    limit: i64,
    accept: impl FnMut(StoredEvent<'_>) -> ControlFlow<()>,
) -> Result<PageEnd, StorageError> {
    let (query, token) = match direction {
        Direction::Descending => (PAGE_BELOW, token.unwrap_or(i64::MAX)),
        Direction::Ascending => (PAGE_ABOVE, token.unwrap_or(i64::MIN)),
    };
    let statement = client.prepare_cached(query).await.map_err(classify)?;
    let parameters: [&(dyn ToSql + Sync); 2] = [&token, &limit];
    let rows = client
        .query_raw(&statement, parameters)
        .await
        .map_err(classify)?;
    hand_over(rows, accept).await?;
    Ok(PageEnd::default())
}

/// A filtered page whose every condition has its index: the matching events past the
/// token, in the page's direction, a full page whatever their density.
///
/// The statement is prepared for this one call, so PostgreSQL plans it with the
/// values at hand: which index serves best depends on them (a one-hour window and a
/// one-year window want different plans), and a cached generic plan would pick one
/// for all.
async fn read_indexed(
    client: &deadpool_postgres::Client,
    values: &FilterValues<'_>,
    direction: Direction,
    token: Option<i64>,
    limit: i64,
    accept: impl FnMut(StoredEvent<'_>) -> ControlFlow<()>,
) -> Result<PageEnd, StorageError> {
    let (keyset, order, token) = match direction {
        Direction::Descending => (
            "id < $1",
            " ORDER BY id DESC LIMIT $2",
            token.unwrap_or(i64::MAX),
        ),
        Direction::Ascending => (
            "id > $1",
            " ORDER BY id LIMIT $2",
            token.unwrap_or(i64::MIN),
        ),
    };
    let parameters: Vec<&(dyn ToSql + Sync)> = vec![&token, &limit];
    let statement = Built::new(keyset, values, parameters, order);
    let prepared = client.prepare(&statement.query).await.map_err(classify)?;
    statement.run(client, &prepared, accept).await?;
    Ok(PageEnd::default())
}

/// A statement built at run time: `SELECT_EVENTS_WHERE`, the first condition, the
/// filter's conditions, the order; with its parameters.
struct Built<'a> {
    query: String,
    parameters: Vec<&'a (dyn ToSql + Sync)>,
}

impl<'a> Built<'a> {
    fn new(
        first_condition: &str,
        values: &'a FilterValues<'_>,
        mut parameters: Vec<&'a (dyn ToSql + Sync)>,
        order: &str,
    ) -> Self {
        let mut query = format!("{SELECT_EVENTS_WHERE}{first_condition}");
        values.push_conditions(&mut query, &mut parameters);
        query.push_str(order);
        Self { query, parameters }
    }

    /// Runs it as `prepared` and hands the rows to `accept`.
    async fn run(
        self,
        client: &deadpool_postgres::Client,
        prepared: &tokio_postgres::Statement,
        accept: impl FnMut(StoredEvent<'_>) -> ControlFlow<()>,
    ) -> Result<(), StorageError> {
        let rows = client
            .query_raw(prepared, self.parameters)
            .await
            .map_err(classify)?;
        hand_over(rows, accept).await
    }
}

/// The matching events of one window of ids, in the page's direction.
async fn read_window(
    client: &deadpool_postgres::Client,
    values: &FilterValues<'_>,
    direction: Direction,
    window: ScanWindow,
    limit: i64,
    accept: impl FnMut(StoredEvent<'_>) -> ControlFlow<()>,
) -> Result<PageEnd, StorageError> {
    let parameters: Vec<&(dyn ToSql + Sync)> = vec![&window.low, &window.high, &limit];
    let order = match direction {
        Direction::Descending => " ORDER BY id DESC LIMIT $3",
        Direction::Ascending => " ORDER BY id LIMIT $3",
    };
    let statement = Built::new("id BETWEEN $1 AND $2", values, parameters, order);
    let prepared = (client.prepare_cached(&statement.query).await).map_err(classify)?;
    statement.run(client, &prepared, accept).await?;
    Ok(PageEnd {
        continue_at: window.continue_at,
    })
}

/// A filter's values as statement parameters, owned here so that the conditions
/// can borrow them.
pub(crate) struct FilterValues<'a> {
    applications: Option<&'a [String]>,
    filter: &'a EventFilter,
    since: Option<time::OffsetDateTime>,
    until: Option<time::OffsetDateTime>,
}

impl<'a> FilterValues<'a> {
    /// `applications`: the filter's, narrowed to the reader's scope (none for any).
    /// None when that leaves no application: nothing can match.
    pub(crate) fn new(applications: Option<&'a [String]>, filter: &'a EventFilter) -> Option<Self> {
        if applications.is_some_and(<[String]>::is_empty) {
            return None;
        }
        Some(Self {
            applications,
            filter,
            since: filter.since.map(|since| since.as_offset_date_time()),
            until: filter.until.map(|until| until.as_offset_date_time()),
        })
    }

    /// The index each condition of the filter needs: one entry per condition given.
    fn needed_indexes(&self) -> impl Iterator<Item = SearchIndex> {
        [
            (self.applications.is_some(), SearchIndex::Application),
            (!self.filter.kinds.is_empty(), SearchIndex::Kind),
            (
                self.since.is_some() || self.until.is_some(),
                SearchIndex::Time,
            ),
            (self.filter.payload_contains.is_some(), SearchIndex::Payload),
        ]
        .into_iter()
        .filter_map(|(given, index)| given.then_some(index))
    }

    /// Whether any condition applies (else every event matches).
    pub(crate) fn has_conditions(&self) -> bool {
        self.needed_indexes().next().is_some()
    }

    /// Whether each condition has an index that serves it (then a page need not
    /// walk a window of ids: PostgreSQL finds the matches through the indexes).
    pub(crate) fn served_by(&self, indexes: SearchIndexes) -> bool {
        self.needed_indexes().all(|index| indexes.contains(index))
    }

    /// Appends ` AND <condition>` to `query` for each part of the filter, its value
    /// to `parameters` (numbered after those already there).
    pub(crate) fn push_conditions<'b>(
        &'b self,
        query: &mut String,
        parameters: &mut Vec<&'b (dyn ToSql + Sync)>,
    ) {
        let mut push = |sql: &str, value: &'b (dyn ToSql + Sync)| {
            parameters.push(value);
            query.push_str(&sql.replace('$', &format!("${}", parameters.len())));
        };
        // One value is an equality, not `= ANY`: PostgreSQL 15 reads an index range
        // in order only for an equality, and a page wants its first matches in id
        // order without sorting all of them.
        match &self.applications {
            Some([one]) => push(" AND application_name = $", one),
            Some(applications) => push(" AND application_name = ANY($)", applications),
            None => {}
        }
        match self.filter.kinds.as_slice() {
            [] => {}
            [one] => push(" AND event_kind = $", one),
            _ => push(" AND event_kind = ANY($)", &self.filter.kinds),
        }
        if let Some(since) = &self.since {
            push(" AND event_ts >= $", since);
        }
        if let Some(until) = &self.until {
            push(" AND event_ts < $", until);
        }
        if let Some(payload) = &self.filter.payload_contains {
            push(" AND payload::jsonb @> $::text::jsonb", payload);
        }
    }
}

/// Hands rows to `accept` as they arrive, until it answers `Break`.
/// `accept`, handed at most `limit` events: the rest of a statement's rows past a page
/// are dropped.
fn at_most(
    limit: i64,
    mut accept: impl FnMut(StoredEvent<'_>) -> ControlFlow<()>,
) -> impl FnMut(StoredEvent<'_>) -> ControlFlow<()> {
    let mut left = limit;
    move |event| {
        if left <= 0 {
            return ControlFlow::Break(());
        }
        left -= 1;
        accept(event)
    }
}

/// A page of every application, newest first, below `below` if given.
async fn read_newest(
    client: &deadpool_postgres::Client,
    below: Option<i64>,
    limit: i64,
    accept: impl FnMut(StoredEvent<'_>) -> ControlFlow<()>,
) -> Result<PageEnd, StorageError> {
    let Some(text) = page_statement(below, limit) else {
        return read_beyond_literal_limits(client, below, limit, accept).await;
    };
    let statement = client.prepare_cached(text).await.map_err(classify)?;
    let rows = match &below {
        Some(below) => {
            let parameters: [&(dyn ToSql + Sync); 1] = [below];
            client.query_raw(&statement, parameters).await
        }
        None => {
            let parameters: [&(dyn ToSql + Sync); 0] = [];
            client.query_raw(&statement, parameters).await
        }
    }
    .map_err(classify)?;
    hand_over(rows, at_most(limit, accept)).await?;
    Ok(PageEnd::default())
}

/// A page larger than the largest literal limit (`api.max_page_size` raised past
/// 1000): the limit as a parameter, planned at each execution.
async fn read_beyond_literal_limits(
    client: &deadpool_postgres::Client,
    below: Option<i64>,
    limit: i64,
    accept: impl FnMut(StoredEvent<'_>) -> ControlFlow<()>,
) -> Result<PageEnd, StorageError> {
    let below = below.unwrap_or(i64::MAX);
    let text = format!("{PAGE_BELOW}$2");
    let statement = client.prepare_cached(&text).await.map_err(classify)?;
    let parameters: [&(dyn ToSql + Sync); 2] = [&below, &limit];
    let rows = (client.query_raw(&statement, parameters).await).map_err(classify)?;
    hand_over(rows, accept).await?;
    Ok(PageEnd::default())
}

async fn hand_over(
    rows: tokio_postgres::RowStream,
    mut accept: impl FnMut(StoredEvent<'_>) -> ControlFlow<()>,
) -> Result<(), StorageError> {
    pin_mut!(rows);
    while let Some(row) = rows.next().await {
        let row = row.map_err(classify)?;
        if accept(stored_event_from_row(&row, 0)?).is_break() {
            // The rest of the rows are drained and dropped by the driver.
            break;
        }
    }
    Ok(())
}

/// Succeeds when the connected database has every migration of this build.
pub async fn check_schema(client: &tokio_postgres::Client) -> Result<(), StorageError> {
    let query = format!(
        "SELECT max(version)::bigint FROM {}",
        migrations::HISTORY_TABLE
    );
    let expected = migrations::latest_version();
    let found: Option<i64> = match client.query_one(&query, &[]).await {
        Ok(row) => row.try_get(0).map_err(classify)?,
        Err(error) if error.code() == Some(&SqlState::UNDEFINED_TABLE) => None,
        Err(error) => return Err(classify(error)),
    };
    match found {
        Some(version) if version >= expected => Ok(()),
        found => Err(StorageError::SchemaNotReady { found, expected }),
    }
}

/// Column `index` of `row` as the timestamp of event `id`; a value this build cannot
/// represent is a `CorruptRow` naming the id.
pub(crate) fn event_ts_at(
    row: &tokio_postgres::Row,
    index: usize,
    id: i64,
) -> Result<EventTimestamp, StorageError> {
    let corrupt = |problem: String| StorageError::CorruptRow { id, problem };
    row.try_get(index)
        .map_err(|error| corrupt(error.to_string()))
        .and_then(|value| {
            EventTimestamp::from_offset_date_time(value).map_err(|error| corrupt(error.to_string()))
        })
}

/// One row as an event, its columns from `first` on. A value this build cannot
/// represent (a timestamp past year 9999 written by another client, say) is a
/// `CorruptRow` naming the id, never a panic.
pub(crate) fn stored_event_from_row(
    row: &tokio_postgres::Row,
    first: usize,
) -> Result<StoredEvent<'_>, StorageError> {
    let id: i64 = row.try_get(first).map_err(classify)?;
    let corrupt = |problem: String| StorageError::CorruptRow { id, problem };
    let event_ts = event_ts_at(row, first + 1, id)?;
    let text = |index: usize| -> Result<&str, StorageError> {
        row.try_get(index)
            .map_err(|error| corrupt(error.to_string()))
    };
    Ok(StoredEvent {
        id,
        event_ts,
        application_name: text(first + 2)?,
        event_kind: text(first + 3)?,
        payload: text(first + 4)?,
    })
}
