//! Fault tests against an in-process fake BMC (a few dozen lines of HTTP/1.1 on a loopback
//! socket): what real BMCs do that the emulator does not.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::config::SecretRef;

mod dialects;

/// One request the fake saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: String,
}

/// What the fake answers.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.to_string(),
    }
}

type Handler = dyn Fn(&Seen, usize) -> Option<Reply> + Send + Sync;

/// A fake BMC on 127.0.0.1: `handler` gets each request and how many came before it; `None`
/// means "never answer".
struct FakeBmc {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeBmc {
    fn start(handler: impl Fn(&Seen, usize) -> Option<Reply> + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let handler = Arc::clone(&handler);
                let log = Arc::clone(&log);
                std::thread::spawn(move || serve(stream, &*handler, &log));
            }
        });
        Self { base, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn endpoint(&self, password: &str) -> Endpoint {
        Endpoint {
            base: self.base.clone(),
            username: "root".into(),
            password: secret(password),
            timeout: Duration::from_millis(800),
            action_timeout: Duration::from_millis(800),
            retry_for: Duration::from_secs(5),
        }
    }
}

fn secret(value: &str) -> Secret {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pw");
    std::fs::write(&path, value).unwrap();
    SecretRef::File(path).resolve().unwrap()
}

fn serve(stream: TcpStream, handler: &Handler, log: &Mutex<Vec<Seen>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or_default().to_string(),
            parts.next().unwrap_or_default().to_string(),
        );
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let seen = Seen {
            method,
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        let count = {
            let mut log = log.lock().unwrap();
            log.push(seen.clone());
            log.len() - 1
        };
        let Some(r) = handler(&seen, count) else {
            // Never answer: hold the connection open.
            std::thread::sleep(Duration::from_secs(30));
            return;
        };
        let mut out = format!(
            "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            r.status,
            r.body.len()
        );
        for (k, v) in &r.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&r.body);
        if writer.write_all(out.as_bytes()).is_err() {
            return;
        }
    }
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().build().unwrap()
}

/// A plain BMC: one system, sessions unless `sessions` is false, and these extras.
fn bmc(sessions: bool, system: Value) -> impl Fn(&Seen, usize) -> Option<Reply> {
    move |req: &Seen, _| {
        Some(match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/redfish/v1/") => {
                let mut root = json!({ "Systems": { "@odata.id": "/redfish/v1/Systems" } });
                if sessions {
                    root["SessionService"] = json!({ "@odata.id": "/redfish/v1/SessionService" });
                    root["Links"] = json!({ "Sessions": { "@odata.id": "/redfish/v1/SessionService/Sessions" } });
                }
                reply(200, root)
            }
            ("POST", "/redfish/v1/SessionService/Sessions") => {
                let body: Value = serde_json::from_str(&req.body).unwrap_or_default();
                if body["Password"] != "s3cret-pw" {
                    return Some(reply(401, json!({})));
                }
                Reply {
                    status: 201,
                    headers: vec![
                        ("X-Auth-Token", "tok-1".into()),
                        ("Location", "/redfish/v1/SessionService/Sessions/1".into()),
                    ],
                    body: "{}".into(),
                }
            }
            ("GET", "/redfish/v1/Systems") => reply(
                200,
                json!({ "Members": [ { "@odata.id": "/redfish/v1/Systems/1" } ] }),
            ),
            ("GET", "/redfish/v1/Systems/1") => reply(200, system.clone()),
            _ => reply(200, json!({})),
        })
    }
}

fn system(allowed_resets: &[&str]) -> Value {
    json!({
        "Id": "1",
        "PowerState": "On",
        "Boot": {
            "BootSourceOverrideTarget": "None",
            "BootSourceOverrideTarget@Redfish.AllowableValues": ["None", "Pxe", "Hdd", "UefiHttp"],
            "BootSourceOverrideMode": "UEFI"
        },
        "Actions": { "#ComputerSystem.Reset": {
            "target": "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
            "ResetType@Redfish.AllowableValues": allowed_resets
        } }
    })
}

#[test]
fn a_session_is_opened_reused_and_deleted() {
    let fake = FakeBmc::start(bmc(true, system(&["On", "ForceOff", "ForceRestart"])));
    {
        let client = Client::connect(fake.endpoint("s3cret-pw"), http()).unwrap();
        assert!(client.has_session());
        let (_, sys) = client.system(None, &[]).unwrap();
        client.reset(&sys, ResetKind::ForceRestart).unwrap();
    }
    let seen = fake.seen();
    let authed: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path.starts_with("/redfish/v1/Systems"))
        .collect();
    assert!(
        authed.iter().all(
            |s| s.headers.get("x-auth-token").map(String::as_str) == Some("tok-1")
                && !s.headers.contains_key("authorization")
        ),
        "{authed:?}"
    );
    let reset = seen
        .iter()
        .find(|s| s.path.ends_with("ComputerSystem.Reset"))
        .unwrap();
    assert_eq!(reset.body, r#"{"ResetType":"ForceRestart"}"#);
    let last = seen.last().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        ("DELETE", "/redfish/v1/SessionService/Sessions/1"),
        "the session is given back"
    );
}

