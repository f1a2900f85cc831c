//! `seed serve` with HTTP only, on loopback, and curl as its client.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{KillOnDrop, describe, seed};

/// The bearer token the HTTP tests' configs name (`seed.api_token: { env: … }`).
pub const API_TOKEN: &str = "test-api-token-0123456789";

/// seed serving HTTP on 127.0.0.1 (a port the kernel picked), killed when dropped.
pub struct HttpSeed {
    child: KillOnDrop,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    log: PathBuf,
}

impl HttpSeed {
    /// Start `seed serve --no-dhcp --no-tftp --http-listen 127.0.0.1:0` and wait until it says
    /// where it listens. Its log is `<state>.log`.
    pub fn start(config: &Path, state: &Path) -> Self {
        Self::start_with_env(config, state, &[])
    }

    /// The same with more arguments to `seed serve`.
    pub fn start_with_args(config: &Path, state: &Path, args: &[&str]) -> Self {
        Self::start_full(config, state, &[], args)
    }

    /// The same with more environment variables (a BMC password the config names).
    pub fn start_with_env(config: &Path, state: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_full(config, state, env, &[])
    }

    fn start_full(config: &Path, state: &Path, env: &[(&str, &str)], args: &[&str]) -> Self {
        let log = state.with_extension("log");
        let file = std::fs::File::create(&log).unwrap();
        let child = seed()
            .envs(env.iter().copied())
            .arg("--config")
            .arg(config)
            .arg("--state-dir")
            .arg(state)
            .args(super::SERVE_HTTP_ONLY)
            .args(args)
            .arg("-v")
            .env("SEED_TEST_API_TOKEN", API_TOKEN)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        let mut child = KillOnDrop::new(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = strip_ansi(&std::fs::read_to_string(&log).unwrap_or_default());
            if let Some(addr) = text
                .lines()
                .find(|l| l.contains("HTTP server running"))
                .and_then(|l| l.split("local=").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
            {
                return Self {
                    child,
                    base: format!("http://{}", addr.trim()),
                    log,
                };
            }
            if let Some(status) = child.child().try_wait().unwrap() {
                panic!("seed exited before serving HTTP: {status}\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "seed did not start HTTP:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// seed's process id.
    pub fn pid(&mut self) -> u32 {
        self.child.child().id()
    }

    /// The log so far.
    pub fn log(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ … letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A curl response: status code, headers (lowercase names) and body.
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Response headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Run curl with `args` (plus `-s -D <headers>`) and parse what came back.
pub fn curl(args: &[&str]) -> Reply {
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("headers");
    let out: Output = Command::new(super::need("curl"))
        .args(["-s", "--max-time", "60", "-D"])
        .arg(&headers)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "curl {args:?}: {}", describe(&out));
    let raw = std::fs::read_to_string(&headers).unwrap();
    let mut lines = raw.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: out.stdout,
    }
}

/// `GET url`.
pub fn get(url: &str) -> Reply {
    curl(&[url])
}

/// `POST url` with a JSON body.
pub fn post_json(url: &str, body: &str) -> Reply {
    curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        body,
        url,
    ])
}

/// `POST url` with an empty body (the installer's callbacks).
pub fn post(url: &str) -> Reply {
    curl(&["-X", "POST", url])
}
