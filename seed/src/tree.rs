//! A directory whose files are handed out by name — TFTP's operator directory, HTTP's images
//! and the APT mirror's directories — where no name may reach outside it: no `..`, no
//! absolute path, no NUL byte, no symlink that leads out.
//!
//! openat2(RESOLVE_BENEATH) has the kernel check every step in one call (Linux 5.6+), against a
//! descriptor of the directory kept open (one syscall per open, measured in bench/http); older
//! kernels get the same answer from canonicalize().

use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Why a name could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The name is not a plain relative path, or a symlink on it leads out of the directory.
    #[error("the path leaves the directory")]
    Leaves,
    /// No such file.
    #[error("no such file")]
    Missing,
    /// Anything else (permissions, I/O).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A directory served by name.
#[derive(Debug)]
pub struct Tree {
    path: PathBuf,
    dir: RwLock<Option<Arc<std::fs::File>>>,
}

impl Tree {
    /// The directory at `path`; it need not exist yet (the image catalogue creates it on the
    /// first add).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            dir: RwLock::new(None),
        }
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `relative` for reading if it stays inside the directory.
    pub fn open(&self, relative: &str) -> Result<std::fs::File, OpenError> {
        if !plain(relative) {
            return Err(OpenError::Leaves);
        }
        let dir = self.dir(false).map_err(missing)?;
        let opened = match open_beneath(&dir, relative) {
            // The directory may have been replaced since it was opened: look again, once.
            Err(nix::errno::Errno::ENOENT) => {
                open_beneath(&*self.dir(true).map_err(missing)?, relative)
            }
            opened => opened,
        };
        match opened {
            Ok(file) => Ok(file),
            // A kernel before 5.6: resolve the old way.
            Err(nix::errno::Errno::ENOSYS) => self.open_canonical(relative),
            // A symlink on the way leads out.
            Err(nix::errno::Errno::EXDEV) => Err(OpenError::Leaves),
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => Err(OpenError::Missing),
            Err(e) => Err(OpenError::Io(e.into())),
        }
    }

    fn dir(&self, fresh: bool) -> std::io::Result<Arc<std::fs::File>> {
        if !fresh && let Some(dir) = self.dir.read().ok().and_then(|d| d.clone()) {
            return Ok(dir);
        }
        let dir = Arc::new(std::fs::File::open(&self.path)?);
        if let Ok(mut slot) = self.dir.write() {
            *slot = Some(Arc::clone(&dir));
        }
        Ok(dir)
    }

    fn open_canonical(&self, relative: &str) -> Result<std::fs::File, OpenError> {
        let root = self.path.canonicalize().map_err(missing)?;
        let full = root.join(relative).canonicalize().map_err(missing)?;
        // canonicalize() resolved every symlink: what is not under the root left it.
        if full.starts_with(&root) {
            Ok(std::fs::File::open(full)?)
        } else {
            Err(OpenError::Leaves)
        }
    }
}

/// Whether `relative` is a plain relative path: no `..`, no absolute path, no NUL byte.
pub fn plain(relative: &str) -> bool {
    !relative.is_empty()
        && !relative.contains('\0')
        && Path::new(relative)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

fn missing(e: std::io::Error) -> OpenError {
    if e.kind() == std::io::ErrorKind::NotFound {
        OpenError::Missing
    } else {
        OpenError::Io(e)
    }
}

fn open_beneath(dir: &std::fs::File, relative: &str) -> nix::Result<std::fs::File> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(dir, relative, how).map(std::fs::File::from)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn only_what_is_inside_opens() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/ok"), "ok").unwrap();
        std::fs::write(dir.path().join("secret"), "no").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("out")).unwrap();
        std::os::unix::fs::symlink("sub/ok", root.join("in")).unwrap();
        let tree = Tree::new(&root);
        assert!(tree.open("sub/ok").is_ok());
        assert!(tree.open("in").is_ok(), "a symlink that stays inside");
        for bad in [
            "out",
            "../secret",
            "/etc/passwd",
            "sub/../../secret",
            "a\0b",
            "",
        ] {
            assert!(matches!(tree.open(bad), Err(OpenError::Leaves)), "{bad:?}");
        }
        assert!(matches!(tree.open("nope"), Err(OpenError::Missing)));
        assert!(matches!(tree.open("sub/ok/x"), Err(OpenError::Missing)));
        // The directory replaced under the open descriptor: found again.
        std::fs::rename(&root, dir.path().join("old")).unwrap();
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/new"), "new").unwrap();
        assert!(tree.open("sub/new").is_ok());
    }
}
