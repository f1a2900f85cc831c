//! The config file: YAML in, a validated [`Config`] out.
//!
//! Two steps, as in dora and hickory: [`wire`] is the file as written (serde, unknown fields
//! refused), `validate` turns it into the domain model in `model` and collects every problem,
//! each naming the file, line, field and node.

pub mod edit;
mod keys;
pub(crate) mod model;
mod problem;
pub mod reference;
mod validate;
pub mod wire;

use std::fmt;
use std::path::{Path, PathBuf};

pub use model::*;
pub use problem::Problem;
pub use validate::{DEFAULT_AGENT_IMAGE, DEFAULT_IMAGE, DEFAULT_STATE_DIR};

/// The OSISM example rack, embedded so `seed config example` can print a starting point.
pub const EXAMPLE: &str = include_str!("../../../examples/osism-rack.yaml");

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not YAML, or not the shape seed expects (wrong type, unknown field, missing field).
    #[error("{message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// serde-saphyr's rendering, with `file:line:column` and a snippet.
        message: String,
    },
    /// Parsed, but inconsistent: every problem found.
    #[error("{}", ProblemList { path, problems })]
    Invalid {
        /// The file.
        path: PathBuf,
        /// All of them.
        problems: Vec<Problem>,
    },
}

struct ProblemList<'a> {
    path: &'a Path,
    problems: &'a [Problem],
}

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.path.display())?;
            if let Some(line) = p.line {
                write!(f, ":{line}")?;
            }
            write!(f, ": {}: {}", p.field, p.message)?;
        }
        Ok(())
    }
}

/// Read and validate the config at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Validate config text; `path` is only used in messages.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let name = path.display().to_string();
    // Every unknown field at once (serde would stop at the first), before anything else: a
    // misspelt key also makes a field look missing, which would only add noise.
    let unknown = keys::unknown_fields(text);
    if !unknown.is_empty() {
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems: unknown,
        });
    }
    let file: wire::ConfigFile = serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.render_with_options(serde_saphyr::render_options! { source_name: Some(&name) }),
    })?;
    validate::validate(file, path).map_err(|problems| ConfigError::Invalid {
        path: path.to_path_buf(),
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_example_is_valid() {
        let config = parse(EXAMPLE, Path::new("osism-rack.yaml")).unwrap();
        assert_eq!(config.nodes.len(), 11);
        assert_eq!(config.provisioning_zone().name, "management");
        assert_eq!(config.seed.url, "http://10.1.10.5");
    }

    #[test]
    fn unknown_field_names_the_line() {
        let text = EXAMPLE.replacen("    mtu: 9000\n", "    mut: 9000\n", 1);
        let err = parse(&text, Path::new("rack.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `mut`"), "{err}");
        assert!(err.contains("rack.yaml:"), "{err}");
    }
}
