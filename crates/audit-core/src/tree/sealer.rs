//! The sealer: appends committed events to the tree in their commit-safe order
//! (`order`), stores the tiles, leaf records and head, and signs checkpoints. One per
//! database is active, the holder of a session advisory lock; the others wait to take
//! over.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures_util::{StreamExt, pin_mut};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, IsolationLevel};

use crate::checkpoint::{Checkpoint, SigningKey};
use crate::event::StoredEvent;
use crate::merkle::{Frontier, Hash, LeafEvent, SEAL_BYTES, unix_micros};
use crate::repository::event_ts_at;
use crate::storage_error::{StorageError, classify};
use crate::tree::batches::{
    DELETE_SEAL_BATCHES_BELOW, SEAL_BATCHES_BETWEEN, parse_batch, sealed_leaf,
};
use crate::tree::covered::CoveredIds;
use crate::tree::order::{Round, Rounds, SEQUENCE_VALUE, Xid8, load_rounds};
use crate::tree::records::LeafRecord;
use crate::tree::tiles::{
    MissingTile, READ_TILES, TILE_WIDTH, TileAppender, read_tiles, split_hashes,
};

/// The session advisory lock the active sealer holds ("auditslr").
pub const SEALER_LOCK: i64 = 0x6175_6469_7473_6c72;

/// Changed tiles kept in memory before they are written, within a round: bounds a
/// round's memory when it seals many events (the first round over an existing table).
const TILES_PER_WRITE: usize = 512;

/// How long before a round the sealer takes a bound of its own (`Sealer::pause`):
/// enough for the group commits running then to end before the round's snapshot.
const SAMPLE_LEAD: Duration = Duration::from_millis(50);

/// The events of a round that no seal batch gave it: those of the gaps
/// (`covered::Gaps`, two arrays of exclusive bounds) among the ids above the floor,
/// each gap a range of the primary key; the round sorts them into (txid, id) order
/// itself. An event's texts are read only when it has no seal (a row not written by
/// the collector, or written with its seal in a batch that is gone): otherwise its
/// stored content digest is hashed with its id. Prepared afresh each round, so each
/// is planned for its own gaps.
pub const UNSEALED: &str = "SELECT e.id, e.event_ts, coalesce(e.txid, '0'::xid8), e.seal, \
         e.token_name, \
         CASE WHEN octet_length(e.seal) IS DISTINCT FROM 48 THEN e.application_name END, \
         CASE WHEN octet_length(e.seal) IS DISTINCT FROM 48 THEN e.event_kind END, \
         CASE WHEN octet_length(e.seal) IS DISTINCT FROM 48 THEN e.payload::text END \
     FROM unnest($1::bigint[], $2::bigint[]) AS gap (after, before) \
     CROSS JOIN LATERAL ( \
         SELECT * FROM events \
         WHERE id > gap.after AND id < gap.before \
           AND coalesce(txid, '0'::xid8) >= ($3::bigint)::text::xid8 \
           AND coalesce(txid, '0'::xid8) < ($4::bigint)::text::xid8) AS e";

/// The sealer session's settings.
///
/// The first round over a table that was never sealed reads all of it, which may take
/// minutes: its statements get more time than requests do (the bound stays finite).
///
/// [`UNSEALED`] must read a range of the primary key and nothing else, whatever the
/// statistics say. The rows it wants are the newest, which arrive faster than
/// autoanalyze samples them: with no statistics for them the planner guesses that a
/// third of the partition lies above the floor, and chose a parallel scan of the whole
/// partition every round (measured: a 4M-event partition read five times a second, a
/// third of what ingest could have used). Without sequential and bitmap scans the
/// primary key's range is the only plan left, in id order, with no sort.
///
/// And no JIT: a disabled plan's cost counts 10^10 (PostgreSQL's `disable_cost`), far
/// past `jit_above_cost`, so every round's freshly planned statements were compiled
/// by LLVM before they ran: half of the sealer session's CPU under full ingest
/// (measured with perf), for statements that then run for milliseconds.
pub const SEALER_SESSION: &str = "SET statement_timeout = '10min'; \
     SET enable_seqscan = off; SET enable_bitmapscan = off; \
     SET max_parallel_workers_per_gather = 0; SET jit = off";

