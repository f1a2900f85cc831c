//! The pull-through cache: a repository whose name starts with an upstream's prefix
//! (`quay.io/osism/osism-ansible` under `prefix: quay.io`) is fetched from that upstream
//! (`osism/osism-ansible` at `https://quay.io`) into the same store imports fill, so a site
//! that had the internet once keeps pulling while it has none. distribution's own proxy mirrors
//! one upstream at a domain's root; several are told apart here by prefix.
//!
//! - A tag is asked of its upstream when the copy in the store is older than
//!   `registry.tag_max_age` (the tag file's mtime is when it was last confirmed); when the
//!   upstream cannot be reached, the stored tag is served as it is.
//! - A manifest is stored only when its bytes hash to its digest (the one asked for, and the
//!   one the upstream's `Docker-Content-Digest` names). It links what it names into the
//!   repository, so the blobs a verified manifest names, and only those, may be fetched.
//! - A blob is fetched once however many clients ask (the [`Cache`](crate::cache::Cache)'s
//!   single flight), streamed to them while it arrives, verified against its digest before it
//!   is stored; a corrupt one is never stored and the clients' transfers fail.
//! - Upstream authentication: the Docker/OCI bearer challenge (RFC 6750: a 401 with
//!   `WWW-Authenticate: Bearer realm=…,service=…,scope=…`, a token from the realm — anonymous,
//!   or for the upstream's `username`/`password` sent to the realm as HTTP Basic — and the
//!   request again with it), tokens kept until they expire; a `Basic` challenge is answered
//!   with the account itself. A password is read from its file or variable when it is needed,
//!   never logged, and never sent to a plain-HTTP realm of an https upstream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};

use super::reference::{Digest, Name, Reference};
use super::{MAX_MANIFEST, Registry, RegistryError, media_type_of};
use crate::cache::{CacheError, Entry, Expect, Flights};
use crate::config::{Registry as RegistryConfig, RegistryUpstream, Secret};
use crate::metrics::ProxyCounts;

/// The manifest types asked for (every one seed serves).
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";
/// How long a token is kept when the token server does not say (Docker's default is 60 s).
const TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// The largest token answer read (Docker Hub's are about 4 KiB).
const MAX_TOKEN_ANSWER: usize = 64 << 10;

/// How long an upstream that could not be reached (no connection, a timeout, a 5xx) is left
/// alone: requests are answered at once from the store (a stored tag, stale) or refused,
/// instead of each waiting out the connect and read timeouts again. The APT mirror's period.
const DOWN_FOR: Duration = Duration::from_secs(60);

/// The pull-through side of the registry.
pub struct Proxy {
    registry: Arc<Registry>,
    upstreams: Vec<RegistryUpstream>,
    tag_max_age: Duration,
    client: reqwest::Client,
    /// What answered each upstream's challenge, by prefix and scope.
    tokens: Mutex<HashMap<String, Auth>>,
    /// Manifest fetches in progress (blobs single-fly in the cache).
    flights: Flights<RegistryError>,
    /// Upstream GETs that returned a body (manifests and blobs).
    fetches: AtomicU64,
    /// How requests for upstreams' repositories were answered.
    counts: Counts,
    /// Upstreams (by prefix) that could not be reached, and since when ([`DOWN_FOR`]).
    down: Mutex<HashMap<String, Instant>>,
}

/// Hits, misses and stale answers ([`ProxyCounts`]).
#[derive(Default)]
struct Counts {
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
}

impl Counts {
    fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }
    fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }
}

impl Proxy {
    /// The proxy of `config`'s upstreams over `registry`'s store.
    pub fn new(registry: Arc<Registry>, config: &RegistryConfig) -> Result<Self, RegistryError> {
        let client = crate::cache::upstream_client("registry")?;
        Ok(Self {
            registry,
            upstreams: config.upstreams.clone(),
            tag_max_age: config.tag_max_age,
            client,
            tokens: Mutex::default(),
            flights: Flights::default(),
            fetches: AtomicU64::new(0),
            counts: Counts::default(),
            down: Mutex::default(),
        })
    }

