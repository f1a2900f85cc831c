//! The `qemu` power driver: a `seed lab` machine's QEMU, over its QMP socket.
//!
//! The lab starts every QEMU paused (`-S`, powered off) with `-no-shutdown`, so a guest that
//! powers itself off halts instead of exiting: the process, its tap device and its console log
//! live as long as the lab, and power is what QMP does to the machine inside.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::driver::{Outcome, Power, PowerError, PowerState};

/// Where the lab puts a node's QMP socket.
pub fn socket(state_dir: &Path, node: &str) -> PathBuf {
    state_dir.join("lab").join(format!("{node}.qmp"))
}

/// A QMP client for one machine. Connects per action: QMP allows one client at a time and the
/// lab's own monitor must not hold it.
pub struct Qmp {
    node: String,
    socket: PathBuf,
}

impl Qmp {
    /// The machine of `node` behind `socket`.
    pub fn new(node: &str, socket: PathBuf) -> Self {
        Self {
            node: node.to_string(),
            socket,
        }
    }

    fn error(&self, action: &'static str, why: impl std::fmt::Display) -> PowerError {
        PowerError::Failed {
            node: self.node.clone(),
            action,
            why: why.to_string(),
        }
    }

    /// Runs `commands` in one session; returns the last one's `return` value.
    fn run(&self, action: &'static str, commands: &[&str]) -> Result<Value, PowerError> {
        let commands: Vec<Value> = commands.iter().map(|c| json!({ "execute": c })).collect();
        self.run_commands(action, &commands)
    }

    /// The same with whole QMP commands (`{"execute": …, "arguments": …}`).
    fn run_commands(&self, action: &'static str, commands: &[Value]) -> Result<Value, PowerError> {
        let stream = UnixStream::connect(&self.socket)
            .map_err(|e| self.error(action, format!("QMP {}: {e}", self.socket.display())))?;
        let timeout = Some(Duration::from_secs(10));
        stream
            .set_read_timeout(timeout)
            .and_then(|()| stream.set_write_timeout(timeout))
            .map_err(|e| self.error(action, e))?;
        let mut writer = stream.try_clone().map_err(|e| self.error(action, e))?;
        let mut reader = BufReader::new(stream);
        // The greeting, then capabilities negotiation (QMP spec, "Capabilities Negotiation").
        self.reply(&mut reader, action)?;
        let mut last = Value::Null;
        for command in std::iter::once(&json!({ "execute": "qmp_capabilities" })).chain(commands) {
            let name = command["execute"].as_str().unwrap_or("?");
            writeln!(writer, "{command}")
                .map_err(|e| self.error(action, format!("QMP {name}: {e}")))?;
            last = self.answer(&mut reader, action, name)?;
        }
        Ok(last)
    }

    fn reply(&self, reader: &mut impl BufRead, action: &'static str) -> Result<Value, PowerError> {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => Err(self.error(action, "QMP closed the connection")),
            Ok(_) => serde_json::from_str(&line)
                .map_err(|e| self.error(action, format!("QMP sent `{}`: {e}", line.trim()))),
            Err(e) => Err(self.error(action, format!("QMP: {e}"))),
        }
    }

    /// The answer to `command`, skipping the asynchronous events QMP interleaves.
    fn answer(
        &self,
        reader: &mut impl BufRead,
        action: &'static str,
        command: &str,
    ) -> Result<Value, PowerError> {
        loop {
            let msg = self.reply(reader, action)?;
            if let Some(ret) = msg.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = msg.get("error") {
                let desc = err.get("desc").and_then(Value::as_str).unwrap_or("error");
                return Err(self.error(action, format!("QMP {command}: {desc}")));
            }
        }
    }
}

impl Power for Qmp {
    fn status(&self) -> Result<PowerState, PowerError> {
        let status = self.run("power status", &["query-status"])?;
        // `prelaunch` (started with -S), `paused` (stopped) and `shutdown` (the guest powered
        // off under -no-shutdown) are all a machine that does not run.
        Ok(match status.get("status").and_then(Value::as_str) {
            Some("running") => PowerState::On,
            _ => PowerState::Off,
        })
    }

    fn on(&self) -> Result<Outcome, PowerError> {
        if self.status()? == PowerState::On {
            return Ok(Outcome::Already);
        }
        // A reset first: a halted machine resumes from its firmware, as after power-on.
        self.run("power on", &["system_reset", "cont"])?;
        Ok(Outcome::Done)
    }

    fn off(&self) -> Result<Outcome, PowerError> {
        if self.status()? == PowerState::Off {
            return Ok(Outcome::Already);
        }
        self.run("power off", &["stop", "system_reset"])?;
        Ok(Outcome::Done)
    }

    fn shutdown(&self) -> Result<Outcome, PowerError> {
        if self.status()? == PowerState::Off {
            return Ok(Outcome::Already);
        }
        // The ACPI power button; a guest without ACPI handling ignores it.
        self.run("shutdown", &["system_powerdown"])?;
        Ok(Outcome::Done)
    }

    fn cycle(&self) -> Result<(), PowerError> {
        self.run("power cycle", &["system_reset", "cont"])?;
        Ok(())
    }

    /// The lab's disk (`DISK_DEVICE`) goes ahead of the NIC in QEMU's boot order. QEMU writes
    /// the order to fw_cfg's `bootorder` at every reset, which SeaBIOS and OVMF read, so the
    /// next power-on boots the disk; the next network boot puts it back.
    fn disk_boot_once(&self) -> Result<(), PowerError> {
        self.set_disk_bootindex("boot override", DISK_FIRST)
    }

    /// Lab machines boot the NIC first, unless a disk boot was set: then the disk goes back
    /// behind it.
    fn network_boot_once(&self) -> Result<(), PowerError> {
        let index = self.run_commands(
            "boot override",
            &[json!({ "execute": "qom-get",
                      "arguments": { "path": DISK_PATH, "property": "bootindex" } })],
        );
        match index {
            Ok(i) if i.as_i64() == Some(DISK_FIRST) => {
                self.set_disk_bootindex("boot override", DISK_BEHIND_NIC)
            }
            // A machine without a disk has nothing to put back.
            Ok(_) | Err(_) => Ok(()),
        }
    }
}

/// The lab's install disk's QEMU device id (`seed::lab` names it so).
pub const DISK_DEVICE: &str = "osdisk";
const DISK_PATH: &str = "/machine/peripheral/osdisk";
/// The disk's place in QEMU's boot order behind the NIC (`bootindex=1`), as the lab starts it.
pub const DISK_BEHIND_NIC: i64 = 2;
/// Ahead of the NIC.
const DISK_FIRST: i64 = 0;

impl Qmp {
    fn set_disk_bootindex(&self, action: &'static str, index: i64) -> Result<(), PowerError> {
        self.run_commands(
            action,
            &[json!({ "execute": "qom-set",
                      "arguments": { "path": DISK_PATH, "property": "bootindex", "value": index } })],
        )
        .map(drop)
    }
}
