//! `seed images`: the image catalogue in the state directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::Global;
use super::table::Table;

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Register an image from a kernel, an initrd and optionally the live-server ISO.
    ///
    /// The files are copied into the state directory (`<state_dir>/images/<name>/`) with their
    /// SHA-256; nodes name the image in `image:` (node, role, or install).
    Add(AddArgs),
    /// List the registered images.
    List,
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
    match command {
        ImagesCommand::Add(args) => {
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
        ImagesCommand::List => {
            let mut table = Table::new(&["IMAGE", "KERNEL", "INITRD", "ISO", "SIZE", "ARGS"]);
            for image in catalogue.list()? {
                let size: u64 = image.files.iter().map(|f| f.size).sum();
                table.row(vec![
                    image.name.clone(),
                    image.kernel.clone(),
                    image.initrd.clone(),
                    image.iso.clone().unwrap_or_else(|| "-".into()),
                    format!("{:.1} MiB", size as f64 / 1048576.0),
                    image.kernel_args.join(" "),
                ]);
            }
            print!("{}", table.render());
        }
    }
    Ok(ExitCode::SUCCESS)
}
