//! `seed registry import`: images into the store from what an operator carries to an offline
//! site. Three shapes:
//! - the storage directory of the CNCF distribution registry (`docker/registry/v2/{blobs,
//!   repositories}`), which is what OSISM ships (`registry-*.tar.bz2`), unpacked;
//! - the same as a tarball, plain or compressed with gzip, bzip2 or zstd (told by its first
//!   bytes, not its name), read in one pass without unpacking it;
//! - an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`), what `skopeo copy …
//!   oci:DIR:TAG` writes; it carries no repository name, so the caller gives one.
//!
//! Only tagged images are imported, each with everything it names (an index's manifests, a
//! manifest's config and layers); a blob is stored once however many images share it, and
//! verified against its digest as it is stored. A tag is written last, when everything it
//! names is in the store.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::reference::{Digest, Name, is_tag};
use super::{DOCKER_LIST, MAX_MANIFEST, OCI_INDEX, Registry, RegistryError, media_type_of};
use crate::cache::Expect;

/// An index inside an index inside … deeper than this is refused (OCI allows nesting; real
/// images nest once at most).
const MAX_DEPTH: usize = 4;
/// The OCI annotation that names a manifest's tag in an image layout's `index.json`.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Imported {
    /// `name:tag` of every image imported, sorted.
    pub images: Vec<String>,
    /// Blobs written to the store.
    pub blobs_added: usize,
    /// Blobs the store already had (shared layers, an import done again).
    pub blobs_present: usize,
    /// Bytes written to the store.
    pub bytes_added: u64,
}

/// Where an import reads blobs it does not have yet.
trait Blobs {
    /// The blob `digest`, if the source has it.
    fn open(&self, digest: &Digest) -> Option<Box<dyn Read>>;
    /// The source, for messages.
    fn describe(&self) -> String;
}

/// A distribution storage directory (`…/v2`).
struct DistributionDir(PathBuf);

impl Blobs for DistributionDir {
    fn open(&self, digest: &Digest) -> Option<Box<dyn Read>> {
        let hex = digest.hex();
        let path = self
            .0
            .join("blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data");
        Some(Box::new(std::fs::File::open(path).ok()?))
    }
    fn describe(&self) -> String {
        self.0.display().to_string()
    }
}

/// An OCI image layout directory.
struct LayoutDir(PathBuf);

impl Blobs for LayoutDir {
    fn open(&self, digest: &Digest) -> Option<Box<dyn Read>> {
        let path = self.0.join("blobs/sha256").join(digest.hex());
        Some(Box::new(std::fs::File::open(path).ok()?))
    }
    fn describe(&self) -> String {
        self.0.display().to_string()
    }
}

/// A tarball, already read: every blob it held is in the store.
struct Stored(String);

impl Blobs for Stored {
    fn open(&self, _: &Digest) -> Option<Box<dyn Read>> {
        None
    }
    fn describe(&self) -> String {
        self.0.clone()
    }
}

/// Imports `source` (a directory or a tarball, see the module's doc) into `registry`. `name`:
/// the repository an OCI image layout's images go to (required for one, refused otherwise).
/// Blocking.
pub fn import(
    registry: &Registry,
    source: &Path,
    name: Option<&Name>,
) -> Result<Imported, RegistryError> {
    let mut imported = Imported::default();
    if source.is_dir() {
        if source.join("oci-layout").is_file() {
            let name = name.ok_or_else(|| {
                RegistryError::Source(format!(
                    "{}: an OCI image layout names no repository: give one (--name)",
                    source.display()
                ))
            })?;
            let index = read_index(&source.join("index.json"))?;
            let blobs = LayoutDir(source.to_path_buf());
            for (tag, digest, media_type) in layout_tags(&index, &blobs.describe())? {
                add_tagged(
                    registry,
                    &blobs,
                    name,
                    &tag,
                    &digest,
                    &media_type,
                    &mut imported,
                )?;
            }
        } else {
            let v2 = distribution_root(source).ok_or_else(|| {
                RegistryError::Source(format!(
                    "{}: neither an OCI image layout (no oci-layout file) nor a distribution \
                     registry's storage (no docker/registry/v2/repositories)",
                    source.display()
                ))
            })?;
            refuse_name(name, source)?;
            let blobs = DistributionDir(v2.clone());
            let mut tags = Vec::new();
            collect_distribution_tags(
                &v2.join("repositories"),
                &v2.join("repositories"),
                &mut tags,
            )?;
            for (name, tag, digest) in tags {
                add_tagged(registry, &blobs, &name, &tag, &digest, "", &mut imported)?;
            }
        }
    } else {
        tarball(registry, source, name, &mut imported)?;
    }
    imported.images.sort();
    Ok(imported)
}