/// What the sealer knows between rounds; reloaded from the database when it takes
/// over, so that any instance continues where another stopped.
#[derive(Clone, Debug)]
struct TreeState {
    /// Every event with a smaller txid is sealed; none before the first round.
    horizon: Option<i64>,
    frontier: Frontier,
    tiles: TileAppender,
    /// The records of level-0's last tile, while partial.
    records: Vec<LeafRecord>,
    /// Full record tiles not stored yet, and whether the partial one changed.
    completed_records: BTreeMap<u64, Vec<LeafRecord>>,
    records_changed: bool,
    rounds: Rounds,
    /// Ids sealed above the floor of the next rounds, which they need not read again.
    covered: CoveredIds,
    checkpointed_size: u64,
}

/// How a sealer signs.
#[derive(Debug)]
pub struct Signing {
    pub key: SigningKey,
    pub origin: String,
}

/// What one round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundReport {
    pub sealed: u64,
    /// Rows of `events` the round read (the events no seal batch gave it): the sealed
    /// ones, those it refused, and those of transactions still running at its
    /// snapshot, which the next round reads again.
    pub read: u64,
    /// Leaves the round took from seal batches, without reading their events' rows.
    pub batched: u64,
    pub size: u64,
    /// Events the round left out because their ids were not drawn in order (given by
    /// hand, outside the collector): ids, each reported once per sealer.
    pub refused: Vec<i64>,
    /// The signed note, when the round signed a checkpoint.
    pub checkpoint: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the stored tree is inconsistent: {0}")]
    Inconsistent(String),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
}

impl From<MissingTile> for SealError {
    fn from(missing: MissingTile) -> Self {
        Self::Inconsistent(missing.to_string())
    }
}

/// The active sealer: its own connection, holding [`SEALER_LOCK`].
pub struct Sealer {
    client: Client,
    state: TreeState,
    /// None: the tree grows (the live tail follows it) but no checkpoint is signed.
    signing: Option<Signing>,
    reported: HashSet<i64>,
}

impl Sealer {
    /// Takes the lock on `client` and loads the tree; gives the client back when
    /// another sealer holds the lock, and the signing key back in any case but success.
    #[allow(clippy::type_complexity)]
    pub async fn take_over(
        client: Client,
        signing: Option<Signing>,
    ) -> Result<Result<Self, (Client, Option<Signing>)>, (SealError, Option<Signing>)> {
        match lock_and_load(&client).await {
            Ok(Some(state)) => Ok(Ok(Self {
                client,
                state,
                signing,
                reported: HashSet::new(),
            })),
            Ok(None) => Ok(Err((client, signing))),
            Err(error) => Err((error, signing)),
        }
    }

    /// Gives the signing key back; the connection closes, releasing the lock.
    pub fn into_signing(self) -> Option<Signing> {
        self.signing
    }

    pub fn size(&self) -> u64 {
        self.state.frontier.size()
    }

