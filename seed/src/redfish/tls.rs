//! How seed trusts a BMC's certificate. By default, like any HTTPS client: the system's root
//! certificates, or a CA file the operator names. BMCs mostly ship self-signed certificates;
//! for those the operator opts in, per BMC, to one certificate pinned by its SHA-256 — given in
//! the config, or recorded the first time seed connects and refused if it ever changes. There
//! is no "accept anything".

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::blocking::Client;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// Which certificates a BMC may present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Chains to the system's root certificates, for the BMC's name or address.
    System,
    /// Chains to the CA certificate(s) in this PEM file.
    CaFile(PathBuf),
    /// Exactly the certificate with this SHA-256 (64 lowercase hex digits).
    Pinned(String),
    /// The certificate seen first, whose SHA-256 is then kept in this file.
    FirstUse(PathBuf),
}

/// The SHA-256 of a DER certificate, as lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An HTTP client that trusts what `trust` says.
pub fn client(trust: &Trust) -> Result<Client, String> {
    let builder = Client::builder();
    let builder = match trust {
        Trust::System => builder,
        Trust::CaFile(path) => {
            let pem =
                std::fs::read(path).map_err(|e| format!("CA file {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("CA file {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("CA file {}: no certificate in it", path.display()));
            }
            certs
                .into_iter()
                .fold(builder.tls_built_in_root_certs(false), |b, c| {
                    b.add_root_certificate(c)
                })
        }
        Trust::Pinned(expected) => builder.use_preconfigured_tls(pinned_config(Pin {
            expected: Some(expected.clone()),
            record: None,
        })?),
        Trust::FirstUse(record) => {
            let expected = match std::fs::read_to_string(record) {
                Ok(text) => Some(text.trim().to_string()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(format!("pin file {}: {e}", record.display())),
            };
            builder.use_preconfigured_tls(pinned_config(Pin {
                expected,
                record: Some(record.clone()),
            })?)
        }
    };
    builder.build().map_err(|e| format!("HTTP client: {e}"))
}

fn pinned_config(pin: Pin) -> Result<rustls::ClientConfig, String> {
    let provider = rustls::crypto::ring::default_provider();
    let verifier = PinnedVerifier {
        pin,
        algorithms: provider.signature_verification_algorithms,
    };
    Ok(
        rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth(),
    )
}

#[derive(Debug)]
struct Pin {
    expected: Option<String>,
    record: Option<PathBuf>,
}

/// Accepts exactly the pinned certificate (no chain, no name: a self-signed BMC certificate
/// names whatever its vendor chose). The handshake signatures are still verified, so the peer
/// must hold that certificate's private key.
#[derive(Debug)]
struct PinnedVerifier {
    pin: Pin,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = fingerprint(end_entity);
        match (&self.pin.expected, &self.pin.record) {
            (Some(expected), _) if *expected == seen => Ok(ServerCertVerified::assertion()),
            (Some(expected), record) => Err(rustls::Error::General(format!(
                "the BMC's certificate (SHA-256 {seen}) is not the pinned one ({expected}{}); \
                 if the BMC's certificate was renewed on purpose, update the pin",
                record
                    .as_ref()
                    .map(|r| format!(", recorded in {}", r.display()))
                    .unwrap_or_default()
            ))),
            (None, Some(record)) => {
                record_first_use(record, &seen).map_err(rustls::Error::General)?;
                Ok(ServerCertVerified::assertion())
            }
            (None, None) => Err(rustls::Error::General("no pin".into())),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Keeps the first fingerprint seen. `create_new`: of two first connections, one records and
/// the other is compared on its next use.
fn record_first_use(record: &Path, fingerprint: &str) -> Result<(), String> {
    if let Some(dir) = record.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(record)
        .map_err(|e| format!("cannot record the BMC's pin in {}: {e}", record.display()))?;
    file.write_all(format!("{fingerprint}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot record the BMC's pin in {}: {e}", record.display()))
}
