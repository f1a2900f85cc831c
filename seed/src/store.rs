//! The state store: one SQLite file in the state directory. All of seed's SQL lives here.
//!
//! WAL mode with `synchronous=FULL`: a write is on disk when its transaction returns, so a lease
//! acknowledged after `commit_lease` survives a crash or power loss, and readers (`seed status`,
//! the status page) never block the writer. Migrations are applied in one transaction at open;
//! `PRAGMA user_version` records how far the schema has come, and a database written by a newer
//! seed is refused instead of being misread.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use crate::agent::inspect::Inspection;
use crate::inventory::Hardware;
use crate::lifecycle::NodeState;
use crate::net::MacAddr;

mod access;
mod backup;
mod lock;

#[cfg(test)]
mod upgrade_tests;

pub use backup::{Summary as BackupSummary, restore};
pub use lock::{LOCK_FILE, ServeLock};

/// File name of the database inside the state directory.
pub const DB_FILE: &str = "seed.db";

/// Schema migrations; entry N (0-based) takes the schema from version N to N+1.
/// Append only: a released migration is never edited.
const MIGRATIONS: &[&str] = &[
    // 1: nodes, their lifecycle events and DHCP leases.
    "CREATE TABLE nodes (
        name        TEXT PRIMARY KEY,
        state       TEXT NOT NULL,
        updated_at  INTEGER NOT NULL
     ) STRICT;
     CREATE TABLE events (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        at      INTEGER NOT NULL,
        node    TEXT,
        kind    TEXT NOT NULL,
        source  TEXT NOT NULL,
        detail  TEXT NOT NULL DEFAULT ''
     ) STRICT;
     CREATE INDEX events_by_node ON events (node, id);
     CREATE TABLE leases (
        mac         TEXT PRIMARY KEY,
        ip          TEXT NOT NULL UNIQUE,
        node        TEXT,
        expires_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
     ) STRICT;",
    // 2: machines seen in DHCP that are not in the config, for an operator to adopt.
    "CREATE TABLE discovered (
        mac           TEXT PRIMARY KEY,
        first_seen    INTEGER NOT NULL,
        last_seen     INTEGER NOT NULL,
        vendor_class  TEXT,
        arch          INTEGER,
        address       TEXT
     ) STRICT;",
    // 3: a node's secret token (its private URLs), cloud-init instance id and install attempts.
    "ALTER TABLE nodes ADD COLUMN token TEXT;
     ALTER TABLE nodes ADD COLUMN instance_id TEXT;
     ALTER TABLE nodes ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
     CREATE UNIQUE INDEX nodes_by_token ON nodes (token) WHERE token IS NOT NULL;",
    // 4: where a discovered machine asked: the zone it was offered an address in, and the relay
    // (giaddr) it came through, for machines of a routed rack.
    "ALTER TABLE discovered ADD COLUMN zone TEXT;
     ALTER TABLE discovered ADD COLUMN relay TEXT;",
    // 5: what each node's BMC reported (`seed inventory`): JSON of inventory::Hardware.
    "CREATE TABLE inventory (
        node      TEXT PRIMARY KEY,
        taken_at  INTEGER NOT NULL,
        hardware  TEXT NOT NULL
     ) STRICT;",
    // 6: when the installer began writing the node's disk (this provisioning); from then on a
    // network boot gets the local disk, never the installer again.
    "ALTER TABLE nodes ADD COLUMN disk_at INTEGER;",
    // 7: when seed last started the node through its power driver, and how often it started
    // it again because a phase of the boot did not come (provision::supervise).
    "ALTER TABLE nodes ADD COLUMN started_at INTEGER;
     ALTER TABLE nodes ADD COLUMN cycles INTEGER NOT NULL DEFAULT 0;",
    // 8: what seed's agent found on each node (`agent::inspect::Inspection` as JSON).
    "CREATE TABLE inspections (
        node        TEXT PRIMARY KEY,
        taken_at    INTEGER NOT NULL,
        inspection  TEXT NOT NULL
     ) STRICT;",
    // 9: an unknown machine seed's agent enlisted (`seed.enlist`): what it found, and when,
    // until an operator adopts the machine (`seed adopt`) and the inspection becomes a node's.
    "ALTER TABLE discovered ADD COLUMN inspected_at INTEGER;
     ALTER TABLE discovered ADD COLUMN inspection TEXT;",
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state directory could not be created.
    #[error("cannot create state directory {}: {source}", path.display())]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// This process may not use the state directory or database: names the user, the path,
    /// what it needed and who owns it.
    #[error(
        "permission denied: user {user} cannot {need} {}{}; run seed as the user that owns the state (the packaged service's is `seed`: `sudo -u seed seed …`) or as root",
        path.display(),
        owner.as_ref().map(|(u, g, mode)| format!(" (owner {u}:{g}, mode {mode:04o})")).unwrap_or_default()
    )]
    Denied {
        /// The file or directory.
        path: PathBuf,
        /// Who this process runs as.
        user: String,
        /// What it needed to do.
        need: &'static str,
        /// Owner, group and mode of `path`, where they can be read.
        owner: Option<(String, String, u32)>,
    },
    /// Another `seed serve` holds the state directory ([`ServeLock`]).
    #[error(
        "state directory {} is in use by another seed serve ({}): one store, one server. Stop that one first (systemctl stop seed), or give this one another --state-dir",
        dir.display(),
        holder.map(|pid| format!("pid {pid}")).unwrap_or_else(|| "pid unknown".into())
    )]
    Locked {
        /// The state directory.
        dir: PathBuf,
        /// The process id the holder wrote into the lock file.
        holder: Option<u32>,
    },
    /// A file of the store (a backup, a restore) could not be written or renamed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The lock file could not be opened or written.
    #[error("cannot use lock file {}: {source}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database could not be opened or set up.
    #[error("cannot open state database {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The database file is there but holds nothing: a truncated copy, a full disk, a file
    /// made by hand. Opening it would start an empty store (every node `ready`, leases and
    /// tokens gone), so it is refused.
    #[error(
        "state database {} is empty (0 bytes) or has lost its main file: not a seed store. Restore it from a backup, or move it away to start a new store (every node ready, leases and tokens gone)",
        path.display()
    )]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The database was written by a newer seed.
    #[error(
        "state database {} has schema version {found}, newer than the {supported} this seed understands; run the newer seed or restore a backup",
        path.display()
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: u32,
        /// The newest this binary knows.
        supported: u32,
    },
    /// A migration failed; nothing of it was applied.
    #[error("migrating state database {} to schema version {version} failed: {source}", path.display())]
    Migration {
        /// The file.
        path: PathBuf,
        /// The version being applied.
        version: u32,
        /// Why.
        source: rusqlite::Error,
    },
    /// A query failed.
    #[error("state database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// No such node in the store.
    #[error("node {0} is not in the state database")]
    UnknownNode(String),
    /// A check the caller made inside the transaction refused the change (e.g. the node's image
    /// is not registered).
    #[error("{0}")]
    Refused(String),
    /// The lifecycle does not allow this move.
    #[error("node {node} cannot go from {from} to {to}{hint}")]
    IllegalTransition {
        /// The node.
        node: String,
        /// Its current state.
        from: NodeState,
        /// The requested state.
        to: NodeState,
        /// What would make it possible.
        hint: &'static str,
    },
    /// A row holds a value this binary cannot read.
    #[error("state database holds an unreadable {what} `{value}`")]
    Corrupt {
        /// Which column.
        what: &'static str,
        /// The value.
        value: String,
    },
}