    /// Seals what has committed since the last round; signs a checkpoint too when
    /// `checkpoint` and the tree grew since the last one. Nothing changes, in the
    /// database or here, unless the round commits.
    pub async fn round(&mut self, checkpoint: bool) -> Result<RoundReport, SealError> {
        let id_bound: i64 = self
            .client
            .query_one(SEQUENCE_VALUE, &[])
            .await
            .map_err(classify)?
            .try_get(0)
            .map_err(classify)?;
        let transaction = self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .start()
            .await
            .map_err(classify)?;
        // The snapshot is taken here, after the sequence was read; then this
        // transaction takes a txid, larger than every txid handed out before it (a
        // snapshot's xmax is not that: a txid at or above it may already be running).
        let row = transaction
            .query_one(
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint, \
                        pg_current_xact_id()::text::bigint",
                &[],
            )
            .await
            .map_err(classify)?;
        let (xmin, own_txid): (i64, i64) = (
            row.try_get(0).map_err(classify)?,
            row.try_get(1).map_err(classify)?,
        );
        let mut state = self.state.clone();
        let mut report = RoundReport::default();
        if state.horizon != Some(xmin) {
            let previous = state.horizon.unwrap_or(0);
            let floor = state.rounds.id_floor(previous);
            state.covered.prune(floor);
            let mut unsealed = Vec::new();
            for (txid, leaves) in read_batches(&transaction, previous, xmin).await? {
                for (hash, record) in leaves {
                    report.batched += 1;
                    if admitted(
                        &state.rounds,
                        &mut self.reported,
                        &mut report,
                        (txid, record.id),
                    ) {
                        unsealed.push((txid, record.id, hash, record));
                    }
                }
            }
            let mut batched_ids: Vec<i64> = unsealed.iter().map(|(_, id, _, _)| *id).collect();
            batched_ids.sort_unstable();
            let gaps = state.covered.gaps(floor, &batched_ids);
            let parameters: [&(dyn ToSql + Sync); 4] =
                [&gaps.after, &gaps.before, &previous, &xmin];
            let statement = transaction.prepare(UNSEALED).await.map_err(classify)?;
            let rows = transaction
                .query_raw(&statement, parameters)
                .await
                .map_err(classify)?;
            pin_mut!(rows);
            while let Some(row) = rows.next().await {
                let row = row.map_err(classify)?;
                report.read += 1;
                let id: i64 = row.try_get(0).map_err(classify)?;
                let Xid8(txid) = row.try_get(2).map_err(classify)?;
                if !admitted(&state.rounds, &mut self.reported, &mut report, (txid, id)) {
                    continue;
                }
                let (hash, record) = unsealed_leaf(&row, id)?;
                unsealed.push((txid, id, hash, record));
            }
            unsealed.sort_unstable_by_key(|(txid, id, _, _)| (*txid, *id));
            state.covered.add(unsealed.iter().map(|(_, id, _, _)| *id));
            for (_, _, hash, record) in unsealed {
                state.append(hash, record);
                report.sealed += 1;
                if state.tiles_waiting() >= TILES_PER_WRITE {
                    write_tiles(&transaction, &mut state).await?;
                }
            }
            write_tiles(&transaction, &mut state).await?;
            if !batched_ids.is_empty() {
                transaction
                    .execute(DELETE_SEAL_BATCHES_BELOW, &[&xmin])
                    .await
                    .map_err(classify)?;
            }
            state.horizon = Some(xmin);
        }
        state.rounds.push(Round {
            // Every txid above this round's own was handed out after the read.
            next_xid: own_txid + 1,
            id_bound,
        });
        state.rounds.prune(state.horizon.unwrap_or(0));
        let size = state.frontier.size();
        let signing =
            (self.signing.as_ref()).filter(|_| checkpoint && size > state.checkpointed_size);
        if report.sealed == 0 && signing.is_none() {
            // Nothing to store: writing the head would give this transaction a txid,
            // move the next round's horizon and make it write again, forever. The
            // stored horizon may lag; a sealer that resumes from it finds nothing new.
            transaction.rollback().await.map_err(classify)?;
            self.state = state;
            report.size = size;
            return Ok(report);
        }
        write_head(&transaction, &state).await?;
        if let Some(signing) = signing {
            let note = Checkpoint {
                origin: signing.origin.clone(),
                size,
                root: state.frontier.root(),
            }
            .sign(&signing.key)?;
            transaction
                .execute(
                    "INSERT INTO tree_checkpoints (size, note) VALUES ($1, $2)",
                    &[&to_i64(size), &note],
                )
                .await
                .map_err(classify)?;
            state.checkpointed_size = size;
            report.checkpoint = Some(note);
        }
        transaction.commit().await.map_err(classify)?;
        self.state = state;
        report.size = size;
        Ok(report)
    }

