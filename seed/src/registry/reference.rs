//! What a registry URL names, checked against the OCI Distribution Specification's grammar
//! ("Pulling manifests": `<name>`, `<reference>`, `<digest>`), so that nothing a client sends
//! becomes a path that leaves the store.

/// The longest repository name distribution accepts (with the registry's host in front, which
/// clients count and seed does not see).
const MAX_NAME: usize = 255;
/// The longest tag (`[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`).
const MAX_TAG: usize = 128;

/// A repository name: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
/// Components never start with `_` or `.`, so a store directory named `_tags` is never one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    /// `text` if it is a repository name.
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() <= MAX_NAME && text.split('/').all(component)).then(|| Self(text.to_string()))
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn component(part: &str) -> bool {
    let bytes = part.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(|b| alnum(*b)) || !bytes.last().is_some_and(|b| alnum(*b)) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or "-+", then an alphanumeric.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let run = &part[start..i];
        let ok = run == "." || run == "_" || run == "__" || run.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// A SHA-256 digest, `sha256:<64 lower-case hex>` (the only algorithm seed stores; the spec's
/// other registered one, sha512, is refused as unsupported).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

impl Digest {
    /// `text` if it is a sha256 digest.
    pub fn parse(text: &str) -> Option<Self> {
        let hex = text.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(hex.to_string()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        Self(crate::cache::hex(&sha2::Sha256::digest(bytes)))
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

/// Whether `text` is a tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn is_tag(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_TAG
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A tag.
    Tag(String),
    /// A digest.
    Digest(Digest),
}

impl Reference {
    /// `text` as a tag or a digest (a `:` makes it a digest).
    pub fn parse(text: &str) -> Option<Self> {
        if text.contains(':') {
            Digest::parse(text).map(Self::Digest)
        } else {
            is_tag(text).then(|| Self::Tag(text.to_string()))
        }
    }
}

/// What a path below `/v2/` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v2/`: the API's base (clients check it first).
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/tags/list`.
    Tags(String),
    /// `/v2/<name>/manifests/<reference>`.
    Manifest(String, String),
    /// `/v2/<name>/blobs/<digest>`.
    Blob(String, String),
    /// Anything else (distribution answers 404).
    Unknown,
}

/// Splits the path after `/v2/` into what it asks for. Names are matched before they are
/// checked: a nested name (`osism/kolla/nova-api`) is whatever comes before the last
/// `/manifests/`, `/blobs/` or `/tags/list`.
pub fn endpoint(rest: &str) -> Endpoint {
    if rest.is_empty() {
        return Endpoint::Base;
    }
    if rest == "_catalog" {
        return Endpoint::Catalog;
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Endpoint::Tags(name.to_string());
    }
    // The last path segment is the reference or the digest: a name may hold `manifests` or
    // `blobs` as a component of its own.
    if let Some((before, last)) = rest.rsplit_once('/') {
        if let Some(name) = before.strip_suffix("/manifests") {
            return Endpoint::Manifest(name.to_string(), last.to_string());
        }
        if let Some(name) = before.strip_suffix("/blobs") {
            return Endpoint::Blob(name.to_string(), last.to_string());
        }
    }
    Endpoint::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec_grammar() {
        // The spec's examples and what OSISM pulls.
        for ok in [
            "library/ubuntu",
            "osism/kolla/nova-api",
            "a",
            "a.b_c__d---e/f",
            "kolla/release/2024.2/nova-api",
        ] {
            assert!(Name::parse(ok).is_some(), "{ok}");
        }
        for bad in [
            "",
            "Upper/case",
            "a//b",
            "/a",
            "a/",
            "_tags",
            "a/_manifests",
            "a/../b",
            "a/.b",
            "a___b",
            "a.-b",
            "a-",
            &"a".repeat(256),
        ] {
            assert!(Name::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn references_are_tags_or_sha256_digests() {
        let hex = "a".repeat(64);
        assert_eq!(
            Reference::parse(&format!("sha256:{hex}")),
            Some(Reference::Digest(Digest(hex.clone())))
        );
        assert_eq!(
            Reference::parse("2024.2"),
            Some(Reference::Tag("2024.2".into()))
        );
        assert!(Reference::parse("_private").is_some());
        for bad in [
            "",
            ".hidden",
            "-x",
            "a/b",
            "sha256:short",
            &format!("sha256:{}", "A".repeat(64)),
            &format!("sha512:{}", "a".repeat(128)),
            &"t".repeat(129),
        ] {
            assert!(Reference::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn endpoints_split_nested_names() {
        assert_eq!(endpoint(""), Endpoint::Base);
        assert_eq!(endpoint("_catalog"), Endpoint::Catalog);
        assert_eq!(
            endpoint("osism/kolla/nova-api/manifests/2024.2"),
            Endpoint::Manifest("osism/kolla/nova-api".into(), "2024.2".into())
        );
        assert_eq!(
            endpoint("a/blobs/b/blobs/sha256:x"),
            Endpoint::Blob("a/blobs/b".into(), "sha256:x".into())
        );
        assert_eq!(endpoint("osism/tags/list"), Endpoint::Tags("osism".into()));
        assert_eq!(
            endpoint("a/manifests/b/blobs/sha256:x"),
            Endpoint::Blob("a/manifests/b".into(), "sha256:x".into())
        );
        assert_eq!(endpoint("osism"), Endpoint::Unknown);
    }
}
