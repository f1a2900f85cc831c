//! The APT mirror against real `apt-get`: a signed repository built with dpkg-deb,
//! apt-ftparchive and a throwaway gpg key; seed serves it as a static directory and as a
//! caching proxy of a plain HTTP server (python3 -m http.server) on loopback. apt runs with its
//! own config file (`APT_CONFIG`) and directories, so the host's apt setup is untouched.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on purpose

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::http::{HttpSeed, get};
use common::{KillOnDrop, describe, repo_root, run, seed as seed_command};

/// A signed repository: `repo/` with `pool/` and `dists/stable/`, and its key.
struct Repo {
    dir: PathBuf,
    key: common::gpg::Key,
    keyring: PathBuf,
}

impl Repo {
    fn new(base: &Path) -> Self {
        let key = common::gpg::Key::new(base, "seed mirror test <t@invalid>");
        Self {
            dir: base.join("repo"),
            keyring: key.keyring.clone(),
            key,
        }
    }

    fn gpg(&self, args: &[&str]) -> Output {
        self.key.gpg(args)
    }

    /// Adds package `name` (an `all` .deb carrying `size` bytes of payload).
    fn add(&self, name: &str, size: usize) -> PathBuf {
        let payload: Vec<u8> = (0..size)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8 ^ name.len() as u8)
            .collect();
        self.add_payload(name, payload)
    }

    /// A package whose payload does not compress: its .deb is about `size` bytes.
    fn add_incompressible(&self, name: &str, size: usize) -> PathBuf {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ name.len() as u64;
        let payload: Vec<u8> = (0..size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        self.add_payload(name, payload)
    }

    fn add_payload(&self, name: &str, payload: Vec<u8>) -> PathBuf {
        let build = self.dir.parent().unwrap().join("build").join(name);
        std::fs::create_dir_all(build.join("DEBIAN")).unwrap();
        std::fs::create_dir_all(build.join("usr/share/seedtest")).unwrap();
        std::fs::write(
            build.join("DEBIAN/control"),
            format!(
                "Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: seed <t@invalid>\n\
                 Description: seed mirror test package\n"
            ),
        )
        .unwrap();
        std::fs::write(build.join("usr/share/seedtest").join(name), payload).unwrap();
        let pool = self.dir.join(format!("pool/main/s/{name}"));
        std::fs::create_dir_all(&pool).unwrap();
        let deb = pool.join(format!("{name}_1.0_all.deb"));
        run(Command::new(common::need("dpkg-deb"))
            .args(["--root-owner-group", "-Zgzip", "--build"])
            .arg(&build)
            .arg(&deb));
        deb
    }

    /// (Re)writes Packages (plain, .gz, .xz), Release, InRelease and Release.gpg.
    fn publish(&self) {
        let binary = self.dir.join("dists/stable/main/binary-amd64");
        std::fs::create_dir_all(&binary).unwrap();
        let packages = run(Command::new(common::need("apt-ftparchive"))
            .args(["packages", "pool"])
            .current_dir(&self.dir));
        std::fs::write(binary.join("Packages"), &packages.stdout).unwrap();
        for (tool, ext) in [("gzip", "gz"), ("xz", "xz")] {
            let _ = std::fs::remove_file(binary.join(format!("Packages.{ext}")));
            run(Command::new(tool)
                .args(["-k", "-f"])
                .arg(binary.join("Packages")));
        }
        let dists = self.dir.join("dists/stable");
        for f in ["Release", "InRelease", "Release.gpg"] {
            let _ = std::fs::remove_file(dists.join(f));
        }
        let release = run(Command::new(common::need("apt-ftparchive"))
            .args([
                "-o",
                "APT::FTPArchive::Release::Suite=stable",
                "-o",
                "APT::FTPArchive::Release::Codename=stable",
                "-o",
                "APT::FTPArchive::Release::Architectures=amd64",
                "-o",
                "APT::FTPArchive::Release::Components=main",
                "release",
                "dists/stable",
            ])
            .current_dir(&self.dir));
        std::fs::write(dists.join("Release"), &release.stdout).unwrap();
        let r = dists.join("Release");
        self.gpg(&[
            "--clearsign",
            "-o",
            dists.join("InRelease").to_str().unwrap(),
            r.to_str().unwrap(),
        ]);
        self.gpg(&[
            "-abs",
            "-o",
            dists.join("Release.gpg").to_str().unwrap(),
            r.to_str().unwrap(),
        ]);
    }
}

