//! `seed images`: the image catalogue in the state directory.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::global::Global;
use super::table::Table;
use crate::config::Config;
use crate::provision::catalogue::{self, Catalogue};

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Register an image from a kernel, an initrd and optionally the live-server ISO.
    ///
    /// The files are copied into the state directory (`<state_dir>/images/<name>/`) with their
    /// SHA-256; nodes name the image in `image:` (node, role, or install).
    Add(AddArgs),
    /// Import Ubuntu's live-server ISO: its casper kernel and initrd are read out of it (no
    /// mount, no root) and the ISO is kept for casper's `url=`.
    ///
    /// With `--sha256` (or `--sha256sums`) the ISO is refused, and nothing registered, unless
    /// it has that SHA-256. A SHA256SUMS file only authenticates the ISO when its signature
    /// (`SHA256SUMS.gpg` beside it) verifies against `--keyring` (gpgv); without a keyring it
    /// only catches a damaged download.
    Import(ImportArgs),
    /// List the registered images and the disk they take.
    List,
    /// Remove an image (refused while a node of the config that installs it is provisioning
    /// or installing).
    Remove(RemoveArgs),
    /// Register a disk image for image-based deploy (what seed's agent writes to a node's
    /// disk): qcow2 (OSISM's `osism-node.qcow2`), raw, or raw compressed with gzip, zstd, xz
    /// or bzip2, told by its first bytes. It is converted once to a raw disk in
    /// `<state_dir>/disks/<name>/disk.raw` (sparse over zeros) whose SHA-256 the agent checks
    /// while it writes. qcow2 backing files, encryption and subclusters are refused.
    AddDisk(AddDiskArgs),
    /// Remove a disk image.
    RemoveDisk(RemoveArgs),
}

#[derive(Debug, Args)]
pub struct AddDiskArgs {
    /// Disk image name, e.g. `osism-node`.
    name: String,
    /// The image file.
    #[arg(long)]
    file: PathBuf,
    /// The SHA-256 the file must have (as published beside it); refused, nothing
    /// registered, when it differs.
    #[arg(long)]
    sha256: Option<String>,
    /// Replace a disk image of the same name.
    #[arg(long)]
    replace: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The ISO (e.g. ubuntu-24.04.1-live-server-amd64.iso).
    iso: PathBuf,
    /// Image name [default: ubuntu-<release> from the ISO's .disk/info, e.g. ubuntu-24.04].
    #[arg(long)]
    name: Option<String>,
    /// The SHA-256 the ISO must have.
    #[arg(long, conflicts_with = "sha256sums")]
    sha256: Option<String>,
    /// A SHA256SUMS file that names the ISO.
    #[arg(long)]
    sha256sums: Option<PathBuf>,
    /// The keyring SHA256SUMS.gpg must verify against (e.g.
    /// /usr/share/keyrings/ubuntu-archive-keyring.gpg).
    #[arg(long, requires = "sha256sums")]
    keyring: Option<PathBuf>,
    /// An extra installer kernel argument (repeat for more).
    #[arg(long = "arg", value_name = "ARG")]
    args: Vec<String>,
    /// Replace an image of the same name.
    #[arg(long)]
    replace: bool,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The image.
    name: String,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Image name, e.g. `ubuntu-24.04`.
    name: String,
    /// The installer kernel (e.g. `casper/vmlinuz` of the ISO).
    #[arg(long)]
    kernel: PathBuf,
    /// The installer initrd (e.g. `casper/initrd`).
    #[arg(long)]
    initrd: PathBuf,
    /// The live-server ISO casper loads into RAM (`url=` on the command line).
    #[arg(long)]
    iso: Option<PathBuf>,
    /// An extra installer kernel argument (repeat for more).
    #[arg(long = "arg", value_name = "ARG")]
    args: Vec<String>,
    /// Replace an image of the same name.
    #[arg(long)]
    replace: bool,
}

