//! A deploy, end to end, as the agent does it on a node (`install.method: image`): fetch the
//! node's plan from seed, inspect and report, choose the disk by the node's rule, wipe, write
//! the image, add the config drive, say `installed`. Each step is an event on seed's
//! webhook (`POST /nodes/<token>/events`, the shape subiquity's reporter posts), so the node's
//! timeline reads the same as an autoinstall's, and a failed step fails the node with its
//! reason (`finish … FAIL`).
//!
//! A deploy is safe to repeat: every step rewrites what it needs, so a power cut anywhere
//! before `installed` is retried whole on the next boot (seed serves the agent again until then).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::inspect::{Disk, Inspection, inspect};
use super::write::{self, Job, Ticker};
use super::{configdrive, efiboot, wipe};
use crate::config::Wipe;
use crate::deploy::{DeployPlan, MAX_PLAN_BYTES};
use crate::net::printable;

/// What the agent prints its lines with.
pub const SAY: &str = "seed-agent:";

/// The node's private URLs on seed.
pub struct Seed {
    base: String,
    client: reqwest::blocking::Client,
}

impl Seed {
    /// `url` is seed's base URL, `token` the node's (64 hex digits).
    pub fn new(url: &str, token: &str) -> Result<Self, String> {
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("the node token is 64 hex digits".into());
        }
        Ok(Self {
            base: format!("{}/nodes/{token}", url.trim_end_matches('/')),
            client: Self::http()?,
        })
    }

    /// seed at `url`, for a machine it does not know (no token): only [`Seed::enlist`] works.
    pub fn unknown(url: &str) -> Result<Self, String> {
        Ok(Self {
            base: url.trim_end_matches('/').to_string(),
            client: Self::http()?,
        })
    }

    fn http() -> Result<reqwest::blocking::Client, String> {
        reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // A stalled read fails after 30 s; the image write resumes with a range.
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("seed-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())
    }

    /// The HTTP client (for the image write).
    pub fn client(&self) -> &reqwest::blocking::Client {
        &self.client
    }

    /// Sends `request` until seed answers, for at most `wait` while it cannot be reached (the
    /// link may still be negotiating, seed may be restarting); an answer is final.
    fn send(
        &self,
        wait: Duration,
        request: impl Fn() -> reqwest::blocking::RequestBuilder,
    ) -> Result<reqwest::blocking::Response, String> {
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(250);
        loop {
            match request().send() {
                Ok(response) => return Ok(response),
                Err(e) if Instant::now() < deadline => {
                    tracing::info!(error = %e, "seed not reachable yet; trying again");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(format!("cannot reach seed: {e}")),
            }
        }
    }

    /// The answer's text (at most 4 KiB, printable) or why seed refused.
    fn answer(response: reqwest::blocking::Response) -> Result<String, String> {
        let status = response.status();
        let text: String = response
            .text()
            .unwrap_or_default()
            .chars()
            .take(4096)
            .collect();
        let text = printable(text.trim());
        if status.is_success() {
            Ok(text)
        } else {
            Err(format!("seed answered {status}: {text}"))
        }
    }

    /// Reports an inspection (`POST …/inventory`); seed's summary of it.
    pub fn report(&self, inspection: &Inspection, wait: Duration) -> Result<String, String> {
        self.post_inspection(&format!("{}/inventory", self.base), inspection, wait)
    }

    /// Enlists the machine whose boot NIC is `mac` (`POST /enlist/<mac>`, [`Seed::unknown`]);
    /// seed's summary of it.
    pub fn enlist(
        &self,
        mac: crate::net::MacAddr,
        inspection: &Inspection,
        wait: Duration,
    ) -> Result<String, String> {
        self.post_inspection(&format!("{}/enlist/{mac}", self.base), inspection, wait)
    }

    fn post_inspection(
        &self,
        url: &str,
        inspection: &Inspection,
        wait: Duration,
    ) -> Result<String, String> {
        let body = serde_json::to_vec(inspection).map_err(|e| e.to_string())?;
        let response = self.send(wait, || {
            self.client
                .post(url)
                .header("content-type", "application/json")
                .body(body.clone())
        })?;
        Self::answer(response)
    }

    /// The node's deploy plan (`GET …/deploy`), at most [`MAX_PLAN_BYTES`].
    pub fn plan(&self, wait: Duration) -> Result<DeployPlan, String> {
        use std::io::Read;
        let url = format!("{}/deploy", self.base);
        let response = self.send(wait, || self.client.get(&url))?;
        if !response.status().is_success() {
            return Err(match Self::answer(response) {
                Err(refused) => refused,
                Ok(text) => text,
            });
        }
        let mut body = Vec::new();
        response
            .take(MAX_PLAN_BYTES + 1)
            .read_to_end(&mut body)
            .map_err(|e| format!("deploy plan: {e}"))?;
        if body.len() as u64 > MAX_PLAN_BYTES {
            return Err(format!("deploy plan: more than {MAX_PLAN_BYTES} bytes"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("deploy plan: {e}"))
    }

    /// One webhook event: `start` or `finish` of step `name`, with `result` on finish.
    pub fn event(&self, event_type: &str, name: &str, description: &str, result: Option<&str>) {
        let mut event = serde_json::json!({
            "event_type": event_type,
            "name": format!("seed-agent/{name}"),
            "description": description,
            "origin": "seed-agent",
        });
        if let Some(result) = result {
            event["result"] = result.into();
        }
        let url = format!("{}/events", self.base);
        println!("{SAY} {event_type} {name}: {description}");
        // Events are the timeline, not the deploy: one lost is not worth stopping for, but a
        // restarting seed is waited for a little.
        if let Err(e) = self
            .send(Duration::from_secs(30), || {
                self.client.post(&url).json(&event)
            })
            .and_then(Self::answer)
        {
            println!("{SAY} event not recorded: {e}");
        }
    }

    /// `POST …/installed`: the disk holds the image and its config drive. Retried while seed
    /// cannot be reached for up to 10 minutes: losing it would leave the node `installing`.
    pub fn installed(&self) -> Result<String, String> {
        let url = format!("{}/installed", self.base);
        let response = self.send(Duration::from_secs(600), || self.client.post(&url))?;
        Self::answer(response)
    }
}

/// The disk `plan` deploys to, among what the inspection found: the first candidate of the
/// node's rule (the order subiquity would take), big enough for the image.
pub fn choose_disk<'i>(plan: &DeployPlan, inspection: &'i Inspection) -> Result<&'i Disk, String> {
    let udev: Vec<_> = inspection.disks.iter().map(Disk::udev).collect();
    let chosen = crate::disk::candidates(&plan.disk, &udev);
    let found = || {
        inspection
            .disks
            .iter()
            .map(|d| {
                format!(
                    "{} (serial {:?}, model {:?}, {} GB)",
                    d.path,
                    d.id_serial,
                    d.id_model,
                    d.size / 1_000_000_000
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(first) = chosen.first() else {
        return Err(printable(&format!(
            "no disk matches the rule {}; found: {}",
            serde_json::to_string(&plan.disk).unwrap_or_default(),
            found()
        )));
    };
    let disk = inspection
        .disks
        .iter()
        .find(|d| d.path == first.path)
        .ok_or("the chosen disk vanished")?;
    if disk.size < plan.image.size {
        return Err(format!(
            "{} holds {} bytes; image {} needs {}",
            disk.path, disk.size, plan.image.name, plan.image.size
        ));
    }
    Ok(disk)
}

/// The disks the plan's wipe policy names, the target first.
pub fn to_wipe(plan: &DeployPlan, inspection: &Inspection, target: &Disk) -> Vec<PathBuf> {
    let mut out = Vec::new();
    match plan.wipe {
        Wipe::None => {}
        Wipe::Root => out.push(PathBuf::from(&target.path)),
        Wipe::All => {
            out.push(PathBuf::from(&target.path));
            // Removable media (a virtual CD, a USB stick the operator left in) are not the
            // node's disks.
            out.extend(
                inspection
                    .disks
                    .iter()
                    .filter(|d| d.path != target.path && !d.removable)
                    .map(|d| PathBuf::from(&d.path)),
            );
        }
    }
    out
}

/// Deploys the node whose plan `seed` serves, with `root` as the root whose `sys/` and `proc/`
/// describe the machine. Returns once the node is `installed`, with whether the plan says to
/// power off (seed then boots the disk through the BMC) rather than reboot; every failure is
/// also reported to seed as the failed step.
pub fn deploy(seed: &Seed, root: &Path) -> Result<bool, String> {
    println!("{SAY} asking seed for the deploy plan");
    let plan = seed.plan(Duration::from_secs(120))?;
    seed.event("start", "deploy", &format!("deploying {}", plan.node), None);
    let step = |name: &str, result: Result<String, String>| match result {
        Ok(done) => {
            seed.event("finish", name, &done, Some("SUCCESS"));
            Ok(())
        }
        Err(why) => {
            seed.event("finish", name, &why, Some("FAIL"));
            Err(format!("{name}: {why}"))
        }
    };
    let inspection = inspect(root);
    step("inspect", seed.report(&inspection, Duration::from_secs(60)))?;
    let disk = match choose_disk(&plan, &inspection) {
        Ok(disk) => disk,
        Err(why) => return step("disk", Err(why)).map(|()| false),
    };
    step(
        "disk",
        Ok(format!(
            "{} (serial {}, model {}, by-path {})",
            disk.path, disk.id_serial, disk.id_model, disk.id_path
        )),
    )?;
    let target = PathBuf::from(&disk.path);
    let sector = logical_sector(&target);
    for path in to_wipe(&plan, &inspection, disk) {
        let result = wipe::wipe(&path, logical_sector(&path))
            .map(|w| {
                format!(
                    "{}: {} partition(s) found, {} MiB zeroed",
                    path.display(),
                    w.partitions.len(),
                    w.zeroed >> 20
                )
            })
            .map_err(|e| e.to_string());
        step("wipe", result)?;
        if plan.discard {
            // Metadata is gone already; a device that cannot discard still gets the image.
            match wipe::discard(&path) {
                Ok(bytes) => seed.event(
                    "finish",
                    "discard",
                    &format!("{}: {} MiB discarded", path.display(), bytes >> 20),
                    Some("SUCCESS"),
                ),
                Err(e) => seed.event(
                    "finish",
                    "discard",
                    &format!("{e}; not discarded, the image is written over it"),
                    Some("WARN"),
                ),
            }
        }
    }
    seed.event(
        "start",
        "write",
        &format!(
            "{} ({} MiB, SHA-256 {}) to {}",
            plan.image.name,
            plan.image.size >> 20,
            plan.image.sha256,
            target.display()
        ),
        None,
    );
    let job = Job {
        url: plan.image.url.clone(),
        sha256: plan.image.sha256.clone(),
        size: plan.image.size,
        target: target.clone(),
    };
    let started = Instant::now();
    let mut ticker = Ticker::new(Duration::from_secs(10));
    let written = write::write(&job, seed.client(), &mut |done, total| {
        if let Some(rate) = ticker.tick(done) {
            seed.event(
                "progress",
                "write",
                &format!(
                    "{} of {} MiB, {} MiB/s",
                    done >> 20,
                    total >> 20,
                    rate >> 20
                ),
                None,
            );
        }
    });
    step(
        "write",
        written
            .map(|w| {
                format!(
                    "{} bytes in {:.1} s ({} MiB/s, {} transfer(s)), SHA-256 verified",
                    w.bytes,
                    started.elapsed().as_secs_f64(),
                    write::rate(w.bytes, started.elapsed()) >> 20,
                    w.transfers
                )
            })
            .map_err(|e| e.to_string()),
    )?;
    let drive = &plan.config_drive;
    let placed = configdrive::volume(
        drive.user_data.as_bytes(),
        drive.meta_data.as_bytes(),
        drive.network_config.as_bytes(),
    )
    .and_then(|volume| configdrive::attach(&target, sector, &volume).map_err(|e| e.to_string()))
    .map(|p| {
        format!(
            "cidata: partition {} of {}, {} KiB",
            p.number,
            target.display(),
            p.len >> 10
        )
    });
    step("configdrive", placed)?;
    // UEFI: the written disk's loader as the next boot (no DHCP to seed on the way), and last
    // in the boot order. BIOS has no such variable: the firmware's order (the NIC, then seed's
    // "local disk" script) decides.
    let efivars = root.join("sys/firmware/efi/efivars");
    if efivars.is_dir() {
        let prefix = efiboot::virtio_prefix(root, &target);
        let entry = efiboot::boot_from(
            &efivars,
            &target,
            prefix.as_deref(),
            sector,
            &format!("seed {}", plan.node),
        )
        .map(|entry| match entry {
            Some(e) => format!(
                "Boot{:04X}: {} on partition {} of {}, next boot{}",
                e.number,
                efiboot::LOADER,
                e.esp.number,
                target.display(),
                if e.in_boot_order {
                    " and last in BootOrder"
                } else {
                    " (BootOrder is read-only here)"
                }
            ),
            None => {
                "the image has no EFI system partition: the firmware's boot order decides".into()
            }
        });
        step("bootentry", entry)?;
    }
    let state = seed.installed()?;
    println!("{SAY} {} is {state}", plan.node);
    if plan.power_off {
        println!("{SAY} powering off: seed boots {} from its disk", plan.node);
    }
    Ok(plan.power_off)
}

/// The logical block size GPT counts in: the kernel's for a disk (4096 on 4Kn drives), 512
/// for a file.
pub fn logical_sector(target: &Path) -> u64 {
    target
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|_| target.starts_with("/dev"))
        .and_then(|n| {
            std::fs::read_to_string(format!("/sys/class/block/{n}/queue/logical_block_size")).ok()
        })
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(512)
}
