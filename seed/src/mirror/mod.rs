//! The APT mirror under `/apt/<prefix>/`: nodes install without reaching the internet, and
//! the seed host may itself be offline. A repository is a static directory (what apt-mirror,
//! debmirror or `aptly publish` write), a caching proxy of upstream URLs, or both (the
//! directory first).
//!
//! The proxy sorts what apt asks for by how it may change:
//! - packages (`pool/…`) and `by-hash/` files never change: fetched once, verified against
//!   the size and SHA-256 the indices give (by-hash: the hash in the path), stored, served
//!   from disk. Concurrent requests for a file share one upstream download.
//! - a suite's `InRelease`/`Release` are revalidated with the upstream on every request and
//!   served from the cache when the upstream is unreachable.
//! - the indices a Release names (`main/binary-amd64/Packages.xz`, …) are stored under their
//!   hash (`by-hash/SHA256/<hash>`, as the archive itself publishes them) and served by the
//!   hash the cached Release gives. When a new Release arrives, the indices clients used under
//!   the old one are fetched and verified first; only then is the new Release served. So apt
//!   never gets a Release that names indices the cache does not hold, online or offline.
//!
//! Every cache write goes to a temporary file, is synced, and renamed into place: a crash
//! never leaves a truncated file that is later served as complete.

mod index;
mod layout;

use layout::{Kind, by_hash, by_hash_sha256, classify, clean, suite_of};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::config::{Mirror as MirrorConfig, MirrorRepo};

/// [`crate::fuzzing::apt`]: a Release's SHA256 list and classification of what it names.
#[doc(hidden)]
pub fn fuzz_release(text: &str) -> usize {
    let entries = index::sha256_entries(&index::release_text(text));
    for entry in &entries {
        let _ = index::is_packages(&entry.name);
        let _ = classify(&entry.name);
    }
    entries.len()
}

/// [`crate::fuzzing::apt`]: a Packages index as the mirror reads it.
#[doc(hidden)]
pub fn fuzz_packages(name: &str, bytes: &[u8]) {
    if let Ok(text) = index::decompress(name, bytes) {
        let mut packages = HashMap::new();
        index::add_packages(&text, &mut packages);
    }
}

/// How long one upstream connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an upstream may stay silent mid-transfer.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a revalidation waits for the upstream before serving the cached copy.
const REVALIDATE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long revalidations skip an upstream after it failed.
const DOWN_FOR: Duration = Duration::from_secs(60);
/// How finely the LRU clock (a cached file's mtime) tells uses apart.
const LRU_RESOLUTION: Duration = Duration::from_secs(60);
/// Cached files whose last move of the LRU clock is remembered.
const TOUCHED_MEMORY: usize = 16_384;
/// A Release larger than this is not one.
const MAX_RELEASE: u64 = 64 << 20;

/// Why a mirror request failed. Messages name the repository path and the upstream.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MirrorError {
    /// Not in the repository (or the upstream says 404).
    #[error("{0}")]
    NotFound(String),
    /// A path apt would never ask for (`..`, hidden names).
    #[error("{0}")]
    BadPath(String),
    /// No upstream answered, and nothing is cached.
    #[error("{0}")]
    Upstream(String),
    /// The upstream sent a file whose size or SHA-256 is not what the indices say.
    #[error("{0}")]
    Mismatch(String),
    /// The cache could not be written or read.
    #[error("{0}")]
    Io(String),
}

/// Where the answer to a request is.
#[derive(Debug)]
pub enum Answer {
    /// A file of the repository's static directory (a path relative to it).
    Static(String),
    /// A file in the cache (relative to the cache directory).
    Cached(String),
    /// A suite's Release file, read whole from the cache: it can be replaced any time, and a
    /// client must get one version of it.
    Bytes(Vec<u8>),
    /// A file being downloaded: served as it grows, so the first clients do not wait for a
    /// large package in silence (apt gives up on a connection that stays quiet for its
    /// `Acquire::http::Timeout`).
    Growing(Growing),
}

/// A download in progress, readable while it is written.
#[derive(Debug, Clone)]
pub struct Growing {
    /// The temporary file, opened for reading (positioned reads; the rename into the cache at
    /// the end does not disturb it).
    pub file: Arc<std::fs::File>,
    /// How far the download is.
    pub progress: tokio::sync::watch::Receiver<Progress>,
}

