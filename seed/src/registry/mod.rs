//! The seed node's container registry: the pull side of the OCI Distribution Specification over
//! a store of its own, filled offline by `seed registry import` (an OSISM bundle: the storage
//! directory of the CNCF distribution registry, as a directory or a tarball; or an OCI image
//! layout as `skopeo copy … oci:DIR:TAG` writes it). The manager's `osism apply` pulls every
//! container from here while the site has no internet.
//!
//! The store, below `<state>/registry/`:
//! - `blobs/sha256/<hex>`: every blob and manifest once, whatever repositories hold it, written
//!   through a [`Cache`] (verified against its digest when it enters, never after; committed
//!   whole or not at all);
//! - `repositories/<name>/_manifests/<hex>` (the manifest's media type), `_layers/<hex>`
//!   (empty) and `_tags/<tag>` (the digest): what a repository holds. As in distribution, a
//!   blob is served under a repository only when the repository links it. Name components never
//!   start with `_`, so these directories are never a nested repository's name.
//!
//! - `pulled/sha256/<hex>`: what the pull-through cache fetched (manifests and blobs), in a
//!   [`Cache`] of its own bounded by `registry.cache_size`: the least recently used go first,
//!   and come again from their upstream when next asked. Imports are never evicted: what is
//!   in `blobs/` is served first, and an import takes a pulled blob over into `blobs/`.
//!   Anyone on the provisioning network may name any image under a configured prefix; this
//!   bound is what keeps that from filling the disk.
//!
//! An import writes blobs first, then a repository's links, then its tags, each file renamed
//! into place: an import that dies leaves blobs nobody names and nothing half-visible.

mod import;
pub mod proxy;
pub mod reference;

pub use import::{Imported, import};
pub use proxy::Proxy;
use reference::{Digest, Name, Reference};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cache::{Cache, CacheError};

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The largest manifest read (distribution's limit too).
pub const MAX_MANIFEST: u64 = 4 << 20;

/// Why a registry request or an import failed. Clone: every waiter of a shared fetch gets it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// Not a repository name (the spec's grammar).
    #[error("`{0}` is not a repository name")]
    NameInvalid(String),
    /// No such repository.
    #[error("repository {0} is not known")]
    NameUnknown(String),
    /// No such tag or manifest in the repository.
    #[error("{name}: manifest {reference} is not known")]
    ManifestUnknown {
        /// The repository.
        name: String,
        /// The tag or digest asked for.
        reference: String,
    },
    /// No such blob in the repository.
    #[error("{name}: blob {digest} is not known")]
    BlobUnknown {
        /// The repository.
        name: String,
        /// The digest asked for.
        digest: String,
    },
    /// Not a sha256 digest.
    #[error("`{0}` is not a sha256 digest")]
    DigestInvalid(String),
    /// Not a tag.
    #[error("`{0}` is not a tag")]
    TagInvalid(String),
    /// A blob whose bytes are not its digest: refused.
    #[error("blob {digest} is corrupt: {detail}")]
    Corrupt {
        /// The digest it was named by.
        digest: String,
        /// What arrived instead.
        detail: String,
    },
    /// An import's source is not what it should be (a missing blob, a manifest that does not
    /// parse, a layout that is not one).
    #[error("{0}")]
    Source(String),
    /// A pull-through upstream failed (unreachable, an error status, an answer that is not a
    /// manifest).
    #[error("{0}")]
    Upstream(String),
    /// The store's disk failed.
    #[error("{0}")]
    Io(String),
}

impl RegistryError {
    fn io(what: &Path) -> impl Fn(std::io::Error) -> RegistryError + '_ {
        move |e| RegistryError::Io(format!("{}: {e}", what.display()))
    }
}

impl From<CacheError> for RegistryError {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::Mismatch {
                what, size, sha256, ..
            } => Self::Corrupt {
                digest: what,
                detail: format!("{size} bytes with SHA-256 {sha256}"),
            },
            CacheError::Missing(why) | CacheError::Source(why) => Self::Upstream(why),
            other => Self::Io(other.to_string()),
        }
    }
}

