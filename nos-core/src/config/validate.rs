//! Parsing with field paths, and the cross-reference checks of a configuration.

use super::Config;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One thing wrong with a configuration: where (the field's path in the document,
/// e.g. `interfaces[1].ipv4[0]`) and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Everything wrong with a configuration (never empty).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// Parses YAML into a [`Config`], naming the path of the first field that does not fit.
pub(super) fn parse(text: &str) -> Result<Config, ConfigErrors> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            "(document)".to_string()
        } else {
            path
        };
        ConfigError::new(path, e.into_inner().to_string()).into()
    })
}

/// Cross-reference and value checks.
pub(super) fn validate(_config: &Config) -> Result<(), ConfigErrors> {
    Ok(())
}
