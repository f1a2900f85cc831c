//! A verified cache of files fetched from elsewhere, on disk: the APT mirror keeps packages,
//! indices and Releases in one, and the container registry's pull-through and the image store
//! are to keep blobs in one. Where the bytes come from (an upstream over HTTP, with whatever
//! authentication and failover it needs) is the user's business; what the cache guarantees:
//!
//! - A file is in the cache whole and verified, or not at all. It is written to a temporary
//!   file under `.tmp/` ([`Filler`]), hashed while it is written, synced, checked against the
//!   size and SHA-256 expected of it, renamed into place and its directory synced. A crash
//!   leaves at most temporary files, and [`Cache::open`] removes those.
//! - One fetch per file however many clients ask at once ([`Cache::fill`], [`Flights`]), run
//!   as a task of its own: a client that goes away does not abort a fetch others wait for.
//! - The file is readable while it is written ([`Growing`]), so the first clients of a large
//!   file do not wait in silence for its end (apt gives up on a connection that stays quiet for
//!   its `Acquire::http::Timeout`; container runtimes have similar limits).
//! - Bounded: over its limit, the least recently used files of the evictable directories go.
//!
//! Keys are relative paths (`ubuntu/pool/main/h/hello/hello_2.10_amd64.deb`, and for a
//! content-addressed store `blobs/sha256/<hex>`); the user checks them ([`crate::mirror`]
//! accepts only what `layout::clean` passes).

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

/// How finely the LRU clock (a cached file's mtime) tells uses apart.
const LRU_RESOLUTION: Duration = Duration::from_secs(60);
/// Cached files whose last move of the LRU clock is remembered.
const TOUCHED_MEMORY: usize = 16_384;

/// Why a file could not be had from the cache. Clone: every waiter of a shared fetch gets it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    /// The source has no such file (an upstream's 404).
    #[error("{0}")]
    Missing(String),
    /// The source failed: unreachable, an error status, a transfer broken off.
    #[error("{0}")]
    Source(String),
    /// What arrived is not what was expected of it; it was not kept.
    #[error("{what}: got {size} bytes with SHA-256 {sha256}, expected {expected}")]
    Mismatch {
        /// What was fetched (the source's name for it).
        what: String,
        /// Bytes that arrived.
        size: u64,
        /// Their SHA-256 (hex).
        sha256: String,
        /// What they should have been.
        expected: Expect,
    },
    /// The cache's own disk failed.
    #[error("{path}: {reason}")]
    Io {
        /// The file or directory.
        path: String,
        /// The operating system's error.
        reason: String,
    },
}

impl CacheError {
    fn io(path: &Path) -> impl Fn(std::io::Error) -> CacheError + '_ {
        move |e| CacheError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        }
    }
}

/// What a file is expected to be: its SHA-256 (hex), and its size when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// Bytes, when the index or manifest that names the file says.
    pub size: Option<u64>,
    /// SHA-256, lower-case hex.
    pub sha256: String,
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(size) = self.size {
            write!(f, "{size} bytes with ")?;
        }
        write!(f, "SHA-256 {}", self.sha256)
    }
}

/// Where a file asked of [`Cache::fill`] is.
#[derive(Debug)]
pub enum Entry {
    /// In the cache, whole (its key).
    Cached(String),
    /// Being fetched: read it as it grows.
    Growing(Growing),
}

/// A fetch in progress, readable while it is written.
#[derive(Debug, Clone)]
pub struct Growing {
    /// The temporary file, opened for reading (positioned reads; the rename into the cache at
    /// the end, or its removal on failure, does not disturb it).
    pub file: Arc<std::fs::File>,
    /// How far the fetch is.
    pub progress: watch::Receiver<Progress>,
}

/// How far a fetch is.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Bytes in the temporary file (flushed: readable).
    pub written: u64,
    /// The size, once the source said it (or the index did).
    pub total: Option<u64>,
    /// Set at the end: verified and in the cache, or why not (a client that got every byte
    /// of a file that then failed verification must see its transfer fail).
    pub end: Option<Result<(), CacheError>>,
}