#[test]
fn without_a_session_service_basic_auth_is_sent() {
    let fake = FakeBmc::start(bmc(false, system(&[])));
    let client = Client::connect(fake.endpoint("s3cret-pw"), http()).unwrap();
    assert!(!client.has_session());
    client.system(None, &[]).unwrap();
    let seen = fake.seen();
    let get = seen
        .iter()
        .find(|s| s.path == "/redfish/v1/Systems")
        .unwrap();
    // "root:s3cret-pw" in base64.
    assert_eq!(
        get.headers.get("authorization").map(String::as_str),
        Some("Basic cm9vdDpzM2NyZXQtcHc=")
    );
}

#[test]
fn wrong_credentials_are_a_clear_error_without_the_password() {
    let fake = FakeBmc::start(bmc(true, system(&[])));
    let err = Client::connect(fake.endpoint("wrong-pw-value"), http())
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(text.contains("401"), "{text}");
    assert!(text.contains("open a session"), "{text}");
    assert!(text.contains("bmc.username and password"), "{text}");
    assert!(!text.contains("wrong-pw-value"), "{text}");
    assert!(!format!("{err:?}").contains("wrong-pw-value"));
}

#[test]
fn a_503_with_retry_after_is_retried() {
    let inner = bmc(false, system(&[]));
    let fake = FakeBmc::start(move |req, n| {
        if req.path == "/redfish/v1/Systems" && n < 3 {
            return Some(Reply {
                status: 503,
                headers: vec![("Retry-After", "1".into())],
                body: "{}".into(),
            });
        }
        inner(req, n)
    });
    let client = Client::connect(fake.endpoint("s3cret-pw"), http()).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(client.systems().unwrap(), ["/redfish/v1/Systems/1"]);
    // It waited as told (at least one Retry-After of 1 s) instead of hammering.
    assert!(started.elapsed() >= Duration::from_millis(900));
    let tries = fake
        .seen()
        .iter()
        .filter(|s| s.path == "/redfish/v1/Systems")
        .count();
    assert!(tries >= 2, "{tries}");
}

/// A read the BMC fails inside (500: sushy-tools' "database is locked" under parallel reads, a
/// busy iDRAC) is asked once more; a second failure is the error, with the BMC's words. An
/// action is never sent twice.
#[test]
fn a_read_that_fails_inside_the_bmc_is_asked_once_more() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let fails = Arc::new(AtomicUsize::new(1));
    let left = Arc::clone(&fails);
    let plain = bmc(false, system(&["On", "ForceOff", "ForceRestart"]));
    let fake = FakeBmc::start(move |req, n| {
        if req.path == "/redfish/v1/Systems"
            && left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| f.checked_sub(1))
                .is_ok()
        {
            return Some(refused(500, "database is locked"));
        }
        if req.method == "POST" && req.path.ends_with("ComputerSystem.Reset") {
            return Some(refused(500, "internal error"));
        }
        plain(req, n)
    });
    let client = Client::connect(fake.endpoint("s3cret-pw"), http()).unwrap();
    let (path, sys) = client.system(None, &[]).unwrap();
    let lists = |fake: &FakeBmc| {
        fake.seen()
            .iter()
            .filter(|s| s.path == "/redfish/v1/Systems")
            .count()
    };
    assert_eq!(lists(&fake), 2, "asked again after the 500");
    // Twice in a row: the error, with the BMC's message.
    fails.store(2, Ordering::SeqCst);
    let err = client.system(None, &[]).unwrap_err().to_string();
    assert!(err.contains("database is locked"), "{err}");
    // An action answered 500 is not repeated.
    assert!(client.reset(&sys, ResetKind::ForceRestart).is_err());
    let posts = fake.seen().iter().filter(|s| s.method == "POST").count();
    assert_eq!(posts, 1, "{path}");
}

#[test]
fn a_bmc_that_never_answers_times_out_with_a_clear_error() {
    let fake = FakeBmc::start(|_, _| None);
    let started = std::time::Instant::now();
    let err = Client::connect(fake.endpoint("s3cret-pw"), http())
        .err()
        .expect("times out");
    assert!(started.elapsed() < Duration::from_secs(5));
    let text = err.to_string();
    assert!(text.contains("read the service root"), "{text}");
    assert!(text.contains("no answer within"), "{text}");
}

#[test]
fn the_boot_override_sends_if_match_when_the_bmc_gives_an_etag() {
    let inner = bmc(false, system(&[]));
    let fake = FakeBmc::start(move |req, n| {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/redfish/v1/Systems/1") => {
                let mut r = inner(req, n)?;
                r.headers.push(("ETag", "W/\"abc\"".into()));
                Some(r)
            }
            // This BMC refuses a PATCH without the ETag (as some iLOs do).
            ("PATCH", "/redfish/v1/Systems/1") => Some(
                if req.headers.get("if-match").map(String::as_str) == Some("W/\"abc\"") {
                    reply(204, json!({}))
                } else {
                    reply(412, json!({ "error": { "message": "ETag required" } }))
                },
            ),
            _ => inner(req, n),
        }
    });
    let client = Client::connect(fake.endpoint("s3cret-pw"), http()).unwrap();
    client
        .boot_once("/redfish/v1/Systems/1", "Pxe", Some("UEFI"))
        .unwrap();
    let patch = fake
        .seen()
        .into_iter()
        .find(|s| s.method == "PATCH")
        .unwrap();
    let body: Value = serde_json::from_str(&patch.body).unwrap();
    assert_eq!(
        body,
        json!({ "Boot": {
            "BootSourceOverrideTarget": "Pxe",
            "BootSourceOverrideEnabled": "Once",
            "BootSourceOverrideMode": "UEFI"
        } })
    );
    // A target the BMC does not list is refused before anything is sent.
    let err = client
        .boot_once("/redfish/v1/Systems/1", "Usb", None)
        .unwrap_err();
    assert!(err.to_string().contains("Usb is not among"), "{err}");
}

