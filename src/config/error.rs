//! What is wrong with a setting, named so the user can fix it.

use std::path::PathBuf;

use thiserror::Error;

/// A setting initd cannot use, with what to do about it.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{name}: unknown setting; {}", suggest(.suggestion))]
    Unknown {
        name: String,
        suggestion: Option<String>,
    },
    #[error("{name}={value:?}: expected {expected}")]
    Invalid {
        name: String,
        value: String,
        expected: String,
    },
    /// A value of the right form that cannot be used, with the reason.
    #[error("{name}={value:?}: {detail}")]
    Refused {
        name: &'static str,
        value: String,
        detail: String,
    },
    #[error("{name}: the value is not valid UTF-8")]
    NotUnicode { name: String },
    #[error("{name}: {detail}")]
    Entry { name: &'static str, detail: String },
    #[error("config file {}: {reason}", .path.display())]
    File { path: PathBuf, reason: String },
}

fn suggest(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(known) => format!("did you mean {known}?"),
        None => "run `initd --help` for the list of settings".to_string(),
    }
}