/// How far a download is.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Bytes in the temporary file (flushed: readable).
    pub written: u64,
    /// The size, once the upstream said it (or the index did).
    pub total: Option<u64>,
    /// Set at the end: verified and in the cache, or why not (a client that got every byte
    /// of a file that then failed verification sees its connection aborted).
    pub end: Option<Result<(), MirrorError>>,
}

/// Where [`Mirror::fetch`] writes a download others read as it grows.
struct Sink {
    tmp: PathBuf,
    progress: tokio::sync::watch::Sender<Progress>,
}

/// What a file of the upstream is expected to be.
#[derive(Debug, Clone)]
struct Expect {
    size: Option<u64>,
    sha256: String,
}

/// What an upstream GET gave.
enum Fetched {
    /// 304: the cached copy is current.
    NotModified,
    /// 404 from every upstream.
    Missing,
    /// A body, in a synced temporary file.
    Body {
        tmp: PathBuf,
        size: u64,
        sha256: String,
        validators: Validators,
    },
}

/// What revalidates a cached mutable file (RFC 9110 13.1).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
}

type Flight = Shared<BoxFuture<'static, Result<(), MirrorError>>>;

/// Packages' sizes and hashes of one repository, for the Release files cached when it was
/// built.
struct PoolIndex {
    generation: u64,
    packages: HashMap<String, (u64, String)>,
}

/// The mirror: its repositories and its cache.
pub struct Mirror {
    repos: HashMap<String, MirrorRepo>,
    cache: PathBuf,
    client: reqwest::Client,
    inflight: Mutex<HashMap<String, Flight>>,
    /// Upstreams that failed, and when.
    down: Mutex<HashMap<String, Instant>>,
    /// Downloads of immutable files in progress, by cache path.
    growing: Mutex<HashMap<String, Growing>>,
    pools: tokio::sync::Mutex<HashMap<String, Arc<PoolIndex>>>,
    /// Bumped whenever a Release is replaced: pool indices are rebuilt after.
    generation: AtomicU64,
    /// Upstream GETs that returned a body.
    fetches: AtomicU64,
    tmp_counter: AtomicU64,
    /// The most the cache keeps (`mirror.cache_size`).
    limit: u64,
    /// Bytes in the cache as last counted, plus what was added since (`None`: not counted yet).
    usage: Mutex<Option<u64>>,
    /// A prune is running.
    pruning: std::sync::atomic::AtomicBool,
    /// When each cached file's mtime was last moved by a serving ([`Self::used`]).
    touched: Mutex<HashMap<String, std::time::Instant>>,
}

impl Mirror {
    /// The mirror of `config` (its cache in `state_dir` unless configured): creates the cache directory and empties its temporary files
    /// (left by a crash: never served, never complete).
    pub fn new(config: &MirrorConfig, state_dir: &Path) -> Result<Arc<Self>, MirrorError> {
        let cache = config.cache_dir(state_dir);
        let tmp = cache.join(".tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)
            .map_err(|e| MirrorError::Io(format!("{}: {e}", tmp.display())))?;
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("seed/", env!("CARGO_PKG_VERSION"), " (APT mirror)"))
            .build()
            .map_err(|e| MirrorError::Io(format!("HTTP client: {e}")))?;
        Ok(Arc::new(Self {
            repos: config
                .repos
                .iter()
                .map(|r| (r.prefix.clone(), r.clone()))
                .collect(),
            cache,
            client,
            inflight: Mutex::new(HashMap::new()),
            growing: Mutex::new(HashMap::new()),
            down: Mutex::new(HashMap::new()),
            pools: tokio::sync::Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
            tmp_counter: AtomicU64::new(0),
            limit: config.cache_bytes,
            usage: Mutex::new(None),
            pruning: std::sync::atomic::AtomicBool::new(false),
            touched: Mutex::default(),
        }))
    }

    /// The most the cache keeps.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// A cached package was served: it is recently used (its mtime is the LRU clock; atime is
    /// off or lazy on most mounts). Moved at most once a minute per file: a package served a
    /// thousand times a second costs an inode write a minute, not a thousand, and keeps its
    /// ETag (size and mtime) meanwhile. The first serving after a download always moves it.
    fn used(&self, dest: &str) {
        let now = std::time::Instant::now();
        {
            let mut touched = self
                .touched
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if touched
                .get(dest)
                .is_some_and(|at| now.duration_since(*at) < LRU_RESOLUTION)
            {
                return;
            }
            if touched.len() >= TOUCHED_MEMORY {
                // Forgetting costs one more inode write each.
                touched.clear();
            }
            touched.insert(dest.to_string(), now);
        }
        if let Ok(file) = std::fs::File::open(self.cache.join(dest)) {
            let _ = file.set_modified(std::time::SystemTime::now());
        }
    }

