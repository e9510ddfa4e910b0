//! Configuration: the settings table, gathering values from the environment
//! and an optional TOML file (the environment wins) with where each came
//! from, and parsing them into typed settings, so that a malformed value is
//! reported with its name, its value and the form that was expected.

pub(crate) mod error;
pub(crate) mod layers;
pub(crate) mod parse;
pub(crate) mod settings;

// One path for every user of the configuration, whichever file an item
// lives in.
pub use error::ConfigError;
pub use layers::{
    FileProblem, Layers, MAX_FILE_BYTES, Raw, Source, env_layer, file_layer, kubernetes_service_variable,
    read_file, text_of,
};
pub use parse::{
    DEFAULT_USER, Dev, Health, Loaded, LogFormat, LogLevel, Migrate, MigrateLock, Pipeline, ReloadPoll,
    Settings, SetupStep, from_env, load, parse, parse_bool,
};
pub use settings::{ENV_ONLY, Kind, SETTINGS, Setting};