#[test]
fn a_412_is_reported_with_the_bmcs_message() {
    let inner = bmc(false, system(&[]));
    let fake = FakeBmc::start(move |req, n| {
        if req.method == "PATCH" {
            return Some(reply(
                412,
                json!({ "error": { "@Message.ExtendedInfo": [ { "Message": "The ETag does not match." } ] } }),
            ));
        }
        inner(req, n)
    });
    let client = Client::connect(fake.endpoint("s3cret-pw"), http()).unwrap();
    let err = client
        .boot_once("/redfish/v1/Systems/1", "Pxe", None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("412"), "{err}");
    assert!(err.contains("The ETag does not match."), "{err}");
}

#[test]
fn vendor_values_the_schema_does_not_know_are_kept() {
    let mut sys = system(&["On", "ForceOff", "Nmi", "OemPowerDance"]);
    sys["PowerState"] = json!("Quiescing");
    sys["Boot"]["BootSourceOverrideTarget"] = json!("OemNicBoot");
    sys["Oem"] = json!({ "Vendor": { "Anything": [1, 2, 3] } });
    let fake = FakeBmc::start(bmc(false, sys));
    let client = Client::connect(fake.endpoint("s3cret-pw"), http()).unwrap();
    let (_, sys) = client.system(None, &[]).unwrap();
    assert_eq!(sys.power_state.as_deref(), Some("Quiescing"));
    assert_eq!(sys.boot.target.as_deref(), Some("OemNicBoot"));
}

#[test]
fn no_force_restart_means_force_off_then_on() {
    let fake = FakeBmc::start(bmc(false, system(&["On", "ForceOff", "GracefulShutdown"])));
    let client = Client::connect(fake.endpoint("s3cret-pw"), http()).unwrap();
    let (_, sys) = client.system(None, &[]).unwrap();
    client.reset(&sys, ResetKind::ForceRestart).unwrap();
    let resets: Vec<String> = fake
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with("ComputerSystem.Reset"))
        .map(|s| s.body)
        .collect();
    assert_eq!(
        resets,
        [r#"{"ResetType":"ForceOff"}"#, r#"{"ResetType":"On"}"#]
    );
}

#[test]
fn a_202_task_monitor_is_followed_to_its_end() {
    let inner = bmc(false, system(&["On", "ForceOff", "ForceRestart"]));
    let fake = FakeBmc::start(move |req, n| match req.path.as_str() {
        "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset" => Some(Reply {
            status: 202,
            headers: vec![("Location", "/redfish/v1/TaskService/Tasks/7".into())],
            body: "{}".into(),
        }),
        "/redfish/v1/TaskService/Tasks/7" => {
            let polls = n;
            Some(Reply {
                status: if polls < 6 { 202 } else { 200 },
                headers: vec![("Retry-After", "0".into())],
                body: "{}".into(),
            })
        }
        _ => inner(req, n),
    });
    let client = Client::connect(fake.endpoint("s3cret-pw"), http()).unwrap();
    let (_, sys) = client.system(None, &[]).unwrap();
    client.reset(&sys, ResetKind::ForceRestart).unwrap();
    let polls = fake
        .seen()
        .iter()
        .filter(|s| s.path == "/redfish/v1/TaskService/Tasks/7")
        .count();
    assert!(polls >= 2, "the task monitor was polled {polls} times");
}

/// A chassis manager with two systems: without `bmc.system` the one with the node's MAC is
/// chosen (the BMC writes MACs its own way); Secure Boot and memory are read from it.
#[test]
fn of_several_systems_the_one_with_the_nodes_mac_is_chosen() {
    let fake = FakeBmc::start(|req: &Seen, _| {
        let sys = |n: u8| {
            json!({
                "Id": format!("Node{n}"),
                "PowerState": "Off",
                "MemorySummary": { "TotalSystemMemoryGiB": 4 * n },
                "SecureBoot": { "@odata.id": format!("/redfish/v1/Systems/{n}/SecureBoot") },
                "EthernetInterfaces": { "@odata.id": format!("/redfish/v1/Systems/{n}/EthernetInterfaces") },
            })
        };
        Some(match req.path.as_str() {
            "/redfish/v1/" => reply(
                200,
                json!({ "Systems": { "@odata.id": "/redfish/v1/Systems" } }),
            ),
            "/redfish/v1/Systems" => reply(
                200,
                json!({ "Members": [
                    { "@odata.id": "/redfish/v1/Systems/1" },
                    { "@odata.id": "/redfish/v1/Systems/2" } ] }),
            ),
            "/redfish/v1/Systems/1" => reply(200, sys(1)),
            "/redfish/v1/Systems/2" => reply(200, sys(2)),
            p if p.ends_with("/EthernetInterfaces") => {
                let n = &p["/redfish/v1/Systems/".len()..][..1];
                reply(
                    200,
                    json!({ "Members": [ { "@odata.id": format!("/redfish/v1/Systems/{n}/EthernetInterfaces/NIC.1") } ] }),
                )
            }
            "/redfish/v1/Systems/1/EthernetInterfaces/NIC.1" => {
                reply(200, json!({ "MACAddress": "3C-EC-EF-10-00-21" }))
            }
            "/redfish/v1/Systems/2/EthernetInterfaces/NIC.1" => reply(
                200,
                json!({ "MACAddress": "", "PermanentMACAddress": "3CECEF100022" }),
            ),
            "/redfish/v1/Systems/2/SecureBoot" => reply(
                200,
                json!({ "SecureBootEnable": true, "SecureBootCurrentBoot": "Enabled" }),
            ),
            _ => reply(404, json!({ "error": { "message": "no such resource" } })),
        })
    });
    let client = Client::connect(fake.endpoint("x"), http()).unwrap();
    let (path, sys) = client
        .system(None, &["3c:ec:ef:10:00:22".to_string()])
        .unwrap();
    assert_eq!(
        (path.as_str(), sys.id.as_str()),
        ("/redfish/v1/Systems/2", "Node2")
    );
    assert_eq!(sys.memory.total_gib, Some(8.0));
    assert_eq!(client.secure_boot(&sys).unwrap().unwrap().on(), Some(true));
    // System 1 has no SecureBoot resource behind its link (404): not reported.
    let (_, one) = client
        .system(None, &["3c:ec:ef:10:00:21".to_string()])
        .unwrap();
    assert_eq!(one.id, "Node1");
    assert!(client.secure_boot(&one).unwrap().is_none());
    // By Id, and no match at all: the error says what to configure.
    let (_, by_id) = client.system(Some("Node1"), &[]).unwrap();
    assert_eq!(by_id.id, "Node1");
    let e = client
        .system(None, &["aa:bb:cc:dd:ee:ff".to_string()])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("2 systems and none matches a NIC with MAC aa:bb:cc:dd:ee:ff")
            && e.contains("bmc.system"),
        "{e}"
    );
}

