//! Who may use a state directory, told before SQLite is asked: "cannot read" names the user,
//! the path and what to do; "does not exist" is only said of a store that does not exist.
//!
//! SQLite reports both a missing directory and a permission problem as `Error code 14: unable
//! to open database file`, and `Path::exists` is false for a file in a directory the user
//! cannot search. The packaged service keeps its state in `/var/lib/seed` (user `seed`, mode
//! 0750), so an operator's `seed status` without sudo is the everyday case of the latter.

use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::unistd::{AccessFlags, Gid, Group, Uid, User, access};

use super::StoreError;

/// Whether the store file at `path` exists, after checking that this process may read and
/// write it (and create SQLite's `-wal` and `-shm` files beside it).
pub(super) fn existing(path: &Path) -> Result<bool, StoreError> {
    match std::fs::metadata(path) {
        Ok(_) => {
            let dir = parent(path);
            for (p, flags, need) in [
                (
                    path,
                    AccessFlags::R_OK | AccessFlags::W_OK,
                    "read and write",
                ),
                (dir, AccessFlags::W_OK | AccessFlags::X_OK, "write in"),
            ] {
                if access(p, flags).is_err() {
                    return Err(denied_path(p, need));
                }
            }
            for suffix in ["-wal", "-shm"] {
                let mut beside = path.as_os_str().to_owned();
                beside.push(suffix);
                let beside = PathBuf::from(beside);
                if beside.exists()
                    && access(&beside, AccessFlags::R_OK | AccessFlags::W_OK).is_err()
                {
                    return Err(denied_path(&beside, "read and write"));
                }
            }
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(_) => Err(denied_path(blocking_ancestor(path), "read")),
    }
}

/// Creates the state directory (and its parents) where it is missing, naming the user when
/// that is not allowed.
pub(super) fn create_dir(state_dir: &Path) -> Result<(), StoreError> {
    match std::fs::create_dir_all(state_dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => Err(denied_path(
            blocking_ancestor(state_dir),
            "create the state directory in",
        )),
        Err(source) => Err(StoreError::StateDir {
            path: state_dir.to_path_buf(),
            source,
        }),
    }
}

/// Checks that the missing store file at `path` can be created (its directory made where
/// needed, and writable).
pub(super) fn creatable(path: &Path) -> Result<(), StoreError> {
    let dir = parent(path);
    create_dir(dir)?;
    if access(dir, AccessFlags::W_OK | AccessFlags::X_OK).is_err() {
        return Err(denied_path(dir, "create the state database in"));
    }
    Ok(())
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The deepest existing directory on the way to `path` that this process can stat: the one
/// whose permissions stop it (a state directory of mode 0750 for `seed status` as another user).
fn blocking_ancestor(path: &Path) -> &Path {
    let mut at = path;
    while let Some(up) = at.parent() {
        if up.as_os_str().is_empty() {
            break;
        }
        if std::fs::metadata(up).is_ok() {
            // `up` can be stat'ed; if it cannot be searched, it is what blocks.
            if access(up, AccessFlags::X_OK).is_err() {
                return up;
            }
            return at;
        }
        at = up;
    }
    at
}

pub(super) fn denied_path(path: &Path, need: &'static str) -> StoreError {
    let uid = Uid::current();
    let user = User::from_uid(uid).ok().flatten().map_or_else(
        || format!("uid {uid}"),
        |u| format!("{} (uid {uid})", u.name),
    );
    let owner = std::fs::metadata(path).ok().map(|m| {
        let name = User::from_uid(Uid::from_raw(m.uid()))
            .ok()
            .flatten()
            .map_or_else(|| m.uid().to_string(), |u| u.name);
        let group = Group::from_gid(Gid::from_raw(m.gid()))
            .ok()
            .flatten()
            .map_or_else(|| m.gid().to_string(), |g| g.name);
        (name, group, m.mode() & 0o7777)
    });
    StoreError::Denied {
        path: path.to_path_buf(),
        user,
        need,
        owner,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_missing_store_is_missing_and_an_unreadable_one_is_denied() {
        // Permission bits do not stop root (CAP_DAC_OVERRIDE): then only "missing" is checked.
        let root = Uid::effective().is_root();
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let db = state.join("seed.db");
        assert!(!existing(&db).unwrap(), "no file yet");
        std::fs::write(&db, b"x").unwrap();
        assert!(existing(&db).unwrap());
        if root {
            return;
        }
        // The packaged service's directory: 0750, another user's. Here: no search permission.
        chmod(&state, 0o600);
        let err = existing(&db).unwrap_err();
        chmod(&state, 0o755);
        let text = err.to_string();
        assert!(matches!(err, StoreError::Denied { .. }), "{text}");
        assert!(
            text.contains("permission denied") && text.contains(&state.display().to_string()),
            "{text}"
        );
        chmod(&db, 0o400);
        let text = existing(&db).unwrap_err().to_string();
        assert!(text.contains("read and write"), "{text}");
    }
}
