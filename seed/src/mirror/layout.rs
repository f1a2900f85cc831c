//! Where things are in a repository and in the cache: what kind of file a request names
//! (which decides how it is fetched and kept), and the by-hash paths indices are stored under.

use super::index;

/// What kind of repository file a path is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// `dists/<suite>/InRelease|Release|Release.gpg`.
    Release { suite: String, file: String },
    /// Another file of `dists/<suite>/`, named by the Release.
    Index { suite: String, name: String },
    /// `pool/…` or a `by-hash/` file: never changes.
    Immutable,
    /// Anything else (revalidated).
    Other,
}

pub(super) fn classify(path: &str) -> Kind {
    if let Some((suite, name)) = path.strip_prefix("dists/").and_then(|r| r.split_once('/')) {
        if matches!(name, "InRelease" | "Release" | "Release.gpg") {
            return Kind::Release {
                suite: suite.into(),
                file: name.into(),
            };
        }
        if name.contains("/by-hash/") {
            return Kind::Immutable;
        }
        return Kind::Index {
            suite: suite.into(),
            name: name.into(),
        };
    }
    if path.starts_with("pool/") {
        return Kind::Immutable;
    }
    Kind::Other
}

/// The suite of `dists/<suite>/…`.
pub(super) fn suite_of(rel: &str) -> &str {
    rel.strip_prefix("dists/")
        .and_then(|r| r.split('/').next())
        .unwrap_or_default()
}

/// Where an index is cached: `<prefix>/dists/<suite>/<dir>/by-hash/SHA256/<hash>`.
pub(super) fn by_hash(prefix: &str, suite: &str, entry: &index::Entry) -> String {
    let dir = entry.name.rsplit_once('/').map_or("", |(d, _)| d);
    let dir = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    format!(
        "{prefix}/dists/{suite}/{dir}by-hash/SHA256/{}",
        entry.sha256
    )
}

/// The SHA-256 in a `…/by-hash/SHA256/<hex>` path.
pub(super) fn by_hash_sha256(path: &str) -> Option<String> {
    let (_, hash) = path.rsplit_once("/by-hash/SHA256/")?;
    (hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| hash.to_ascii_lowercase())
}

/// A request path made safe to join under the cache: plain segments only (`None`: not a
/// repository path).
pub(super) fn clean(path: &str) -> Option<String> {
    let ok = !path.is_empty()
        && path.split('/').all(|s| {
            !s.is_empty()
                && !s.starts_with('.')
                && s.chars().all(|c| c.is_ascii_graphic() && c != '\\')
        });
    ok.then(|| path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_sorted_by_how_they_change() {
        assert_eq!(
            classify("dists/noble/InRelease"),
            Kind::Release {
                suite: "noble".into(),
                file: "InRelease".into()
            }
        );
        assert_eq!(
            classify("dists/noble-security/main/binary-amd64/Packages.xz"),
            Kind::Index {
                suite: "noble-security".into(),
                name: "main/binary-amd64/Packages.xz".into()
            }
        );
        assert_eq!(
            classify("dists/noble/main/binary-amd64/by-hash/SHA256/ab"),
            Kind::Immutable
        );
        assert_eq!(
            classify("pool/main/h/hello/hello_1_amd64.deb"),
            Kind::Immutable
        );
        assert_eq!(classify("ls-lR.gz"), Kind::Other);
    }

    #[test]
    fn paths_that_leave_the_repository_are_refused() {
        for bad in [
            "",
            "../x",
            "pool/../../etc/passwd",
            "pool//x",
            ".tmp/x",
            "pool/.meta",
        ] {
            assert!(clean(bad).is_none(), "{bad}");
        }
        assert!(clean("pool/main/a/a_1+b~2_all.deb").is_some());
    }

    #[test]
    fn indices_are_cached_under_their_hash() {
        let entry = index::Entry {
            sha256: "ab".repeat(32),
            size: 1,
            name: "main/binary-amd64/Packages.xz".into(),
        };
        assert_eq!(
            by_hash("ubuntu", "noble", &entry),
            format!(
                "ubuntu/dists/noble/main/binary-amd64/by-hash/SHA256/{}",
                "ab".repeat(32)
            )
        );
        assert_eq!(
            by_hash_sha256(&by_hash("u", "s", &entry)),
            Some("ab".repeat(32))
        );
    }
}
