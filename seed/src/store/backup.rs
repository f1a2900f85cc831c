//! Backups of the state database and their restore.
//!
//! A backup is SQLite's online backup (`sqlite3_backup_step(-1)`: every page copied inside one
//! read transaction), so it is one consistent point of the store even while `seed serve`
//! commits leases: in WAL mode a reader neither blocks the writer nor sees half a transaction.
//! The copy is written beside its destination under a temporary name, switched to a
//! single-file journal, checked (`PRAGMA integrity_check`), flushed and renamed, so a backup
//! that fails leaves no file under the name asked for.
//!
//! A restore is the reverse, for a stopped server: it refuses while a `seed serve` holds the
//! state directory, checks the file (integrity and schema version), keeps the store it
//! replaces as `seed.db.before-restore`, removes the old store's `-wal` and `-shm` (a stale
//! write-ahead log must never be replayed onto another database), and renames the copy in.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::{DB_FILE, SCHEMA_VERSION, ServeLock, Store, StoreError};

/// What a backup or restore holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The file written.
    pub path: PathBuf,
    /// Its schema version.
    pub schema_version: u32,
    /// Rows in its nodes table.
    pub nodes: u64,
    /// Rows in its leases table.
    pub leases: u64,
    /// Rows in its events table.
    pub events: u64,
}

impl Store {
    /// Writes a consistent copy of the open store to `dest` (safe while others write).
    pub fn backup(&self, dest: &Path) -> Result<Summary, StoreError> {
        let temp = temporary(dest);
        let summary = copy(&self.conn, &temp, dest)?;
        let renamed = std::fs::rename(&temp, dest).map_err(|source| StoreError::Io {
            path: dest.to_path_buf(),
            source,
        });
        if let Err(e) = renamed {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        sync_dir(dest)?;
        Ok(summary)
    }
}

/// Replaces the store in `state_dir` with the backup `from` (no server may be running).
pub fn restore(state_dir: &Path, from: &Path) -> Result<Summary, StoreError> {
    let _lock = ServeLock::acquire(state_dir)?;
    let db = state_dir.join(DB_FILE);
    let temp = temporary(&db);
    // Read the backup without changing it, then copy it page by page (not the file: a backup
    // that is itself in WAL mode has its last commits in its -wal).
    let source =
        Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|source| {
            StoreError::Open {
                path: from.to_path_buf(),
                source,
            }
        })?;
    check(&source, from)?;
    let summary = copy(&source, &temp, &db)?;
    drop(source);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Io { path, source }
    };
    if db.exists() {
        let kept = state_dir.join(format!("{DB_FILE}.before-restore"));
        std::fs::rename(&db, &kept).map_err(io(&kept))?;
    }
    for suffix in ["-wal", "-shm"] {
        let stale = state_dir.join(format!("{DB_FILE}{suffix}"));
        match std::fs::remove_file(&stale) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&stale)(e)),
        }
    }
    std::fs::rename(&temp, &db).map_err(io(&db))?;
    sync_dir(&db)?;
    // Opening it once brings an older backup's schema up to date now, not at the next start.
    Store::open_file(&db)?;
    Ok(summary)
}

/// Copies `source` page by page into a new file `temp` (SQLite's online backup, every page in
/// one step: one read transaction of the source, so one consistent moment of it), makes it one
/// self-contained file, checks it and flushes it; the summary names it `named`. A failure
/// leaves no `temp`.
fn copy(source: &Connection, temp: &Path, named: &Path) -> Result<Summary, StoreError> {
    let _ = std::fs::remove_file(temp);
    let result = (|| {
        let mut copy = Connection::open(temp).map_err(|source| StoreError::Open {
            path: temp.to_path_buf(),
            source,
        })?;
        rusqlite::backup::Backup::new(source, &mut copy)?.step(-1)?;
        // Whatever the source's journal mode: one file, no -wal beside it.
        copy.pragma_update(None, "journal_mode", "DELETE")?;
        let summary = check(&copy, named)?;
        drop(copy);
        sync(temp)?;
        Ok(summary)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(temp);
    }
    result
}

/// A temporary name beside `path`, in the same directory (so the rename is atomic).
fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".partial");
    path.with_file_name(name)
}

/// Checks a copy: integrity, a schema this binary knows, and what it holds.
fn check(conn: &Connection, named: &Path) -> Result<Summary, StoreError> {
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if integrity != "ok" {
        return Err(StoreError::Refused(format!(
            "{} fails SQLite's integrity check: {integrity}",
            named.display()
        )));
    }
    let schema_version: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if schema_version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: named.to_path_buf(),
            found: schema_version,
            supported: SCHEMA_VERSION,
        });
    }
    if schema_version == 0 {
        return Err(StoreError::Refused(format!(
            "{} is not a seed store (schema version 0: no tables of seed's)",
            named.display()
        )));
    }
    let count = |table: &str| -> Result<u64, StoreError> {
        let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    };
    Ok(Summary {
        path: named.to_path_buf(),
        schema_version,
        nodes: count("nodes")?,
        leases: count("leases")?,
        events: count("events")?,
    })
}

fn sync(path: &Path) -> Result<(), StoreError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// The directory entry of a rename is durable only once its directory is flushed.
fn sync_dir(path: &Path) -> Result<(), StoreError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    sync(dir)
}
