//! Read replicas (`postgres.read_dsns`): PostgreSQL streaming replicas that page
//! reads, exports and live tails may read from, each while it is reachable and at most
//! `postgres.max_read_lag_ms` behind the primary. Writes never go to one.
//!
//! How far behind: [`Replicas::probe`] reads the primary's WAL position and each
//! replica's replayed position, and keeps the primary's recent positions with the time
//! each was read. A replica that has replayed the position read at time `t` holds
//! every transaction committed before `t`: its lag is at most the time since then. So
//! an idle primary (its position unchanged) leaves a live replica at no lag, and a
//! stalled replica's lag grows with the clock, whatever its last replay timestamp.
//! While the primary cannot be reached, no lag can be measured: replicas that answer
//! are read from, since they are all there is to read.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;

use crate::config::PostgresSettings;
use crate::database::DatabaseError;
use crate::storage_error::{StorageError, bounded, classify, connection_from};
use crate::thread_pools::ThreadPools;

/// How long the primary's positions are remembered: a replica further behind is
/// reported as this far behind (or more).
const HISTORY: Duration = Duration::from_secs(60);

/// A replica's state as the last probe found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaState {
    /// Not probed yet: not read from.
    Unknown,
    /// Reachable, and within `max_read_lag_ms` (or the primary is away).
    Usable,
    /// Reachable, but further behind than `max_read_lag_ms`.
    Lagging,
    /// Did not answer, or is not a replica of anything.
    Down,
}

impl ReplicaState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Usable => "usable",
            Self::Lagging => "lagging",
            Self::Down => "down",
        }
    }

    fn code(self) -> u64 {
        match self {
            Self::Unknown => 0,
            Self::Usable => 1,
            Self::Lagging => 2,
            Self::Down => 3,
        }
    }

    fn from_code(code: u64) -> Self {
        match code {
            1 => Self::Usable,
            2 => Self::Lagging,
            3 => Self::Down,
            _ => Self::Unknown,
        }
    }
}

/// What a replica looks like from here, for `/ready` and the metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaStatus {
    /// Its DSN without the password.
    pub name: String,
    pub state: ReplicaState,
    /// How far behind the primary it was at the last probe; none when unknown.
    pub lag: Option<Duration>,
    /// Reads handed to it since the server started.
    pub reads: u64,
}

struct Replica {
    name: String,
    pools: ThreadPools,
    state: AtomicU64,
    /// Lag in microseconds, `u64::MAX` when unknown.
    lag_micros: AtomicU64,
    /// Reads handed to it so far.
    reads: AtomicU64,
}

impl Replica {
    fn state(&self) -> ReplicaState {
        ReplicaState::from_code(self.state.load(Ordering::Relaxed))
    }

    fn set(&self, state: ReplicaState, lag: Option<Duration>) {
        self.state.store(state.code(), Ordering::Relaxed);
        let micros = lag.map_or(u64::MAX, |lag| {
            u64::try_from(lag.as_micros()).unwrap_or(u64::MAX - 1)
        });
        self.lag_micros.store(micros, Ordering::Relaxed);
    }
}

/// The configured replicas; cheap to clone.
#[derive(Clone)]
pub struct Replicas {
    replicas: Arc<[Replica]>,
    /// Round robin among the usable ones.
    next: Arc<AtomicUsize>,
    /// The primary's WAL positions, newest last, with when each was read.
    history: Arc<Mutex<VecDeque<(Instant, u64)>>>,
}

impl std::fmt::Debug for Replicas {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_list()
            .entries(self.replicas.iter().map(|replica| &replica.name))
            .finish()
    }
}