    /// Each upstream's prefix and whether it is taken as reachable, for `/metrics`.
    pub fn upstreams_up(&self) -> Vec<(String, bool)> {
        self.upstreams
            .iter()
            .map(|u| (u.prefix.clone(), !self.is_down(&u.prefix)))
            .collect()
    }

    /// Whether the upstream of `prefix` failed less than [`DOWN_FOR`] ago.
    fn is_down(&self, prefix: &str) -> bool {
        self.down
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(prefix)
            .is_some_and(|at| at.elapsed() < DOWN_FOR)
    }

    fn mark_down(&self, upstream: &RegistryUpstream) {
        let mut down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = down
            .get(&upstream.prefix)
            .is_none_or(|at| at.elapsed() >= DOWN_FOR);
        down.insert(upstream.prefix.clone(), Instant::now());
        if fresh {
            tracing::warn!(
                upstream = %upstream.url,
                "registry: upstream unreachable; for {} s stored tags are served without asking it and what is not stored is refused at once",
                DOWN_FOR.as_secs()
            );
        }
    }

    fn mark_up(&self, upstream: &RegistryUpstream) {
        let was = self
            .down
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&upstream.prefix);
        if was.is_some() {
            tracing::info!(upstream = %upstream.url, "registry: upstream answers again");
        }
    }

    /// The error for a request that would have to wait for an upstream known to be down.
    fn down_error(upstream: &RegistryUpstream) -> RegistryError {
        RegistryError::Upstream(format!(
            "{} did not answer within the last {} s; not asked again yet",
            upstream.url,
            DOWN_FOR.as_secs()
        ))
    }

    /// What the pull-through did so far, for `/metrics`.
    pub fn counts(&self) -> ProxyCounts {
        ProxyCounts {
            upstream_fetches: self.fetches.load(Ordering::Relaxed),
            hits: self.counts.hits.load(Ordering::Relaxed),
            misses: self.counts.misses.load(Ordering::Relaxed),
            stale: self.counts.stale.load(Ordering::Relaxed),
        }
    }

    /// The store answered a request for blob of `name`: a hit when `name` is an upstream's.
    pub fn served_from_store(&self, name: &Name) {
        if self.upstream_of(name).is_some() {
            self.counts.hit();
        }
    }

    /// The upstream `name` belongs to, and its name there.
    fn upstream_of(&self, name: &Name) -> Option<(RegistryUpstream, String)> {
        self.upstreams.iter().find_map(|u| {
            let rest = name.as_str().strip_prefix(&u.prefix)?.strip_prefix('/')?;
            Some((u.clone(), rest.to_string()))
        })
    }

    /// Makes manifest `reference` of `name` current in the store when `name` is an upstream's
    /// (else does nothing: the store answers). Errors only when there is nothing to serve.
    pub async fn manifest(
        self: &Arc<Self>,
        name: &Name,
        reference: &Reference,
    ) -> Result<(), RegistryError> {
        let Some((upstream, remote)) = self.upstream_of(name) else {
            return Ok(());
        };
        let (key, have) = match reference {
            Reference::Digest(digest) => {
                if self.registry.manifest(name, reference).is_ok() {
                    self.counts.hit();
                    return Ok(());
                }
                (format!("{name}@{digest}"), false)
            }
            Reference::Tag(tag) => {
                // Stored: tagged, and its manifest not evicted from the pulled-through cache.
                let age = self
                    .registry
                    .tag_age(name, tag)
                    .filter(|_| self.registry.manifest(name, reference).is_ok());
                if age.is_some_and(|a| a < self.tag_max_age) {
                    self.counts.hit();
                    return Ok(());
                }
                (format!("{name}:{tag}"), age.is_some())
            }
        };
        if self.is_down(&upstream.prefix) {
            if have {
                self.counts.stale.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            self.counts.miss();
            return Err(Self::down_error(&upstream));
        }
        let (this, name2, reference2) = (Arc::clone(self), name.clone(), reference.clone());
        let fetched = self
            .flights
            .once(key, async move {
                this.fetch_manifest(&upstream, &remote, &name2, &reference2)
                    .await
            })
            .await;
        match fetched {
            Err(RegistryError::Upstream(e)) if have => {
                self.counts.stale.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(repository = %name, error = %e, "registry: upstream unreachable, serving the stored tag");
                Ok(())
            }
            other => {
                self.counts.miss();
                other
            }
        }
    }

    async fn fetch_manifest(
        &self,
        upstream: &RegistryUpstream,
        remote: &str,
        name: &Name,
        reference: &Reference,
    ) -> Result<(), RegistryError> {
        let (text, expect) = match reference {
            Reference::Tag(tag) => (tag.clone(), None),
            Reference::Digest(digest) => (digest.to_string(), Some(digest.clone())),
        };
        let path = format!("/v2/{remote}/manifests/{text}");
        let mut response = self
            .get(upstream, remote, &path, Some(MANIFEST_TYPES))
            .await?;
        match response.status() {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND => {
                return Err(RegistryError::ManifestUnknown {
                    name: name.to_string(),
                    reference: text,
                });
            }
            s => {
                return Err(RegistryError::Upstream(format!(
                    "{}{path}: {s}",
                    upstream.url
                )));
            }
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let announced = header("docker-content-digest");
        let content_type = header(CONTENT_TYPE.as_str())
            .map(|t| t.split(';').next().unwrap_or("").trim().to_string());
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| RegistryError::Upstream(format!("{}{path}: {e}", upstream.url)))?
        {
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > MAX_MANIFEST {
                return Err(RegistryError::Upstream(format!(
                    "{}{path}: a manifest larger than {MAX_MANIFEST} bytes",
                    upstream.url
                )));
            }
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let digest = Digest::of(&bytes);
        for (what, want) in [
            ("the digest asked for", expect.clone()),
            (
                "the upstream's Docker-Content-Digest",
                announced.as_deref().and_then(Digest::parse),
            ),
        ] {
            if let Some(want) = want
                && want != digest
            {
                return Err(RegistryError::Corrupt {
                    digest: want.to_string(),
                    detail: format!(
                        "{}{path} sent a manifest whose SHA-256 is {digest}, not {what}",
                        upstream.url
                    ),
                });
            }
        }
        let manifest: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            RegistryError::Upstream(format!("{}{path}: not JSON: {e}", upstream.url))
        })?;
        let media_type = content_type
            .filter(|t| t.starts_with("application/vnd."))
            .or_else(|| media_type_of(&manifest).map(str::to_string))
            .ok_or_else(|| {
                RegistryError::Upstream(format!(
                    "{}{path}: a manifest of no media type",
                    upstream.url
                ))
            })?;
        let registry = Arc::clone(&self.registry);
        let name = name.clone();
        let tag = match reference {
            Reference::Tag(tag) => Some(tag.clone()),
            Reference::Digest(_) => None,
        };
        tokio::task::spawn_blocking(move || {
            registry.add_manifest_bytes(&name, &digest, &media_type, &bytes, &manifest)?;
            if let Some(tag) = tag {
                registry.tag(&name, &tag, &digest)?;
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|e| Err(RegistryError::Io(format!("registry task: {e}"))))
    }

    /// Blob `digest` of `name` when it must come from an upstream: `Ok(None)` when the store
    /// has it or `name` is no upstream's (the store answers), else the fetch to stream. Only a
    /// blob a verified manifest of the repository names is fetched.
    pub fn blob(
        self: &Arc<Self>,
        name: &Name,
        digest: &Digest,
    ) -> Result<Option<Entry>, RegistryError> {
        if self.registry.blob(name, digest).is_ok() {
            return Ok(None);
        }
        let Some((upstream, remote)) = self.upstream_of(name) else {
            return Ok(None);
        };
        if !self.registry.links(name, digest) {
            return Err(RegistryError::BlobUnknown {
                name: name.to_string(),
                digest: digest.to_string(),
            });
        }
        if self.is_down(&upstream.prefix) {
            return Err(Self::down_error(&upstream));
        }
        let expect = Expect {
            size: None,
            sha256: digest.hex().to_string(),
        };
        let (this, digest2) = (Arc::clone(self), digest.clone());
        let entry = self.registry.pulled.fill(
            &Registry::pulled_key(digest),
            Some(expect),
            move |mut filler| async move {
                let path = format!("/v2/{remote}/blobs/{digest2}");
                let response = this
                    .get(&upstream, &remote, &path, None)
                    .await
                    .map_err(|e| CacheError::Source(e.to_string()))?;
                match response.status() {
                    s if s.is_success() => {}
                    StatusCode::NOT_FOUND => {
                        return Err(CacheError::Missing(format!("{}{path}: not found", upstream.url)));
                    }
                    s => return Err(CacheError::Source(format!("{}{path}: {s}", upstream.url))),
                }
                filler
                    .take_body(response, &format!("{}{path}", upstream.url))
                    .await?;
                this.fetches.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = filler.verify(&digest2.to_string(), &Expect {
                    size: None,
                    sha256: digest2.hex().to_string(),
                }) {
                    tracing::warn!(upstream = %upstream.url, error = %e, "registry: upstream blob does not match its digest; refused");
                    return Err(e);
                }
                Ok(filler)
            },
        )?;
        if matches!(entry, Entry::Growing(_)) {
            self.counts.miss();
        }
        Ok(Some(entry))
    }

    /// GETs `path` of `upstream`, answering its challenge once when it makes one: a bearer
    /// token from the realm (with the upstream's account, when it has one), or Basic.
    async fn get(
        &self,
        upstream: &RegistryUpstream,
        remote: &str,
        path: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, RegistryError> {
        let url = format!("{}{path}", upstream.url);
        // By prefix, not URL: two prefixes may reach one registry as two accounts.
        let scope_key = format!("{} repository:{remote}:pull", upstream.prefix);
        let send = |auth: Option<Auth>| {
            let mut request = self.client.get(&url);
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            match auth {
                Some(Auth::Bearer(token, _)) => {
                    request = request.header(AUTHORIZATION, format!("Bearer {token}"));
                }
                Some(Auth::Basic(user, password)) => {
                    request = request.basic_auth(user, Some(password.expose()));
                }
                None => {}
            }
            request.send()
        };
        let unreachable = |e: reqwest::Error| {
            self.mark_down(upstream);
            RegistryError::Upstream(format!("{url}: {}", crate::error_chain(&e)))
        };
        let response = send(self.auth(&scope_key)).await.map_err(unreachable)?;
        // A server error is the upstream's trouble, not the request's: as unreachable.
        if response.status().is_server_error() {
            self.mark_down(upstream);
        } else {
            self.mark_up(upstream);
        }
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let Some(header) = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(response);
        };
        let auth = if let Some(challenge) = bearer_challenge(header) {
            let (token, until) = self.fetch_token(upstream, &challenge, remote).await?;
            Auth::Bearer(token, until)
        } else if header
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("basic")
        {
            match account(upstream)? {
                Some((user, password)) => Auth::Basic(user, password),
                // Nothing to answer Basic with: the 401 is the answer.
                None => return Ok(response),
            }
        } else {
            return Ok(response);
        };
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(scope_key, auth.clone());
        send(Some(auth)).await.map_err(unreachable)
    }

    /// What answered `key`'s challenge last, unless it has expired.
    fn auth(&self, key: &str) -> Option<Auth> {
        let tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        tokens
            .get(key)
            .filter(|auth| match auth {
                Auth::Bearer(_, until) => Instant::now() < *until,
                Auth::Basic(..) => true,
            })
            .cloned()
    }

    /// A token from the challenge's realm: with the upstream's account when it has one (HTTP
    /// Basic to the realm, as the Docker token protocol has it), else anonymous.
    async fn fetch_token(
        &self,
        upstream: &RegistryUpstream,
        challenge: &HashMap<String, String>,
        remote: &str,
    ) -> Result<(String, Instant), RegistryError> {
        let realm = challenge
            .get("realm")
            .ok_or_else(|| RegistryError::Upstream("a bearer challenge without a realm".into()))?;
        let scope = challenge
            .get("scope")
            .cloned()
            .unwrap_or_else(|| format!("repository:{remote}:pull"));
        let mut query = vec![("scope", scope)];
        if let Some(service) = challenge.get("service") {
            query.push(("service", service.clone()));
        }
        let account = account(upstream)?;
        // The realm is the upstream's word: an https upstream that names a plain-HTTP realm
        // does not get the password sent readable.
        if account.is_some()
            && upstream.url.starts_with("https://")
            && !realm.starts_with("https://")
        {
            return Err(RegistryError::Upstream(format!(
                "{}: its token realm {realm} is not https; the account's password is not sent there",
                upstream.url
            )));
        }
        if let Some((user, _)) = &account {
            query.push(("account", user.clone()));
        }
        let mut request = self.client.get(realm).query(&query);
        if let Some((user, password)) = account {
            request = request.basic_auth(user, Some(password.expose()));
        }
        let response = request
            .send()
            .await
            .map_err(|e| RegistryError::Upstream(format!("{realm}: {}", crate::error_chain(&e))))?;
        if !response.status().is_success() {
            return Err(RegistryError::Upstream(format!(
                "{realm}: {} for a token",
                response.status()
            )));
        }
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let mut body = Vec::new();
        let mut response = response;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| RegistryError::Upstream(format!("{realm}: {e}")))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_TOKEN_ANSWER {
                return Err(RegistryError::Upstream(format!(
                    "{realm}: a token answer larger than {MAX_TOKEN_ANSWER} bytes"
                )));
            }
        }
        let token: Token = serde_json::from_slice(&body)
            .map_err(|e| RegistryError::Upstream(format!("{realm}: not a token: {e}")))?;
        let value = token
            .token
            .or(token.access_token)
            .ok_or_else(|| RegistryError::Upstream(format!("{realm}: no token in the answer")))?;
        let lifetime = token
            .expires_in
            .map_or(TOKEN_LIFETIME, Duration::from_secs)
            .saturating_sub(Duration::from_secs(5));
        Ok((value, Instant::now() + lifetime))
    }
}

