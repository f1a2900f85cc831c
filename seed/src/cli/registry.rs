//! `seed registry`: the container registry's store in the state directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::global::Global;
use super::table::Table;
use crate::registry::{self, Registry, reference::Name};

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Import images: a distribution registry's storage (OSISM's `registry-*.tar.bz2`, as the
    /// tarball, plain or gz/bz2/zst, or unpacked), or an OCI image layout (`skopeo copy …
    /// oci:DIR:TAG`, with --name).
    ///
    /// Every blob is verified against its digest as it is stored, and stored once however
    /// many images share it. A tag appears when everything it names is stored: an import that
    /// fails leaves nothing half-visible. `seed serve` serves imported images at once.
    Import(ImportArgs),
    /// List the repositories and their tags, and the disk the store takes.
    List,
    /// Remove a repository, or one tag of it (`NAME:TAG`); blobs no image uses any more go.
    Remove(RemoveArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The bundle: a tarball or a directory.
    source: PathBuf,
    /// The repository an OCI image layout's images go to (e.g. `osism/osism-ansible`).
    #[arg(long)]
    name: Option<String>,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// `NAME` or `NAME:TAG`.
    image: String,
}

pub fn run(global: &Global, command: RegistryCommand) -> anyhow::Result<ExitCode> {
    let config = global.optional_config()?;
    let state_dir = global.state_dir(config.as_ref());
    let store = Registry::open(&state_dir)
        .with_context(|| format!("cannot open the registry in {}", state_dir.display()))?;
    match command {
        RegistryCommand::Import(args) => {
            let name = match &args.name {
                Some(text) => Some(
                    Name::parse(text)
                        .with_context(|| format!("--name `{text}` is not a repository name"))?,
                ),
                None => None,
            };
            let imported = registry::import(&store, &args.source, name.as_ref())
                .with_context(|| format!("cannot import {}", args.source.display()))?;
            for image in &imported.images {
                println!("{image}");
            }
            println!(
                "{} images; {} blobs stored ({}), {} already there",
                imported.images.len(),
                imported.blobs_added,
                super::table::size(imported.bytes_added),
                imported.blobs_present
            );
        }
        RegistryCommand::List => {
            let mut table = Table::new(&["REPOSITORY", "TAGS"]);
            for name in store.repositories() {
                let tags = store.tags(&name).unwrap_or_default();
                table.row(vec![name.to_string(), tags.join(" ")]);
            }
            print!("{}", table.render());
            println!("disk: {}", super::table::size(store.disk_usage()));
        }
        RegistryCommand::Remove(args) => {
            let (name, tag) = match args.image.rsplit_once(':') {
                Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
                _ => (args.image.as_str(), None),
            };
            let name =
                Name::parse(name).with_context(|| format!("`{name}` is not a repository name"))?;
            let freed = store.remove(&name, tag)?;
            println!("removed {}; {freed} blobs freed", args.image);
        }
    }
    Ok(ExitCode::SUCCESS)
}