/// Removes the temporaries in `tmp` whose process is gone. Their names end `-<pid>-<n>`.
fn remove_orphans(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let running = name
            .to_str()
            .and_then(|n| n.rsplit('-').nth(1))
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !running {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The cache: a directory and what is being fetched into it.
pub struct Cache {
    dir: PathBuf,
    /// Directories (relative) whose files may be evicted; the rest (indices, Releases, what
    /// verifies the evictable files) stay.
    evictable: Vec<PathBuf>,
    /// What the logs call this cache ("APT mirror").
    label: &'static str,
    /// The most the cache keeps, in bytes.
    limit: u64,
    tmp_counter: AtomicU64,
    /// Fetches in progress, by key.
    growing: Mutex<HashMap<String, Growing>>,
    /// Bytes in the cache as last counted, plus what was added since (`None`: not counted yet).
    usage: Mutex<Option<u64>>,
    /// A prune is running.
    pruning: AtomicBool,
    /// When each cached file's mtime was last moved by a use ([`Self::used`]).
    touched: Mutex<HashMap<String, Instant>>,
}

impl Cache {
    /// The cache in `dir`, created if need be, the temporary files a crash left removed (never
    /// complete, never served; a running process's stay: `seed registry import` opens the
    /// store `seed serve` is filling). `evictable`: the directories (relative) whose files a
    /// prune may remove, least recently used first, to keep the cache under `limit` bytes.
    pub fn open(
        dir: &Path,
        limit: u64,
        evictable: Vec<PathBuf>,
        label: &'static str,
    ) -> Result<Arc<Self>, CacheError> {
        let tmp = dir.join(".tmp");
        std::fs::create_dir_all(&tmp).map_err(CacheError::io(&tmp))?;
        remove_orphans(&tmp);
        Ok(Arc::new(Self {
            dir: dir.to_path_buf(),
            evictable,
            label,
            limit,
            tmp_counter: AtomicU64::new(0),
            growing: Mutex::default(),
            usage: Mutex::new(None),
            pruning: AtomicBool::new(false),
            touched: Mutex::default(),
        }))
    }

    /// The cache's directory: key `k` is the file `dir/k`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `key` is (or would be).
    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// Whether `key` is in the cache (whole: nothing else is ever under its name).
    pub fn contains(&self, key: &str) -> bool {
        self.path(key).is_file()
    }

    /// The most the cache keeps.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes in the cache (walks it).
    pub fn disk_usage(&self) -> u64 {
        images::disk_usage(&self.dir)
    }

    /// `key` was served: it is recently used (its mtime is the LRU clock; atime is off or lazy
    /// on most mounts). Moved at most once a minute per file: a file served a thousand times a
    /// second costs an inode write a minute, not a thousand, and keeps its ETag (size and
    /// mtime) meanwhile. The first use after a fetch always moves it.
    pub fn used(&self, key: &str) {
        let now = Instant::now();
        {
            let mut touched = self.touched.lock().unwrap_or_else(PoisonError::into_inner);
            if touched
                .get(key)
                .is_some_and(|at| now.duration_since(*at) < LRU_RESOLUTION)
            {
                return;
            }
            if touched.len() >= TOUCHED_MEMORY {
                // Forgetting costs one more inode write each.
                touched.clear();
            }
            touched.insert(key.to_string(), now);
        }
        if let Ok(file) = std::fs::File::open(self.path(key)) {
            let _ = file.set_modified(SystemTime::now());
        }
    }

    /// A new temporary file to fill (removed unless committed).
    pub fn filler(self: &Arc<Self>, what: &str) -> Result<Filler, CacheError> {
        self.filler_with(what, None)
    }

    fn filler_with(
        self: &Arc<Self>,
        what: &str,
        progress: Option<watch::Sender<Progress>>,
    ) -> Result<Filler, CacheError> {
        let tmp = self.dir.join(".tmp").join(format!(
            "{what}-{}-{}",
            std::process::id(),
            self.tmp_counter.fetch_add(1, Ordering::Relaxed)
        ));
        let file = std::fs::File::create(&tmp).map_err(CacheError::io(&tmp))?;
        Ok(Filler {
            cache: Arc::clone(self),
            tmp,
            file: Some(tokio::fs::File::from_std(file)),
            hasher: Sha256::new(),
            size: 0,
            progress,
            committed: false,
        })
    }

    /// The file `key`: in the cache, being fetched (joined), or fetched now by `source` into
    /// the [`Filler`] it is given, as a task of its own, then verified against `expect` and
    /// committed. Checked under the lock a finished fetch takes to leave the table: a file is
    /// either being fetched or in the cache, never fetched twice.
    pub fn fill<F, Fut>(
        self: &Arc<Self>,
        key: &str,
        expect: Option<Expect>,
        source: F,
    ) -> Result<Entry, CacheError>
    where
        F: FnOnce(Filler) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Filler, CacheError>> + Send + 'static,
    {
        let mut growing = self.growing.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(download) = growing.get(key) {
            return Ok(Entry::Growing(download.clone()));
        }
        if self.contains(key) {
            return Ok(Entry::Cached(key.to_string()));
        }
        let (tx, rx) = watch::channel(Progress {
            total: expect.as_ref().and_then(|e| e.size),
            ..Progress::default()
        });
        let filler = self.filler_with("fill", Some(tx.clone()))?;
        let reader = std::fs::File::open(&filler.tmp).map_err(CacheError::io(&filler.tmp))?;
        let download = Growing {
            file: Arc::new(reader),
            progress: rx,
        };
        growing.insert(key.to_string(), download.clone());
        drop(growing);
        let (this, key) = (Arc::clone(self), key.to_string());
        tokio::spawn(async move {
            // A failed fetch drops its filler, which removes the temporary file.
            let result = match source(filler).await {
                Ok(filler) => filler.commit(&key, expect.as_ref()).await,
                Err(e) => Err(e),
            };
            // In the cache (or failed) before it leaves the table: see above.
            this.growing
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
            tx.send_modify(|p| p.end = Some(result));
        });
        Ok(Entry::Growing(download))
    }

    /// Stores what `reader` gives as `key`, verified against `expect`, whole or not at all;
    /// blocking (imports, not the runtime's threads). `Ok(Some(bytes))` when it was stored;
    /// `Ok(None)` when the cache has `key` already (`reader` is left unread).
    pub fn store(
        &self,
        key: &str,
        reader: &mut dyn std::io::Read,
        expect: &Expect,
    ) -> Result<Option<u64>, CacheError> {
        use std::io::Write;
        if self.contains(key) {
            return Ok(None);
        }
        let tmp = self.dir.join(".tmp").join(format!(
            "store-{}-{}",
            std::process::id(),
            self.tmp_counter.fetch_add(1, Ordering::Relaxed)
        ));
        // Removed on every way out but the rename.
        struct Temporary<'a>(&'a Path, bool);
        impl Drop for Temporary<'_> {
            fn drop(&mut self) {
                if !self.1 {
                    let _ = std::fs::remove_file(self.0);
                }
            }
        }
        let mut guard = Temporary(&tmp, false);
        let io = CacheError::io(&tmp);
        let mut file = std::fs::File::create(&tmp).map_err(&io)?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buffer = vec![0u8; 256 << 10];
        loop {
            let n = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CacheError::Source(format!("reading {key}: {e}"))),
            };
            hasher.update(&buffer[..n]);
            file.write_all(&buffer[..n]).map_err(&io)?;
            size += n as u64;
        }
        let sha256 = hex(&hasher.finalize());
        if sha256 != expect.sha256 || expect.size.is_some_and(|s| s != size) {
            return Err(CacheError::Mismatch {
                what: key.to_string(),
                size,
                sha256,
                expected: expect.clone(),
            });
        }
        file.sync_all().map_err(&io)?;
        let path = self.path(key);
        let parent = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent).map_err(CacheError::io(parent))?;
        std::fs::rename(&tmp, &path).map_err(CacheError::io(&path))?;
        guard.1 = true;
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(CacheError::io(parent))?;
        Ok(Some(size))
    }

    /// `bytes` entered the cache: prune when it is over its limit (one prune at a time, on the
    /// blocking pool).
    fn grew(self: &Arc<Self>, bytes: u64) {
        let over = {
            let mut usage = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
            match usage.as_mut() {
                Some(total) => {
                    *total += bytes;
                    *total > self.limit
                }
                None => true, // not counted yet: count (and prune if need be)
            }
        };
        if over && !self.pruning.swap(true, Ordering::SeqCst) {
            let this = Arc::clone(self);
            tokio::task::spawn_blocking(move || {
                this.prune();
                this.pruning.store(false, Ordering::SeqCst);
            });
        }
    }

    /// Removes the least recently used files of the evictable directories until the cache is
    /// under 90 % of its limit; returns how many went. Blocking.
    pub fn prune(&self) -> usize {
        let total = self.disk_usage();
        let mut now = total;
        let mut removed = 0;
        if total > self.limit {
            let mut files = Vec::new();
            for dir in &self.evictable {
                walk_files(&self.dir.join(dir), &mut files);
            }
            files.sort_by_key(|(modified, _, _)| *modified);
            let target = self.limit / 10 * 9;
            for (_, len, path) in files {
                if now <= target {
                    break;
                }
                if std::fs::remove_file(&path).is_ok() {
                    now = now.saturating_sub(len);
                    removed += 1;
                }
            }
            tracing::info!(
                removed,
                freed = total - now,
                limit = self.limit,
                "{} cache over its limit: least recently used files removed",
                self.label
            );
        }
        *self.usage.lock().unwrap_or_else(PoisonError::into_inner) = Some(now);
        removed
    }

    /// What was stored beside `key` with [`Self::set_meta`] (HTTP validators, a tag's digest).
    pub fn meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        let text = std::fs::read(self.meta_path(key)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Stores `value` beside `key`, atomically (a reader sees the old value or the new).
    pub fn set_meta<T: serde::Serialize>(
        self: &Arc<Self>,
        key: &str,
        value: &T,
    ) -> Result<(), CacheError> {
        let path = self.meta_path(key);
        let text = serde_json::to_vec(value).map_err(|e| CacheError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut filler = self.filler("meta")?;
        let file = filler.file.take();
        drop(file);
        std::fs::write(&filler.tmp, text).map_err(CacheError::io(&filler.tmp))?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(CacheError::io(parent))?;
        }
        std::fs::rename(&filler.tmp, &path).map_err(CacheError::io(&path))?;
        filler.committed = true;
        Ok(())
    }

    fn meta_path(&self, key: &str) -> PathBuf {
        self.dir.join(".meta").join(format!("{key}.json"))
    }
}