/// What answers an upstream's challenge.
#[derive(Clone)]
enum Auth {
    /// A token from the realm, until it expires.
    Bearer(String, Instant),
    /// The account itself, on every request (a registry that challenges with Basic).
    Basic(String, Secret),
}

/// The upstream's account, its password read now (a rotated secret file is picked up).
fn account(upstream: &RegistryUpstream) -> Result<Option<(String, Secret)>, RegistryError> {
    match (&upstream.username, &upstream.password) {
        (Some(user), Some(password)) => {
            let secret = password.resolve().map_err(|e| {
                RegistryError::Upstream(format!(
                    "registry.upstreams[{}].password: {e}",
                    upstream.prefix
                ))
            })?;
            Ok(Some((user.clone(), secret)))
        }
        _ => Ok(None),
    }
}

/// The parameters of a `Bearer` challenge (`Bearer realm="…",service="…",scope="…"`).
fn bearer_challenge(header: &str) -> Option<HashMap<String, String>> {
    let rest = header
        .trim()
        .strip_prefix("Bearer ")
        .or_else(|| header.trim().strip_prefix("bearer "))?;
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        params.insert(key.trim().to_ascii_lowercase(), value.to_string());
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(params)
}

/// How long ago `path` was last written.
pub(super) fn age(path: &std::path::Path) -> Option<Duration> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(
        SystemTime::now()
            .duration_since(modified)
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_are_read_as_registries_send_them() {
        // Docker Hub's, verbatim in shape.
        let hub = bearer_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        )
        .unwrap();
        assert_eq!(hub["realm"], "https://auth.docker.io/token");
        assert_eq!(hub["service"], "registry.docker.io");
        assert_eq!(hub["scope"], "repository:library/alpine:pull");
        // Spaces after commas, an unquoted value (quay.io sends quoted ones; others do not).
        let other = bearer_challenge(r#"Bearer realm="https://q/v2/auth", service=q"#).unwrap();
        assert_eq!(other["service"], "q");
        assert!(bearer_challenge("Basic realm=\"x\"").is_none());
    }
}
