//! `seed serve` as a systemd `Type=notify` service, spoken to as systemd does: a datagram
//! socket named by NOTIFY_SOCKET receives READY=1 once HTTP answers, WATCHDOG=1 at half of
//! WATCHDOG_USEC, RELOADING=1 and READY=1 around a SIGHUP, STOPPING=1 at SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on purpose

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{describe, repo_root, seed};

/// The next datagram, or a failure naming what was expected, within `within`.
fn next(manager: &UnixDatagram, within: Duration, expected: &str) -> String {
    manager.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    match manager.recv(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(e) => panic!("no message from seed within {within:?} (expected {expected}): {e}"),
    }
}

/// The first message that starts with `prefix`, skipping watchdog pings; bounded.
fn until(manager: &UnixDatagram, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {prefix} within 30 s");
        let message = next(manager, left, prefix);
        if message.starts_with(prefix) {
            return message;
        }
        assert_eq!(
            message, "WATCHDOG=1",
            "unexpected while waiting for {prefix}"
        );
    }
}

#[test]
fn serve_tells_the_service_manager_ready_reloading_stopping_and_feeds_its_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("notify");
    let manager = UnixDatagram::bind(&socket).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let http = format!("127.0.0.1:{port}");
    let child = seed()
        .arg("--config")
        .arg(repo_root().join("examples/osism-rack.yaml"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["serve", "--no-dhcp", "--no-tftp", "--http-listen", &http])
        .env("NOTIFY_SOCKET", &socket)
        // 400 ms: a ping every 200 ms.
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut serve = common::KillOnDrop::new(child);
    let pid = serve.child().id().to_string();

    let ready = until(&manager, "READY=1");
    assert!(ready.contains("STATUS=serving 11 nodes"), "{ready}");
    // Ready means ready: HTTP answers now, without waiting.
    assert!(
        std::net::TcpStream::connect(&http).is_ok(),
        "READY=1 before HTTP accepts connections"
    );

    // The watchdog is fed, again and again.
    for _ in 0..3 {
        assert_eq!(
            next(&manager, Duration::from_secs(5), "WATCHDOG=1"),
            "WATCHDOG=1"
        );
    }

    // systemctl reload (ExecReload sends SIGHUP).
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(hup.success());
    let reloading = until(&manager, "RELOADING=1");
    assert!(reloading.contains("STATUS=reloading"), "{reloading}");
    let reloaded = until(&manager, "READY=1");
    assert!(
        reloaded.contains("STATUS=serving; config reloaded"),
        "{reloaded}"
    );

    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(term.success());
    let stopping = until(&manager, "STOPPING=1");
    assert!(stopping.contains("SIGTERM"), "{stopping}");
    let out = serve.wait_with_output();
    assert!(out.status.success(), "{}", describe(&out));
}

/// Without a watchdog asked for (no WATCHDOG_USEC) or for another process (WATCHDOG_PID),
/// seed sends READY=1 and no pings.
#[test]
fn no_watchdog_pings_unless_asked_for_this_process() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("notify");
    let manager = UnixDatagram::bind(&socket).unwrap();
    let child = seed()
        .arg("--config")
        .arg(repo_root().join("examples/osism-rack.yaml"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(common::SERVE_HTTP_ONLY)
        .env("NOTIFY_SOCKET", &socket)
        .env("WATCHDOG_USEC", "200000")
        .env("WATCHDOG_PID", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _serve = common::KillOnDrop::new(child);
    assert!(next(&manager, Duration::from_secs(30), "READY=1").starts_with("READY=1"));
    manager
        .set_read_timeout(Some(Duration::from_millis(600)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        manager.recv(&mut buf).is_err(),
        "a ping although WATCHDOG_PID names another process: {}",
        String::from_utf8_lossy(&buf)
    );
}