    /// `bytes` entered the cache: prune when it is over its limit (one prune at a time, on the
    /// blocking pool).
    fn grew(self: &Arc<Self>, bytes: u64) {
        let over = {
            let mut usage = self
                .usage
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
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

    /// Removes the least recently used packages (`pool/` files: indices and Releases are small
    /// and what verifies the rest) until the cache is under 90 % of its limit; returns how many
    /// went. Blocking.
    pub fn prune(&self) -> usize {
        let total = images::disk_usage(&self.cache);
        let mut now = total;
        let mut removed = 0;
        if total > self.limit {
            let mut packages = Vec::new();
            for prefix in self.repos.keys() {
                walk_files(&self.cache.join(prefix).join("pool"), &mut packages);
            }
            packages.sort_by_key(|(modified, _, _)| *modified);
            let target = self.limit / 10 * 9;
            for (_, len, path) in packages {
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
                "APT mirror cache over its limit: least recently used packages removed"
            );
        }
        *self
            .usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(now);
        removed
    }

    /// The cache directory (served for [`Answer::Cached`]).
    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }

    /// The static directory of each repository that has one.
    pub fn static_dirs(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.repos
            .values()
            .filter_map(|r| Some((r.prefix.as_str(), r.static_dir.as_deref()?)))
    }

    /// Upstream downloads so far (bodies, not revalidations answered 304).
    pub fn upstream_fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Where `path` of repository `prefix` would be on disk if it can be served as a file with
    /// no fetch and no revalidation, without looking: the static directory's copy first (when
    /// the repository has one), then the cache's for an immutable file (pool/, by-hash/). The
    /// caller tries them in order, serves the first that opens, and reports a cached one
    /// with [`Self::served`]; when none opens, [`Self::get`] answers.
    pub fn on_disk(&self, prefix: &str, path: &str) -> Vec<Answer> {
        let Some(repo) = self.repos.get(prefix) else {
            return Vec::new();
        };
        let Some(path) = clean(path) else {
            return Vec::new();
        };
        let mut places = Vec::with_capacity(2);
        let immutable = classify(&path) == Kind::Immutable;
        if repo.static_dir.is_some() {
            places.push(Answer::Static(path.clone()));
        }
        if !repo.upstream.is_empty() && immutable {
            places.push(Answer::Cached(format!("{}/{path}", repo.prefix)));
        }
        places
    }

    /// A cached file ([`Answer::Cached`]) was served from disk: recently used.
    pub fn served(&self, dest: &str) {
        self.used(dest);
    }

    /// Answers a request for `path` in repository `prefix`.
    pub async fn get(self: &Arc<Self>, prefix: &str, path: &str) -> Result<Answer, MirrorError> {
        let repo = self
            .repos
            .get(prefix)
            .ok_or_else(|| MirrorError::NotFound(format!("no repository /apt/{prefix}/")))?
            .clone();
        let path = clean(path)
            .ok_or_else(|| MirrorError::BadPath(format!("`{path}` is not a repository path")))?;
        if let Some(dir) = &repo.static_dir
            && dir.join(&path).is_file()
        {
            return Ok(Answer::Static(path));
        }
        if repo.upstream.is_empty() {
            return Err(MirrorError::NotFound(format!(
                "/apt/{prefix}/{path} is not in {}",
                repo.static_dir
                    .as_deref()
                    .map_or("the repository".into(), |d| d.display().to_string())
            )));
        }
        match classify(&path) {
            Kind::Release { suite, file } => self.release(&repo, &suite, &file).await,
            Kind::Index { suite, name } => self.index(&repo, &suite, &name).await,
            Kind::Immutable => self.immutable(&repo, &path).await,
            // apt asks for nothing outside dists/ and pool/; seed fetches nothing else for it.
            Kind::Other => Err(MirrorError::NotFound(format!(
                "/apt/{prefix}/{path}: only dists/ and pool/ are proxied"
            ))),
        }
    }

    /// `dists/<suite>/InRelease|Release|Release.gpg`: revalidated, then served whole.
    async fn release(
        self: &Arc<Self>,
        repo: &MirrorRepo,
        suite: &str,
        file: &str,
    ) -> Result<Answer, MirrorError> {
        let rel = format!("dists/{suite}/{file}");
        let dest = format!("{}/{rel}", repo.prefix);
        let (this, repo2, rel2, dest2) =
            (Arc::clone(self), repo.clone(), rel.clone(), dest.clone());
        let consistent = file != "Release.gpg";
        self.once(format!("revalidate {dest}"), async move {
            this.refresh(&repo2, &rel2, &dest2, consistent.then_some(suite_of(&rel2)))
                .await
        })
        .await?;
        let bytes = tokio::fs::read(self.cache.join(&dest))
            .await
            .map_err(|e| MirrorError::Io(format!("{dest}: {e}")))?;
        Ok(Answer::Bytes(bytes))
    }

    /// Revalidates the mutable file `rel` (cached as `dest`) with the upstream. `suite`: it is
    /// a suite's Release, so the indices used under the cached one are fetched for the new
    /// one before it replaces the old. Ok when there is a file to serve.
    async fn refresh(
        self: &Arc<Self>,
        repo: &MirrorRepo,
        rel: &str,
        dest: &str,
        suite: Option<&str>,
    ) -> Result<(), MirrorError> {
        let cached = self.cache.join(dest);
        let have = cached.is_file();
        let validators = if have {
            self.read_validators(dest)
        } else {
            None
        };
        let fetched = match self.fetch(repo, rel, validators.as_ref(), None).await {
            Ok(fetched) => fetched,
            Err(e) if have => {
                tracing::warn!(path = dest, error = %e, "APT mirror: upstream unreachable, serving the cached copy");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        match fetched {
            Fetched::NotModified => Ok(()),
            Fetched::Missing => Err(MirrorError::NotFound(format!(
                "/apt/{dest}: not found upstream"
            ))),
            Fetched::Body {
                tmp, validators, ..
            } => {
                if let Some(suite) = suite
                    && have
                {
                    let old = read_text(&cached, MAX_RELEASE)?;
                    let new = read_text(&tmp, MAX_RELEASE)?;
                    if old != new
                        && let Err(e) = self.prefetch(repo, suite, &old, &new).await
                    {
                        // Keep serving the Release whose indices the cache holds.
                        let _ = std::fs::remove_file(&tmp);
                        tracing::warn!(path = dest, error = %e, "APT mirror: a new Release's indices could not be fetched; the cached Release stays");
                        return Ok(());
                    }
                }
                self.commit(tmp, dest).await?;
                self.write_validators(dest, &validators)?;
                if suite.is_some() {
                    self.generation.fetch_add(1, Ordering::SeqCst);
                }
                Ok(())
            }
        }
    }

    /// Fetches, for the `new` Release of `suite`, every index clients fetched under the `old`
    /// one (its by-hash file is cached), verified against the new Release.
    async fn prefetch(
        self: &Arc<Self>,
        repo: &MirrorRepo,
        suite: &str,
        old: &str,
        new: &str,
    ) -> Result<(), MirrorError> {
        let old_entries = index::sha256_entries(&index::release_text(old));
        let new_entries = index::sha256_entries(&index::release_text(new));
        for used in old_entries
            .iter()
            .filter(|e| self.cache.join(by_hash(&repo.prefix, suite, e)).is_file())
        {
            let Some(next) = new_entries.iter().find(|e| e.name == used.name) else {
                continue;
            };
            self.index_file(repo, suite, next).await?;
        }
        Ok(())
    }

    /// `dists/<suite>/<name>` by the hash the cached Release gives for it.
    async fn index(
        self: &Arc<Self>,
        repo: &MirrorRepo,
        suite: &str,
        name: &str,
    ) -> Result<Answer, MirrorError> {
        let release = match self.cached_release(&repo.prefix, suite)? {
            Some(text) => text,
            None => {
                // apt asks for the Release first; a client that did not gets it fetched.
                self.release(repo, suite, "InRelease").await?;
                self.cached_release(&repo.prefix, suite)?
                    .unwrap_or_default()
            }
        };
        let entries = index::sha256_entries(&index::release_text(&release));
        let Some(entry) = entries.iter().find(|e| e.name == name) else {
            return Err(MirrorError::NotFound(format!(
                "/apt/{}/dists/{suite}/{name} is not in the suite's Release",
                repo.prefix
            )));
        };
        self.index_file(repo, suite, entry).await?;
        Ok(Answer::Cached(by_hash(&repo.prefix, suite, entry)))
    }

    /// Makes the index `entry` of `suite` cached under its hash: fetched by name, verified;
    /// if the upstream has moved on meanwhile, by hash.
    async fn index_file(
        self: &Arc<Self>,
        repo: &MirrorRepo,
        suite: &str,
        entry: &index::Entry,
    ) -> Result<(), MirrorError> {
        let dest = by_hash(&repo.prefix, suite, entry);
        if self.cache.join(&dest).is_file() {
            return Ok(());
        }
        let expect = Expect {
            size: Some(entry.size),
            sha256: entry.sha256.clone(),
        };
        let by_name = format!("dists/{suite}/{}", entry.name);
        let by_hash_path = dest
            .strip_prefix(&format!("{}/", repo.prefix))
            .unwrap_or(&dest)
            .to_string();
        let (this, repo2, dest2) = (Arc::clone(self), repo.clone(), dest.clone());
        self.once(dest.clone(), async move {
            match this
                .download(&repo2, &by_name, &dest2, Some(&expect), None)
                .await
            {
                Err(MirrorError::Mismatch(first)) => this
                    .download(&repo2, &by_hash_path, &dest2, Some(&expect), None)
                    .await
                    .map_err(|_| MirrorError::Mismatch(first)),
                other => other,
            }
        })
        .await
    }

    /// `pool/…` and `by-hash/…`: from the cache, else downloaded once and verified.
    async fn immutable(
        self: &Arc<Self>,
        repo: &MirrorRepo,
        path: &str,
    ) -> Result<Answer, MirrorError> {
        let dest = format!("{}/{path}", repo.prefix);
        if self.cache.join(&dest).is_file() {
            self.used(&dest);
            return Ok(Answer::Cached(dest));
        }
        // Only what a verified index names is fetched: a package its Packages lists (Packages
        // verified against the suite's Release), an index by a hash the suite's Release lists.
        // Anything else would let any client make seed fetch and keep any upstream file.
        let expect = match by_hash_sha256(path) {
            Some(sha256) => {
                let named = self
                    .cached_release(&repo.prefix, suite_of(path))?
                    .is_some_and(|release| {
                        index::sha256_entries(&index::release_text(&release))
                            .iter()
                            .any(|e| e.sha256 == sha256)
                    });
                named.then_some(Expect { size: None, sha256 })
            }
            None => self.pool_entry(&repo.prefix, path).await,
        };
        let Some(expect) = expect else {
            return Err(MirrorError::NotFound(format!(
                "/apt/{dest} is named by no index seed has verified (apt reads the suite's Release and Packages first)"
            )));
        };
        self.start_download(repo, path, &dest, Some(expect))
    }

    /// Joins the download of `path` in progress, or starts it (one per file however many
    /// clients ask). Checked under the lock the finished download takes to leave the table: a
    /// file is either in the table or in the cache, never fetched twice.
    fn start_download(
        self: &Arc<Self>,
        repo: &MirrorRepo,
        path: &str,
        dest: &str,
        expect: Option<Expect>,
    ) -> Result<Answer, MirrorError> {
        let mut growing = self
            .growing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(download) = growing.get(dest) {
            return Ok(Answer::Growing(download.clone()));
        }
        if self.cache.join(dest).is_file() {
            return Ok(Answer::Cached(dest.to_string()));
        }
        let tmp = self.tmp_path("get");
        let io = |e: std::io::Error| MirrorError::Io(format!("{}: {e}", tmp.display()));
        std::fs::File::create(&tmp).map_err(io)?;
        let reader = Arc::new(std::fs::File::open(&tmp).map_err(io)?);
        let (tx, rx) = tokio::sync::watch::channel(Progress {
            total: expect.as_ref().and_then(|e| e.size),
            ..Progress::default()
        });
        let download = Growing {
            file: reader,
            progress: rx,
        };
        growing.insert(dest.to_string(), download.clone());
        drop(growing);
        let (this, repo, path, dest) = (
            Arc::clone(self),
            repo.clone(),
            path.to_string(),
            dest.to_string(),
        );
        tokio::spawn(async move {
            let sink = Sink { tmp, progress: tx };
            let result = this
                .download(&repo, &path, &dest, expect.as_ref(), Some(&sink))
                .await;
            if result.is_err() {
                let _ = std::fs::remove_file(&sink.tmp);
            } else {
                this.grew(sink.progress.borrow().written);
            }
            // In the cache (or failed) before it leaves the table: see above.
            this.growing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&dest);
            sink.progress.send_modify(|p| p.end = Some(result));
        });
        Ok(Answer::Growing(download))
    }

    /// Whether `base` failed less than [`DOWN_FOR`] ago.
    fn is_down(&self, base: &str) -> bool {
        self.down
            .lock()
            .ok()
            .and_then(|d| d.get(base).copied())
            .is_some_and(|at| at.elapsed() < DOWN_FOR)
    }

    fn mark_down(&self, base: &str) {
        if let Ok(mut down) = self.down.lock()
            && down.insert(base.to_string(), Instant::now()).is_none()
        {
            tracing::warn!(
                upstream = base,
                "APT mirror: upstream unreachable; revalidations serve the cache without asking it for {} s",
                DOWN_FOR.as_secs()
            );
        }
    }

    fn mark_up(&self, base: &str) {
        if let Ok(mut down) = self.down.lock()
            && down.remove(base).is_some()
        {
            tracing::info!(upstream = base, "APT mirror: upstream answers again");
        }
    }

    fn tmp_path(&self, what: &str) -> PathBuf {
        self.cache.join(".tmp").join(format!(
            "{what}-{}-{}",
            std::process::id(),
            self.tmp_counter.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// The size and SHA-256 the cached Packages indices give for a package. The table is
    /// built once per Release generation, by one request while the others wait (parsing
    /// Ubuntu's universe index is seconds of CPU and tens of MiB).
    async fn pool_entry(self: &Arc<Self>, prefix: &str, path: &str) -> Option<Expect> {
        let mut pools = self.pools.lock().await;
        let generation = self.generation.load(Ordering::SeqCst);
        let fresh = pools
            .get(prefix)
            .filter(|p| p.generation == generation)
            .cloned();
        let pool = match fresh {
            Some(pool) => pool,
            None => {
                let (cache, prefix2) = (self.cache.clone(), prefix.to_string());
                let packages = tokio::task::spawn_blocking(move || pool_index(&cache, &prefix2))
                    .await
                    .unwrap_or_default();
                let pool = Arc::new(PoolIndex {
                    generation,
                    packages,
                });
                pools.insert(prefix.to_string(), Arc::clone(&pool));
                pool
            }
        };
        drop(pools);
        pool.packages.get(path).map(|(size, sha256)| Expect {
            size: Some(*size),
            sha256: sha256.clone(),
        })
    }

    /// Runs `work` once for `key` however many requests wait for it. The work runs as a task
    /// of its own: a client that goes away does not abort a download others wait for.
    async fn once(
        self: &Arc<Self>,
        key: String,
        work: impl std::future::Future<Output = Result<(), MirrorError>> + Send + 'static,
    ) -> Result<(), MirrorError> {
        let flight = {
            let mut inflight = self
                .inflight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match inflight.get(&key) {
                Some(flight) => flight.clone(),
                None => {
                    let this = Arc::clone(self);
                    let k = key.clone();
                    let task = tokio::spawn(async move {
                        let result = work.await;
                        this.inflight
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .remove(&k);
                        result
                    });
                    let flight = async move {
                        task.await
                            .unwrap_or_else(|e| Err(MirrorError::Io(format!("mirror task: {e}"))))
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

    /// Downloads `rel` into the cache as `dest`, refusing it when it is not `expect`.
    async fn download(
        self: &Arc<Self>,
        repo: &MirrorRepo,
        rel: &str,
        dest: &str,
        expect: Option<&Expect>,
        sink: Option<&Sink>,
    ) -> Result<(), MirrorError> {
        match self.fetch(repo, rel, None, sink).await? {
            Fetched::Body {
                tmp, size, sha256, ..
            } => {
                if let Some(expect) = expect
                    && (expect.sha256 != sha256 || expect.size.is_some_and(|s| s != size))
                {
                    let _ = std::fs::remove_file(&tmp);
                    tracing::warn!(path = rel, got = %sha256, want = %expect.sha256, "APT mirror: upstream file does not match the index; refused");
                    return Err(MirrorError::Mismatch(format!(
                        "/apt/{}/{rel}: the upstream's file ({size} bytes, SHA-256 {sha256}) is \
                         not what the index says ({}SHA-256 {}); not served",
                        repo.prefix,
                        expect
                            .size
                            .map(|s| format!("{s} bytes, "))
                            .unwrap_or_default(),
                        expect.sha256
                    )));
                }
                self.commit(tmp, dest).await
            }
            Fetched::Missing => Err(MirrorError::NotFound(format!(
                "/apt/{}/{rel}: not found upstream",
                repo.prefix
            ))),
            Fetched::NotModified => Ok(()),
        }
    }

    /// GETs `rel` from the repository's upstreams in order (the next on a connection error or
    /// a 5xx, as long as nothing was written), into a synced temporary file: `sink`'s, with
    /// progress announced after each flushed chunk, or a new one.
    async fn fetch(
        &self,
        repo: &MirrorRepo,
        rel: &str,
        validators: Option<&Validators>,
        sink: Option<&Sink>,
    ) -> Result<Fetched, MirrorError> {
        let mut errors = Vec::new();
        let mut missing = false;
        // A revalidation has a cached copy to fall back on: it does not wait long, and skips an
        // upstream that just failed (an offline seed host answers apt at once, not after a
        // timeout per suite per client).
        let revalidating = validators.is_some();
        for base in &repo.upstream {
            let url = format!("{base}/{rel}");
            if revalidating && self.is_down(base) {
                errors.push(format!(
                    "{base}: failed less than {} s ago",
                    DOWN_FOR.as_secs()
                ));
                continue;
            }
            let mut request = self.client.get(&url);
            if revalidating {
                request = request.timeout(REVALIDATE_TIMEOUT);
            }
            if let Some(v) = validators {
                if let Some(etag) = &v.etag {
                    request = request.header(IF_NONE_MATCH, etag);
                }
                if let Some(date) = &v.last_modified {
                    request = request.header(IF_MODIFIED_SINCE, date);
                }
            }
            let mut response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    self.mark_down(base);
                    errors.push(format!("{url}: {}", crate::error_chain(&e)));
                    continue;
                }
            };
            match response.status() {
                StatusCode::NOT_MODIFIED if validators.is_some() => {
                    self.mark_up(base);
                    return Ok(Fetched::NotModified);
                }
                StatusCode::NOT_FOUND | StatusCode::GONE => {
                    missing = true;
                    continue;
                }
                s if s.is_success() => self.mark_up(base),
                s => {
                    if s.is_server_error() {
                        self.mark_down(base);
                    }
                    errors.push(format!("{url}: {s}"));
                    continue;
                }
            }
            let header = |name| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                    .map(str::to_string)
            };
            let validators = Validators {
                etag: header(ETAG),
                last_modified: header(LAST_MODIFIED),
            };
            let tmp = match sink {
                Some(sink) => sink.tmp.clone(),
                None => self.tmp_path("get"),
            };
            let io = |e: std::io::Error| MirrorError::Io(format!("{}: {e}", tmp.display()));
            let mut file = tokio::fs::File::create(&tmp).await.map_err(io)?;
            if let Some(sink) = sink {
                let total = response.content_length();
                sink.progress.send_modify(|p| p.total = p.total.or(total));
            }
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        hasher.update(&chunk);
                        size += chunk.len() as u64;
                        file.write_all(&chunk).await.map_err(io)?;
                        if let Some(sink) = sink {
                            // Readers pread the file: the bytes must be in it first.
                            file.flush().await.map_err(io)?;
                            sink.progress.send_modify(|p| p.written = size);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        drop(file);
                        if sink.is_none() {
                            let _ = tokio::fs::remove_file(&tmp).await;
                        }
                        self.mark_down(base);
                        return Err(MirrorError::Upstream(format!(
                            "{url}: the transfer broke off after {size} bytes: {}",
                            crate::error_chain(&e)
                        )));
                    }
                }
            }
            file.sync_all().await.map_err(io)?;
            self.fetches.fetch_add(1, Ordering::Relaxed);
            return Ok(Fetched::Body {
                tmp,
                size,
                sha256: hex(&hasher.finalize()),
                validators,
            });
        }
        if missing && errors.is_empty() {
            return Ok(Fetched::Missing);
        }
        Err(MirrorError::Upstream(format!(
            "/apt/{}/{rel}: no upstream answered: {}",
            repo.prefix,
            errors.join("; ")
        )))
    }

    /// Renames a synced temporary file into the cache as `dest` and syncs its directory (on
    /// the blocking pool: an fsync must not stall the runtime's thread).
    async fn commit(&self, tmp: PathBuf, dest: &str) -> Result<(), MirrorError> {
        let path = self.cache.join(dest);
        let cache = self.cache.clone();
        tokio::task::spawn_blocking(move || {
            let io = |e: std::io::Error| MirrorError::Io(format!("{}: {e}", path.display()));
            let parent = path.parent().unwrap_or(&cache);
            std::fs::create_dir_all(parent).map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)?;
            std::fs::File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(io)
        })
        .await
        .unwrap_or_else(|e| Err(MirrorError::Io(format!("cache write: {e}"))))
    }

    fn validators_path(&self, dest: &str) -> PathBuf {
        self.cache.join(".meta").join(format!("{dest}.json"))
    }

    fn read_validators(&self, dest: &str) -> Option<Validators> {
        let text = std::fs::read(self.validators_path(dest)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    fn write_validators(&self, dest: &str, v: &Validators) -> Result<(), MirrorError> {
        let path = self.validators_path(dest);
        let tmp = self.tmp_path("meta");
        let io = |e: std::io::Error| MirrorError::Io(format!("{}: {e}", path.display()));
        let text = serde_json::to_vec(v).map_err(|e| MirrorError::Io(e.to_string()))?;
        std::fs::write(&tmp, text).map_err(io)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)
    }

    /// The cached InRelease (else Release) of `suite`.
    fn cached_release(&self, prefix: &str, suite: &str) -> Result<Option<String>, MirrorError> {
        for file in ["InRelease", "Release"] {
            let path = self.cache.join(prefix).join("dists").join(suite).join(file);
            if path.is_file() {
                return read_text(&path, MAX_RELEASE).map(Some);
            }
        }
        Ok(None)
    }

    /// Bytes in the cache.
    pub fn disk_usage(&self) -> u64 {
        images::disk_usage(&self.cache)
    }
}

/// Every file below `dir`: (modified, length, path).
fn walk_files(dir: &Path, out: &mut Vec<(std::time::SystemTime, u64, PathBuf)>) {
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

fn read_text(path: &Path, limit: u64) -> Result<String, MirrorError> {
    let io = |e: std::io::Error| MirrorError::Io(format!("{}: {e}", path.display()));
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > limit {
        return Err(MirrorError::Io(format!(
            "{}: {len} bytes is not a Release",
            path.display()
        )));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Every package the cached Packages indices of `prefix` name (one compression per
/// directory: the first cached of plain, .gz, .xz).
fn pool_index(cache: &Path, prefix: &str) -> HashMap<String, (u64, String)> {
    let mut packages = HashMap::new();
    let dists = cache.join(prefix).join("dists");
    let Ok(suites) = std::fs::read_dir(&dists) else {
        return packages;
    };
    for suite in suites.flatten() {
        let suite_name = suite.file_name().to_string_lossy().into_owned();
        let release = ["InRelease", "Release"]
            .iter()
            .map(|f| suite.path().join(f))
            .find(|p| p.is_file());
        let Some(text) = release.and_then(|p| read_text(&p, MAX_RELEASE).ok()) else {
            continue;
        };
        let mut entries: Vec<index::Entry> = index::sha256_entries(&index::release_text(&text))
            .into_iter()
            .filter(|e| index::is_packages(&e.name))
            .collect();
        // Plain before .gz before .xz: the cheapest to read first.
        entries.sort_by_key(|e| {
            (
                e.name.rsplit_once('/').map(|(d, _)| d.to_string()),
                e.name.len(),
            )
        });
        let mut done: Vec<String> = Vec::new();
        for entry in entries {
            let dir = entry
                .name
                .rsplit_once('/')
                .map_or("", |(d, _)| d)
                .to_string();
            if done.contains(&dir) {
                continue;
            }
            let file = cache.join(by_hash(prefix, &suite_name, &entry));
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            match index::decompress(&entry.name, &bytes) {
                Ok(text) => {
                    index::add_packages(&text, &mut packages);
                    done.push(dir);
                }
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "APT mirror: unreadable Packages index")
                }
            }
        }
    }
    packages
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