/// The redfish power driver logs in once per controller: a provision's preflight, boot
/// override and restart share one session (BMCs like iDRAC have few slots). A session the BMC
/// has dropped meanwhile (401) is opened again, once, and the last one is given back.
#[test]
fn the_power_driver_reuses_its_session_and_reopens_a_dropped_one() {
    use crate::power::Power;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let sessions = Arc::new(AtomicUsize::new(0));
    let expired = Arc::new(AtomicBool::new(false));
    let inner = bmc(true, system(&["On", "ForceOff", "ForceRestart"]));
    let fake = {
        let (sessions, expired) = (Arc::clone(&sessions), Arc::clone(&expired));
        FakeBmc::start(move |req: &Seen, n| {
            if req.method == "POST" && req.path == "/redfish/v1/SessionService/Sessions" {
                let mut r = inner(req, n)?;
                let id = sessions.fetch_add(1, Ordering::SeqCst) + 1;
                r.headers = vec![
                    ("X-Auth-Token", format!("tok-{id}")),
                    (
                        "Location",
                        format!("/redfish/v1/SessionService/Sessions/{id}"),
                    ),
                ];
                return Some(r);
            }
            let token = req.headers.get("x-auth-token").cloned().unwrap_or_default();
            if req.path.starts_with("/redfish/v1/Systems")
                && (token.is_empty() || (token == "tok-1" && expired.load(Ordering::SeqCst)))
            {
                return Some(reply(401, json!({})));
            }
            inner(req, n)
        })
    };
    let config =
        crate::config::parse(crate::config::EXAMPLE, std::path::Path::new("x.yaml")).unwrap();
    let mut node = config.node("cmp1").unwrap().clone();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "s3cret-pw").unwrap();
    node.bmc.endpoint = fake.base.clone();
    node.bmc.username = Some("root".into());
    node.bmc.password = Some(SecretRef::File(dir.path().join("pw")));

    let power = crate::power::redfish::RedfishPower::new(&node, dir.path());
    let inventory = power.inventory().unwrap();
    assert_eq!(inventory.power, "On");
    power.network_boot_once().unwrap();
    power.cycle().unwrap();
    assert_eq!(
        sessions.load(Ordering::SeqCst),
        1,
        "one session for all three"
    );

    expired.store(true, Ordering::SeqCst);
    assert_eq!(power.status().unwrap(), crate::power::PowerState::On);
    assert_eq!(
        sessions.load(Ordering::SeqCst),
        2,
        "opened again after the 401"
    );
    drop(power);
    let last = fake.seen().last().cloned().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        ("DELETE", "/redfish/v1/SessionService/Sessions/2"),
        "the live session is given back"
    );
}

/// A BMC over TLS with one of the test certificates (`testdata/a` or `b`): completes the
/// handshake and answers every request with an empty service root. Its base URL.
fn tls_bmc(name: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/redfish/testdata");
    let cert = CertificateDer::from_pem_file(dir.join(format!("{name}.pem"))).unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key"))).unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let config = Arc::clone(&config);
            std::thread::spawn(move || {
                let connection = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(connection, stream);
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                while !request.ends_with(b"\r\n\r\n") {
                    match tls.read(&mut byte) {
                        Ok(1) => request.push(byte[0]),
                        _ => return, // a refused handshake ends here
                    }
                }
                let _ = tls.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                      Content-Length: 2\r\nConnection: close\r\n\r\n{}",
                );
                let _ = tls.flush();
            });
        }
    });
    base
}