fn refuse_name(name: Option<&Name>, source: &Path) -> Result<(), RegistryError> {
    match name {
        Some(name) => Err(RegistryError::Source(format!(
            "{}: a registry's storage names its repositories itself; --name {name} applies to \
             OCI image layouts only",
            source.display()
        ))),
        None => Ok(()),
    }
}

/// `…/docker/registry/v2`, `…/registry/v2` or `…/v2` below (or at) `dir`: the directory that
/// holds `repositories` and `blobs`.
fn distribution_root(dir: &Path) -> Option<PathBuf> {
    ["docker/registry/v2", "registry/v2", "v2", ""]
        .iter()
        .map(|sub| dir.join(sub))
        .find(|d| d.join("repositories").is_dir() && d.join("blobs").is_dir())
}

/// Every `(repository, tag, digest)` below a distribution storage's `repositories`.
fn collect_distribution_tags(
    base: &Path,
    dir: &Path,
    out: &mut Vec<(Name, String, Digest)>,
) -> Result<(), RegistryError> {
    let entries = std::fs::read_dir(dir).map_err(RegistryError::io(dir))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let file_name = entry.file_name();
        if !entry.file_type().is_ok_and(|t| t.is_dir())
            || file_name.to_string_lossy().starts_with('_')
        {
            continue;
        }
        let tags = path.join("_manifests/tags");
        if tags.is_dir() {
            let relative = path
                .strip_prefix(base)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            let name = Name::parse(&relative).ok_or_else(|| {
                RegistryError::Source(format!(
                    "{}: `{relative}` is not a repository name",
                    path.display()
                ))
            })?;
            for tag in std::fs::read_dir(&tags)
                .map_err(RegistryError::io(&tags))?
                .flatten()
            {
                let tag_name = tag.file_name().to_string_lossy().into_owned();
                let link = tag.path().join("current/link");
                let Some(text) = super::read_small(&link) else {
                    continue; // a tag deleted in distribution leaves its directory, no link
                };
                let digest = Digest::parse(text.trim()).ok_or_else(|| {
                    RegistryError::Source(format!("{}: not a sha256 digest", link.display()))
                })?;
                if !is_tag(&tag_name) {
                    return Err(RegistryError::Source(format!(
                        "{}: `{tag_name}` is not a tag",
                        tag.path().display()
                    )));
                }
                out.push((name.clone(), tag_name, digest));
            }
        }
        collect_distribution_tags(base, &path, out)?;
    }
    Ok(())
}

fn read_index(path: &Path) -> Result<serde_json::Value, RegistryError> {
    let bytes = read_bounded(&mut std::fs::File::open(path).map_err(RegistryError::io(path))?)
        .map_err(|e| RegistryError::Source(format!("{}: {e}", path.display())))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| RegistryError::Source(format!("{}: not JSON: {e}", path.display())))
}