    /// Waits `interval`, unless the connection (and with it the lock) is lost first.
    /// Shortly before the next round it takes one more bound (`order`): the rounds'
    /// own bounds come too late for the round after them (their txid is above that
    /// round's horizon), so without this a round would read two intervals of rows to
    /// seal one.
    pub async fn pause(&mut self, interval: Duration) -> Result<(), StorageError> {
        let lead = (interval / 4).min(SAMPLE_LEAD);
        tokio::time::sleep(interval - lead).await;
        self.take_bound().await?;
        tokio::time::sleep(lead).await;
        if self.client.is_closed() {
            return Err(StorageError::unavailable(
                "the sealer's connection was lost",
            ));
        }
        Ok(())
    }

    /// Reads the id sequence, then takes a txid: both in one implicit transaction of
    /// one message, so in that order.
    async fn take_bound(&mut self) -> Result<(), StorageError> {
        let messages = self
            .client
            .simple_query(&format!("{SEQUENCE_VALUE}; SELECT pg_current_xact_id()"))
            .await
            .map_err(classify)?;
        let mut values = messages.iter().filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
            _ => None,
        });
        let (Some(id_bound), Some(txid)) = (values.next(), values.next()) else {
            return Err(StorageError::unavailable("a bound without its values"));
        };
        let parse = |text: &str| {
            text.parse::<i64>()
                .map_err(|_| StorageError::unavailable("a bound that is not a number"))
        };
        self.state.rounds.push(Round {
            next_xid: parse(txid)? + 1,
            id_bound: parse(id_bound)?,
        });
        Ok(())
    }
}

/// Whether an event's id was drawn in order (`order`): one given by hand is left out
/// of the tree, and reported once per sealer.
fn admitted(
    rounds: &Rounds,
    reported: &mut HashSet<i64>,
    report: &mut RoundReport,
    (txid, id): (i64, i64),
) -> bool {
    if rounds.drawn_in_order(txid, id) {
        return true;
    }
    if reported.insert(id) {
        report.refused.push(id);
    }
    false
}

/// The leaf hash and record of a row of [`UNSEALED`]: from its seal when it has one,
/// else from its texts.
fn unsealed_leaf(row: &tokio_postgres::Row, id: i64) -> Result<(Hash, LeafRecord), StorageError> {
    let corrupt = |problem: String| StorageError::CorruptRow { id, problem };
    let event_ts = event_ts_at(row, 1, id)?;
    let seal: Option<&[u8]> = row.try_get(3).map_err(classify)?;
    let token_name: Option<&str> = row.try_get(4).map_err(classify)?;
    if let Some(seal) = seal.and_then(|seal| <&[u8; SEAL_BYTES]>::try_from(seal).ok()) {
        return Ok(sealed_leaf(id, unix_micros(event_ts), seal));
    }
    let text = |index: usize| -> Result<&str, StorageError> {
        row.try_get::<_, Option<&str>>(index)
            .map_err(|error| corrupt(error.to_string()))?
            .ok_or_else(|| corrupt("a text is missing".to_owned()))
    };
    let leaf = LeafEvent {
        event: StoredEvent {
            id,
            event_ts,
            application_name: text(5)?,
            event_kind: text(6)?,
            payload: text(7)?,
        },
        token_name,
    };
    Ok((leaf.hash(), LeafRecord::of(&leaf)))
}

/// The seal batches of the transactions with txids from `previous` up to `xmin`,
/// each with its txid and leaves. A torn batch is left out: its events are then in
/// the gaps, read from their rows.
async fn read_batches(
    transaction: &tokio_postgres::Transaction<'_>,
    previous: i64,
    xmin: i64,
) -> Result<Vec<(i64, Vec<(Hash, LeafRecord)>)>, StorageError> {
    let rows = transaction
        .query(SEAL_BATCHES_BETWEEN, &[&previous, &xmin])
        .await
        .map_err(classify)?;
    let mut batches = Vec::with_capacity(rows.len());
    for row in &rows {
        let Xid8(txid) = row.try_get(0).map_err(classify)?;
        let leaves: &[u8] = row.try_get(1).map_err(classify)?;
        match parse_batch(leaves) {
            Some(leaves) => batches.push((txid, leaves)),
            None => tracing::warn!(txid, "a torn seal batch: its events are read from events"),
        }
    }
    Ok(batches)
}