/// A pin recorded on first use accepts that certificate again, and refuses another one on
/// the BMC's address with both fingerprints named; a configured pin does the same; and
/// without a pin a self-signed certificate is refused.
#[test]
fn a_changed_certificate_fingerprint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("cmp1.sha256");
    let first_use = tls::Trust::FirstUse(record.clone());
    let connect = |base: &str, trust: &tls::Trust| {
        let endpoint = Endpoint {
            base: base.to_string(),
            username: "root".into(),
            password: secret("x"),
            timeout: Duration::from_secs(5),
            action_timeout: Duration::from_secs(5),
            retry_for: Duration::from_secs(5),
        };
        Client::connect(endpoint, tls::client(trust).unwrap()).map(|_| ())
    };
    let (a, b) = (tls_bmc("a"), tls_bmc("b"));

    let e = connect(&a, &tls::Trust::System).unwrap_err().to_string();
    assert!(e.contains("certificate"), "{e}");

    connect(&a, &first_use).unwrap();
    let pinned = std::fs::read_to_string(&record).unwrap().trim().to_string();
    assert_eq!(pinned.len(), 64, "{pinned}");
    connect(&a, &first_use).unwrap();

    // The BMC's certificate changed (a new board, or someone in between).
    let e = connect(&b, &first_use).unwrap_err().to_string();
    assert!(
        e.contains("is not the pinned one") && e.contains(&pinned),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(&record).unwrap().trim(),
        pinned,
        "the pin stays"
    );
    let e = connect(&b, &tls::Trust::Pinned(pinned.clone()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not the pinned one"), "{e}");
    connect(&a, &tls::Trust::Pinned(pinned)).unwrap();
}

/// `power off` twice: the second finds the system off and sends nothing; a BMC that refuses a
/// ForceOff because the system went off meanwhile (iDRAC: 409, iLO: 400 "Power is off") is
/// read again and the off counts. Any other refusal stays an error.
#[test]
fn switching_off_a_system_that_is_off_succeeds() {
    use std::sync::atomic::{AtomicBool, Ordering};
    // The system is On until a ForceOff arrives; the BMC then answers 409 as iDRAC does when
    // asked to switch off what is off (the state changed under it), and reports Off.
    let off = Arc::new(AtomicBool::new(false));
    let state = Arc::clone(&off);
    let plain = bmc(false, system(&["On", "ForceOff"]));
    let fake = FakeBmc::start(
        move |req, n| match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/redfish/v1/Systems/1") => {
                let mut sys = system(&["On", "ForceOff"]);
                if state.load(Ordering::SeqCst) {
                    sys["PowerState"] = json!("Off");
                }
                Some(reply(200, sys))
            }
            ("POST", "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset") => {
                state.store(true, Ordering::SeqCst);
                Some(reply(
                    409,
                    json!({"error": {"code": "Base.1.8.GeneralError", "message": "Server is already powered OFF."}}),
                ))
            }
            _ => plain(req, n),
        },
    );
    let client = Client::connect(fake.endpoint("s3cret-pw"), http()).unwrap();
    let (path, sys) = client.system(None, &[]).unwrap();
    assert!(client.switch_off(&path, &sys, ResetKind::ForceOff).unwrap());
    assert!(off.load(Ordering::SeqCst));
    // Twice: now it reports Off, and nothing is posted.
    let (path, sys) = client.system(None, &[]).unwrap();
    let posts_before = fake.seen().iter().filter(|s| s.method == "POST").count();
    assert!(client.switch_off(&path, &sys, ResetKind::ForceOff).unwrap());
    assert_eq!(
        fake.seen().iter().filter(|s| s.method == "POST").count(),
        posts_before
    );

    // A BMC that refuses and stays on: an error, with its words.
    let refuses = FakeBmc::start({
        let plain = bmc(false, system(&["On", "ForceOff"]));
        move |req, n| match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset") => Some(reply(
                400,
                json!({"error": {"message": "Operation not allowed"}}),
            )),
            _ => plain(req, n),
        }
    });
    let client = Client::connect(refuses.endpoint("s3cret-pw"), http()).unwrap();
    let (path, sys) = client.system(None, &[]).unwrap();
    let err = client
        .switch_off(&path, &sys, ResetKind::ForceOff)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not allowed") || err.contains("400"), "{err}");
}

/// A BMC dialect for the boot override: the system at `/redfish/v1/Systems/1` with `system`
/// as its body and `etag` in its `ETag` header, an optional settings object (path, body,
/// ETag), and `patch` deciding each PATCH.
fn dialect(
    system: Value,
    etag: Option<&'static str>,
    settings: Option<(&'static str, Value, Option<&'static str>)>,
    patch: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
) -> FakeBmc {
    let plain = bmc(false, system.clone());
    FakeBmc::start(move |req, n| match req.method.as_str() {
        "PATCH" => Some(patch(req)),
        "GET" if req.path == "/redfish/v1/Systems/1" => {
            let mut r = reply(200, system.clone());
            if let Some(tag) = etag {
                r.headers.push(("ETag", tag.to_string()));
            }
            Some(r)
        }
        "GET" if settings.as_ref().is_some_and(|(p, _, _)| req.path == *p) => {
            let (_, body, tag) = settings.clone().unwrap();
            let mut r = reply(200, body);
            if let Some(tag) = tag {
                r.headers.push(("ETag", tag.to_string()));
            }
            Some(r)
        }
        _ => plain(req, n),
    })
}

/// The PATCHes a fake saw: (path, If-Match).
fn patches(fake: &FakeBmc) -> Vec<(String, Option<String>)> {
    fake.seen()
        .into_iter()
        .filter(|s| s.method == "PATCH")
        .map(|s| (s.path, s.headers.get("if-match").cloned()))
        .collect()
}

