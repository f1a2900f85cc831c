//! The state directory's owner. The packaged service runs as its own user (`seed`) and owns
//! `/var/lib/seed`; an operator runs the other commands (`seed images import`, `seed registry
//! import`, `seed provision`, `seed restore`) as root. What those create there would be root's,
//! and the service could not write beside it (a registry blob directory, a new store, a
//! restored one). So after a command run as root, everything root created in a state directory
//! that belongs to another user is handed to that user, as if `sudo -u seed` had run it.
//! Symbolic links are changed themselves, never followed; nothing outside the directory is
//! touched.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The owner (uid, gid) of `state_dir` when this process is root and the directory belongs to
/// another user: then what root creates there must be handed over.
pub fn service_owner(state_dir: &Path) -> Option<(u32, u32)> {
    if !nix::unistd::Uid::effective().is_root() {
        return None;
    }
    let meta = std::fs::symlink_metadata(state_dir).ok()?;
    (meta.is_dir() && meta.uid() != 0).then(|| (meta.uid(), meta.gid()))
}

/// Gives every entry under `dir` that root owns to `owner`; how many were changed.
pub fn hand_over(dir: &Path, owner: (u32, u32)) -> std::io::Result<usize> {
    let mut changed = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at)? {
            let entry = entry?;
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path)?;
            if meta.uid() == 0 {
                std::os::unix::fs::lchown(&path, Some(owner.0), Some(owner.1))?;
                changed += 1;
            }
            if meta.is_dir() {
                pending.push(path);
            }
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_entries_go_to_the_directorys_owner_and_links_are_not_followed() {
        if !nix::unistd::Uid::effective().is_root() {
            // chown needs root; the integration test runs it as root in CI.
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(state.join("images/a")).unwrap();
        std::fs::write(state.join("images/a/vmlinuz"), b"k").unwrap();
        std::os::unix::fs::symlink(outside.path(), state.join("link")).unwrap();
        assert_eq!(service_owner(&state), None, "root's own directory");
        std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
        let owner = service_owner(&state).unwrap();
        assert_eq!(owner, (65534, 65534));
        assert_eq!(hand_over(&state, owner).unwrap(), 4);
        for p in ["images", "images/a", "images/a/vmlinuz"] {
            assert_eq!(
                std::fs::metadata(state.join(p)).unwrap().uid(),
                65534,
                "{p}"
            );
        }
        assert_eq!(
            std::fs::symlink_metadata(state.join("link")).unwrap().uid(),
            65534
        );
        assert_eq!(
            std::fs::metadata(outside.path()).unwrap().uid(),
            0,
            "not followed"
        );
        assert_eq!(hand_over(&state, owner).unwrap(), 0, "nothing left");
    }
}