pub fn run(global: &Global, command: ImagesCommand) -> anyhow::Result<ExitCode> {
    let config = global.optional_config()?;
    let catalogue = images::Catalogue::new(global.state_dir(config.as_ref()).join("images"));
    let disks = images::disks::DiskCatalogue::new(global.state_dir(config.as_ref()).join("disks"));
    match command {
        ImagesCommand::Add(args) => {
            if args.replace {
                not_in_use(
                    global,
                    config.as_ref(),
                    Catalogue::Boot,
                    &args.name,
                    "replaced",
                )?;
            }
            let new = images::NewImage {
                name: args.name.clone(),
                kernel: args.kernel,
                initrd: args.initrd,
                iso: args.iso,
                kernel_args: args.args,
            };
            let image = catalogue
                .add(&new, args.replace)
                .with_context(|| format!("cannot add image {}", args.name))?;
            println!(
                "image {} added in {}",
                image.name,
                catalogue.root().join(&image.name).display()
            );
            for file in &image.files {
                println!("  {}  {:>12}  {}", file.sha256, file.size, file.name);
            }
        }
        ImagesCommand::Import(mut args) => {
            if args.replace {
                // The name the import will have, to check before anything is replaced.
                if args.name.is_none() {
                    args.name = images::default_name_of(&args.iso)
                        .with_context(|| format!("cannot import {}", args.iso.display()))?;
                }
                if let Some(name) = &args.name {
                    not_in_use(global, config.as_ref(), Catalogue::Boot, name, "replaced")?;
                }
            }
            return import(&catalogue, args);
        }
        ImagesCommand::List => {
            let mut table = Table::new(&[
                "IMAGE", "RELEASE", "ARCH", "KERNEL", "INITRD", "ISO", "SIZE", "ARGS",
            ]);
            for image in catalogue.list()? {
                table.row(vec![
                    image.name.clone(),
                    image.release.clone().unwrap_or_else(|| "-".into()),
                    image.arch.clone().unwrap_or_else(|| "-".into()),
                    image.kernel.clone(),
                    image.initrd.clone(),
                    image.iso.clone().unwrap_or_else(|| "-".into()),
                    super::table::size(image.size()),
                    image.kernel_args.join(" "),
                ]);
            }
            print!("{}", table.render());
            println!(
                "images: {} in {}",
                super::table::size(catalogue.disk_usage()),
                catalogue.root().display()
            );
            let listed = disks.list()?;
            if !listed.is_empty() {
                let mut table = Table::new(&["DISK IMAGE", "SIZE", "SHA-256", "FROM", "FORMAT"]);
                for disk in listed {
                    table.row(vec![
                        disk.name.clone(),
                        super::table::size(disk.size),
                        disk.sha256.clone(),
                        disk.source.name.clone(),
                        format!("{:?}", disk.source.format).to_lowercase(),
                    ]);
                }
                print!("\n{}", table.render());
                println!(
                    "disk images: {} on disk in {}",
                    super::table::size(images::disk_usage(disks.root())),
                    disks.root().display()
                );
            }
        }
        ImagesCommand::AddDisk(args) => {
            if args.replace {
                not_in_use(
                    global,
                    config.as_ref(),
                    Catalogue::Disk,
                    &args.name,
                    "replaced",
                )?;
            }
            let sha256 = args
                .sha256
                .as_deref()
                .map(|hex| {
                    let hex = hex.trim().to_ascii_lowercase();
                    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                        anyhow::bail!("--sha256 {hex}: not 64 hex digits");
                    }
                    Ok(hex)
                })
                .transpose()?;
            let mut meter = Meter::new();
            let disk = disks
                .add(
                    &args.name,
                    &args.file,
                    sha256.as_deref(),
                    args.replace,
                    &mut |what, done, total| meter.show(what, done, total),
                )
                .with_context(|| format!("cannot add disk image {}", args.name))?;
            meter.done();
            println!(
                "disk image {} added from {} ({:?}{}): {} raw, SHA-256 {}",
                disk.name,
                disk.source.name,
                disk.source.format,
                if sha256.is_some() {
                    ", its SHA-256 matches"
                } else {
                    ""
                },
                super::table::size(disk.size),
                disk.sha256
            );
        }
        ImagesCommand::RemoveDisk(args) => {
            let state_dir = global.state_dir(config.as_ref());
            if !catalogue::remove_disk_image(config.as_ref(), &state_dir, &disks, &args.name)? {
                anyhow::bail!("no disk image named {}", args.name);
            }
            println!("disk image {} removed", args.name);
        }
        ImagesCommand::Remove(args) => {
            let state_dir = global.state_dir(config.as_ref());
            if !catalogue::remove_image(config.as_ref(), &state_dir, &catalogue, &args.name)? {
                anyhow::bail!("no image named {}", args.name);
            }
            println!("image {} removed", args.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses to take `image` away while a node of the config is installing from it: its kernel,
/// initrd and ISO must stay what its installer started with. (A replacement is checked before
/// it starts; it runs for minutes, too long to hold the store's lock.)
fn not_in_use(
    global: &Global,
    config: Option<&Config>,
    kind: Catalogue,
    image: &str,
    what: &'static str,
) -> anyhow::Result<()> {
    let state_dir = global.state_dir(config);
    Ok(catalogue::unless_installing(
        config,
        &state_dir,
        kind,
        image,
        what,
        || (),
    )?)
}

fn import(catalogue: &images::Catalogue, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let file_name = args
        .iso
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sha256 = match (&args.sha256, &args.sha256sums) {
        (Some(hex), _) => {
            let hex = hex.trim().to_ascii_lowercase();
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                anyhow::bail!("--sha256 {hex}: not 64 hex digits");
            }
            Some(hex)
        }
        (None, Some(sums)) => {
            match &args.keyring {
                Some(keyring) => verify_signature(sums, keyring)?,
                None => eprintln!(
                    "warning: {} is not authenticated without --keyring: it only catches a damaged download",
                    sums.display()
                ),
            }
            let text = std::fs::read_to_string(sums)
                .with_context(|| format!("cannot read {}", sums.display()))?;
            Some(
                images::sha256_from_sums(&text, &file_name).with_context(|| {
                    format!("{} has no SHA-256 for {file_name}", sums.display())
                })?,
            )
        }
        (None, None) => None,
    };
    let mut meter = Meter::new();
    let image = catalogue
        .import(images::Import {
            iso: args.iso.clone(),
            name: args.name.clone(),
            sha256: sha256.clone(),
            kernel_args: args.args,
            replace: args.replace,
            progress: &mut |what, done, total| meter.show(what, done, total),
        })
        .with_context(|| format!("cannot import {}", args.iso.display()))?;
    meter.done();
    println!(
        "image {} imported{} in {}",
        image.name,
        image
            .label
            .as_deref()
            .map(|l| format!(" ({l})"))
            .unwrap_or_default(),
        catalogue.root().join(&image.name).display()
    );
    if sha256.is_some() {
        println!("  the ISO's SHA-256 matches");
    }
    for file in &image.files {
        println!("  {}  {:>12}  {}", file.sha256, file.size, file.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// `gpgv --keyring KEY SHA256SUMS.gpg SHA256SUMS`: the detached signature beside the sums file.
fn verify_signature(sums: &Path, keyring: &Path) -> anyhow::Result<()> {
    let mut signature = sums.as_os_str().to_owned();
    signature.push(".gpg");
    let signature = PathBuf::from(signature);
    if !signature.exists() {
        anyhow::bail!(
            "{} is missing: a SHA256SUMS file is only trusted with its signature",
            signature.display()
        );
    }
    let out = std::process::Command::new("gpgv")
        .arg("--keyring")
        .arg(keyring)
        .arg(&signature)
        .arg(sums)
        .output()
        .context("cannot run gpgv (apt-get install gpgv)")?;
    if !out.status.success() {
        anyhow::bail!(
            "{}: the signature does not verify against {}: {}",
            sums.display(),
            keyring.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Progress of a long copy: on a terminal one line rewritten in place; elsewhere a line per
/// quarter.
struct Meter {
    tty: bool,
    last: Option<(String, u64)>,
}

impl Meter {
    fn new() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            last: None,
        }
    }

    fn show(&mut self, what: &str, done: u64, total: u64) {
        let percent = (done * 100).checked_div(total).unwrap_or(100);
        let step = if self.tty { percent } else { percent / 25 * 25 };
        if self
            .last
            .as_ref()
            .is_some_and(|(w, s)| w == what && *s == step)
        {
            return;
        }
        let line = format!("{what}: {percent:>3}% of {}", super::table::size(total));
        if self.tty {
            eprint!("\r\x1b[K{line}");
        } else {
            eprintln!("{line}");
        }
        self.last = Some((what.to_string(), step));
    }

    fn done(&self) {
        if self.tty && self.last.is_some() {
            eprintln!();
        }
    }
}