fn with_settings(path: &str) -> Value {
    let mut sys = system(&["On", "ForceOff", "ForceRestart"]);
    sys["@Redfish.Settings"] = json!({ "SettingsObject": { "@odata.id": path } });
    sys
}

fn refused(status: u16, message: &str) -> Reply {
    reply(
        status,
        json!({ "error": { "@Message.ExtendedInfo": [ { "Message": message } ] } }),
    )
}

/// Boot override dialects (shapes as issue 16 describes them from gofish, bmclib and sushy's
/// fixtures): where seed writes, with which precondition, and that it then succeeds.
#[test]
fn the_boot_override_is_written_where_each_dialect_takes_it() {
    const SYS: &str = "/redfish/v1/Systems/1";
    let once = |fake: &FakeBmc| {
        let client = Client::connect(fake.endpoint("s3cret-pw"), http()).unwrap();
        client.boot_once(SYS, "Pxe", Some("UEFI"))
    };

    // iDRAC 9 with 6.x/7.x firmware: the system carries the override and takes it with its
    // ETag; its /Settings has no override (a PATCH there is a 400) and is never written.
    let fake = dialect(
        with_settings("/redfish/v1/Systems/1/Settings"),
        Some("\"1721\""),
        Some((
            "/redfish/v1/Systems/1/Settings",
            json!({ "Boot": { "BootOrder": ["NIC.Integrated.1-1-1"] } }),
            None,
        )),
        |req| {
            if req.path == SYS
                && req.headers.get("if-match").map(String::as_str) == Some("\"1721\"")
            {
                reply(200, json!({}))
            } else {
                refused(400, "PropertyNotWritable")
            }
        },
    );
    once(&fake).unwrap();
    assert_eq!(
        patches(&fake),
        [(SYS.to_string(), Some("\"1721\"".to_string()))]
    );

    // iDRAC 10: the override lives in /Settings (the system's own is read-only, and only
    // /Settings lists the allowed targets); the system refuses, the settings object takes it
    // with its own ETag.
    let mut idrac10 = with_settings("/redfish/v1/Systems/1/Settings");
    idrac10["Boot"]
        .as_object_mut()
        .unwrap()
        .remove("BootSourceOverrideTarget@Redfish.AllowableValues");
    let fake = dialect(
        idrac10,
        Some("\"s-1\""),
        Some((
            "/redfish/v1/Systems/1/Settings",
            json!({ "Boot": {
                "BootSourceOverrideTarget": "None",
                "BootSourceOverrideEnabled": "Disabled",
                "BootSourceOverrideTarget@Redfish.AllowableValues": ["None", "Pxe", "UefiHttp"]
            } }),
            Some("\"set-9\""),
        )),
        |req| match req.path.as_str() {
            "/redfish/v1/Systems/1/Settings" => reply(202, json!({})),
            _ => refused(400, "PropertyNotWritable"),
        },
    );
    once(&fake).unwrap();
    // Its targets are listed in /Settings only: read from there.
    let client = Client::connect(fake.endpoint("s3cret-pw"), http()).unwrap();
    let (_, sys) = client.system(None, &[]).unwrap();
    assert_eq!(client.boot_targets(&sys), ["None", "Pxe", "UefiHttp"]);
    assert_eq!(
        patches(&fake),
        [
            (SYS.to_string(), Some("\"s-1\"".to_string())),
            (
                "/redfish/v1/Systems/1/Settings".to_string(),
                Some("\"set-9\"".to_string())
            ),
        ]
    );

    // Lenovo XCC: /Pending holds only BootOrder; the system wants If-Match (428 without).
    let fake = dialect(
        with_settings("/redfish/v1/Systems/1/Pending"),
        Some("\"xcc-3\""),
        Some((
            "/redfish/v1/Systems/1/Pending",
            json!({ "Boot": { "BootOrder": ["Boot0001"] } }),
            None,
        )),
        |req| match req.headers.get("if-match") {
            Some(tag) if tag == "\"xcc-3\"" && req.path == SYS => reply(200, json!({})),
            Some(_) => refused(412, "ETag mismatch"),
            None => refused(428, "PreconditionRequired"),
        },
    );
    once(&fake).unwrap();
    assert_eq!(
        patches(&fake),
        [(SYS.to_string(), Some("\"xcc-3\"".to_string()))]
    );

    // AMI MegaRAC: the system (`Self`) gives its tag only in the body (@odata.etag) and
    // answers 428 without If-Match; its `Self/SD` carries the override too (the fallback).
    let mut ami = with_settings("/redfish/v1/Systems/1/SD");
    ami["@odata.etag"] = json!("W/\"1700000000\"");
    let fake = dialect(
        ami,
        None,
        Some((
            "/redfish/v1/Systems/1/SD",
            json!({ "Boot": { "BootSourceOverrideTarget": "None" } }),
            None,
        )),
        |req| match (req.path.as_str(), req.headers.get("if-match")) {
            (SYS, Some(tag)) if tag == "W/\"1700000000\"" => reply(204, json!({})),
            _ => refused(428, "PreconditionHeaderMissing"),
        },
    );
    once(&fake).unwrap();
    assert_eq!(
        patches(&fake),
        [(SYS.to_string(), Some("W/\"1700000000\"".to_string()))]
    );

    // iLO 5: a weak ETag it refuses as a precondition (412): the strong form goes through.
    let fake = dialect(
        system(&["On", "ForceOff", "ForceRestart"]),
        Some("W/\"0A1B2C\""),
        None,
        |req| match req.headers.get("if-match").map(String::as_str) {
            Some("\"0A1B2C\"") => reply(200, json!({})),
            _ => refused(412, "The ETag does not match."),
        },
    );
    once(&fake).unwrap();
    assert_eq!(
        patches(&fake),
        [
            (SYS.to_string(), Some("W/\"0A1B2C\"".to_string())),
            (SYS.to_string(), Some("\"0A1B2C\"".to_string())),
        ]
    );

    // A BMC that gives no tag at all and still wants one: `If-Match: *`.
    let fake = dialect(
        system(&["On", "ForceOff", "ForceRestart"]),
        None,
        None,
        |req| match req.headers.get("if-match").map(String::as_str) {
            Some("*") => reply(204, json!({})),
            _ => refused(428, "PreconditionRequired"),
        },
    );
    once(&fake).unwrap();
    assert_eq!(
        patches(&fake),
        [
            (SYS.to_string(), None),
            (SYS.to_string(), Some("*".to_string()))
        ]
    );
}

