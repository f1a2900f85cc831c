//! `seed render`: a node's autoinstall documents, as the installer will fetch them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use super::global::Global;
use crate::install::{Installer, Instance};

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Which document.
    #[arg(required_unless_present = "all")]
    document: Option<Document>,
    /// The node.
    #[arg(required_unless_present = "all")]
    node: Option<String>,
    /// Every node's documents, written as DIR/<node>/{user-data,meta-data,netplan.yaml}
    /// (`cloud-config` instead of `user-data` for a node deployed from a disk image).
    #[arg(long, requires = "out", conflicts_with_all = ["document", "node"])]
    all: bool,
    /// Output directory for --all.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The node token to put in its URLs (seed makes a secret one at provisioning).
    #[arg(long, default_value = "TOKEN")]
    token: String,
    /// The cloud-init instance id (default: <node>-preview).
    #[arg(long)]
    instance_id: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Document {
    UserData,
    MetaData,
    Netplan,
    /// The config drive's user-data of an image deploy (`install.method: image`).
    CloudConfig,
}

pub fn run(global: &Global, args: RenderArgs) -> anyhow::Result<ExitCode> {
    let config = std::sync::Arc::new(global.load_config()?);
    let installer = Installer::new(std::sync::Arc::clone(&config))?;
    // What `seed inventory` recorded, where a store exists: the MACs the BMCs reported.
    let recorded = super::global::recorded_hardware(global, &config)?;
    let render = |name: &str| {
        let instance = Instance {
            hardware: recorded.get(name).cloned(),
            ..Instance::new(
                args.token.clone(),
                args.instance_id
                    .clone()
                    .unwrap_or_else(|| format!("{name}-preview")),
            )
        };
        installer.documents(name, &instance)
    };

    if args.all {
        let Some(out) = &args.out else {
            bail!("--all needs --out DIR");
        };
        for node in &config.nodes {
            let docs = render(&node.name)?;
            let dir = out.join(&node.name);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            // An image deploy's node gets the config drive's user-data instead of autoinstall's.
            let user_data = match node.method {
                crate::config::InstallMethod::Autoinstall => ("user-data", &docs.user_data),
                crate::config::InstallMethod::Image => ("cloud-config", &docs.cloud_config),
            };
            for (file, text) in [
                user_data,
                ("meta-data", &docs.meta_data),
                ("netplan.yaml", &docs.netplan),
            ] {
                let path = dir.join(file);
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        eprintln!(
            "wrote {} nodes' documents to {}",
            config.nodes.len(),
            out.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(document), Some(node)) = (args.document, args.node.as_deref()) else {
        bail!("name a document and a node, or use --all --out DIR");
    };
    let docs = render(node)?;
    print!(
        "{}",
        match document {
            Document::UserData => docs.user_data,
            Document::MetaData => docs.meta_data,
            Document::Netplan => docs.netplan,
            Document::CloudConfig => docs.cloud_config,
        }
    );
    Ok(ExitCode::SUCCESS)
}
