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
//! What is fetched is kept in a [`Cache`]: verified, written whole or not at all, fetched once
//! however many clients ask, readable while it grows, pruned least recently used first.

mod index;
mod layout;

use layout::{Kind, by_hash, by_hash_sha256, classify, clean, suite_of};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use serde::{Deserialize, Serialize};

use crate::cache::{Cache, CacheError, Entry, Expect, Filler, Flights, Growing};
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

/// How long a revalidation waits for the upstream before serving the cached copy.
const REVALIDATE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long revalidations skip an upstream after it failed.
const DOWN_FOR: Duration = Duration::from_secs(60);
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

impl From<CacheError> for MirrorError {
    fn from(e: CacheError) -> Self {
        let text = e.to_string();
        match e {
            CacheError::Missing(_) => Self::NotFound(text),
            CacheError::Source(_) => Self::Upstream(text),
            CacheError::Mismatch { .. } => Self::Mismatch(format!("{text}: not served")),
            CacheError::Io { .. } => Self::Io(text),
        }
    }
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
    /// A file being downloaded: served as it grows.
    Growing(Growing),
}

/// What an upstream GET gave.
enum Fetched {
    /// 304: the cached copy is current.
    NotModified,
    /// 404 from every upstream.
    Missing,
    /// A body, in the filler it was given (not yet synced or verified; boxed: a hasher's state
    /// and a file).
    Body {
        filler: Box<Filler>,
        validators: Validators,
    },
}

/// What revalidates a cached mutable file (RFC 9110 13.1).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
}

/// Packages' sizes and hashes of one repository, for the Release files cached when it was
/// built.
struct PoolIndex {
    generation: u64,
    packages: HashMap<String, (u64, String)>,
}

/// The mirror: its repositories and its cache.
pub struct Mirror {
    repos: HashMap<String, MirrorRepo>,
    cache: Arc<Cache>,
    client: reqwest::Client,
    /// Revalidations and index fetches in progress (packages single-fly in the cache).
    flights: Flights<MirrorError>,
    /// Upstreams that failed, and when.
    down: Mutex<HashMap<String, Instant>>,
    pools: tokio::sync::Mutex<HashMap<String, Arc<PoolIndex>>>,
    /// Bumped whenever a Release is replaced: pool indices are rebuilt after.
    generation: AtomicU64,
    /// Upstream GETs that returned a body.
    fetches: AtomicU64,
}

impl Mirror {
    /// The mirror of `config` (its cache in `state_dir` unless configured): creates the cache
    /// directory and empties its temporary files (left by a crash: never served, never
    /// complete). Only packages (`<prefix>/pool/`) are evicted: indices and Releases are small
    /// and what verifies the rest.
    pub fn new(config: &MirrorConfig, state_dir: &Path) -> Result<Arc<Self>, MirrorError> {
        let evictable = config
            .repos
            .iter()
            .map(|r| PathBuf::from(&r.prefix).join("pool"))
            .collect();
        let cache = Cache::open(
            &config.cache_dir(state_dir),
            config.cache_bytes,
            evictable,
            "APT mirror",
        )?;
        let client = crate::cache::upstream_client("APT mirror")?;
        Ok(Arc::new(Self {
            repos: config
                .repos
                .iter()
                .map(|r| (r.prefix.clone(), r.clone()))
                .collect(),
            cache,
            client,
            flights: Flights::default(),
            down: Mutex::new(HashMap::new()),
            pools: tokio::sync::Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
        }))
    }

    /// The most the cache keeps.
    pub fn limit(&self) -> u64 {
        self.cache.limit()
    }

    /// Removes the least recently used packages until the cache is under 90 % of its limit;
    /// returns how many went. Blocking.
    pub fn prune(&self) -> usize {
        self.cache.prune()
    }

    /// The cache directory (served for [`Answer::Cached`]).
    pub fn cache_dir(&self) -> &Path {
        self.cache.dir()
    }