/// The reset types a BMC offers, wherever it says so: the ResetType POSTs seed sends for
/// `wanted`. `inline` is the action's own list, `info` an `@Redfish.ActionInfo` list, and
/// `refuse` the types the BMC answers 400 to.
fn resets_sent(
    inline: &[&str],
    info: Option<&[&str]>,
    refuse: &'static [&'static str],
    wanted: ResetKind,
) -> Result<Vec<String>, RedfishError> {
    let mut sys = system(inline);
    if inline.is_empty() {
        sys["Actions"]["#ComputerSystem.Reset"]
            .as_object_mut()
            .unwrap()
            .remove("ResetType@Redfish.AllowableValues");
    }
    if info.is_some() {
        sys["Actions"]["#ComputerSystem.Reset"]["@Redfish.ActionInfo"] =
            json!("/redfish/v1/Systems/1/ResetActionInfo");
    }
    let info: Option<Vec<String>> = info.map(|i| i.iter().map(|s| s.to_string()).collect());
    let plain = bmc(false, sys);
    let fake = FakeBmc::start(
        move |req, n| match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/redfish/v1/Systems/1/ResetActionInfo") => Some(reply(
                200,
                json!({ "Parameters": [ { "Name": "ResetType", "Required": true,
                                      "AllowableValues": info.clone().unwrap_or_default() } ] }),
            )),
            ("POST", "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset") => {
                let body: Value = serde_json::from_str(&req.body).unwrap_or_default();
                let kind = body["ResetType"].as_str().unwrap_or_default();
                Some(if refuse.contains(&kind) {
                    refused(400, "ActionParameterNotSupported")
                } else {
                    reply(204, json!({}))
                })
            }
            _ => plain(req, n),
        },
    );
    let client = Client::connect(fake.endpoint("s3cret-pw"), http()).unwrap();
    let (_, sys) = client.system(None, &[]).unwrap();
    let result = client.reset(&sys, wanted);
    let sent = fake
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with("ComputerSystem.Reset"))
        .map(|s| {
            let body: Value = serde_json::from_str(&s.body).unwrap();
            body["ResetType"].as_str().unwrap().to_string()
        })
        .collect();
    result.map(|()| sent)
}

/// Reset types from `@Redfish.ActionInfo` (shapes as issue 16 describes them: an
/// ActionInfo-only BMC, Supermicro X12's malformed inline list, iLO 5 1.x without
/// GracefulShutdown, a BMC that says nothing).
#[test]
fn reset_types_come_from_action_info_and_fallbacks_really_run() {
    // ActionInfo-only, On and ForceOff: a restart is off, then on.
    assert_eq!(
        resets_sent(&[], Some(&["On", "ForceOff"]), &[], ResetKind::ForceRestart).unwrap(),
        ["ForceOff", "On"]
    );
    // Supermicro X12: the inline list runs two values together; ActionInfo has them right.
    assert_eq!(
        resets_sent(
            &["On", "ForceOff", "GracefulShutdownGracefulRestart"],
            Some(&[
                "On",
                "ForceOff",
                "GracefulShutdown",
                "GracefulRestart",
                "ForceRestart"
            ]),
            &[],
            ResetKind::GracefulShutdown
        )
        .unwrap(),
        ["GracefulShutdown"]
    );
    // iLO 5 1.x: no GracefulShutdown; the power button is how it asks the OS.
    assert_eq!(
        resets_sent(
            &["On", "ForceOff", "ForceRestart", "PushPowerButton"],
            None,
            &[],
            ResetKind::GracefulShutdown
        )
        .unwrap(),
        ["PushPowerButton"]
    );
    // Nothing said anywhere: ForceRestart is tried, and its refusal becomes off + on.
    assert_eq!(
        resets_sent(&[], None, &["ForceRestart"], ResetKind::ForceRestart).unwrap(),
        ["ForceRestart", "ForceOff", "On"]
    );
    // A type the BMC's ActionInfo does not offer is refused before anything is sent.
    let err = resets_sent(&[], Some(&["On"]), &[], ResetKind::ForceOff).unwrap_err();
    assert!(err.to_string().contains("ForceOff is not among"), "{err}");
}

