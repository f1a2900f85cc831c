//! One store, one server: `seed serve` holds an exclusive `flock(2)` on `serve.lock` in its
//! state directory for as long as it runs. Two servers on one store would both answer DHCP from
//! one lease table, both follow the same nodes and both power them: the second is refused,
//! naming the process that holds the lock. The kernel drops the lock with the last descriptor,
//! so a crashed or killed server leaves nothing to clean up. Other commands (`seed status`,
//! `seed provision`, `seed images`) share the store with a running server through SQLite's own
//! locking and take no lock here.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::StoreError;

/// The lock file's name in the state directory.
pub const LOCK_FILE: &str = "serve.lock";

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct ServeLock {
    _file: Flock<File>,
    path: PathBuf,
}

impl ServeLock {
    /// Takes the state directory's lock without waiting, and writes this process's id into it.
    pub fn acquire(state_dir: &Path) -> Result<Self, StoreError> {
        super::access::create_dir(state_dir)?;
        let path = state_dir.join(LOCK_FILE);
        let io_err = |source| StoreError::Lock {
            path: path.clone(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    super::access::denied_path(&path, "open the lock file")
                }
                _ => io_err(e),
            })?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                // The holder wrote its pid when it took the lock; a holder caught between
                // taking it and writing (microseconds) reads as unknown.
                let _ = file.read_to_string(&mut text);
                return Err(StoreError::Locked {
                    dir: state_dir.to_path_buf(),
                    holder: text.trim().parse().ok(),
                });
            }
            Err((_, errno)) => return Err(io_err(std::io::Error::from(errno))),
        };
        file.set_len(0).map_err(io_err)?;
        file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        writeln!(file, "{}", std::process::id()).map_err(io_err)?;
        Ok(Self { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_server_is_refused_naming_the_first_and_gets_it_once_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = ServeLock::acquire(dir.path()).unwrap();
        let err = ServeLock::acquire(dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, StoreError::Locked { holder: Some(pid), .. } if pid == std::process::id()),
            "{text}"
        );
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(first);
        let again = ServeLock::acquire(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(again.path()).unwrap().trim(),
            std::process::id().to_string()
        );
    }
}