/// A node's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRecord {
    /// Node name.
    pub name: String,
    /// Lifecycle state.
    pub state: NodeState,
    /// When the state last changed (ms since the Unix epoch).
    pub updated_at: i64,
    /// How often the installer was served since provisioning began.
    pub attempts: u32,
    /// When the installer of this provisioning began writing the disk (ms), if it did.
    pub disk_at: Option<i64>,
    /// The node's newest event.
    pub last_event: Option<Event>,
}

/// One event row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Monotonic id.
    pub id: i64,
    /// When (ms since the Unix epoch).
    pub at: i64,
    /// The node, if the event is about one.
    pub node: Option<String>,
    /// What happened: `state`, `registered`, …
    pub kind: String,
    /// Who said so: `config`, `cli`, `dhcp`, `installer`, …
    pub source: String,
    /// Free text.
    pub detail: String,
}

/// A DHCP lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    /// Client MAC.
    pub mac: MacAddr,
    /// Leased address.
    pub ip: Ipv4Addr,
    /// The node, when the MAC is a known one.
    pub node: Option<String>,
    /// Expiry (ms since the Unix epoch).
    pub expires_at: i64,
}

/// A machine seen in DHCP whose MAC is in no node of the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Discovered {
    /// Its MAC.
    pub mac: MacAddr,
    /// First DHCP packet (ms since the Unix epoch).
    pub first_seen: i64,
    /// Latest DHCP packet (ms since the Unix epoch).
    pub last_seen: i64,
    /// Option 60 (`PXEClient:Arch:00007:…`).
    pub vendor_class: Option<String>,
    /// Option 93.
    pub arch: Option<u16>,
    /// The discovery-pool address it was offered.
    pub address: Option<Ipv4Addr>,
    /// The zone of that address.
    pub zone: Option<String>,
    /// The DHCP relay (giaddr) it asked through; `None` on seed's own segment.
    pub relay: Option<Ipv4Addr>,
    /// When seed's agent enlisted it with an inspection (ms since the Unix epoch).
    pub inspected_at: Option<i64>,
}

/// What became of an enlistment ([`Store::record_enlisted`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enlisted {
    /// The inspection is kept with the discovered machine.
    Recorded,
    /// seed's DHCP never saw the MAC (or forgot it): nothing to enlist.
    NotSeen,
    /// [`MAX_ENLISTED`] machines are enlisted already and wait to be adopted.
    Full,
    /// The machine is enlisted with another inspection, which is kept: the first poster's
    /// word stands until an operator adopts it. A MAC is public, so a second, different
    /// inspection is what a host taking the machine's MAC and lease would send.
    Kept,
}

/// A discovered machine adopted as a node ([`Store::adopt`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adopted {
    /// Whether its enlisted inspection became the node's.
    pub inspection: bool,
}

/// A provisioning node seed started, and how far its boot got since (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// The node.
    pub name: String,
    /// When seed last started it.
    pub started_at: i64,
    /// How often it was started again after a missed phase.
    pub cycles: u32,
    /// Its newest DHCP lease (any time; compare with `started_at`).
    pub dhcp_at: Option<i64>,
    /// When it was last served the installer.
    pub served_at: Option<i64>,
}

/// A node's provisioning: the secret in its URLs and the instance id of its install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioning {
    /// Node name.
    pub node: String,
    /// Lifecycle state.
    pub state: NodeState,
    /// Secret token of its `/nodes/<token>/` URLs.
    pub token: String,
    /// cloud-init instance id; new on every provisioning so cloud-init runs again.
    pub instance_id: String,
    /// How often the installer was served since provisioning began.
    pub attempts: u32,
    /// Whether this call started a new provisioning (false: it was already under way).
    pub started: bool,
    /// The state this call started it from (when `started`).
    pub previous: Option<NodeState>,
    /// When the state last changed (ms since the Unix epoch).
    pub updated_at: i64,
}

/// 32 random bytes as hex: a token nobody can guess from a MAC or a name.
fn new_token() -> Result<String, StoreError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Corrupt {
        what: "random source",
        value: e.to_string(),
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether a transition changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The state changed and an event was recorded.
    Changed {
        /// The state before.
        from: NodeState,
    },
    /// The node already was in that state (asking twice is not an error).
    Unchanged,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}