/// An apt client of its own: config, sources, lists and cache in `dir`.
struct Apt {
    dir: PathBuf,
}

impl Apt {
    fn new(dir: &Path, url: &str, keyring: &Path) -> Self {
        for d in [
            "empty",
            "state/lists/partial",
            "cache/archives/partial",
            "log",
        ] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(dir.join("status"), "").unwrap();
        std::fs::write(
            dir.join("sources.list"),
            format!("deb [signed-by={}] {url} stable main\n", keyring.display()),
        )
        .unwrap();
        let d = dir.display();
        std::fs::write(
            dir.join("apt.conf"),
            format!(
                "Dir::Etc::SourceList \"{d}/sources.list\";\n\
                 Dir::Etc::SourceParts \"{d}/empty\";\n\
                 Dir::Etc::Parts \"{d}/empty\";\n\
                 Dir::Etc::Preferences \"{d}/empty/none\";\n\
                 Dir::Etc::PreferencesParts \"{d}/empty\";\n\
                 Dir::Etc::Trusted \"{d}/empty/none.gpg\";\n\
                 Dir::Etc::TrustedParts \"{d}/empty\";\n\
                 Dir::State \"{d}/state\";\n\
                 Dir::State::status \"{d}/status\";\n\
                 Dir::Cache \"{d}/cache\";\n\
                 Dir::Log \"{d}/log\";\n\
                 APT::Architecture \"amd64\";\n\
                 APT::Architectures {{ \"amd64\"; }};\n\
                 Acquire::Languages \"none\";\n\
                 Acquire::http::Proxy \"false\";\n\
                 Acquire::Retries \"0\";\n\
                 APT::Sandbox::User \"root\";\n\
                 Debug::NoLocking \"true\";\n"
            ),
        )
        .unwrap();
        Self {
            dir: dir.to_path_buf(),
        }
    }

    fn command(&self, args: &[&str], cwd: &Path) -> Command {
        let mut cmd = Command::new(common::need("apt-get"));
        cmd.env("APT_CONFIG", self.dir.join("apt.conf"))
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .args(["-q", "-y"])
            .args(args)
            .current_dir(cwd);
        cmd
    }

    fn get(&self, args: &[&str], cwd: &Path) -> Output {
        self.command(args, cwd).output().unwrap()
    }
}

/// `python3 -m http.server` serving `dir` on loopback; its request log.
struct Upstream {
    process: Option<KillOnDrop>,
    port: u16,
    log: PathBuf,
}

impl Upstream {
    fn start(dir: &Path, log: PathBuf) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let process = Command::new(common::need("python3"))
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("python3");
        let mut process = KillOnDrop::new(process);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                process.child().try_wait().unwrap().is_none(),
                "http.server exited"
            );
            assert!(Instant::now() < deadline, "http.server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            process: Some(process),
            port,
            log,
        }
    }

    /// How often the upstream was asked for `path` (GET, any status).
    fn gets(&self, path: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&format!("\"GET /{path} ")))
            .count()
    }

    fn stop(&mut self) {
        self.process.take();
    }
}

fn config(base: &Path, repo: &Path, upstream_port: u16) -> PathBuf {
    config_with(base, repo, upstream_port, "")
}

