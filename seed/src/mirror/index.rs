//! The parts of a Debian repository's indices the mirror reads ("Debian Repository Format"):
//! the `SHA256` list of a suite's Release, and the `Filename`/`Size`/`SHA256` of each package
//! in its Packages files.

use std::collections::HashMap;
use std::io::Read;

/// One file a Release names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Path below `dists/<suite>/` (`main/binary-amd64/Packages.xz`).
    pub name: String,
}

/// The signed text of a clearsigned InRelease (RFC 4880 7: after the armor headers, up to
/// the signature; dash-escaped lines unescaped); a Release is returned as it is.
pub fn release_text(raw: &str) -> String {
    let Some(start) = raw.find("-----BEGIN PGP SIGNED MESSAGE-----") else {
        return raw.to_string();
    };
    let body = &raw[start..];
    // Armor headers (`Hash: SHA512`) end at the first empty line.
    let Some(after_headers) = body.find("\n\n").map(|i| &body[i + 2..]) else {
        return String::new();
    };
    let end = after_headers
        .find("\n-----BEGIN PGP SIGNATURE-----")
        .unwrap_or(after_headers.len());
    after_headers[..end]
        .lines()
        .map(|l| l.strip_prefix("- ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `SHA256:` list of a Release text.
pub fn sha256_entries(release: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in release.lines() {
        if !line.starts_with([' ', '\t']) {
            inside = line.trim_end() == "SHA256:";
            continue;
        }
        if !inside {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(sha256), Some(size), Some(name)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(size) = size.parse() else { continue };
        if sha256.len() == 64 && sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            out.push(Entry {
                sha256: sha256.to_ascii_lowercase(),
                size,
                name: name.to_string(),
            });
        }
    }
    out
}

/// Whether a Release entry is a Packages index seed reads to verify packages.
pub fn is_packages(name: &str) -> bool {
    let file = name.rsplit('/').next().unwrap_or(name);
    matches!(file, "Packages" | "Packages.gz" | "Packages.xz")
}

/// `Filename` → (`Size`, `SHA256`) of every package in a Packages file's text, added to `out`.
pub fn add_packages(text: &str, out: &mut HashMap<String, (u64, String)>) {
    for stanza in text.split("\n\n") {
        let (mut file, mut size, mut sha) = (None, None, None);
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("Filename: ") {
                file = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Size: ") {
                size = v.trim().parse::<u64>().ok();
            } else if let Some(v) = line.strip_prefix("SHA256: ") {
                sha = Some(v.trim().to_ascii_lowercase());
            }
        }
        if let (Some(file), Some(size), Some(sha)) = (file, size, sha) {
            out.insert(file.to_string(), (size, sha));
        }
    }
}

/// The largest index text read (bytes): Ubuntu's largest Packages (noble universe amd64) is
/// about 70 MB; a small file that inflates without end is refused instead.
pub const MAX_INDEX: u64 = 512 << 20;

/// A Packages file's text from its bytes, by its name's compression, at most [`MAX_INDEX`].
pub fn decompress(name: &str, bytes: &[u8]) -> std::io::Result<String> {
    let too_large = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{name}: larger than {MAX_INDEX} bytes unpacked"),
        )
    };
    let mut out = Vec::new();
    if name.ends_with(".gz") {
        flate2::read::GzDecoder::new(bytes)
            .take(MAX_INDEX + 1)
            .read_to_end(&mut out)?;
    } else if name.ends_with(".xz") {
        let mut capped = Capped::default();
        lzma_rs::xz_decompress(&mut std::io::BufReader::new(bytes), &mut capped).map_err(|e| {
            if capped.over {
                too_large()
            } else {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{e:?}"))
            }
        })?;
        out = capped.out;
    } else {
        out = bytes.to_vec();
    }
    if out.len() as u64 > MAX_INDEX {
        return Err(too_large());
    }
    String::from_utf8(out)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

/// A writer that refuses to grow past [`MAX_INDEX`] (lzma-rs writes to a `Write`).
#[derive(Default)]
struct Capped {
    out: Vec<u8>,
    over: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if (self.out.len() + buf.len()) as u64 > MAX_INDEX {
            self.over = true;
            return Err(std::io::Error::other("index too large"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const INRELEASE: &str = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n\
        Origin: Ubuntu\nSuite: noble\nMD5Sum:\n 0123 10 main/x\nSHA256:\n \
        aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 1234 main/binary-amd64/Packages.xz\n \
        BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB   99 main/i18n/Translation-en\n\
        - -dash escaped\n-----BEGIN PGP SIGNATURE-----\n\nxyz\n-----END PGP SIGNATURE-----\n";

    #[test]
    fn the_sha256_list_of_an_inrelease() {
        let text = release_text(INRELEASE);
        assert!(text.starts_with("Origin: Ubuntu"), "{text}");
        assert!(text.ends_with("-dash escaped"), "{text}");
        let entries = sha256_entries(&text);
        assert_eq!(entries.len(), 2, "MD5Sum lines are not SHA256 entries");
        assert_eq!(entries[0].name, "main/binary-amd64/Packages.xz");
        assert_eq!(entries[0].size, 1234);
        assert_eq!(entries[1].sha256, "b".repeat(64));
        assert!(is_packages(&entries[0].name));
        assert!(!is_packages(&entries[1].name));
    }

    #[test]
    fn packages_stanzas_give_filename_size_and_hash() {
        let text = "Package: a\nFilename: pool/main/a/a_1_all.deb\nSize: 10\nSHA256: ABC\n\n\
                    Package: b\nFilename: pool/main/b/b_1_all.deb\nSize: 20\n";
        let mut map = HashMap::new();
        add_packages(text, &mut map);
        assert_eq!(map.len(), 1, "b has no SHA256");
        assert_eq!(map["pool/main/a/a_1_all.deb"], (10, "abc".to_string()));
    }
}