/// The open state database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Open (creating if needed) the store in `state_dir` and bring its schema up to date.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        access::create_dir(state_dir)?;
        Self::open_file(&state_dir.join(DB_FILE))
    }

    /// The store in `state_dir` if seed has made one there, else `None`; creates nothing.
    /// For readers (`seed status`) that must not leave a database behind in a directory that
    /// was only named to them.
    pub fn open_existing(state_dir: &Path) -> Result<Option<Self>, StoreError> {
        let path = state_dir.join(DB_FILE);
        // A file this user cannot reach is "permission denied", never "does not exist".
        if !access::existing(&path)? {
            return Ok(None);
        }
        Self::open_file(&path).map(Some)
    }

    /// The store in `state_dir` as it is, without bringing its schema up to date (none when
    /// there is none): for `seed backup`, which must copy an older seed's store without
    /// migrating it under the server that still runs on it (a package upgrade backs up before
    /// it restarts the service). A store newer than this binary is refused as usual.
    pub fn open_existing_unmigrated(state_dir: &Path) -> Result<Option<Self>, StoreError> {
        let path = state_dir.join(DB_FILE);
        if !access::existing(&path)? {
            return Ok(None);
        }
        let store = Self::open_file_with(&path, false)?;
        let found = store.schema_version()?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path,
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(Some(store))
    }

    /// Open (creating if needed) the database file at `path` and bring its schema up to date.
    pub fn open_file(path: &Path) -> Result<Self, StoreError> {
        Self::open_file_with(path, true)
    }

    fn open_file_with(path: &Path, migrate: bool) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        if !access::existing(path)? {
            access::creatable(path)?;
        }
        refuse_empty(path)?;
        let conn = Connection::open(path).map_err(open_err)?;
        // WAL: readers do not block the writer. FULL: a commit is durable when it returns, which
        // is what "a lease is committed before it is acknowledged" needs across power loss.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        let mut store = Self {
            conn,
            path: path.to_path_buf(),
        };
        if migrate {
            store.migrate()?;
        }
        Ok(store)
    }

    /// How long a write waits for another connection's lock (tests that prove a lock is held).
    #[cfg(test)]
    pub(crate) fn set_busy_timeout_for_tests(&self, wait: Duration) {
        self.conn.busy_timeout(wait).expect("busy timeout");
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        // IMMEDIATE: two seeds starting at once must not both migrate.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        let found: u32 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path,
                found,
                supported: SCHEMA_VERSION,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let version = i as u32 + 1;
            let migration_err = |source| StoreError::Migration {
                path: path.clone(),
                version,
                source,
            };
            tx.execute_batch(sql).map_err(migration_err)?;
            tx.pragma_update(None, "user_version", version)
                .map_err(migration_err)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Make sure every named node has a row; new ones start `ready`. Returns how many were added.
    pub fn register_nodes<'a>(
        &mut self,
        names: impl IntoIterator<Item = &'a str>,
        source: &str,
    ) -> Result<usize, StoreError> {
        let tx = self.conn.transaction()?;
        let now = now_ms();
        let mut added = 0;
        for name in names {
            if insert_ready(&tx, name, now)? {
                insert_event(&tx, now, Some(name), "registered", source, "ready")?;
                added += 1;
            }
        }
        tx.commit()?;
        Ok(added)
    }

    /// All nodes, by name, each with its newest event.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.node_rows(None)
    }

    /// One node, with its newest event.
    pub fn node(&self, name: &str) -> Result<Option<NodeRecord>, StoreError> {
        Ok(self.node_rows(Some(name))?.pop())
    }

    fn node_rows(&self, name: Option<&str>) -> Result<Vec<NodeRecord>, StoreError> {
        // events_by_node (node, id) makes the newest event of a node one index lookup.
        let mut stmt = self.conn.prepare_cached(
            "SELECT n.name, n.state, n.updated_at, n.attempts, e.id, e.at, e.kind, e.source, e.detail,
                    n.disk_at
             FROM nodes n
             LEFT JOIN events e ON e.id = (SELECT max(id) FROM events WHERE node = n.name)
             WHERE ?1 IS NULL OR n.name = ?1
             ORDER BY n.name",
        )?;
        let rows = stmt.query_map([name], |r| {
            let name: String = r.get(0)?;
            let event = match r.get::<_, Option<i64>>(4)? {
                Some(id) => Some(Event {
                    id,
                    at: r.get(5)?,
                    node: Some(name.clone()),
                    kind: r.get(6)?,
                    source: r.get(7)?,
                    detail: r.get(8)?,
                }),
                None => None,
            };
            Ok((
                name,
                r.get::<_, String>(1)?,
                r.get(2)?,
                r.get(3)?,
                event,
                r.get::<_, Option<i64>>(9)?,
            ))
        })?;
        rows.map(|row| {
            let (name, state, updated_at, attempts, last_event, disk_at) = row?;
            Ok(NodeRecord {
                name,
                state: parse_state(state)?,
                updated_at,
                attempts,
                disk_at,
                last_event,
            })
        })
        .collect()
    }

    /// Nodes in one of `states` with neither a state change nor an event since `before` (ms
    /// since the Unix epoch): installs that stopped.
    pub fn stalled(&self, states: &[NodeState], before: i64) -> Result<Vec<String>, StoreError> {
        // The states as one `,a,b,` string: one cached statement for any list.
        let wanted: String = states.iter().map(|s| format!(",{s}")).collect::<String>() + ",";
        let mut stmt = self.conn.prepare_cached(
            "SELECT n.name FROM nodes n
             WHERE instr(?2, ',' || n.state || ',') > 0
               AND n.updated_at < ?1
               AND COALESCE((SELECT max(at) FROM events WHERE node = n.name), 0) < ?1
             ORDER BY n.name",
        )?;
        let rows = stmt.query_map(params![before, wanted], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Move a node to `to` if the lifecycle allows it, recording a `state` event in the same
    /// transaction. Asking for the state the node is already in changes nothing.
    pub fn transition(
        &mut self,
        name: &str,
        to: NodeState,
        source: &str,
        detail: &str,
        forced: bool,
    ) -> Result<Transition, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: Option<String> = tx
            .query_row("SELECT state FROM nodes WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        let from = parse_state(current.ok_or_else(|| StoreError::UnknownNode(name.to_string()))?)?;
        if from == to && !forced {
            return Ok(Transition::Unchanged);
        }
        allowed(name, from, to, forced)?;
        let now = now_ms();
        tx.execute(
            "UPDATE nodes SET state = ?2, updated_at = ?3 WHERE name = ?1",
            params![name, to.as_str(), now],
        )?;
        let detail = if detail.is_empty() {
            format!("{from} -> {to}")
        } else {
            format!("{from} -> {to}: {detail}")
        };
        insert_event(&tx, now, Some(name), "state", source, &detail)?;
        tx.commit()?;
        Ok(Transition::Changed { from })
    }

    /// Set a node to provisioning with a new token and instance id. Asking again while it is
    /// provisioning or installing changes nothing and returns the same token (no second install);
    /// `force` re-provisions an installed, deployed or failed node.
    pub fn provision(
        &mut self,
        name: &str,
        source: &str,
        force: bool,
    ) -> Result<Provisioning, StoreError> {
        self.provision_if(name, source, force, || Ok(()))
    }

    /// [`Self::provision`], if `ready` (asked while the write lock is held, so nothing it
    /// checks can change before the node is provisioning; see [`Self::unless_under_way`])
    /// says so; its `Err` is returned as [`StoreError::Refused`].
    pub fn provision_if(
        &mut self,
        name: &str,
        source: &str,
        force: bool,
        ready: impl FnOnce() -> Result<(), String>,
    ) -> Result<Provisioning, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        ready().map_err(StoreError::Refused)?;
        // state, token, instance_id, attempts, updated_at
        type Row = (String, Option<String>, Option<String>, u32, i64);
        let row: Option<Row> = tx
            .query_row(
                "SELECT state, token, instance_id, attempts, updated_at FROM nodes WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let (state, token, instance_id, attempts, updated_at) =
            row.ok_or_else(|| StoreError::UnknownNode(name.to_string()))?;
        let from = parse_state(state)?;
        if from.is_under_way()
            && let (Some(token), Some(instance_id)) = (token, instance_id)
        {
            return Ok(Provisioning {
                node: name.to_string(),
                state: from,
                token,
                instance_id,
                attempts,
                started: false,
                previous: None,
                updated_at,
            });
        }
        allowed(name, from, NodeState::Provisioning, force)?;
        let now = now_ms();
        let token = new_token()?;
        let instance_id = format!("{name}-{now}");
        tx.execute(
            "UPDATE nodes SET state = ?2, token = ?3, instance_id = ?4, attempts = 0, updated_at = ?5,
                              disk_at = NULL, started_at = NULL, cycles = 0
             WHERE name = ?1",
            params![name, NodeState::Provisioning.as_str(), token, instance_id, now],
        )?;
        let forced = if force { " (forced)" } else { "" };
        insert_event(
            &tx,
            now,
            Some(name),
            "state",
            source,
            &format!("{from} -> provisioning{forced}"),
        )?;
        tx.commit()?;
        Ok(Provisioning {
            node: name.to_string(),
            state: NodeState::Provisioning,
            token,
            instance_id,
            attempts: 0,
            started: true,
            previous: Some(from),
            updated_at: now,
        })
    }

    /// Runs `act` unless one of `names` has an install under way, holding the database's write
    /// lock throughout: no node of `names` can start provisioning until `act` is done (a
    /// provisioning takes the same lock, [`Self::provision_if`]). `Ok(Err(busy))` names the
    /// nodes under way; `act` did not run.
    pub fn unless_under_way<T>(
        &mut self,
        names: &[&str],
        act: impl FnOnce() -> T,
    ) -> Result<Result<T, Vec<String>>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut busy = Vec::new();
        {
            let mut stmt = tx.prepare_cached("SELECT state FROM nodes WHERE name = ?1")?;
            for name in names {
                let state: Option<String> = stmt.query_row([name], |r| r.get(0)).optional()?;
                if let Some(state) = state
                    && parse_state(state)?.is_under_way()
                {
                    busy.push((*name).to_string());
                }
            }
        }
        if !busy.is_empty() {
            return Ok(Err(busy));
        }
        let done = act();
        tx.commit()?;
        Ok(Ok(done))
    }

    /// Takes back a provisioning whose machine was never started (its BMC refused the boot
    /// override or the restart): the node goes back to `to`, its token is retired, and the
    /// event says why. Only while that provisioning (`instance_id`) is still untouched
    /// (provisioning, installer never served); returns whether it was taken back.
    pub fn roll_back(
        &mut self,
        name: &str,
        instance_id: &str,
        to: NodeState,
        source: &str,
        why: &str,
    ) -> Result<bool, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row: Option<(String, Option<String>, u32)> = tx
            .query_row(
                "SELECT state, instance_id, attempts FROM nodes WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let (state, current, attempts) =
            row.ok_or_else(|| StoreError::UnknownNode(name.to_string()))?;
        let from = parse_state(state)?;
        if current.as_deref() != Some(instance_id) || attempts > 0 || !from.can_roll_back_to(to) {
            return Ok(false);
        }
        let now = now_ms();
        tx.execute(
            "UPDATE nodes SET state = ?2, token = NULL, updated_at = ?3 WHERE name = ?1",
            params![name, to.as_str(), now],
        )?;
        insert_event(
            &tx,
            now,
            Some(name),
            "state",
            source,
            &format!("{from} -> {to} (not started: {why})"),
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Records that seed started `name` through its power driver now (`again`: a supervisor's
    /// restart after a missed phase, counted, with an event saying why).
    pub fn mark_started(
        &mut self,
        name: &str,
        again: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let tx = self.conn.transaction()?;
        match again {
            None => {
                tx.execute(
                    "UPDATE nodes SET started_at = ?2 WHERE name = ?1",
                    params![name, now],
                )?;
            }
            Some((source, why)) => {
                tx.execute(
                    "UPDATE nodes SET started_at = ?2, cycles = cycles + 1 WHERE name = ?1",
                    params![name, now],
                )?;
                insert_event(&tx, now, Some(name), "power", source, why)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// When seed's DHCP last acknowledged an address to `node` (its newest lease write, ms).
    pub fn last_ack(&self, node: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.conn.query_row(
            "SELECT max(updated_at) FROM leases WHERE node = ?1",
            [node],
            |r| r.get(0),
        )?)
    }

    /// The provisioning nodes seed started, with what each has done since its latest start:
    /// its newest DHCP lease and when it was last served the installer.
    pub fn watched(&self) -> Result<Vec<Watched>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT n.name, n.started_at, n.cycles,
                    (SELECT max(updated_at) FROM leases WHERE node = n.name),
                    (SELECT max(at) FROM events WHERE node = n.name AND kind = 'boot'
                                                 AND detail LIKE 'installer served%')
             FROM nodes n
             WHERE n.state = 'provisioning' AND n.started_at IS NOT NULL
             ORDER BY n.name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Watched {
                name: r.get(0)?,
                started_at: r.get(1)?,
                cycles: r.get(2)?,
                dhcp_at: r.get(3)?,
                served_at: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records that `name`'s installer began writing its disk (once per provisioning, with an
    /// event); returns whether this call recorded it.
    pub fn mark_disk_written(
        &mut self,
        name: &str,
        source: &str,
        detail: &str,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let tx = self.conn.transaction()?;
        let changed = tx.execute(
            "UPDATE nodes SET disk_at = ?2 WHERE name = ?1 AND disk_at IS NULL
                 AND state IN ('provisioning', 'installing')",
            params![name, now],
        )?;
        if changed > 0 {
            insert_event(&tx, now, Some(name), "disk", source, detail)?;
        }
        tx.commit()?;
        Ok(changed > 0)
    }

    /// The node a token belongs to, with its provisioning.
    pub fn by_token(&self, token: &str) -> Result<Option<Provisioning>, StoreError> {
        self.provisioning_where("token = ?1", token)
    }

    /// A node's latest provisioning; `None` if it was never provisioned.
    pub fn provisioning(&self, name: &str) -> Result<Option<Provisioning>, StoreError> {
        self.provisioning_where("name = ?1 AND token IS NOT NULL", name)
    }

    fn provisioning_where(
        &self,
        filter: &str,
        value: &str,
    ) -> Result<Option<Provisioning>, StoreError> {
        let sql = format!(
            "SELECT name, state, token, instance_id, attempts, updated_at FROM nodes WHERE {filter}"
        );
        let row: Option<(String, String, String, String, u32, i64)> = self
            .conn
            .query_row(&sql, [value], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .optional()?;
        row.map(|(node, state, token, instance_id, attempts, updated_at)| {
            Ok(Provisioning {
                node,
                state: parse_state(state)?,
                token,
                instance_id,
                attempts,
                started: false,
                previous: None,
                updated_at,
            })
        })
        .transpose()
    }

    /// Count one more serving of the installer to a node; returns the new count.
    pub fn count_attempt(&mut self, name: &str) -> Result<u32, StoreError> {
        Ok(self.conn.query_row(
            "UPDATE nodes SET attempts = attempts + 1 WHERE name = ?1 RETURNING attempts",
            [name],
            |r| r.get(0),
        )?)
    }

    /// Record an event; returns its id once it is durable.
    pub fn record_event(
        &mut self,
        node: Option<&str>,
        kind: &str,
        source: &str,
        detail: &str,
    ) -> Result<i64, StoreError> {
        let tx = self.conn.transaction()?;
        let id = insert_event(&tx, now_ms(), node, kind, source, detail)?;
        tx.commit()?;
        Ok(id)
    }

    /// Record what `node`'s BMC reported, replacing an earlier report, with an `inventory`
    /// event saying what changed, in one transaction.
    pub fn record_inventory(
        &mut self,
        node: &str,
        hardware: &Hardware,
        detail: &str,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(hardware).map_err(|e| StoreError::Corrupt {
            what: "hardware report",
            value: e.to_string(),
        })?;
        let now = now_ms();
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO inventory (node, taken_at, hardware) VALUES (?1, ?2, ?3)
             ON CONFLICT (node) DO UPDATE SET taken_at = excluded.taken_at,
                                              hardware = excluded.hardware",
            params![node, now, json],
        )?;
        insert_event(&tx, now, Some(node), "inventory", "bmc", detail)?;
        tx.commit()?;
        Ok(())
    }

    /// Record what seed's agent found on `node`, replacing an earlier inspection, with an
    /// `inspected` event carrying `detail`, in one transaction.
    pub fn record_inspection(
        &mut self,
        node: &str,
        inspection: &Inspection,
        detail: &str,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(inspection).map_err(|e| StoreError::Corrupt {
            what: "inspection",
            value: e.to_string(),
        })?;
        let now = now_ms();
        let tx = self.conn.transaction()?;
        upsert_inspection(&tx, node, now, &json)?;
        insert_event(&tx, now, Some(node), "inspected", "agent", detail)?;
        tx.commit()?;
        Ok(())
    }

    /// What the agent last found on `node`, and when (ms).
    pub fn inspection(&self, node: &str) -> Result<Option<(i64, Inspection)>, StoreError> {
        let row: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT taken_at, inspection FROM inspections WHERE node = ?1",
                [node],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        row.map(|(at, json)| {
            serde_json::from_str(&json)
                .map(|i| (at, i))
                .map_err(|_| StoreError::Corrupt {
                    what: "inspection",
                    value: node.to_string(),
                })
        })
        .transpose()
    }

    /// Every recorded hardware report: node → (when, what).
    pub fn inventories(&self) -> Result<HashMap<String, (i64, Hardware)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT node, taken_at, hardware FROM inventory")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        rows.map(|row| {
            let (node, at, json) = row?;
            let hardware = serde_json::from_str(&json).map_err(|_| StoreError::Corrupt {
                what: "hardware report",
                value: node.clone(),
            })?;
            Ok((node, (at, hardware)))
        })
        .collect()
    }

    /// One node's recorded hardware, if `seed inventory` read it.
    pub fn inventory(&self, node: &str) -> Result<Option<Hardware>, StoreError> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT hardware FROM inventory WHERE node = ?1",
                [node],
                |r| r.get(0),
            )
            .optional()?;
        json.map(|json| {
            serde_json::from_str(&json).map_err(|_| StoreError::Corrupt {
                what: "hardware report",
                value: node.to_string(),
            })
        })
        .transpose()
    }

    /// A value that changes whenever an inventory is recorded: `seed serve` polls it to pick up
    /// MACs recorded while it runs.
    pub fn inventory_version(&self) -> Result<(i64, i64), StoreError> {
        Ok(self.conn.query_row(
            "SELECT count(*), coalesce(max(taken_at), 0) FROM inventory",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    /// The MAC `node` most recently leased an address with: the port its firmware boots from.
    pub fn leased_mac(&self, node: &str) -> Result<Option<MacAddr>, StoreError> {
        let mac: Option<String> = self
            .conn
            .query_row(
                "SELECT mac FROM leases WHERE node = ?1 ORDER BY updated_at DESC LIMIT 1",
                [node],
                |r| r.get(0),
            )
            .optional()?;
        Ok(mac.and_then(|m| m.parse().ok()))
    }

    /// seed's own starts and stops since `since` (ms), oldest first: the outages in a node's
    /// timeline.
    pub fn serve_events(&self, since: i64) -> Result<Vec<Event>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, at, node, kind, source, detail FROM events
             WHERE node IS NULL AND kind IN ('started', 'stopped') AND at >= ?1
             ORDER BY id LIMIT 1000",
        )?;
        let rows = stmt.query_map([since], |r| {
            Ok(Event {
                id: r.get(0)?,
                at: r.get(1)?,
                node: r.get(2)?,
                kind: r.get(3)?,
                source: r.get(4)?,
                detail: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest `limit` events (of one node, or all), oldest first.
    pub fn events(&self, node: Option<&str>, limit: u32) -> Result<Vec<Event>, StoreError> {
        self.events_before(node, limit, None)
    }

    /// The `limit` events before id `before` (all when `None`), oldest first: one page of a
    /// node's events, walking back.
    pub fn events_before(
        &self,
        node: Option<&str>,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<Event>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, at, node, kind, source, detail FROM (
                 SELECT * FROM events WHERE (?1 IS NULL OR node = ?1) AND (?3 IS NULL OR id < ?3)
                 ORDER BY id DESC LIMIT ?2
             ) ORDER BY id",
        )?;
        let rows = stmt.query_map(params![node, limit, before], |r| {
            Ok(Event {
                id: r.get(0)?,
                at: r.get(1)?,
                node: r.get(2)?,
                kind: r.get(3)?,
                source: r.get(4)?,
                detail: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether event `id` exists.
    pub fn has_event(&self, id: i64) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM events WHERE id = ?1", [id], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Write a lease durably. The DHCP server calls this before it sends the ACK. An address
    /// held by another MAC is refused by the `UNIQUE` constraint rather than handed out twice.
    pub fn commit_lease(&mut self, lease: &Lease) -> Result<(), StoreError> {
        self.commit_leases(std::slice::from_ref(lease))
    }

    /// Write several leases in one transaction: one fsync for a batch of ACKs. A lease takes its
    /// address from another MAC's row only when the caller has decided that row is free (expired
    /// or released); the DHCP server's lease table makes that decision.
    pub fn commit_leases(&mut self, leases: &[Lease]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut free = tx.prepare_cached("DELETE FROM leases WHERE ip = ?1 AND mac != ?2")?;
            let mut upsert = tx.prepare_cached(
                "INSERT INTO leases (mac, ip, node, expires_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (mac) DO UPDATE SET
                     ip = excluded.ip, node = excluded.node,
                     expires_at = excluded.expires_at, updated_at = excluded.updated_at",
            )?;
            let now = now_ms();
            for lease in leases {
                let (mac, ip) = (lease.mac.to_string(), lease.ip.to_string());
                free.execute(params![ip, mac])?;
                upsert.execute(params![mac, ip, lease.node, lease.expires_at, now])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Forget a MAC's lease (DHCPRELEASE). Returns whether there was one.
    pub fn release_lease(&mut self, mac: MacAddr) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .execute("DELETE FROM leases WHERE mac = ?1", [mac.to_string()])?
            > 0)
    }

    /// Record machines seen in DHCP; `first_seen` of a known MAC is kept, the rest updated.
    pub fn record_discovered(&mut self, seen: &[Discovered]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO discovered
                     (mac, first_seen, last_seen, vendor_class, arch, address, zone, relay)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (mac) DO UPDATE SET
                     last_seen = excluded.last_seen,
                     vendor_class = COALESCE(excluded.vendor_class, vendor_class),
                     arch = COALESCE(excluded.arch, arch),
                     address = COALESCE(excluded.address, address),
                     zone = COALESCE(excluded.zone, zone),
                     relay = excluded.relay",
            )?;
            for d in seen {
                upsert.execute(params![
                    d.mac.to_string(),
                    d.first_seen,
                    d.last_seen,
                    d.vendor_class,
                    d.arch,
                    d.address.map(|a| a.to_string()),
                    d.zone,
                    d.relay.map(|a| a.to_string())
                ])?;
            }
        }
        // Bounded: a flood of made-up MACs must not grow the table (nor `seed status`) without
        // end; the most recently seen are kept, and what was not seen for a month goes.
        let newest = seen.iter().map(|d| d.last_seen).max().unwrap_or(0);
        // Enlisted machines are bounded on their own (MAX_ENLISTED): a flood of made-up MACs
        // must not push out the machines an operator is about to adopt.
        tx.execute(
            "DELETE FROM discovered WHERE last_seen < ?1 OR mac IN (
                 SELECT mac FROM discovered WHERE inspected_at IS NULL
                 ORDER BY last_seen DESC LIMIT -1 OFFSET ?2)",
            params![newest - DISCOVERED_TTL_MS, MAX_DISCOVERED],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Removes machines from the discovered list (adopted: their MACs are nodes' now).
    pub fn forget_discovered(&mut self, macs: &[MacAddr]) -> Result<usize, StoreError> {
        let tx = self.conn.transaction()?;
        let mut gone = 0;
        {
            let mut delete = tx.prepare_cached("DELETE FROM discovered WHERE mac = ?1")?;
            for mac in macs {
                gone += delete.execute([mac.to_string()])?;
            }
        }
        tx.commit()?;
        Ok(gone)
    }

    /// Every discovered machine, most recently seen first.
    pub fn discovered(&self) -> Result<Vec<Discovered>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT mac, first_seen, last_seen, vendor_class, arch, address, zone, relay,
                    inspected_at
             FROM discovered ORDER BY last_seen DESC",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                (r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?),
                r.get(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get(8)?,
            ))
        })?;
        rows.map(|row| {
            let (
                (mac, first_seen, last_seen, vendor_class),
                arch,
                address,
                zone,
                relay,
                inspected_at,
            ) = row?;
            Ok(Discovered {
                mac: mac.parse().map_err(|_| StoreError::Corrupt {
                    what: "discovered MAC",
                    value: mac.clone(),
                })?,
                first_seen,
                last_seen,
                vendor_class,
                arch,
                address: address.and_then(|a| a.parse().ok()),
                zone,
                relay: relay.and_then(|a| a.parse().ok()),
                inspected_at,
            })
        })
        .collect()
    }

    /// Keep what seed's agent found on the unknown machine `mac` with its discovered row,
    /// replacing an earlier enlistment. Only a machine DHCP saw can be enlisted, and at most
    /// [`MAX_ENLISTED`] at a time.
    pub fn record_enlisted(
        &mut self,
        mac: MacAddr,
        inspection: &Inspection,
    ) -> Result<Enlisted, StoreError> {
        let json = serde_json::to_string(inspection).map_err(|e| StoreError::Corrupt {
            what: "inspection",
            value: e.to_string(),
        })?;
        let tx = self.conn.transaction()?;
        let row: Option<(Option<i64>, Option<String>)> = tx
            .query_row(
                "SELECT inspected_at, inspection FROM discovered WHERE mac = ?1",
                [mac.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((inspected_at, kept)) = row else {
            return Ok(Enlisted::NotSeen);
        };
        if inspected_at.is_some() {
            // The same report again (an agent that lost seed's answer and asked again) is
            // taken as it was; another one is not.
            return Ok(if kept.as_deref() == Some(json.as_str()) {
                Enlisted::Recorded
            } else {
                Enlisted::Kept
            });
        }
        {
            let enlisted: u32 = tx.query_row(
                "SELECT count(*) FROM discovered WHERE inspected_at IS NOT NULL",
                [],
                |r| r.get(0),
            )?;
            if enlisted >= MAX_ENLISTED {
                return Ok(Enlisted::Full);
            }
        }
        tx.execute(
            "UPDATE discovered SET inspected_at = ?2, inspection = ?3 WHERE mac = ?1",
            params![mac.to_string(), now_ms(), json],
        )?;
        tx.commit()?;
        Ok(Enlisted::Recorded)
    }

    /// The discovered machine `mac`, and what seed's agent found on it if it was enlisted.
    pub fn discovered_one(
        &self,
        mac: MacAddr,
    ) -> Result<Option<(Discovered, Option<Inspection>)>, StoreError> {
        let Some(found) = self.discovered()?.into_iter().find(|d| d.mac == mac) else {
            return Ok(None);
        };
        let json: Option<String> = self.conn.query_row(
            "SELECT inspection FROM discovered WHERE mac = ?1",
            [mac.to_string()],
            |r| r.get(0),
        )?;
        let inspection = json
            .map(|json| {
                serde_json::from_str(&json).map_err(|_| StoreError::Corrupt {
                    what: "enlisted inspection",
                    value: mac.to_string(),
                })
            })
            .transpose()?;
        Ok(Some((found, inspection)))
    }

    /// The discovered machine `mac` becomes node `node` (registered `ready`, unless it is
    /// already): its enlisted inspection becomes the node's, an `adopted` event says `detail`,
    /// and it leaves the discovered list, in one transaction. `None` when `mac` is not there.
    pub fn adopt(
        &mut self,
        mac: MacAddr,
        node: &str,
        detail: &str,
    ) -> Result<Option<Adopted>, StoreError> {
        let tx = self.conn.transaction()?;
        let row: Option<(Option<i64>, Option<String>)> = tx
            .query_row(
                "SELECT inspected_at, inspection FROM discovered WHERE mac = ?1",
                [mac.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((inspected_at, inspection)) = row else {
            return Ok(None);
        };
        let now = now_ms();
        insert_ready(&tx, node, now)?;
        insert_event(&tx, now, Some(node), "adopted", "cli", detail)?;
        let moved = match (inspected_at, inspection) {
            (Some(at), Some(json)) => {
                upsert_inspection(&tx, node, at, &json)?;
                true
            }
            _ => false,
        };
        tx.execute("DELETE FROM discovered WHERE mac = ?1", [mac.to_string()])?;
        tx.commit()?;
        Ok(Some(Adopted { inspection: moved }))
    }

    /// The lease of one MAC.
    pub fn lease(&self, mac: MacAddr) -> Result<Option<Lease>, StoreError> {
        self.conn
            .query_row(
                "SELECT mac, ip, node, expires_at FROM leases WHERE mac = ?1",
                [mac.to_string()],
                lease_row,
            )
            .optional()?
            .transpose()
    }

    /// All leases, by address.
    pub fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT mac, ip, node, expires_at FROM leases ORDER BY ip")?;
        let rows = stmt.query_map([], lease_row)?;
        rows.map(|r| r?).collect()
    }
}

type RawLease = Result<Lease, StoreError>;

fn lease_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawLease> {
    let mac: String = r.get(0)?;
    let ip: String = r.get(1)?;
    let node: Option<String> = r.get(2)?;
    let expires_at: i64 = r.get(3)?;
    Ok((|| {
        Ok(Lease {
            mac: mac.parse().map_err(|_| StoreError::Corrupt {
                what: "lease MAC",
                value: mac.clone(),
            })?,
            ip: ip.parse().map_err(|_| StoreError::Corrupt {
                what: "lease address",
                value: ip.clone(),
            })?,
            node,
            expires_at,
        })
    })())
}

/// The lifecycle's verdict on moving node `name` from `from` to `to`, as a store error that says
/// whether `--force` would allow it.
fn allowed(name: &str, from: NodeState, to: NodeState, forced: bool) -> Result<(), StoreError> {
    if from.can_become(to, forced) {
        return Ok(());
    }
    let hint = if from.can_become(to, true) {
        " without --force"
    } else {
        ""
    };
    Err(StoreError::IllegalTransition {
        node: name.to_string(),
        from,
        to,
        hint,
    })
}

fn parse_state(value: String) -> Result<NodeState, StoreError> {
    value.parse().map_err(|_| StoreError::Corrupt {
        what: "node state",
        value,
    })
}

/// A new store is made only where there is none: a 0-byte database file (with no write-ahead
/// log holding its pages), or a write-ahead log whose database is gone, is refused.
fn refuse_empty(path: &Path) -> Result<(), StoreError> {
    let len = |p: &Path| std::fs::metadata(p).ok().map(|m| m.len());
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let empty = || {
        let wal = len(Path::new(&wal)).unwrap_or(0);
        matches!((len(path), wal), (Some(0), 0) | (None, 1..))
    };
    // A store being created looks empty for the few milliseconds between SQLite creating the
    // file and its first transaction (`seed status` beside a starting `seed serve` saw it):
    // only a store that stays empty is refused.
    let deadline = std::time::Instant::now() + EMPTY_GRACE;
    while empty() {
        if std::time::Instant::now() >= deadline {
            return Err(StoreError::Empty {
                path: path.to_path_buf(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// How long an empty-looking store is given to be filled by the process creating it.
const EMPTY_GRACE: Duration = Duration::from_secs(2);

/// Machines kept in the discovered table (the most recently seen).
pub const MAX_DISCOVERED: u32 = 4096;
/// Unknown machines enlisted by seed's agent and not yet adopted, at most: a few racks' worth.
/// Each holds an inspection of at most [`crate::agent::inspect::MAX_ENLIST_BYTES`].
pub const MAX_ENLISTED: u32 = 512;
/// A discovered machine not seen for this long is forgotten (ms): 30 days.
pub const DISCOVERED_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

/// The longest event detail kept (bytes); longer ones are cut, saying how much was cut. A
/// token holder posts installer events: their size must not be the store's.
pub const MAX_EVENT_DETAIL: usize = 4096;
/// Events kept per node (and for events about no node); the oldest beyond are dropped. A whole
/// subiquity install reports a few hundred.
pub const MAX_EVENTS_PER_NODE: u32 = 1000;

/// Registers `name` as `ready` unless it is known; whether it was new.
fn insert_ready(tx: &Connection, name: &str, now: i64) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "INSERT INTO nodes (name, state, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO NOTHING",
        params![name, NodeState::Ready.as_str(), now],
    )? > 0)
}

/// Keeps `json` (an agent's inspection) as `node`'s, taken at `at`, over an earlier one.
fn upsert_inspection(tx: &Connection, node: &str, at: i64, json: &str) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO inspections (node, taken_at, inspection) VALUES (?1, ?2, ?3)
         ON CONFLICT (node) DO UPDATE SET taken_at = excluded.taken_at,
                                          inspection = excluded.inspection",
        params![node, at, json],
    )?;
    Ok(())
}

fn insert_event(
    conn: &Connection,
    at: i64,
    node: Option<&str>,
    kind: &str,
    source: &str,
    detail: &str,
) -> Result<i64, StoreError> {
    let detail = bounded_detail(detail);
    conn.execute(
        "INSERT INTO events (at, node, kind, source, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![at, node, kind, source, detail],
    )?;
    let id = conn.last_insert_rowid();
    // Drop what is beyond the bound, oldest first (events_by_node makes this a short index walk).
    conn.execute(
        "DELETE FROM events WHERE node IS ?1 AND id <= (
             SELECT id FROM events WHERE node IS ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        params![node, MAX_EVENTS_PER_NODE],
    )?;
    Ok(id)
}

/// `detail`, cut at [`MAX_EVENT_DETAIL`] bytes (on a character boundary).
fn bounded_detail(detail: &str) -> std::borrow::Cow<'_, str> {
    if detail.len() <= MAX_EVENT_DETAIL {
        return detail.into();
    }
    let mut end = MAX_EVENT_DETAIL;
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… ({} more bytes not kept)",
        &detail[..end],
        detail.len() - end
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn the_discovered_table_keeps_the_most_recent_and_forgets_the_stale() {
        let (_dir, mut store) = store();
        let day = 24 * 3600 * 1000;
        let machine = |i: u32, at: i64| Discovered {
            mac: format!(
                "02:00:00:{:02x}:{:02x}:{:02x}",
                i >> 16,
                (i >> 8) & 0xff,
                i & 0xff
            )
            .parse()
            .unwrap(),
            first_seen: at,
            last_seen: at,
            vendor_class: None,
            arch: None,
            address: None,
            zone: None,
            relay: None,
            inspected_at: None,
        };
        let start = 100 * day;
        // A stale one, then a flood of more than the table keeps, in batches as DHCP writes.
        store
            .record_discovered(&[machine(999_999, start - 31 * day)])
            .unwrap();
        // Enlisted (seed's agent inspected it) just before the flood.
        let enlisted = machine(888_888, start - 1);
        store
            .record_discovered(std::slice::from_ref(&enlisted))
            .unwrap();
        assert_eq!(
            store
                .record_enlisted(enlisted.mac, &Inspection::default())
                .unwrap(),
            Enlisted::Recorded
        );
        let flood: Vec<Discovered> = (0..MAX_DISCOVERED + 100)
            .map(|i| machine(i, start + i64::from(i)))
            .collect();
        for batch in flood.chunks(500) {
            store.record_discovered(batch).unwrap();
        }
        let kept = store.discovered().unwrap();
        assert_eq!(
            kept.len(),
            MAX_DISCOVERED as usize + 1,
            "and the enlisted one"
        );
        assert!(
            kept.iter()
                .any(|d| d.mac == enlisted.mac && d.inspected_at.is_some()),
            "a flood of strangers does not push out an enlisted machine"
        );
        let kept: Vec<Discovered> = kept.into_iter().filter(|d| d.mac != enlisted.mac).collect();
        assert_eq!(kept[0].mac, flood.last().unwrap().mac, "the newest is kept");
        assert!(
            !kept.iter().any(|d| d.mac == flood[0].mac),
            "the oldest went"
        );
        assert!(
            !kept.iter().any(|d| d.last_seen < start),
            "the stale one went"
        );
    }

    #[test]
    fn an_empty_database_file_is_refused_not_started_afresh() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE), b"").unwrap();
        let err = Store::open(dir.path()).err().expect("refused");
        assert!(matches!(err, StoreError::Empty { .. }), "{err}");
        assert!(err.to_string().contains("is empty (0 bytes)"), "{err}");
        // Nothing was written over it.
        assert_eq!(
            std::fs::metadata(dir.path().join(DB_FILE)).unwrap().len(),
            0
        );
        // A new directory still gets a new store.
        let fresh = tempfile::tempdir().unwrap();
        assert!(Store::open(fresh.path()).is_ok());
    }

    #[test]
    fn a_start_is_rolled_back_only_while_nothing_came_of_it() {
        let (_dir, mut store) = store();
        store.register_nodes(["cmp1", "cmp2"], "config").unwrap();
        let p = store.provision("cmp1", "test", false).unwrap();
        assert_eq!(p.previous, Some(NodeState::Ready));
        // Another provisioning's instance id: not this one's to take back.
        assert!(
            !store
                .roll_back("cmp1", "other", NodeState::Ready, "test", "x")
                .unwrap()
        );
        assert!(
            store
                .roll_back(
                    "cmp1",
                    &p.instance_id,
                    NodeState::Ready,
                    "test",
                    "BMC said no"
                )
                .unwrap()
        );
        assert_eq!(store.node("cmp1").unwrap().unwrap().state, NodeState::Ready);
        assert!(
            store.by_token(&p.token).unwrap().is_none(),
            "the token is retired"
        );
        // Once the installer was served, the machine did boot: it is not taken back.
        let p = store.provision("cmp2", "test", false).unwrap();
        store.count_attempt("cmp2").unwrap();
        assert!(
            !store
                .roll_back("cmp2", &p.instance_id, NodeState::Ready, "test", "x")
                .unwrap()
        );
        assert_eq!(
            store.node("cmp2").unwrap().unwrap().state,
            NodeState::Provisioning
        );
    }

    #[test]
    fn stalled_are_active_nodes_without_a_recent_state_change_or_event() {
        let (_dir, mut store) = store();
        store
            .register_nodes(["idle", "waiting", "busy", "done"], "test")
            .unwrap();
        for name in ["waiting", "busy", "done"] {
            store.provision(name, "test", false).unwrap();
        }
        store
            .transition("done", NodeState::Installed, "test", "", false)
            .unwrap();
        store
            .transition("done", NodeState::Deployed, "test", "", false)
            .unwrap();
        let later = now_ms() + 60_000;
        const ACTIVE: &[NodeState] = &NodeState::UNDER_WAY;
        // Everything active is stalled a minute from now; idle (ready) and deployed never are.
        assert_eq!(store.stalled(ACTIVE, later).unwrap(), ["busy", "waiting"]);
        assert!(
            store
                .stalled(&[NodeState::Installed], later)
                .unwrap()
                .is_empty()
        );
        // Nothing is stalled relative to a minute ago.
        assert!(store.stalled(ACTIVE, now_ms() - 60_000).unwrap().is_empty());
        // An event is progress: a node reporting after the cut-off is not stalled.
        let cut = now_ms() + 1;
        while now_ms() <= cut {
            std::hint::spin_loop();
        }
        store
            .record_event(Some("busy"), "installer", "test", "step")
            .unwrap();
        assert_eq!(store.stalled(ACTIVE, cut).unwrap(), ["waiting"]);
        let busy = store.node("busy").unwrap().unwrap();
        assert_eq!(busy.last_event.unwrap().detail, "step");
    }

    #[test]
    fn opens_in_wal_mode_at_the_current_schema() {
        let (_dir, store) = store();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let mode: String = store
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn reopening_keeps_rows_and_does_not_migrate_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store.register_nodes(["ctl1"], "test").unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.nodes().unwrap().len(), 1);
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = Store::open(dir.path()).err().unwrap();
        assert!(
            matches!(err, StoreError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1),
            "{err}"
        );
        assert!(err.to_string().contains("newer than the"), "{err}");
    }

    #[test]
    fn register_is_idempotent() {
        let (_dir, mut store) = store();
        assert_eq!(store.register_nodes(["a", "b"], "config").unwrap(), 2);
        assert_eq!(store.register_nodes(["a", "b", "c"], "config").unwrap(), 1);
        let states: Vec<_> = store
            .nodes()
            .unwrap()
            .into_iter()
            .map(|n| n.state)
            .collect();
        assert_eq!(states, vec![NodeState::Ready; 3]);
        assert_eq!(store.events(None, 100).unwrap().len(), 3);
    }

    #[test]
    fn transitions_follow_the_lifecycle_and_are_recorded() {
        let (_dir, mut store) = store();
        store.register_nodes(["n1"], "config").unwrap();
        let t = store
            .transition("n1", NodeState::Provisioning, "cli", "", false)
            .unwrap();
        assert_eq!(
            t,
            Transition::Changed {
                from: NodeState::Ready
            }
        );
        // Asking twice does not provision twice.
        let again = store
            .transition("n1", NodeState::Provisioning, "cli", "", false)
            .unwrap();
        assert_eq!(again, Transition::Unchanged);
        let err = store
            .transition("n1", NodeState::Deployed, "installer", "", false)
            .unwrap_err();
        assert!(matches!(err, StoreError::IllegalTransition { .. }), "{err}");
        assert_eq!(
            store.node("n1").unwrap().unwrap().state,
            NodeState::Provisioning
        );
        let events = store.events(Some("n1"), 10).unwrap();
        assert_eq!(events.last().unwrap().detail, "ready -> provisioning");
        assert!(matches!(
            store.transition("ghost", NodeState::Ready, "cli", "", false),
            Err(StoreError::UnknownNode(_))
        ));
    }

    #[test]
    fn provisioning_twice_keeps_the_token_and_force_makes_a_new_one() {
        let (_dir, mut store) = store();
        store.register_nodes(["n1"], "config").unwrap();
        let first = store.provision("n1", "cli", false).unwrap();
        assert!(first.started);
        assert_eq!(first.token.len(), 64);
        let again = store.provision("n1", "cli", false).unwrap();
        assert!(!again.started, "asking twice does not reinstall");
        assert_eq!(again.token, first.token);
        assert_eq!(store.by_token(&first.token).unwrap().unwrap().node, "n1");
        assert!(store.by_token("guess").unwrap().is_none());
        assert_eq!(store.count_attempt("n1").unwrap(), 1);
        for s in [NodeState::Installing, NodeState::Installed] {
            store.transition("n1", s, "test", "", false).unwrap();
        }
        assert!(
            store.provision("n1", "cli", false).is_err(),
            "installed needs --force"
        );
        let forced = store.provision("n1", "cli", true).unwrap();
        assert!(forced.started);
        assert_ne!(forced.token, first.token);
        assert_ne!(forced.instance_id, first.instance_id);
        assert_eq!(forced.attempts, 0);
        assert!(
            store.by_token(&first.token).unwrap().is_none(),
            "the old token is gone"
        );
    }

    #[test]
    fn reinstall_needs_force() {
        let (_dir, mut store) = store();
        store.register_nodes(["n1"], "config").unwrap();
        for s in [
            NodeState::Provisioning,
            NodeState::Installing,
            NodeState::Installed,
        ] {
            store.transition("n1", s, "test", "", false).unwrap();
        }
        let err = store
            .transition("n1", NodeState::Provisioning, "cli", "", false)
            .unwrap_err();
        assert!(err.to_string().ends_with("without --force"), "{err}");
        store
            .transition("n1", NodeState::Provisioning, "cli", "re-provision", true)
            .unwrap();
    }

    #[test]
    fn an_enlisted_machine_is_adopted_with_its_inspection_and_strangers_are_bounded() {
        let (_dir, mut store) = store();
        let seen = |i: u32| Discovered {
            mac: format!("02:00:00:00:{:02x}:{:02x}", i >> 8, i & 0xff)
                .parse()
                .unwrap(),
            first_seen: 1,
            last_seen: 2,
            vendor_class: None,
            arch: None,
            address: None,
            zone: None,
            relay: None,
            inspected_at: None,
        };
        let inspection = Inspection {
            memory_bytes: Some(1 << 30),
            ..Inspection::default()
        };
        // Only what DHCP saw can be enlisted.
        assert_eq!(
            store.record_enlisted(seen(0).mac, &inspection).unwrap(),
            Enlisted::NotSeen
        );
        let machines: Vec<Discovered> = (0..=MAX_ENLISTED).map(seen).collect();
        store.record_discovered(&machines).unwrap();
        for m in &machines[..MAX_ENLISTED as usize] {
            assert_eq!(
                store.record_enlisted(m.mac, &inspection).unwrap(),
                Enlisted::Recorded
            );
        }
        let last = machines.last().unwrap().mac;
        assert_eq!(
            store.record_enlisted(last, &inspection).unwrap(),
            Enlisted::Full,
            "one more than MAX_ENLISTED"
        );
        // The same report again (an agent that lost the answer), full or not: taken.
        assert_eq!(
            store.record_enlisted(machines[0].mac, &inspection).unwrap(),
            Enlisted::Recorded
        );
        // Another one for an enlisted machine (a host that took its MAC): the first is kept.
        let forged = Inspection {
            memory_bytes: Some(2 << 30),
            ..Inspection::default()
        };
        assert_eq!(
            store.record_enlisted(machines[0].mac, &forged).unwrap(),
            Enlisted::Kept
        );
        let (found, kept) = store.discovered_one(machines[0].mac).unwrap().unwrap();
        assert!(found.inspected_at.is_some());
        assert_eq!(kept, Some(inspection.clone()));
        assert_eq!(store.discovered_one(last).unwrap().unwrap().1, None);

        let adopted = store
            .adopt(machines[0].mac, "rack1-new", "adopted as rack1-new")
            .unwrap();
        assert_eq!(adopted, Some(Adopted { inspection: true }));
        assert_eq!(
            store.node("rack1-new").unwrap().unwrap().state,
            NodeState::Ready
        );
        assert_eq!(
            store.inspection("rack1-new").unwrap().unwrap().1,
            inspection
        );
        assert!(store.discovered_one(machines[0].mac).unwrap().is_none());
        assert_eq!(
            store.adopt(machines[0].mac, "rack1-new", "again").unwrap(),
            None,
            "gone from the discovered list"
        );
        // Adopting made room for a new enlistment.
        assert_eq!(
            store.record_enlisted(last, &inspection).unwrap(),
            Enlisted::Recorded
        );
    }

    #[test]
    fn a_discovered_machine_keeps_its_first_sighting() {
        let (_dir, mut store) = store();
        let mac: MacAddr = "52:54:00:00:00:09".parse().unwrap();
        let seen = |at: i64, class: Option<&str>| Discovered {
            mac,
            first_seen: at,
            last_seen: at,
            vendor_class: class.map(str::to_string),
            arch: Some(7),
            address: None,
            zone: Some("rack2".into()),
            relay: class.map(|_| Ipv4Addr::new(10, 2, 10, 1)),
            inspected_at: None,
        };
        store
            .record_discovered(&[seen(100, Some("PXEClient"))])
            .unwrap();
        assert_eq!(
            store.discovered().unwrap()[0].relay,
            Some(Ipv4Addr::new(10, 2, 10, 1))
        );
        store.record_discovered(&[seen(200, None)]).unwrap();
        let d = store.discovered().unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].first_seen, d[0].last_seen), (100, 200));
        assert_eq!(d[0].zone.as_deref(), Some("rack2"));
        assert_eq!(
            d[0].relay, None,
            "the latest sighting says where it asks now"
        );
        assert_eq!(
            d[0].vendor_class.as_deref(),
            Some("PXEClient"),
            "an absent class keeps the known one"
        );
    }

    #[test]
    fn an_address_is_leased_to_one_mac_at_a_time() {
        let (_dir, mut store) = store();
        let a: MacAddr = "52:54:00:00:00:01".parse().unwrap();
        let b: MacAddr = "52:54:00:00:00:02".parse().unwrap();
        let ip = Ipv4Addr::new(10, 1, 10, 21);
        let lease = Lease {
            mac: a,
            ip,
            node: Some("cmp1".into()),
            expires_at: 1,
        };
        store.commit_lease(&lease).unwrap();
        store
            .commit_lease(&Lease {
                expires_at: 2,
                ..lease.clone()
            })
            .unwrap();
        assert_eq!(store.lease(a).unwrap().unwrap().expires_at, 2);
        // Reusing a freed address moves it: still one row per address.
        store
            .commit_lease(&Lease {
                mac: b,
                ..lease.clone()
            })
            .unwrap();
        let leases = store.leases().unwrap();
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[0].mac, b);
        assert!(store.release_lease(b).unwrap());
        assert!(store.leases().unwrap().is_empty());
    }
}