/// A slow BMC (issue 16: iDRACs answering in 25-40 s): a read that times out is asked once
/// more; an action whose answer does not come is read back, and counts as done when the
/// system is as asked (a second reset would reset the node twice), else fails as a timeout.
/// The fake sleeps past the client's 800 ms.
#[test]
fn a_slow_bmc_is_asked_again_and_a_late_action_is_read_back() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let slow = Duration::from_millis(1500);
    let reads = Arc::new(AtomicUsize::new(0));
    let off = Arc::new(AtomicBool::new(false));
    let pxe = Arc::new(AtomicBool::new(false));
    let performs = Arc::new(AtomicBool::new(true));
    let (r, o, p, does) = (
        Arc::clone(&reads),
        Arc::clone(&off),
        Arc::clone(&pxe),
        Arc::clone(&performs),
    );
    let plain = bmc(false, system(&["On", "ForceOff", "ForceRestart"]));
    let fake = FakeBmc::start(
        move |req, n| match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/redfish/v1/Systems/1") => {
                // The first read of the system takes too long; later ones are quick.
                if r.fetch_add(1, Ordering::SeqCst) == 0 {
                    std::thread::sleep(slow);
                }
                let mut sys = system(&["On", "ForceOff", "ForceRestart"]);
                sys["@odata.id"] = json!("/redfish/v1/Systems/1");
                if o.load(Ordering::SeqCst) {
                    sys["PowerState"] = json!("Off");
                }
                if p.load(Ordering::SeqCst) {
                    sys["Boot"]["BootSourceOverrideTarget"] = json!("Pxe");
                    sys["Boot"]["BootSourceOverrideEnabled"] = json!("Once");
                }
                Some(reply(200, sys))
            }
            // Actions answer late; whether they are carried out is `performs`.
            ("POST", "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset") => {
                if does.load(Ordering::SeqCst) {
                    o.store(true, Ordering::SeqCst);
                }
                std::thread::sleep(slow);
                Some(reply(204, json!({})))
            }
            ("PATCH", "/redfish/v1/Systems/1") => {
                if does.load(Ordering::SeqCst) {
                    p.store(true, Ordering::SeqCst);
                }
                std::thread::sleep(slow);
                Some(reply(200, json!({})))
            }
            _ => plain(req, n),
        },
    );
    let client = Client::connect(fake.endpoint("s3cret-pw"), http()).unwrap();
    let (path, sys) = client.system(None, &[]).unwrap();
    assert_eq!(
        reads.load(Ordering::SeqCst),
        2,
        "the timed-out read was asked again"
    );

    // A reset performed but answered late: done, and sent once.
    client.reset(&sys, ResetKind::ForceOff).unwrap();
    let posts = |fake: &FakeBmc| fake.seen().iter().filter(|s| s.method == "POST").count();
    assert_eq!(posts(&fake), 1);
    // A boot override set but answered late: done, and sent once.
    client.boot_once(&path, "Pxe", None).unwrap();
    assert_eq!(patches(&fake).len(), 1);

    // Neither carried out: a timeout, said as one.
    performs.store(false, Ordering::SeqCst);
    off.store(false, Ordering::SeqCst);
    pxe.store(false, Ordering::SeqCst);
    let (_, sys) = client.system(None, &[]).unwrap();
    let err = client.reset(&sys, ResetKind::ForceOff).unwrap_err();
    assert!(matches!(err, RedfishError::TimedOut { .. }), "{err}");
    assert!(err.to_string().contains("no answer within"), "{err}");
    let err = client.boot_once(&path, "Pxe", None).unwrap_err();
    assert!(matches!(err, RedfishError::TimedOut { .. }), "{err}");
}

/// Taking an override back writes `Disabled` where the override went, with the ETag.
#[test]
fn a_boot_override_is_taken_back_where_it_was_written() {
    const SYS: &str = "/redfish/v1/Systems/1";
    let fake = dialect(
        with_settings("/redfish/v1/Systems/1/Settings"),
        Some("\"1721\""),
        Some((
            "/redfish/v1/Systems/1/Settings",
            json!({ "Boot": { "BootOrder": ["NIC.Integrated.1-1-1"] } }),
            None,
        )),
        |req| match req.path.as_str() {
            SYS => reply(200, json!({})),
            _ => refused(400, "PropertyNotWritable"),
        },
    );
    let client = Client::connect(fake.endpoint("s3cret-pw"), http()).unwrap();
    client.clear_boot_override(SYS).unwrap();
    let patch = fake
        .seen()
        .into_iter()
        .find(|s| s.method == "PATCH")
        .unwrap();
    assert_eq!(patch.path, SYS);
    assert_eq!(
        serde_json::from_str::<Value>(&patch.body).unwrap(),
        json!({ "Boot": { "BootSourceOverrideEnabled": "Disabled" } })
    );
    assert_eq!(
        patch.headers.get("if-match").map(String::as_str),
        Some("\"1721\"")
    );
}

/// A BMC answer is read only as far as Redfish goes: a body over `MAX_BODY` is an error that
/// says so, not memory seed gives away.
#[test]
fn an_oversized_answer_is_refused() {
    let huge = format!(
        "{{\"Members\": [], \"Padding\": \"{}\"}}",
        "x".repeat(usize::try_from(MAX_BODY).unwrap() + 10)
    );
    let plain = bmc(false, system(&[]));
    let fake = FakeBmc::start(move |req, n| match req.path.as_str() {
        "/redfish/v1/Systems" => Some(Reply {
            status: 200,
            headers: Vec::new(),
            body: huge.clone(),
        }),
        _ => plain(req, n),
    });
    let client = Client::connect(fake.endpoint("s3cret-pw"), http()).unwrap();
    let err = client.systems().unwrap_err().to_string();
    assert!(err.contains("larger than 4 MiB"), "{err}");
}