/// A manifest a repository holds.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Its digest.
    pub digest: Digest,
    /// Its media type (what `Content-Type` says).
    pub media_type: String,
    /// The blob that holds it.
    pub path: PathBuf,
}

/// The registry's store.
pub struct Registry {
    root: PathBuf,
    /// Imported blobs (`blobs/`): never evicted, no limit.
    cache: Arc<Cache>,
    /// Pulled-through manifests and blobs (`pulled/`): bounded, least recently used go first.
    pulled: Arc<Cache>,
}

/// The pulled-through cache's directory below the store's.
const PULLED: &str = "pulled";

impl Registry {
    /// The store in `<state_dir>/registry` (created; temporaries a crash left removed), its
    /// pulled-through cache bounded by [`DEFAULT_REGISTRY_CACHE`].
    pub fn open(state_dir: &Path) -> Result<Self, RegistryError> {
        Self::open_bounded(state_dir, crate::config::model::DEFAULT_REGISTRY_CACHE)
    }

    /// The store in `<state_dir>/registry`, its pulled-through cache kept under
    /// `pulled_limit` bytes.
    pub fn open_bounded(state_dir: &Path, pulled_limit: u64) -> Result<Self, RegistryError> {
        let root = state_dir.join("registry");
        let cache = Cache::open(&root, u64::MAX, Vec::new(), "registry")?;
        let pulled = Cache::open(
            &root.join(PULLED),
            pulled_limit,
            vec![PathBuf::from("sha256")],
            "registry pull-through",
        )?;
        Ok(Self {
            root,
            cache,
            pulled,
        })
    }

    /// Where `digest` is stored, relative to [`Self::root`]: imported first, then pulled
    /// through (that one marked used: its mtime is the eviction's clock).
    pub fn stored(&self, digest: &Digest) -> Option<String> {
        let imported = Self::blob_key(digest);
        if self.cache.contains(&imported) {
            return Some(imported);
        }
        let pulled = Self::pulled_key(digest);
        if self.pulled.contains(&pulled) {
            self.pulled.used(&pulled);
            return Some(format!("{PULLED}/{pulled}"));
        }
        None
    }

    /// The pulled-through cache's key for `digest`.
    fn pulled_key(digest: &Digest) -> String {
        format!("sha256/{}", digest.hex())
    }

    /// Removes the pulled-through copy of `digest` (an import holds it now).
    fn forget_pulled(&self, digest: &Digest) {
        let _ = std::fs::remove_file(self.pulled.path(&Self::pulled_key(digest)));
    }

