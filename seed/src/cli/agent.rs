//! `seed agent`: seed's own agent on a node (issue 21). `inspect` prints what it finds;
//! `report` sends that to seed with the node's token, as the deploy ramdisk's init will.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::agent::inspect::inspect;
use crate::net::printable;

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Print this machine's hardware as JSON: firmware, DMI, CPU, memory, NICs, and disks
    /// named as udev names them (what a role's `disk:` rule matches).
    Inspect(InspectArgs),
    /// Inspect this machine and send the result to seed (`POST <url>/nodes/<token>/inventory`).
    /// `--url` and `--token` default to the kernel command line's `seed.url=` and
    /// `seed.token=`, which seed's deploy ramdisk is booted with.
    Report(ReportArgs),
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The root whose `sys/` and `proc/` are read.
    #[arg(long, default_value = "/")]
    root: PathBuf,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// seed's HTTP address (`http://10.10.0.1:8080`).
    #[arg(long)]
    url: Option<String>,
    /// The node's token (from its install script).
    #[arg(long)]
    token: Option<String>,
    /// The root whose `sys/` and `proc/` are read.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// How long to keep trying while seed cannot be reached (the boot NIC may still be
    /// negotiating its link), in seconds.
    #[arg(long, default_value_t = 60)]
    wait: u64,
}

pub fn run(command: AgentCommand) -> anyhow::Result<ExitCode> {
    match command {
        AgentCommand::Inspect(args) => {
            let inspection = inspect(&args.root);
            println!("{}", serde_json::to_string_pretty(&inspection)?);
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Report(args) => report(args),
    }
}

/// `seed.url=` and `seed.token=` of a kernel command line.
fn from_cmdline(cmdline: &str, key: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .find_map(|arg| arg.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
}

fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let cmdline = std::fs::read_to_string(args.root.join("proc/cmdline")).unwrap_or_default();
    let url = args
        .url
        .or_else(|| from_cmdline(&cmdline, "seed.url"))
        .context("no seed URL: --url, or seed.url= on the kernel command line")?;
    let token = args
        .token
        .or_else(|| from_cmdline(&cmdline, "seed.token"))
        .context("no node token: --token, or seed.token= on the kernel command line")?;
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("the node token is 64 hex digits");
    }
    let inspection = inspect(&args.root);
    let body = serde_json::to_vec(&inspection)?;
    let endpoint = format!("{}/nodes/{token}/inventory", url.trim_end_matches('/'));
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("seed-agent/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    let mut pause = Duration::from_millis(250);
    let response = loop {
        match client
            .post(&endpoint)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
        {
            Ok(response) => break response,
            // Only an unreachable seed is worth waiting for; an answer is final.
            Err(e) if Instant::now() < deadline => {
                tracing::info!(error = %e, "seed not reachable yet; trying again");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e).context(format!("cannot reach seed at {url}")),
        }
    };
    let status = response.status();
    let text: String = response
        .text()
        .unwrap_or_default()
        .chars()
        .take(4096)
        .collect();
    if !status.is_success() {
        bail!(
            "seed refused the inspection ({status}): {}",
            printable(text.trim())
        );
    }
    println!("reported: {}", printable(text.trim()));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::from_cmdline;

    #[test]
    fn the_url_and_token_come_from_the_kernel_command_line() {
        let cmdline = "BOOT_IMAGE=vmlinuz seed.url=http://10.10.0.1:8080 seed.tokenx=no \
                       seed.token=abc console=ttyS0\n";
        assert_eq!(
            from_cmdline(cmdline, "seed.url").as_deref(),
            Some("http://10.10.0.1:8080")
        );
        assert_eq!(from_cmdline(cmdline, "seed.token").as_deref(), Some("abc"));
        assert_eq!(from_cmdline(cmdline, "seed.missing"), None);
    }
}
