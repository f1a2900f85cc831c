//! The image catalogue: what a node installs from.
//!
//! An image is a directory `<root>/<name>/` holding its files (kernel, initrd, optionally the
//! live-server ISO casper loads) and `image.json`, the record that names them with their sizes and
//! SHA-256. The HTTP server serves the directory as `/images/<name>/<file>`; nothing else is
//! needed to boot from it. `seed images add` registers one from files; the ISO import (kernel and
//! initrd extracted from an ISO) and the APT mirror come with the images issue.
//!
//! An image appears whole or not at all: its files are copied into a hidden directory next to
//! the catalogue, synced, and renamed into place, so a crash mid-copy leaves no half image that a
//! node could boot.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The record of one image, stored as `image.json` in its directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Name; the directory and the URL path segment.
    pub name: String,
    /// File name of the installer kernel.
    pub kernel: String,
    /// File name of the installer initrd. iPXE names the download after it, and EFI-stub kernels
    /// find the initrd by that name (`initrd=<name>`).
    pub initrd: String,
    /// File name of the live-server ISO casper loads (`url=`), if the image has one.
    pub iso: Option<String>,
    /// Extra installer kernel arguments.
    #[serde(default)]
    pub kernel_args: Vec<String>,
    /// Every file with its size and SHA-256.
    pub files: Vec<ImageFile>,
    /// When it was added (seconds since the Unix epoch).
    pub added_at: u64,
}

/// One file of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFile {
    /// File name inside the image directory.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

/// What an operator registers.
#[derive(Debug, Clone)]
pub struct NewImage {
    /// Image name.
    pub name: String,
    /// The installer kernel.
    pub kernel: PathBuf,
    /// The installer initrd.
    pub initrd: PathBuf,
    /// The live-server ISO, if casper should load one.
    pub iso: Option<PathBuf>,
    /// Extra installer kernel arguments.
    pub kernel_args: Vec<String>,
}

/// Why the catalogue could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The name cannot be a directory and URL segment.
    #[error(
        "image name `{0}` must be 1-64 characters of a-z, A-Z, 0-9, `.`, `_` or `-`, not starting with `.` or `-`"
    )]
    BadName(String),
    /// A kernel argument would break the iPXE script or the kernel command line.
    #[error(
        "kernel argument `{0}` must be one word of printable ASCII without `$`, quotes or `\\`"
    )]
    BadArgument(String),
    /// Two of the image's files have the same name.
    #[error("the image's files must have different names; `{0}` is given twice")]
    SameFileName(String),
    /// An image of that name exists and replacing was not asked for.
    #[error("image {0} exists (replace it with --replace)")]
    Exists(String),
    /// No image of that name.
    #[error("no image named {0}")]
    Unknown(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// `image.json` is not a record.
    #[error("{}: {source}", path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The record file inside an image directory.
pub const RECORD: &str = "image.json";

/// Whether `name` can name an image.
pub fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadName(name.to_string()))
    }
}

/// Kernel arguments go into an iPXE `kernel` line unquoted: one word each, nothing iPXE expands.
fn check_argument(arg: &str) -> Result<(), Error> {
    let ok = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '$' | '"' | '\'' | '\\'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadArgument(arg.to_string()))
    }
}

/// The images directory.
#[derive(Debug, Clone)]
pub struct Catalogue {
    root: PathBuf,
}

impl Catalogue {
    /// The catalogue in `root` (created when the first image is added).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory the HTTP server serves as `/images/`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The image `name`, if it is registered.
    pub fn get(&self, name: &str) -> Result<Option<Image>, Error> {
        check_name(name)?;
        let path = self.root.join(name).join(RECORD);
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, source }),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|source| Error::Record { path, source })
    }

    /// Every registered image, by name. Directories without a record (an import that never
    /// finished, a stray directory) are not images.
    pub fn list(&self) -> Result<Vec<Image>, Error> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::Io {
                    path: self.root.clone(),
                    source,
                });
            }
        };
        let mut images = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&self.root))?;
            let name = entry.file_name();
            let Some(name) = name.to_str().filter(|n| check_name(n).is_ok()) else {
                continue;
            };
            if let Some(image) = self.get(name)? {
                images.push(image);
            }
        }
        images.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(images)
    }

    /// Register an image from files: copy them in, hash them, write the record, and only then
    /// make the image visible. `replace` swaps an existing image of that name.
    pub fn add(&self, new: &NewImage, replace: bool) -> Result<Image, Error> {
        check_name(&new.name)?;
        for arg in &new.kernel_args {
            check_argument(arg)?;
        }
        let mut sources = vec![&new.kernel, &new.initrd];
        sources.extend(new.iso.as_ref());
        let names: Vec<String> = sources
            .iter()
            .map(|p| file_name(p))
            .collect::<Result<_, _>>()?;
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(Error::SameFileName(name.clone()));
            }
        }
        let dest = self.root.join(&new.name);
        if !replace && dest.exists() {
            return Err(Error::Exists(new.name.clone()));
        }
        fs::create_dir_all(&self.root).map_err(io_err(&self.root))?;
        let staging = self
            .root
            .join(format!(".new-{}-{}", new.name, std::process::id()));
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(io_err(&staging))?;
        }
        fs::create_dir(&staging).map_err(io_err(&staging))?;
        let result = self.fill(new, &sources, &names, &staging);
        let image = match result {
            Ok(image) => image,
            Err(e) => {
                let _ = fs::remove_dir_all(&staging);
                return Err(e);
            }
        };
        if dest.exists() {
            // Move the old one aside first: rename cannot replace a non-empty directory.
            let old = self
                .root
                .join(format!(".old-{}-{}", new.name, std::process::id()));
            fs::rename(&dest, &old).map_err(io_err(&dest))?;
            fs::rename(&staging, &dest).map_err(io_err(&dest))?;
            fs::remove_dir_all(&old).map_err(io_err(&old))?;
        } else {
            fs::rename(&staging, &dest).map_err(io_err(&dest))?;
        }
        sync_dir(&self.root)?;
        Ok(image)
    }

    fn fill(
        &self,
        new: &NewImage,
        sources: &[&PathBuf],
        names: &[String],
        staging: &Path,
    ) -> Result<Image, Error> {
        let mut files = Vec::new();
        for (source, name) in sources.iter().zip(names) {
            let (size, sha256) = copy_hashed(source, &staging.join(name))?;
            files.push(ImageFile {
                name: name.clone(),
                size,
                sha256,
            });
        }
        let image = Image {
            name: new.name.clone(),
            kernel: names[0].clone(),
            initrd: names[1].clone(),
            iso: names.get(2).cloned(),
            kernel_args: new.kernel_args.clone(),
            files,
            added_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        let record = staging.join(RECORD);
        let mut text = serde_json::to_vec_pretty(&image).map_err(|source| Error::Record {
            path: record.clone(),
            source,
        })?;
        text.push(b'\n');
        let mut file = File::create(&record).map_err(io_err(&record))?;
        file.write_all(&text).map_err(io_err(&record))?;
        file.sync_all().map_err(io_err(&record))?;
        sync_dir(staging)?;
        Ok(image)
    }
}

