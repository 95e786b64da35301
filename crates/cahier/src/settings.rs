//! Settings: defaults < `cahier.toml` (in the data directory, or `--config`) < `CAHIER_*`
//! environment variables < command-line flags. Built once at startup and passed down.

use anyhow::Context;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Default data directory.
pub const DEFAULT_DATA: &str = "./cahier-data";
/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default largest attachment, MiB (2 GiB).
pub const DEFAULT_MAX_UPLOAD_MB: u64 = 2048;

/// Checked settings of a Cahier process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Data directory (database and files).
    pub data: PathBuf,
    /// Address to listen on.
    pub listen: String,
    /// Public URL when behind a proxy (`https://…` makes cookies Secure).
    pub public_url: Option<String>,
    /// Largest request body for forms and JSON, MiB.
    pub max_body_mb: usize,
    /// Largest attachment, MiB.
    pub max_upload_mb: u64,
}

/// What the configuration file may hold; all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    /// Address to listen on.
    pub listen: Option<String>,
    /// Public URL.
    pub public_url: Option<String>,
    /// Largest request body, MiB.
    pub max_body_mb: Option<usize>,
    /// Largest attachment, MiB.
    pub max_upload_mb: Option<u64>,
}

/// Values given on the command line or in `CAHIER_*` variables (clap merges the two).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--data` / `CAHIER_DATA`.
    pub data: Option<PathBuf>,
    /// `--listen` / `CAHIER_LISTEN`.
    pub listen: Option<String>,
    /// `--public-url` / `CAHIER_PUBLIC_URL`.
    pub public_url: Option<String>,
    /// `--config` / `CAHIER_CONFIG`.
    pub config: Option<PathBuf>,
}

/// The commented default configuration file (`cahier config example`).
pub const EXAMPLE: &str = r#"# cahier.toml — put it in the data directory (or pass --config FILE).
# Every setting can also be given as a CAHIER_* environment variable or a command-line flag,
# which take precedence over this file.

# Address and port to listen on. Use 0.0.0.0:8080 to accept connections from other machines
# (put a TLS proxy in front).
# listen = "127.0.0.1:8080"

# The URL people use to reach this instance, when it sits behind a proxy. An https:// URL marks
# cookies Secure.
# public_url = "https://cahier.example.org"

# Largest request body for forms and API calls, in MiB.
# max_body_mb = 16

# Largest attached file, in MiB (uploads stream to disk; this limit is separate from the one
# above).
# max_upload_mb = 2048
"#;

impl Settings {
    /// Builds and checks the settings.
    pub fn load(overrides: Overrides) -> anyhow::Result<Self> {
        let data = overrides
            .data
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA));
        let file_path = overrides
            .config
            .clone()
            .unwrap_or_else(|| data.join("cahier.toml"));
        let file = read_file(&file_path, overrides.config.is_some())?;
        let settings = Settings {
            data,
            listen: overrides
                .listen
                .or(file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
            public_url: overrides
                .public_url
                .or(file.public_url)
                .map(|u| u.trim_end_matches('/').to_owned()),
            max_body_mb: file.max_body_mb.unwrap_or(16),
            max_upload_mb: file.max_upload_mb.unwrap_or(DEFAULT_MAX_UPLOAD_MB),
        };
        if let Some(url) = &settings.public_url {
            anyhow::ensure!(
                url.starts_with("http://") || url.starts_with("https://"),
                "public_url must start with http:// or https:// (got {url})"
            );
        }
        anyhow::ensure!(settings.max_body_mb >= 1, "max_body_mb must be at least 1");
        anyhow::ensure!(
            settings.max_upload_mb >= 1,
            "max_upload_mb must be at least 1"
        );
        warn_unknown_env();
        Ok(settings)
    }
}

fn read_file(path: &Path, required: bool) -> anyhow::Result<FileSettings> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text)
            .with_context(|| format!("reading the configuration file {}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && !required => {
            Ok(FileSettings::default())
        }
        Err(error) => {
            Err(error).with_context(|| format!("reading the configuration file {}", path.display()))
        }
    }
}

const KNOWN_ENV: &[&str] = &[
    "CAHIER_DATA",
    "CAHIER_LISTEN",
    "CAHIER_PUBLIC_URL",
    "CAHIER_CONFIG",
    "CAHIER_LOG",
];

fn warn_unknown_env() {
    for (key, _) in std::env::vars() {
        if key.starts_with("CAHIER_") && !KNOWN_ENV.contains(&key.as_str()) {
            tracing::warn!(variable = %key, "unknown CAHIER_ variable ignored");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let dir = std::env::temp_dir().join(format!("cahier-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            dir.join("cahier.toml"),
            "listen = \"127.0.0.1:9999\"\nmax_body_mb = 4\nmax_upload_mb = 3\n",
        )
        .expect("write");
        let from_file = Settings::load(Overrides {
            data: Some(dir.clone()),
            ..Default::default()
        })
        .expect("load");
        assert_eq!(from_file.listen, "127.0.0.1:9999");
        assert_eq!(from_file.max_body_mb, 4);
        assert_eq!(from_file.max_upload_mb, 3);
        let flagged = Settings::load(Overrides {
            data: Some(dir.clone()),
            listen: Some("127.0.0.1:1".into()),
            ..Default::default()
        })
        .expect("load");
        assert_eq!(flagged.listen, "127.0.0.1:1");
        std::fs::write(dir.join("cahier.toml"), "lisen = 1\n").expect("write");
        let error = Settings::load(Overrides {
            data: Some(dir.clone()),
            ..Default::default()
        })
        .expect_err("typo");
        assert!(format!("{error:#}").contains("lisen"), "{error:#}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_example_file_parses() {
        let parsed: FileSettings = toml::from_str(EXAMPLE).expect("example");
        assert!(parsed.listen.is_none());
    }
}