/// The tagged manifests of an image layout's `index.json`: (tag, digest, media type). The
/// annotation may hold a whole reference (`registry/name:tag`); its tag is what follows the
/// last `:` after the last `/`.
fn layout_tags(
    index: &serde_json::Value,
    source: &str,
) -> Result<Vec<(String, Digest, String)>, RegistryError> {
    let mut out = Vec::new();
    for descriptor in index
        .get("manifests")
        .and_then(|m| m.as_array())
        .into_iter()
        .flatten()
    {
        let Some(reference) = descriptor
            .get("annotations")
            .and_then(|a| a.get(REF_NAME))
            .and_then(|r| r.as_str())
        else {
            continue;
        };
        let tag = reference
            .rsplit('/')
            .next()
            .and_then(|last| last.rsplit_once(':').map(|(_, t)| t).or(Some(last)))
            .unwrap_or(reference);
        if !is_tag(tag) {
            return Err(RegistryError::Source(format!(
                "{source}/index.json: `{reference}` names no tag"
            )));
        }
        let digest = descriptor
            .get("digest")
            .and_then(|d| d.as_str())
            .and_then(Digest::parse)
            .ok_or_else(|| {
                RegistryError::Source(format!(
                    "{source}/index.json: the manifest of `{reference}` has no sha256 digest"
                ))
            })?;
        let media_type = descriptor
            .get("mediaType")
            .and_then(|m| m.as_str())
            .unwrap_or_default()
            .to_string();
        out.push((tag.to_string(), digest, media_type));
    }
    Ok(out)
}

/// Reads at most [`MAX_MANIFEST`] bytes.
fn read_bounded(reader: &mut dyn Read) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(MAX_MANIFEST + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_MANIFEST {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_MANIFEST} bytes"
        )));
    }
    Ok(bytes)
}

/// Stores blob `digest` from `blobs` unless the store has it.
fn ensure_blob(
    registry: &Registry,
    blobs: &dyn Blobs,
    digest: &Digest,
    named_by: &str,
    imported: &mut Imported,
) -> Result<(), RegistryError> {
    let key = Registry::blob_key(digest);
    if registry.cache.contains(&key) {
        imported.blobs_present += 1;
        return Ok(());
    }
    let mut reader = blobs.open(digest).ok_or_else(|| {
        RegistryError::Source(format!(
            "{}: blob {digest}, named by {named_by}, is missing",
            blobs.describe()
        ))
    })?;
    store_blob(registry, digest, &mut reader, imported)
}