fn file_name(path: &Path) -> Result<String, Error> {
    path.file_name()
        .and_then(|n| n.to_str())
        .filter(|n| check_name(n).is_ok())
        .map(str::to_string)
        .ok_or_else(|| Error::Io {
            path: path.to_path_buf(),
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                "the file name must be a plain name (a-z, A-Z, 0-9, `.`, `_`, `-`): it becomes part of the boot URL",
            ),
        })
}

/// Copy `from` to `to`, hashing on the way; returns the size and SHA-256 once `to` is on disk.
fn copy_hashed(from: &Path, to: &Path) -> Result<(u64, String), Error> {
    let mut input = File::open(from).map_err(io_err(from))?;
    let mut output = File::create(to).map_err(io_err(to))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(io_err(from))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        output.write_all(&buf[..n]).map_err(io_err(to))?;
        size += n as u64;
    }
    output.sync_all().map_err(io_err(to))?;
    let sha256 = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((size, sha256))
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> NewImage {
        fs::write(dir.join("vmlinuz"), b"kernel").unwrap();
        fs::write(dir.join("initrd"), b"initrd").unwrap();
        NewImage {
            name: "noble".into(),
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initrd"),
            iso: None,
            kernel_args: vec!["quiet".into()],
        }
    }

    #[test]
    fn an_added_image_is_listed_with_its_hashes() {
        let src = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::new(root.path().join("images"));
        assert_eq!(catalogue.list().unwrap(), vec![]);
        let image = catalogue.add(&files(src.path()), false).unwrap();
        assert_eq!(image.kernel, "vmlinuz");
        assert_eq!(image.initrd, "initrd");
        // `printf kernel | sha256sum`
        assert_eq!(
            image.files[0].sha256,
            "6923dd1bc0460082c5d55a831908c24a282860b7f1cd6c2b79cf1bc8857c639c"
        );
        assert_eq!(image.files[0].size, 6);
        assert_eq!(catalogue.get("noble").unwrap(), Some(image.clone()));
        assert_eq!(catalogue.list().unwrap(), vec![image]);
        assert_eq!(
            fs::read(root.path().join("images/noble/initrd")).unwrap(),
            b"initrd"
        );
    }

    #[test]
    fn an_image_is_replaced_only_when_asked() {
        let src = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::new(root.path());
        let new = files(src.path());
        catalogue.add(&new, false).unwrap();
        assert!(matches!(catalogue.add(&new, false), Err(Error::Exists(_))));
        fs::write(src.path().join("initrd"), b"initrd 2").unwrap();
        let image = catalogue.add(&new, true).unwrap();
        assert_eq!(image.files[1].size, 8);
        assert_eq!(
            fs::read(root.path().join("noble/initrd")).unwrap(),
            b"initrd 2"
        );
        // Nothing is left behind from staging or the old copy.
        let names: Vec<_> = fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["noble"]);
    }

    #[test]
    fn a_failed_add_leaves_no_image() {
        let src = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::new(root.path());
        let mut new = files(src.path());
        new.iso = Some(src.path().join("missing.iso"));
        let err = catalogue.add(&new, false).unwrap_err().to_string();
        assert!(err.contains("missing.iso"), "{err}");
        assert_eq!(catalogue.list().unwrap(), vec![]);
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 0);
    }

    #[test]
    fn names_and_arguments_that_would_break_urls_or_scripts_are_refused() {
        for bad in ["", "../x", "a/b", ".hidden", "-x", "a b", "ü"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        check_name("ubuntu-24.04_live").unwrap();
        let src = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let mut new = files(src.path());
        new.kernel_args = vec!["a=${x}".into()];
        assert!(matches!(
            Catalogue::new(root.path()).add(&new, false),
            Err(Error::BadArgument(_))
        ));
        new.kernel_args = vec![];
        new.initrd = new.kernel.clone();
        assert!(matches!(
            Catalogue::new(root.path()).add(&new, false),
            Err(Error::SameFileName(_))
        ));
    }
}