/// A file being written into the cache: hashed as it is written; verified and renamed into
/// place by [`Filler::commit`]; its temporary file removed when it is dropped uncommitted (a
/// failed or abandoned fetch leaves nothing).
pub struct Filler {
    cache: Arc<Cache>,
    tmp: PathBuf,
    file: Option<tokio::fs::File>,
    hasher: Sha256,
    size: u64,
    /// Readers of a [`Growing`] fetch: told after each flushed write.
    progress: Option<watch::Sender<Progress>>,
    committed: bool,
}

impl Filler {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The temporary file (read it after [`Self::flush`]).
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// The source said how large the file is: readers of a growing fetch can announce it
    /// (what the index said, if it said, wins).
    pub fn announce(&self, total: Option<u64>) {
        if let Some(progress) = &self.progress {
            progress.send_modify(|p| p.total = p.total.or(total));
        }
    }

    /// Appends `chunk`. For a growing fetch, the bytes are flushed and readers told.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), CacheError> {
        let io = CacheError::io(&self.tmp);
        let Some(file) = self.file.as_mut() else {
            return Err(io(std::io::Error::other("written after it was closed")));
        };
        self.hasher.update(chunk);
        file.write_all(chunk).await.map_err(&io)?;
        self.size += chunk.len() as u64;
        if let Some(progress) = &self.progress {
            // Readers pread the file: the bytes must be in it first.
            file.flush().await.map_err(&io)?;
            let size = self.size;
            progress.send_modify(|p| p.written = size);
        }
        Ok(())
    }

    /// Writes the body of an upstream's `response` (from `url`), announcing its length first.
    /// A transfer that breaks off is [`CacheError::Source`]; the cache's own disk failing is
    /// [`CacheError::Io`] (a caller that tracks upstream health tells them apart).
    pub async fn take_body(
        &mut self,
        mut response: reqwest::Response,
        url: &str,
    ) -> Result<(), CacheError> {
        self.announce(response.content_length());
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => self.write(&chunk).await?,
                Ok(None) => return Ok(()),
                Err(e) => {
                    return Err(CacheError::Source(format!(
                        "{url}: the transfer broke off after {} bytes: {}",
                        self.size,
                        crate::error_chain(&e)
                    )));
                }
            }
        }
    }

    /// Makes every byte written readable through [`Self::path`].
    pub async fn flush(&mut self) -> Result<(), CacheError> {
        if let Some(file) = self.file.as_mut() {
            file.flush().await.map_err(CacheError::io(&self.tmp))?;
        }
        Ok(())
    }

    /// The SHA-256 (hex) of what was written so far.
    pub fn sha256(&self) -> String {
        hex(&self.hasher.clone().finalize())
    }

    /// Whether what was written is `expect`; `what` names the file in the error.
    pub fn verify(&self, what: &str, expect: &Expect) -> Result<(), CacheError> {
        let sha256 = self.sha256();
        if sha256 == expect.sha256 && expect.size.is_none_or(|s| s == self.size) {
            return Ok(());
        }
        Err(CacheError::Mismatch {
            what: what.to_string(),
            size: self.size,
            sha256,
            expected: expect.clone(),
        })
    }

    /// Syncs the file, verifies it against `expect` (when given), renames it into the cache as
    /// `key` and syncs the directory (on the blocking pool: an fsync must not stall the
    /// runtime's thread). On any failure the temporary file is removed.
    pub async fn commit(mut self, key: &str, expect: Option<&Expect>) -> Result<(), CacheError> {
        if let Some(mut file) = self.file.take() {
            let io = CacheError::io(&self.tmp);
            file.flush().await.map_err(&io)?;
            file.sync_all().await.map_err(&io)?;
        }
        if let Some(expect) = expect {
            self.verify(key, expect)?;
        }
        let path = self.cache.path(key);
        let (tmp, dir) = (self.tmp.clone(), self.cache.dir.clone());
        tokio::task::spawn_blocking(move || {
            let io = CacheError::io(&path);
            let parent = path.parent().unwrap_or(&dir);
            std::fs::create_dir_all(parent).map_err(&io)?;
            std::fs::rename(&tmp, &path).map_err(&io)?;
            std::fs::File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(&io)
        })
        .await
        .unwrap_or_else(|e| {
            Err(CacheError::Io {
                path: key.to_string(),
                reason: format!("cache write: {e}"),
            })
        })?;
        self.committed = true;
        self.cache.grew(self.size);
        Ok(())
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Single flight: work keyed by name runs once however many ask for it while it runs, as a
/// task of its own (a caller that goes away does not abort the work others wait for). For
/// work whose result is not one file (a Release revalidated with the indices it names).
pub struct Flights<E> {
    inflight: Arc<Mutex<HashMap<String, Flight<E>>>>,
}

type Flight<E> = Shared<BoxFuture<'static, Result<(), E>>>;

impl<E> Default for Flights<E> {
    fn default() -> Self {
        Self {
            inflight: Arc::default(),
        }
    }
}

impl<E: Clone + Send + Sync + From<CacheError> + 'static> Flights<E> {
    /// Runs `work` for `key`, or waits for the run under way, and returns its result.
    pub async fn once(
        &self,
        key: String,
        work: impl Future<Output = Result<(), E>> + Send + 'static,
    ) -> Result<(), E> {
        let flight = {
            let mut inflight = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
            match inflight.get(&key) {
                Some(flight) => flight.clone(),
                None => {
                    let table = Arc::clone(&self.inflight);
                    let k = key.clone();
                    let k2 = key.clone();
                    let task = tokio::spawn(async move {
                        let result = work.await;
                        table
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .remove(&k);
                        result
                    });
                    let flight = async move {
                        task.await.unwrap_or_else(|e| {
                            Err(E::from(CacheError::Io {
                                path: format!("single flight {k2}"),
                                reason: format!("task: {e}"),
                            }))
                        })
                    }
                    .boxed()
                    .shared();
                    inflight.insert(key, flight.clone());
                    flight
                }
            }
        };
        flight.await
    }
}

/// Every file below `dir`: (modified, length, path).
fn walk_files(dir: &Path, out: &mut Vec<(SystemTime, u64, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            walk_files(&entry.path(), out);
        } else if meta.is_file() {
            let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            out.push((modified, meta.len(), entry.path()));
        }
    }
}

/// How long an upstream connection may take to open.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an upstream may stay silent mid-transfer.
const UPSTREAM_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The HTTP client a cache's user fetches from its upstreams with: bounded connect and
/// silence, a user agent naming seed and `what` fetches (`APT mirror`, `registry`).
pub fn upstream_client(what: &str) -> Result<reqwest::Client, CacheError> {
    reqwest::Client::builder()
        .connect_timeout(UPSTREAM_CONNECT_TIMEOUT)
        .read_timeout(UPSTREAM_READ_TIMEOUT)
        .user_agent(format!("seed/{} ({what})", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| CacheError::Io {
            path: "HTTP client".into(),
            reason: e.to_string(),
        })
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests;