/// Takes [`SEALER_LOCK`] and loads the tree; none when another session holds the lock.
async fn lock_and_load(client: &Client) -> Result<Option<TreeState>, SealError> {
    let row = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&SEALER_LOCK])
        .await
        .map_err(classify)?;
    if !row.try_get::<_, bool>(0).map_err(classify)? {
        return Ok(None);
    }
    client
        .batch_execute(SEALER_SESSION)
        .await
        .map_err(classify)?;
    Ok(Some(load_state(client).await?))
}

impl TreeState {
    fn append(&mut self, hash: Hash, record: LeafRecord) {
        let tile = self.frontier.size() / TILE_WIDTH;
        self.tiles.push_beside(&mut self.frontier, hash);
        self.records.push(record);
        if self.records.len() == usize::try_from(TILE_WIDTH).unwrap_or(usize::MAX) {
            self.completed_records
                .insert(tile, std::mem::take(&mut self.records));
            self.records_changed = false;
        } else {
            self.records_changed = true;
        }
    }

    /// Full tiles waiting to be written.
    fn tiles_waiting(&self) -> usize {
        self.completed_records.len() + self.tiles.completed()
    }

    /// The record tiles changed since the last call.
    fn take_changed_records(&mut self) -> BTreeMap<u64, Vec<LeafRecord>> {
        let mut changed = std::mem::take(&mut self.completed_records);
        if std::mem::take(&mut self.records_changed) {
            changed.insert(self.frontier.size() / TILE_WIDTH, self.records.clone());
        }
        changed
    }
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The head, rounds, last tiles and checkpointed size as stored.
async fn load_state(client: &impl GenericClient) -> Result<TreeState, SealError> {
    let head = client
        .query_opt(
            "SELECT size, horizon::text::bigint, frontier FROM tree_head",
            &[],
        )
        .await
        .map_err(classify)?;
    let (size, horizon, frontier) = match head {
        None => (0u64, None, Frontier::default()),
        Some(row) => {
            let size: i64 = row.try_get(0).map_err(classify)?;
            let size = u64::try_from(size)
                .map_err(|_| SealError::Inconsistent(format!("negative tree size {size}")))?;
            let horizon: Option<i64> = row.try_get(1).map_err(classify)?;
            let bytes: Vec<u8> = row.try_get(2).map_err(classify)?;
            let subtrees = split_hashes(&bytes)
                .ok_or_else(|| SealError::Inconsistent("a torn frontier".to_owned()))?;
            let frontier = Frontier::from_parts(size, subtrees)
                .map_err(|error| SealError::Inconsistent(error.to_string()))?;
            (size, horizon, frontier)
        }
    };
    let wanted = TileAppender::tiles_to_resume(size);
    let statement = client.prepare(READ_TILES).await.map_err(classify)?;
    let tiles = read_tiles(client, &statement, wanted).await?;
    let appender = TileAppender::resume(size, &tiles)?;
    let partial = size % TILE_WIDTH;
    let records = if partial == 0 {
        Vec::new()
    } else {
        let row = client
            .query_opt(
                "SELECT records FROM tree_leaves WHERE tile = $1",
                &[&to_i64(size / TILE_WIDTH)],
            )
            .await
            .map_err(classify)?
            .ok_or_else(|| SealError::Inconsistent("the last leaf records are missing".into()))?;
        let bytes: Vec<u8> = row.try_get(0).map_err(classify)?;
        LeafRecord::parse_all(&bytes)
            .filter(|records| records.len() as u64 >= partial)
            .map(|mut records| {
                records.truncate(usize::try_from(partial).unwrap_or(0));
                records
            })
            .ok_or_else(|| SealError::Inconsistent("torn leaf records".into()))?
    };
    let rounds = load_rounds(client).await?;
    let checkpointed: Option<i64> = client
        .query_one("SELECT max(size) FROM tree_checkpoints", &[])
        .await
        .map_err(classify)?
        .try_get(0)
        .map_err(classify)?;
    Ok(TreeState {
        horizon,
        frontier,
        tiles: appender,
        records,
        completed_records: BTreeMap::new(),
        records_changed: false,
        rounds,
        covered: CoveredIds::default(),
        checkpointed_size: checkpointed
            .and_then(|size| u64::try_from(size).ok())
            .unwrap_or(0),
    })
}

/// Writes the tiles and leaf records changed since the last write.
async fn write_tiles(
    client: &impl GenericClient,
    state: &mut TreeState,
) -> Result<(), StorageError> {
    let tiles = state.tiles.take_changed();
    if !tiles.is_empty() {
        let levels: Vec<i16> = tiles.keys().map(|key| i16::from(key.level)).collect();
        let indexes: Vec<i64> = tiles.keys().map(|key| to_i64(key.index)).collect();
        let hashes: Vec<Vec<u8>> = tiles.values().map(|hashes| hashes.concat()).collect();
        client
            .execute(
                "INSERT INTO tree_tiles (level, tile, hashes) \
                 SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[]) \
                 ON CONFLICT (level, tile) DO UPDATE SET hashes = excluded.hashes",
                &[&levels, &indexes, &hashes],
            )
            .await
            .map_err(classify)?;
    }
    let records = state.take_changed_records();
    if !records.is_empty() {
        let tiles: Vec<i64> = records.keys().map(|tile| to_i64(*tile)).collect();
        let min_ids: Vec<i64> = (records.values())
            .map(|records| records.iter().map(|record| record.id).min().unwrap_or(0))
            .collect();
        let max_ids: Vec<i64> = (records.values())
            .map(|records| records.iter().map(|record| record.id).max().unwrap_or(0))
            .collect();
        let bytes: Vec<Vec<u8>> = (records.values())
            .map(|records| {
                records
                    .iter()
                    .flat_map(|record| record.to_bytes())
                    .collect()
            })
            .collect();
        client
            .execute(
                "INSERT INTO tree_leaves (tile, min_id, max_id, records) \
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bytea[]) \
                 ON CONFLICT (tile) DO UPDATE SET min_id = excluded.min_id, \
                     max_id = excluded.max_id, records = excluded.records",
                &[&tiles, &min_ids, &max_ids, &bytes],
            )
            .await
            .map_err(classify)?;
    }
    Ok(())
}

async fn write_head(client: &impl GenericClient, state: &TreeState) -> Result<(), StorageError> {
    let frontier: Vec<u8> = state.frontier.subtrees().concat();
    let size = to_i64(state.frontier.size());
    client
        .execute(
            "INSERT INTO tree_head (size, horizon, frontier) \
             VALUES ($1, ($2::bigint)::text::xid8, $3) \
             ON CONFLICT (singleton) DO UPDATE SET size = excluded.size, \
                 horizon = excluded.horizon, frontier = excluded.frontier",
            &[&size, &state.horizon, &frontier],
        )
        .await
        .map_err(classify)?;
    let (xids, bounds): (Vec<i64>, Vec<i64>) = (state.rounds.as_slice().iter())
        .map(|round| (round.next_xid, round.id_bound))
        .unzip();
    // The kept rounds replace the stored ones: few rows, rewritten whole.
    client
        .execute("DELETE FROM tree_rounds", &[])
        .await
        .map_err(classify)?;
    client
        .execute(
            "INSERT INTO tree_rounds (next_xid, id_bound) \
             SELECT x::text::xid8, b FROM unnest($1::bigint[], $2::bigint[]) AS r (x, b)",
            &[&xids, &bounds],
        )
        .await
        .map_err(classify)?;
    Ok(())
}