    /// Bytes the pulled-through cache holds, and the most it keeps.
    pub fn pulled_usage(&self) -> (u64, u64) {
        (self.pulled.disk_usage(), self.pulled.limit())
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `digest` is kept, relative to [`Self::root`].
    pub fn blob_key(digest: &Digest) -> String {
        format!("blobs/sha256/{}", digest.hex())
    }

    fn repository(&self, name: &Name) -> PathBuf {
        self.root.join("repositories").join(name.as_str())
    }

    /// Whether the repository holds anything.
    pub fn has_repository(&self, name: &Name) -> bool {
        self.repository(name).join("_manifests").is_dir()
    }

    /// The manifest `reference` of repository `name`.
    pub fn manifest(&self, name: &Name, reference: &Reference) -> Result<Manifest, RegistryError> {
        let unknown = || RegistryError::ManifestUnknown {
            name: name.to_string(),
            reference: match reference {
                Reference::Tag(tag) => tag.clone(),
                Reference::Digest(d) => d.to_string(),
            },
        };
        let repository = self.repository(name);
        let digest = match reference {
            Reference::Digest(digest) => digest.clone(),
            Reference::Tag(tag) => {
                let text = read_small(&repository.join("_tags").join(tag)).ok_or_else(unknown)?;
                Digest::parse(text.trim()).ok_or_else(unknown)?
            }
        };
        let media_type = read_small(&repository.join("_manifests").join(digest.hex()))
            .ok_or_else(unknown)?
            .trim()
            .to_string();
        let path = self.root.join(self.stored(&digest).ok_or_else(unknown)?);
        Ok(Manifest {
            digest,
            media_type,
            path,
        })
    }

    /// The blob `digest` of repository `name` (a layer, a config or a manifest it links):
    /// where it is, relative to [`Self::root`].
    pub fn blob(&self, name: &Name, digest: &Digest) -> Result<String, RegistryError> {
        let unknown = || RegistryError::BlobUnknown {
            name: name.to_string(),
            digest: digest.to_string(),
        };
        if !self.links(name, digest) {
            return Err(unknown());
        }
        self.stored(digest).ok_or_else(unknown)
    }

    /// The tags of repository `name`, sorted (as distribution lists them).
    pub fn tags(&self, name: &Name) -> Result<Vec<String>, RegistryError> {
        if !self.has_repository(name) {
            return Err(RegistryError::NameUnknown(name.to_string()));
        }
        let mut tags: Vec<String> = std::fs::read_dir(self.repository(name).join("_tags"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|t| reference::is_tag(t))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        Ok(tags)
    }

    /// Every repository, sorted.
    pub fn repositories(&self) -> Vec<Name> {
        let mut out = Vec::new();
        let base = self.root.join("repositories");
        walk_repositories(&base, &base, &mut out);
        out.sort();
        out
    }

    /// Removes tag `tag` of repository `name`, or the whole repository, then every blob no
    /// repository links any more. Returns how many blobs went.
    pub fn remove(&self, name: &Name, tag: Option<&str>) -> Result<usize, RegistryError> {
        let repository = self.repository(name);
        if !self.has_repository(name) {
            return Err(RegistryError::NameUnknown(name.to_string()));
        }
        match tag {
            Some(tag) => {
                let path = repository.join("_tags").join(tag);
                if !reference::is_tag(tag) || !path.is_file() {
                    return Err(RegistryError::ManifestUnknown {
                        name: name.to_string(),
                        reference: tag.to_string(),
                    });
                }
                std::fs::remove_file(&path).map_err(RegistryError::io(&path))?;
            }
            None => {
                for part in ["_tags", "_manifests", "_layers"] {
                    let dir = repository.join(part);
                    if dir.exists() {
                        std::fs::remove_dir_all(&dir).map_err(RegistryError::io(&dir))?;
                    }
                }
                // The repository's own directory, and parents left empty (not a nested
                // repository's).
                let base = self.root.join("repositories");
                let mut dir = repository.as_path();
                while dir != base && std::fs::remove_dir(dir).is_ok() {
                    dir = match dir.parent() {
                        Some(parent) => parent,
                        None => break,
                    };
                }
            }
        }
        Ok(self.collect_garbage())
    }

    /// Removes blobs no repository links (what a removal or an interrupted import left).
    /// A tag removed leaves its manifest's links: they go with the repository, as in
    /// distribution, where only a garbage collection run frees the space.
    fn collect_garbage(&self) -> usize {
        let mut linked = std::collections::HashSet::new();
        for name in self.repositories() {
            let repository = self.repository(&name);
            for part in ["_manifests", "_layers"] {
                if let Ok(entries) = std::fs::read_dir(repository.join(part)) {
                    linked.extend(entries.flatten().map(|e| e.file_name()));
                }
            }
        }
        let mut removed = 0;
        for dir in [self.root.join("blobs/sha256"), self.pulled.path("sha256")] {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if !linked.contains(&entry.file_name())
                    && std::fs::remove_file(entry.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// How long ago tag `tag` of `name` was written or last confirmed by its upstream.
    pub fn tag_age(&self, name: &Name, tag: &str) -> Option<std::time::Duration> {
        proxy::age(&self.repository(name).join("_tags").join(tag))
    }

    /// Whether repository `name` links blob `digest` (a manifest it holds names it), whether
    /// or not the blob is stored yet.
    pub fn links(&self, name: &Name, digest: &Digest) -> bool {
        let repository = self.repository(name);
        repository.join("_layers").join(digest.hex()).is_file()
            || repository.join("_manifests").join(digest.hex()).is_file()
    }

    /// Stores pulled-through manifest `bytes` (verified against `digest`) in repository `name`
    /// and links what it names (an image's config and layers; an index's manifests come by
    /// digest when asked).
    fn add_manifest_bytes(
        &self,
        name: &Name,
        digest: &Digest,
        media_type: &str,
        bytes: &[u8],
        manifest: &serde_json::Value,
    ) -> Result<(), RegistryError> {
        let expect = crate::cache::Expect {
            size: Some(bytes.len() as u64),
            sha256: digest.hex().to_string(),
        };
        if self.stored(digest).is_none() {
            self.pulled
                .store(&Self::pulled_key(digest), &mut &bytes[..], &expect)?;
        }
        let repository = self.repository(name);
        if media_type != OCI_INDEX && media_type != DOCKER_LIST {
            let config = manifest.get("config").into_iter();
            let layers = manifest
                .get("layers")
                .and_then(|l| l.as_array())
                .into_iter()
                .flatten();
            for named in config.chain(layers) {
                if let Some(child) = named
                    .get("digest")
                    .and_then(|d| d.as_str())
                    .and_then(Digest::parse)
                {
                    self.write_link(&repository.join("_layers").join(child.hex()), "")?;
                }
            }
        }
        self.write_link(
            &repository.join("_manifests").join(digest.hex()),
            media_type,
        )
    }

    /// Points tag `tag` of `name` at `digest` (also when it already does: its mtime says when
    /// it was last confirmed).
    fn tag(&self, name: &Name, tag: &str, digest: &Digest) -> Result<(), RegistryError> {
        self.write_link(
            &self.repository(name).join("_tags").join(tag),
            &digest.to_string(),
        )
    }

    /// Bytes in the store.
    pub fn disk_usage(&self) -> u64 {
        self.cache.disk_usage()
    }

    /// Writes `text` to `path` atomically (a temporary file renamed over it).
    fn write_link(&self, path: &Path, text: &str) -> Result<(), RegistryError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(RegistryError::io(parent))?;
        }
        let tmp = self.root.join(".tmp").join(format!(
            "link-{}-{}",
            std::process::id(),
            crate::cache::hex(&rand_bytes())
        ));
        std::fs::write(&tmp, text).map_err(RegistryError::io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(RegistryError::io(path))
    }
}

fn rand_bytes() -> [u8; 8] {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    bytes
}

/// A small file's text (a link, a tag); `None` when it is missing or too large to be one.
fn read_small(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > 4096 {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// Directories below `base` that hold `_manifests`: repositories, named by their path.
fn walk_repositories(base: &Path, dir: &Path, out: &mut Vec<Name>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if file_name.starts_with('_') || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        if path.join("_manifests").is_dir()
            && let Some(name) = path
                .strip_prefix(base)
                .ok()
                .and_then(|p| p.to_str())
                .and_then(Name::parse)
        {
            out.push(name);
        }
        walk_repositories(base, &path, out);
    }
}

/// The media type of a manifest: its `mediaType`, else what its fields say (OCI allows the
/// field to be absent).
pub fn media_type_of(manifest: &serde_json::Value) -> Option<&str> {
    if let Some(media_type) = manifest.get("mediaType").and_then(|m| m.as_str()) {
        return Some(media_type);
    }
    if manifest.get("manifests").is_some() {
        Some(OCI_INDEX)
    } else if manifest.get("config").is_some() {
        Some(OCI_MANIFEST)
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
