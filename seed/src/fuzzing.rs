//! Entry points for the fuzz targets (`fuzz/`, cargo-fuzz) and their corpus replay on stable
//! (`tests/tests/fuzz_corpora.rs`): every parser that reads bytes from the network or from a
//! file an operator imports, called the way seed calls it. Each must return, whatever the
//! bytes; a panic is a finding. Not an API.

use std::path::Path;

/// A DHCP packet as the server reads it (RFC 2131 header, options, the facts it decides on).
pub fn dhcp(data: &[u8]) {
    if let Ok(msg) = crate::dhcp::parse(data) {
        let _ = crate::dhcp::request_facts(&msg);
    }
}

/// A TFTP request (RFC 1350/2347/2348/2349/7440) and the file name it asks for.
pub fn tftp(data: &[u8]) {
    if let Ok(name) = crate::tftp::parse_for_fuzzing(data) {
        let _ = crate::tree::plain(&name);
    }
}

/// An HTTP `Range` header against a length (the first 8 bytes), a request path below a
/// served root (RFC 9110 14.1), the whole input as a request head the connection loop reads
/// before hyper (`http::connection`), and as a registry path (`/v2/<name>/…`).
pub fn http(data: &[u8]) {
    crate::http::fuzz_head(data);
    registry_path(&String::from_utf8_lossy(data));
    let (len, rest) = data.split_at(data.len().min(8));
    let mut word = [0u8; 8];
    word[..len.len()].copy_from_slice(len);
    let text = String::from_utf8_lossy(rest);
    let _ = crate::http::files::parse_range(&text, u64::from_le_bytes(word));
    let _ = crate::tree::plain(&text);
}

/// A path below `/v2/` as the registry splits and checks it (names, tags, digests).
fn registry_path(text: &str) {
    use crate::registry::reference::{Digest, Endpoint, Name, Reference, endpoint};
    match endpoint(text) {
        Endpoint::Tags(name) => {
            let _ = Name::parse(&name);
        }
        Endpoint::Manifest(name, reference) => {
            let _ = (Name::parse(&name), Reference::parse(&reference));
        }
        Endpoint::Blob(name, digest) => {
            let _ = (Name::parse(&name), Digest::parse(&digest));
        }
        Endpoint::Base | Endpoint::Catalog | Endpoint::Unknown => {}
    }
}

/// An APT Release (clearsigned or not) and a Packages index, compressed by the first byte's
/// choice as the mirror reads them.
pub fn apt(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let release = crate::mirror::fuzz_release(&text);
    let _ = release;
    let name = match data.first() {
        Some(b) if b % 3 == 0 => "Packages.gz",
        Some(b) if b % 3 == 1 => "Packages.xz",
        _ => "Packages",
    };
    crate::mirror::fuzz_packages(name, data.get(1..).unwrap_or_default());
}

/// A Redfish resource as the client reads it: JSON, then each model seed deserializes.
pub fn redfish(data: &[u8]) {
    crate::redfish::fuzz_models(data);
}

/// A config file through the loader and every validator.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::parse(text, Path::new("fuzz.yaml"));
    }
}