impl Replicas {
    /// The replicas `settings.read_dsns` names; none when it names none. Connects
    /// lazily, so a replica that is down does not stop the server.
    pub fn new(settings: &PostgresSettings) -> Result<Option<Self>, DatabaseError> {
        let replicas = settings
            .replicas()
            .map(|replica| {
                Ok(Replica {
                    name: replica.redacted_dsn(),
                    pools: ThreadPools::new(&replica)?,
                    state: AtomicU64::new(ReplicaState::Unknown.code()),
                    lag_micros: AtomicU64::new(u64::MAX),
                    reads: AtomicU64::new(0),
                })
            })
            .collect::<Result<Vec<_>, DatabaseError>>()?;
        if replicas.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            replicas: replicas.into(),
            next: Arc::default(),
            history: Arc::default(),
        }))
    }

    /// A usable replica's pool (for the calling thread) and its index, taking turns;
    /// none when no replica is usable.
    pub fn choose(&self) -> Option<(usize, Pool)> {
        let count = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|offset| (start + offset) % count)
            .find(|index| self.replicas[*index].state() == ReplicaState::Usable)
            .map(|index| {
                let replica = &self.replicas[index];
                replica.reads.fetch_add(1, Ordering::Relaxed);
                (index, replica.pools.current())
            })
    }

    /// A read on replica `index` failed for want of the database: it is not read from
    /// until a probe finds it usable again.
    pub fn mark_failed(&self, index: usize) {
        if let Some(replica) = self.replicas.get(index) {
            replica.set(ReplicaState::Down, None);
        }
    }

    pub fn statuses(&self) -> Vec<ReplicaStatus> {
        self.replicas
            .iter()
            .map(|replica| {
                let micros = replica.lag_micros.load(Ordering::Relaxed);
                ReplicaStatus {
                    name: replica.name.clone(),
                    state: replica.state(),
                    lag: (micros != u64::MAX).then(|| Duration::from_micros(micros)),
                    reads: replica.reads.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Reads the primary's position, then each replica's, and updates their states.
    pub async fn probe(&self, primary: &Pool, deadline: Duration, max_lag: Duration) {
        let primary_position = position(primary, deadline, PRIMARY_POSITION).await.ok();
        let now = Instant::now();
        {
            let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(at) = primary_position {
                history.push_back((now, at));
            }
            while history
                .front()
                .is_some_and(|(read, _)| now.duration_since(*read) > HISTORY)
            {
                history.pop_front();
            }
        }
        for replica in self.replicas.iter() {
            let pool = replica.pools.current();
            let (state, lag) = match position(&pool, deadline, REPLAYED_POSITION).await {
                Err(_) => (ReplicaState::Down, None),
                Ok(_) if primary_position.is_none() => (ReplicaState::Usable, None),
                Ok(replayed) => {
                    let lag = self.lag_of(replayed, now);
                    let state = if lag <= max_lag {
                        ReplicaState::Usable
                    } else {
                        ReplicaState::Lagging
                    };
                    (state, Some(lag))
                }
            };
            replica.set(state, lag);
        }
    }

    /// How far behind a replica that has replayed up to `replayed` is: the time since
    /// the newest primary position it has reached was read (the whole history when it
    /// has reached none).
    fn lag_of(&self, replayed: u64, now: Instant) -> Duration {
        let history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        let reached = history.iter().rev().find(|(_, at)| *at <= replayed);
        match (reached, history.front()) {
            (Some((read, _)), _) => now.duration_since(*read),
            (None, Some((oldest, _))) => now.duration_since(*oldest) + Duration::from_millis(1),
            (None, None) => Duration::ZERO,
        }
    }
}

/// The primary's current WAL position, in bytes.
const PRIMARY_POSITION: &str = "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint";
/// A replica's replayed WAL position; an error on a server that is not a replica (a
/// replica promoted, or a DSN naming the primary by mistake is not a read replica).
const REPLAYED_POSITION: &str = "SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint";

async fn position(
    pool: &Pool,
    deadline: Duration,
    query: &'static str,
) -> Result<u64, StorageError> {
    let client = connection_from(pool).await?;
    let timed_out = || StorageError::unavailable("the probe got no answer in time");
    let value: Option<i64> = bounded(client, deadline, timed_out, async |client| {
        (client.query_one(query, &[]).await)
            .and_then(|row| row.try_get(0))
            .map_err(classify)
    })
    .await?;
    value
        .and_then(|value| u64::try_from(value).ok())
        .ok_or_else(|| StorageError::unavailable("not a replica: no WAL replayed"))
}