/// [`config`] with more `mirror:` settings (`"  cache_size: 1M\n"`).
fn config_with(base: &Path, repo: &Path, upstream_port: u16, extra: &str) -> PathBuf {
    let mut text = std::fs::read_to_string(repo_root().join("examples/lab.yaml")).unwrap();
    text.push_str(&format!(
        "\nmirror:\n{extra}  cache_dir: {}\n  repos:\n    - prefix: static\n      static: {}\n    \
         - prefix: ubuntu\n      upstream: [\"http://127.0.0.1:{upstream_port}\"]\n",
        base.join("cache").display(),
        repo.display()
    ));
    let path = base.join("seed.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn apt_installs_from_the_mirror_static_proxied_and_offline() {
    let base = tempfile::tempdir().unwrap();
    let base = base.path();
    let repo = Repo::new(base);
    let mut debs = std::collections::HashMap::new();
    for (name, size) in [
        ("seedtest-a", 200_000),
        ("seedtest-b", 300_000),
        ("seedtest-c", 50_000),
    ] {
        debs.insert(name, repo.add(name, size));
    }
    repo.publish();
    let mut upstream = Upstream::start(&repo.dir, base.join("upstream.log"));
    let state = base.join("state");
    let config = config(base, &repo.dir, upstream.port);
    let seed = HttpSeed::start(&config, &state);
    let downloads = base.join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let deb_name = |name: &str| format!("{name}_1.0_all.deb");

    // Static: apt-get update and download straight from the directory.
    let static_apt = Apt::new(
        &base.join("apt-static"),
        &seed.url("/apt/static"),
        &repo.keyring,
    );
    let out = static_apt.get(&["update"], &downloads);
    assert!(out.status.success(), "static update: {}", describe(&out));
    let out = static_apt.get(&["download", "seedtest-a"], &downloads);
    assert!(out.status.success(), "static download: {}", describe(&out));
    assert_eq!(
        std::fs::read(downloads.join(deb_name("seedtest-a"))).unwrap(),
        std::fs::read(&debs["seedtest-a"]).unwrap()
    );
    assert_eq!(
        upstream.gets("dists/stable/InRelease"),
        0,
        "static mode asks no upstream"
    );

    // Proxy: the same through the cache.
    let proxy = Apt::new(
        &base.join("apt-proxy"),
        &seed.url("/apt/ubuntu"),
        &repo.keyring,
    );
    let out = proxy.get(&["update"], &downloads);
    assert!(out.status.success(), "proxy update: {}", describe(&out));
    let here = base.join("dl-proxy");
    std::fs::create_dir_all(&here).unwrap();
    let out = proxy.get(&["download", "seedtest-a"], &here);
    assert!(out.status.success(), "proxy download: {}", describe(&out));
    assert_eq!(
        std::fs::read(here.join(deb_name("seedtest-a"))).unwrap(),
        std::fs::read(&debs["seedtest-a"]).unwrap()
    );

    // 50 apt-get downloads of one uncached package at once: one upstream fetch.
    let b = "pool/main/s/seedtest-b/seedtest-b_1.0_all.deb";
    assert_eq!(upstream.gets(b), 0);
    let mut clients = Vec::new();
    for i in 0..50 {
        let cwd = base.join(format!("dl-{i}"));
        std::fs::create_dir_all(&cwd).unwrap();
        let child = proxy
            .command(&["download", "seedtest-b"], &cwd)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        clients.push((cwd, KillOnDrop::new(child)));
    }
    let want_b = std::fs::read(&debs["seedtest-b"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    for (cwd, client) in clients {
        let out = client.wait_with_output();
        assert!(Instant::now() < deadline, "50 downloads took over 120 s");
        assert!(
            out.status.success(),
            "{}: {}",
            cwd.display(),
            describe(&out)
        );
        assert!(std::fs::read(cwd.join(deb_name("seedtest-b"))).unwrap() == want_b);
    }
    assert_eq!(
        upstream.gets(b),
        1,
        "exactly one upstream fetch for 50 clients"
    );
    let metrics = common::http::curl(&[&seed.url("/metrics")]).text();
    assert!(
        metrics.contains("seed_apt_upstream_fetches_total "),
        "{metrics}"
    );

    // A corrupted upstream package (same size, other bytes) is refused, not cached.
    let c = &debs["seedtest-c"];
    let mut bytes = std::fs::read(c).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(c, bytes).unwrap();
    let out = proxy.get(&["download", "seedtest-c"], &here);
    assert!(
        !out.status.success(),
        "a corrupted package was accepted: {}",
        describe(&out)
    );
    // The download task logs its refusal as it drops the file; apt may hear of it first.
    common::wait_until_else(
        Duration::from_secs(10),
        || seed.log().contains("does not match the index"),
        || format!("seed says why: {}", seed.log()),
    );
    assert!(
        !base
            .join("cache/ubuntu/pool/main/s/seedtest-c")
            .join(deb_name("seedtest-c"))
            .exists()
    );
    // And a client that checks nothing itself (curl) is not handed it as complete: the
    // length is announced, the last byte held back until the file verified, and the
    // connection aborted when it did not (curl: 18, partial file). It used to be a clean 200.
    let corrupt_url = seed.url(&format!(
        "/apt/ubuntu/pool/main/s/seedtest-c/{}",
        deb_name("seedtest-c")
    ));
    let out = Command::new(common::need("curl"))
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
        ])
        .arg(&corrupt_url)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "curl took a package that failed verification for complete: {}",
        describe(&out)
    );
    assert_eq!(
        out.status.code(),
        Some(18),
        "partial file: {}",
        describe(&out)
    );

    // The upstream publishes a new suite (seedtest-d added): the first update after fetches
    // the indices the cache used before the new Release is served.
    repo.add("seedtest-d", 10_000);
    repo.publish();
    let out = proxy.get(&["update"], &downloads);
    assert!(
        out.status.success(),
        "update after publish: {}",
        describe(&out)
    );

    // The upstream goes away: a new client still updates and downloads from the cache, and
    // sees the new suite (its Release and indices are both in the cache).
    upstream.stop();
    // In its place, a host that takes connections and drops them (a dead proxy, a firewall
    // resetting): the count of connections shows whether seed still asks it.
    let dropper = std::net::TcpListener::bind(("127.0.0.1", upstream.port)).unwrap();
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&asked);
    std::thread::spawn(move || {
        for stream in dropper.incoming() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    let offline = Apt::new(
        &base.join("apt-offline"),
        &seed.url("/apt/ubuntu"),
        &repo.keyring,
    );
    let out = offline.get(&["update"], &downloads);
    assert!(out.status.success(), "offline update: {}", describe(&out));
    assert!(
        seed.log()
            .contains("upstream unreachable, serving the cached copy"),
        "{}",
        seed.log()
    );
    let after_first = asked.load(std::sync::atomic::Ordering::SeqCst);
    assert!(after_first >= 1, "the first revalidation asks the upstream");
    // Within the next minute revalidations do not ask a failed upstream again: the cache
    // answers at once.
    let out = offline.get(&["update"], &downloads);
    assert!(
        out.status.success(),
        "second offline update: {}",
        describe(&out)
    );
    assert_eq!(
        asked.load(std::sync::atomic::Ordering::SeqCst),
        after_first,
        "a failed upstream was asked again"
    );
    assert!(
        seed.log()
            .contains("revalidations serve the cache without asking it"),
        "{}",
        seed.log()
    );
    // The indices are cached under their hashes, as the archive publishes them.
    let by_hash = base.join("cache/ubuntu/dists/stable/main/binary-amd64/by-hash/SHA256");
    assert!(
        std::fs::read_dir(&by_hash).unwrap().count() >= 2,
        "the old and the new Packages index"
    );
    let there = base.join("dl-offline");
    std::fs::create_dir_all(&there).unwrap();
    for name in ["seedtest-a", "seedtest-b"] {
        let out = offline.get(&["download", name], &there);
        assert!(
            out.status.success(),
            "offline download {name}: {}",
            describe(&out)
        );
        assert_eq!(
            std::fs::read(there.join(deb_name(name))).unwrap(),
            std::fs::read(&debs[name]).unwrap()
        );
    }
    let out = offline
        .command(&["--print-uris", "download", "seedtest-d"], &there)
        .output()
        .unwrap();
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("seedtest-d_1.0_all.deb"),
        "the new suite's package is known offline: {}",
        describe(&out)
    );

    // The seed host's disk use shows in `seed status`.
    let stdout = status(&config, &state);
    let disk = stdout
        .lines()
        .find(|l| l.starts_with("disk: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        disk.contains("APT mirror cache") && !disk.contains("APT mirror cache 0 B"),
        "{disk}"
    );
}

/// An upstream that sends half of every file and then stalls: a download in progress.
const STALLING_UPSTREAM: &str = r#"
import http.server, os, sys, time
root = sys.argv[2]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        data = open(os.path.join(root, self.path.lstrip("/")), "rb").read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not self.path.startswith("/pool/"):
            self.wfile.write(data)  # the indices whole: seed fetches only what they name
            return
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        time.sleep(60)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"#;

/// A package is streamed to its clients while seed downloads it; seed killed (SIGKILL) in the
/// middle of caching it leaves no file that a later seed would serve as complete: the next
/// start clears the partial download and fetches it anew.
#[test]
fn a_download_is_streamed_as_it_grows_and_a_crash_leaves_no_truncated_package() {
    let base = tempfile::tempdir().unwrap();
    let base = base.path();
    let repo = base.join("repo");
    let rel = "pool/main/x/xpkg/xpkg_1.0_all.deb";
    std::fs::create_dir_all(repo.join("pool/main/x/xpkg")).unwrap();
    let payload: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(repo.join(rel), &payload).unwrap();
    // The indices that name it (seed fetches only packages a verified Packages lists; it does
    // not check signatures, apt does).
    let sha256 = |path: &Path| {
        let out = run(Command::new(common::need("sha256sum")).arg(path));
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let packages = repo.join("dists/stable/main/binary-amd64/Packages");
    std::fs::create_dir_all(packages.parent().unwrap()).unwrap();
    std::fs::write(
        &packages,
        format!(
            "Package: xpkg\nVersion: 1.0\nArchitecture: all\nFilename: {rel}\nSize: {}\nSHA256: {}\n",
            payload.len(),
            sha256(&repo.join(rel))
        ),
    )
    .unwrap();
    std::fs::write(
        repo.join("dists/stable/Release"),
        format!(
            "Suite: stable\nSHA256:\n {} {} main/binary-amd64/Packages\n",
            sha256(&packages),
            std::fs::metadata(&packages).unwrap().len()
        ),
    )
    .unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let stalling = Command::new(common::need("python3"))
        .args(["-c", STALLING_UPSTREAM, &port.to_string()])
        .arg(&repo)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _stalling = KillOnDrop::new(stalling);
    common::wait_until(
        Duration::from_secs(20),
        "the stalling upstream did not start",
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
    let state = base.join("state");
    let mut seed = HttpSeed::start(&config(base, &repo, port), &state);
    for index in [
        "dists/stable/Release",
        "dists/stable/main/binary-amd64/Packages",
    ] {
        let reply = common::http::get(&seed.url(&format!("/apt/ubuntu/{index}")));
        assert_eq!(reply.status, 200, "{index}: {}", reply.text());
    }
    let url = seed.url(&format!("/apt/ubuntu/{rel}"));
    let client = Command::new(common::need("curl"))
        .args(["-s", "-o", "/dev/null", "--max-time", "30", &url])
        .spawn()
        .unwrap();
    let _client = KillOnDrop::new(client);
    // Wait until half the package is in seed's temporary file, then kill seed hard.
    let tmp = base.join("cache/.tmp");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let written: u64 = std::fs::read_dir(&tmp)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        if written >= 500_000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no download in progress ({written} bytes)"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A client that joins now gets what is there at once (the download is streamed as it
    // grows), not silence until the upstream finishes: apt would time out on a large package.
    let joined = Command::new(common::need("curl"))
        .args([
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            "3",
            "-w",
            "%{size_download}",
            &url,
        ])
        .output()
        .unwrap();
    let got: u64 = String::from_utf8_lossy(&joined.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(
        got >= 500_000,
        "a joining client got {got} bytes while the upstream stalls"
    );
    let pid = seed.pid();
    assert!(
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    drop(seed);
    let cached = base.join("cache/ubuntu").join(rel);
    assert!(!cached.exists(), "a partial download is in the cache");

    // The next seed, with a working upstream: the partial file is gone and the package is
    // fetched whole.
    let upstream = Upstream::start(&repo, base.join("upstream.log"));
    let seed = HttpSeed::start(&config(base, &repo, upstream.port), &state);
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "the partial download was cleared at start"
    );
    let reply = common::http::curl(&[&seed.url(&format!("/apt/ubuntu/{rel}"))]);
    assert_eq!(reply.status, 200);
    assert!(reply.body == payload, "the package is whole");
    // The client may have its last byte before seed has verified and renamed the file.
    common::wait_until(
        std::time::Duration::from_secs(10),
        "the package never reached the cache",
        || cached.exists(),
    );
    assert!(std::fs::read(&cached).unwrap() == payload);
}

/// Only what verified indices name is fetched: a file in the upstream's pool that no Packages
/// lists, a path outside dists/ and pool/, an index by a hash no Release names are refused
/// without asking the upstream (before: fetched and kept, unverified). And the cache keeps
/// under `cache_size`, the least recently used package going first.
#[test]
fn the_proxy_fetches_only_what_verified_indices_name_and_stays_under_its_size() {
    let base = tempfile::tempdir().unwrap();
    let base = base.path();
    let repo = Repo::new(base);
    for name in ["seedtest-a", "seedtest-b", "seedtest-c"] {
        repo.add_incompressible(name, 450_000);
    }
    repo.publish();
    // Files the upstream has that no index names.
    let stray = repo.dir.join("pool/main/s/stray.bin");
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::write(&stray, vec![7u8; 100_000]).unwrap();
    std::fs::write(repo.dir.join("ls-lR.gz"), b"listing").unwrap();
    let upstream = Upstream::start(&repo.dir, base.join("upstream.log"));
    let state = base.join("state");
    let config = config_with(base, &repo.dir, upstream.port, "  cache_size: 1M\n");
    let seed = HttpSeed::start(&config, &state);
    let proxy = Apt::new(&base.join("apt"), &seed.url("/apt/ubuntu"), &repo.keyring);
    let here = base.join("dl");
    std::fs::create_dir_all(&here).unwrap();
    let out = proxy.get(&["update"], &here);
    assert!(out.status.success(), "proxy update: {}", describe(&out));

    for (path, why) in [
        (
            "pool/main/s/stray.bin",
            "is named by no index seed has verified",
        ),
        ("ls-lR.gz", "only dists/ and pool/ are proxied"),
        (
            "dists/stable/main/binary-amd64/by-hash/SHA256/0000000000000000000000000000000000000000000000000000000000000000",
            "is named by no index seed has verified",
        ),
    ] {
        let reply = get(&seed.url(&format!("/apt/ubuntu/{path}")));
        assert_eq!(reply.status, 404, "{path}: {}", reply.text());
        assert!(reply.text().contains(why), "{path}: {}", reply.text());
        assert_eq!(upstream.gets(path), 0, "{path} was asked upstream");
    }

    // Three packages of 450 KB into a cache of 1 MiB: the least recently used goes.
    let cache = base.join("cache/ubuntu/pool/main/s");
    let in_cache = |name: &str| {
        cache
            .join(name)
            .join(format!("{name}_1.0_all.deb"))
            .is_file()
    };
    for name in ["seedtest-a", "seedtest-b"] {
        let out = proxy.get(&["download", name], &here);
        assert!(out.status.success(), "{name}: {}", describe(&out));
    }
    // a is used again (apt downloads it anew: seed serves it from the cache), so b is the
    // least recently used when c arrives.
    std::fs::remove_file(here.join("seedtest-a_1.0_all.deb")).unwrap();
    let out = proxy.get(&["download", "seedtest-a"], &here);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        upstream.gets("pool/main/s/seedtest-a/seedtest-a_1.0_all.deb"),
        1
    );
    let out = proxy.get(&["download", "seedtest-c"], &here);
    assert!(out.status.success(), "{}", describe(&out));
    common::wait_until_else(
        std::time::Duration::from_secs(20),
        || !(in_cache("seedtest-b")),
        || format!("the cache was not pruned: {}", seed.log()),
    );
    assert!(
        in_cache("seedtest-a") && in_cache("seedtest-c"),
        "the recently used were kept"
    );
    assert!(images::disk_usage(&base.join("cache")) <= 1 << 20);
    let stdout = status(&config, &state);
    assert!(stdout.contains(" of 1.0 MiB"), "{stdout}");
}

/// `seed status` of `config` and `state`: its output.
fn status(config: &Path, state: &Path) -> String {
    let out = seed_command()
        .arg("--config")
        .arg(config)
        .arg("--state-dir")
        .arg(state)
        .arg("status")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