fn store_blob(
    registry: &Registry,
    digest: &Digest,
    reader: &mut dyn Read,
    imported: &mut Imported,
) -> Result<(), RegistryError> {
    let expect = Expect {
        size: None,
        sha256: digest.hex().to_string(),
    };
    match registry
        .cache
        .store(&Registry::blob_key(digest), reader, &expect)
    {
        Ok(Some(bytes)) => {
            imported.blobs_added += 1;
            imported.bytes_added += bytes;
            // Imported now: the pulled-through copy would only wait for its eviction.
            registry.forget_pulled(digest);
            Ok(())
        }
        Ok(None) => {
            imported.blobs_present += 1;
            Ok(())
        }
        Err(crate::cache::CacheError::Mismatch { size, sha256, .. }) => {
            Err(RegistryError::Corrupt {
                digest: digest.to_string(),
                detail: format!("its {size} bytes have SHA-256 {sha256}"),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Imports the manifest `digest` and everything it names into repository `name`, then tags it.
#[allow(clippy::too_many_arguments)]
fn add_tagged(
    registry: &Registry,
    blobs: &dyn Blobs,
    name: &Name,
    tag: &str,
    digest: &Digest,
    media_type: &str,
    imported: &mut Imported,
) -> Result<(), RegistryError> {
    add_manifest(registry, blobs, name, digest, media_type, 0, imported)?;
    let path = registry.repository(name).join("_tags").join(tag);
    registry.write_link(&path, &digest.to_string())?;
    imported.images.push(format!("{name}:{tag}"));
    Ok(())
}

/// Stores and links manifest `digest` with what it names (depth-first: children before the
/// manifest, the manifest before its tag).
fn add_manifest(
    registry: &Registry,
    blobs: &dyn Blobs,
    name: &Name,
    digest: &Digest,
    hint: &str,
    depth: usize,
    imported: &mut Imported,
) -> Result<(), RegistryError> {
    if depth > MAX_DEPTH {
        return Err(RegistryError::Source(format!(
            "{}: manifest {digest}: indices nested deeper than {MAX_DEPTH}",
            blobs.describe()
        )));
    }
    ensure_blob(registry, blobs, digest, &format!("{name}"), imported)?;
    let path = registry.cache.path(&Registry::blob_key(digest));
    let bytes = read_bounded(&mut std::fs::File::open(&path).map_err(RegistryError::io(&path))?)
        .map_err(|e| RegistryError::Source(format!("manifest {digest}: {e}")))?;
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        RegistryError::Source(format!("manifest {digest} of {name}: not JSON: {e}"))
    })?;
    if manifest.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) {
        return Err(RegistryError::Source(format!(
            "manifest {digest} of {name}: Docker schema 1 is not supported (convert it with skopeo copy)"
        )));
    }
    let media_type = media_type_of(&manifest)
        .map(str::to_string)
        .or_else(|| (!hint.is_empty()).then(|| hint.to_string()))
        .ok_or_else(|| {
            RegistryError::Source(format!("manifest {digest} of {name}: no media type"))
        })?;
    let descriptors = |field: &str| -> Result<Vec<(Digest, String, bool)>, RegistryError> {
        let mut out = Vec::new();
        let list: Vec<&serde_json::Value> = match manifest.get(field) {
            Some(serde_json::Value::Array(items)) => items.iter().collect(),
            Some(item @ serde_json::Value::Object(_)) => vec![item],
            _ => Vec::new(),
        };
        for item in list {
            let child = item
                .get("digest")
                .and_then(|d| d.as_str())
                .and_then(Digest::parse)
                .ok_or_else(|| {
                    RegistryError::Source(format!(
                        "manifest {digest} of {name}: a {field} entry has no sha256 digest"
                    ))
                })?;
            let child_type = item
                .get("mediaType")
                .and_then(|m| m.as_str())
                .unwrap_or_default();
            // A foreign layer (Windows base layers) is fetched from its URLs, never stored.
            let foreign = item.get("urls").is_some();
            out.push((child, child_type.to_string(), foreign));
        }
        Ok(out)
    };
    if media_type == OCI_INDEX || media_type == DOCKER_LIST {
        for (child, child_type, _) in descriptors("manifests")? {
            add_manifest(
                registry,
                blobs,
                name,
                &child,
                &child_type,
                depth + 1,
                imported,
            )?;
        }
    } else {
        let repository = registry.repository(name);
        let mut named = descriptors("config")?;
        named.extend(descriptors("layers")?);
        for (child, _, foreign) in named {
            if foreign && !registry.cache.contains(&Registry::blob_key(&child)) {
                continue;
            }
            ensure_blob(
                registry,
                blobs,
                &child,
                &format!("manifest {digest} of {name}"),
                imported,
            )?;
            registry.write_link(&repository.join("_layers").join(child.hex()), "")?;
        }
    }
    let link = registry
        .repository(name)
        .join("_manifests")
        .join(digest.hex());
    registry.write_link(&link, &media_type)
}

/// A tarball in one pass: blobs are stored as they come; tags and OCI indices are kept and
/// imported at the end, from the store.
fn tarball(
    registry: &Registry,
    source: &Path,
    name: Option<&Name>,
    imported: &mut Imported,
) -> Result<(), RegistryError> {
    let what = source.display().to_string();
    let file = std::fs::File::open(source).map_err(RegistryError::io(source))?;
    let mut file = std::io::BufReader::new(file);
    let magic = {
        use std::io::BufRead;
        file.fill_buf().map_err(RegistryError::io(source))?.to_vec()
    };
    let reader: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else if magic.starts_with(b"BZh") {
        Box::new(bzip2::read::MultiBzDecoder::new(file))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            ruzstd::decoding::StreamingDecoder::new(file)
                .map_err(|e| RegistryError::Source(format!("{what}: zstd: {e}")))?,
        )
    } else {
        Box::new(file)
    };
    let mut archive = tar::Archive::new(reader);
    let mut tags: BTreeMap<(Name, String), Digest> = BTreeMap::new();
    let mut layout_indices: Vec<(String, serde_json::Value)> = Vec::new();
    let broken =
        |e: std::io::Error| RegistryError::Source(format!("{what}: not a readable tarball: {e}"));
    for entry in archive.entries().map_err(broken)? {
        let mut entry = entry.map_err(broken)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(broken)?.to_string_lossy().into_owned();
        let path = path.trim_start_matches("./").to_string();
        match classify(&path) {
            Entry::Blob(digest) => store_blob(registry, &digest, &mut entry, imported)?,
            Entry::Tag(repository, tag) => {
                let name = Name::parse(&repository).ok_or_else(|| {
                    RegistryError::Source(format!(
                        "{what}: {path}: `{repository}` is not a repository name"
                    ))
                })?;
                let bytes = read_bounded(&mut entry).map_err(broken)?;
                let text = String::from_utf8_lossy(&bytes);
                let digest = Digest::parse(text.trim()).ok_or_else(|| {
                    RegistryError::Source(format!("{what}: {path}: not a sha256 digest"))
                })?;
                tags.insert((name, tag), digest);
            }
            Entry::LayoutIndex => {
                let bytes = read_bounded(&mut entry).map_err(broken)?;
                let index = serde_json::from_slice(&bytes)
                    .map_err(|e| RegistryError::Source(format!("{what}: {path}: not JSON: {e}")))?;
                layout_indices.push((path, index));
            }
            Entry::Other => {}
        }
    }
    let stored = Stored(what.clone());
    if !tags.is_empty() {
        refuse_name(name, source)?;
    }
    for ((repository, tag), digest) in &tags {
        add_tagged(registry, &stored, repository, tag, digest, "", imported)?;
    }
    for (path, index) in &layout_indices {
        let name = name.ok_or_else(|| {
            RegistryError::Source(format!(
                "{what}: {path}: an OCI image layout names no repository: give one (--name)"
            ))
        })?;
        for (tag, digest, media_type) in layout_tags(index, &what)? {
            add_tagged(
                registry,
                &stored,
                name,
                &tag,
                &digest,
                &media_type,
                imported,
            )?;
        }
    }
    if tags.is_empty() && layout_indices.is_empty() {
        return Err(RegistryError::Source(format!(
            "{what}: holds no tagged image (neither a registry's storage nor an OCI image layout)"
        )));
    }
    Ok(())
}

/// What a tarball member is.
enum Entry {
    /// `…/blobs/sha256/<2>/<hex>/data` (distribution) or `…/blobs/sha256/<hex>` (OCI).
    Blob(Digest),
    /// `…/repositories/<name>/_manifests/tags/<tag>/current/link`.
    Tag(String, String),
    /// An OCI image layout's `index.json`.
    LayoutIndex,
    Other,
}

fn classify(path: &str) -> Entry {
    let parts: Vec<&str> = path.split('/').collect();
    let n = parts.len();
    if n >= 5
        && parts[n - 1] == "data"
        && parts[n - 4] == "sha256"
        && parts[n - 5] == "blobs"
        && let Some(digest) = Digest::parse(&format!("sha256:{}", parts[n - 2]))
        && parts[n - 3] == &digest.hex()[..2]
    {
        return Entry::Blob(digest);
    }
    if n >= 3
        && parts[n - 2] == "sha256"
        && parts[n - 3] == "blobs"
        && let Some(digest) = Digest::parse(&format!("sha256:{}", parts[n - 1]))
    {
        return Entry::Blob(digest);
    }
    if n >= 1 && parts[n - 1] == "index.json" {
        return Entry::LayoutIndex;
    }
    if let Some(rest) = path.split_once("repositories/").map(|(_, r)| r)
        && let Some((repository, tail)) = rest.split_once("/_manifests/tags/")
        && let Some(tag) = tail.strip_suffix("/current/link")
        && !tag.contains('/')
        && is_tag(tag)
    {
        return Entry::Tag(repository.to_string(), tag.to_string());
    }
    Entry::Other
}