    /// Bytes in the cache.
    pub fn disk_usage(&self) -> u64 {
        self.cache.disk_usage()
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
        self.cache.used(dest);
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
        self.flights
            .once(format!("revalidate {dest}"), async move {
                this.refresh(&repo2, &rel2, &dest2, consistent.then_some(suite_of(&rel2)))
                    .await
            })
            .await?;
        let bytes = tokio::fs::read(self.cache.path(&dest))
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
        let cached = self.cache.path(dest);
        let have = cached.is_file();
        let validators = if have {
            self.cache.meta::<Validators>(dest)
        } else {
            None
        };
        let filler = self.cache.filler("release")?;
        let fetched = match self.fetch(repo, rel, validators.as_ref(), filler).await {
            Ok(fetched) => fetched,
            Err(e) if have => {
                tracing::warn!(path = dest, error = %e, "APT mirror: upstream unreachable, serving the cached copy");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        match fetched {
            Fetched::NotModified => Ok(()),
            Fetched::Missing => Err(MirrorError::NotFound(format!(
                "/apt/{dest}: not found upstream"
            ))),
            Fetched::Body {
                mut filler,
                validators,
            } => {
                if let Some(suite) = suite
                    && have
                {
                    filler.flush().await?;
                    let old = read_text(&cached, MAX_RELEASE)?;
                    let new = read_text(filler.path(), MAX_RELEASE)?;
                    if old != new
                        && let Err(e) = self.prefetch(repo, suite, &old, &new).await
                    {
                        // Keep serving the Release whose indices the cache holds (the new
                        // one's filler goes, and its file with it).
                        tracing::warn!(path = dest, error = %e, "APT mirror: a new Release's indices could not be fetched; the cached Release stays");
                        return Ok(());
                    }
                }
                filler.commit(dest, None).await?;
                self.cache.set_meta(dest, &validators)?;
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
            .filter(|e| self.cache.contains(&by_hash(&repo.prefix, suite, e)))
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
        if self.cache.contains(&dest) {
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
        self.flights
            .once(dest.clone(), async move {
                match this.download(&repo2, &by_name, &dest2, &expect).await {
                    Err(MirrorError::Mismatch(first)) => this
                        .download(&repo2, &by_hash_path, &dest2, &expect)
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
        if self.cache.contains(&dest) {
            self.cache.used(&dest);
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
        let (this, repo, path, expect2) = (
            Arc::clone(self),
            repo.clone(),
            path.to_string(),
            expect.clone(),
        );
        let entry = self
            .cache
            .fill(&dest, Some(expect), move |filler| async move {
                match this.fetch(&repo, &path, None, filler).await? {
                    Fetched::Body { filler, .. } => {
                        this.verify(&repo, &path, &filler, &expect2)?;
                        Ok(*filler)
                    }
                    Fetched::Missing => Err(CacheError::Missing(format!(
                        "/apt/{}/{path}: not found upstream",
                        repo.prefix
                    ))),
                    Fetched::NotModified => Err(CacheError::Source(format!(
                        "/apt/{}/{path}: the upstream said 304 to a request without validators",
                        repo.prefix
                    ))),
                }
            })?;
        Ok(match entry {
            Entry::Cached(dest) => Answer::Cached(dest),
            Entry::Growing(download) => Answer::Growing(download),
        })
    }

    /// Whether the upstream's `rel` is what the index says; logged when not.
    fn verify(
        &self,
        repo: &MirrorRepo,
        rel: &str,
        filler: &Filler,
        expect: &Expect,
    ) -> Result<(), CacheError> {
        let what = format!("/apt/{}/{rel} from the upstream", repo.prefix);
        filler.verify(&what, expect).inspect_err(|e| {
            tracing::warn!(error = %e, "APT mirror: upstream file does not match the index; refused");
        })
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
                let (cache, prefix2) = (self.cache.dir().to_path_buf(), prefix.to_string());
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

    /// Downloads `rel` into the cache as `dest`, refusing it when it is not `expect`.
    async fn download(
        self: &Arc<Self>,
        repo: &MirrorRepo,
        rel: &str,
        dest: &str,
        expect: &Expect,
    ) -> Result<(), MirrorError> {
        let filler = self.cache.filler("index")?;
        match self.fetch(repo, rel, None, filler).await? {
            Fetched::Body { filler, .. } => {
                self.verify(repo, rel, &filler, expect)?;
                Ok(filler.commit(dest, None).await?)
            }
            Fetched::Missing => Err(MirrorError::NotFound(format!(
                "/apt/{}/{rel}: not found upstream",
                repo.prefix
            ))),
            Fetched::NotModified => Ok(()),
        }
    }

    /// GETs `rel` from the repository's upstreams in order (the next on a connection error or
    /// a 5xx, as long as nothing was written) into `filler`, whose readers (a growing fetch)
    /// see each chunk as it arrives.
    async fn fetch(
        &self,
        repo: &MirrorRepo,
        rel: &str,
        validators: Option<&Validators>,
        mut filler: Filler,
    ) -> Result<Fetched, CacheError> {
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
            let response = match request.send().await {
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
            if let Err(e) = filler.take_body(response, &url).await {
                if matches!(e, CacheError::Source(_)) {
                    self.mark_down(base);
                }
                return Err(e);
            }
            self.fetches.fetch_add(1, Ordering::Relaxed);
            return Ok(Fetched::Body {
                filler: Box::new(filler),
                validators,
            });
        }
        if missing && errors.is_empty() {
            return Ok(Fetched::Missing);
        }
        Err(CacheError::Source(format!(
            "/apt/{}/{rel}: no upstream answered: {}",
            repo.prefix,
            errors.join("; ")
        )))
    }

    /// The cached InRelease (else Release) of `suite`.
    fn cached_release(&self, prefix: &str, suite: &str) -> Result<Option<String>, MirrorError> {
        for file in ["InRelease", "Release"] {
            let path = self.cache.path(&format!("{prefix}/dists/{suite}/{file}"));
            if path.is_file() {
                return read_text(&path, MAX_RELEASE).map(Some);
            }
        }
        Ok(None)
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
