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
    /// The timestamping authority, when `tsa_url` is set.
    pub tsa: Option<cahier_trace::TsaConfig>,
    /// Hours between trusted timestamps of the audit log's head (0: never; needs `tsa`).
    pub audit_anchor_hours: u64,
    /// The instance's time zone unless a sysadmin chooses another (`time_zone`, else the
    /// server's zone, else UTC).
    pub time_zone: cahier_core::zone::Zone,
    /// The database pool's size and memory map (`db_connections`, `db_mmap_mib`).
    pub sqlite: cahier_store::SqliteTuning,
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
    /// RFC 3161 timestamping authority URL.
    pub tsa_url: Option<String>,
    /// Its basic-auth user.
    pub tsa_user: Option<String>,
    /// Its basic-auth password.
    pub tsa_password: Option<String>,
    /// A file holding that password (first line).
    pub tsa_password_file: Option<PathBuf>,
    /// PEM bundle of the TSA roots to trust.
    pub tsa_ca_file: Option<PathBuf>,
    /// `sha256` (default) or `sha512`.
    pub tsa_hash: Option<String>,
    /// Longest wait for the TSA, seconds (default 30).
    pub tsa_timeout_secs: Option<u64>,
    /// Hours between timestamps of the audit log's head (default 24, 0 = never).
    pub audit_anchor_hours: Option<u64>,
    /// The instance's time zone (IANA name).
    pub time_zone: Option<String>,
    /// Most database connections open at once (default 4).
    pub db_connections: Option<u32>,
    /// MiB of the database file read through a memory map (default 4096; 0: none).
    pub db_mmap_mib: Option<u64>,
}

/// TSA settings given as flags or `CAHIER_TSA_*` variables.
#[derive(Debug, Default, Clone)]
pub struct TsaOverrides {
    /// `--tsa-url` / `CAHIER_TSA_URL`.
    pub url: Option<String>,
    /// `--tsa-ca-file` / `CAHIER_TSA_CA_FILE`.
    pub ca_file: Option<PathBuf>,
    /// `--tsa-user` / `CAHIER_TSA_USER`.
    pub user: Option<String>,
    /// `CAHIER_TSA_PASSWORD`.
    pub password: Option<String>,
    /// `--tsa-hash` / `CAHIER_TSA_HASH`.
    pub hash: Option<String>,
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
    /// The timestamping authority.
    pub tsa: TsaOverrides,
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

# Trusted timestamps (RFC 3161) of entries: the timestamping authority's URL and the PEM bundle
# of its roots (both needed; also CAHIER_TSA_URL and CAHIER_TSA_CA_FILE). docs/TRACEABILITY.md
# lists the URLs and roots of common authorities (DFN, DigiCert, Sectigo, Universign).
# tsa_url = "http://timestamp.digicert.com"
# tsa_ca_file = "/etc/cahier/tsa-roots.pem"
# Basic authentication, for authorities that want it (the password never reaches the log).
# tsa_user = "lab"
# tsa_password_file = "/etc/cahier/tsa-password"
# Hash of the stamped export: sha256 or sha512.
# tsa_hash = "sha256"
# Longest wait for the authority, in seconds.
# tsa_timeout_secs = 30
# With an authority set, the head of the audit log is itself timestamped this often (hours;
# 0 = never), so the whole log is proven to have existed then (docs/TRACEABILITY.md).
# audit_anchor_hours = 24

# The instance's time zone for the booking calendar (an IANA name). Default: the server's own
# zone, else UTC. A sysadmin can choose another on the sysadmin page; each user can choose
# their own in their settings.
# time_zone = "Europe/Paris"

# Most database connections open at once (each is a thread; at least 1), and how many MiB of
# the database file SQLite reads through a memory map (0 = none; the mapped pages are the
# file's page cache and show in the process's RSS); BENCHMARKS.md, issue #7.
# db_connections = 4
# db_mmap_mib = 4096
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
        let tsa = tsa_config(overrides.tsa, &file)?;
        let time_zone = match file.time_zone.as_deref() {
            Some(name) => cahier_core::zone::Zone::named(name).with_context(|| {
                format!(
                    "time_zone: {name} is not a time zone; use an IANA name such as Europe/Paris"
                )
            })?,
            None => cahier_core::zone::Zone::system().unwrap_or_default(),
        };
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
            tsa,
            audit_anchor_hours: file.audit_anchor_hours.unwrap_or(24),
            time_zone,
            sqlite: {
                let default = cahier_store::SqliteTuning::default();
                cahier_store::SqliteTuning {
                    connections: file.db_connections.unwrap_or(default.connections),
                    mmap_mib: file.db_mmap_mib.unwrap_or(default.mmap_mib),
                }
            },
        };
        if let Some(url) = &settings.public_url {
            anyhow::ensure!(
                url.starts_with("http://") || url.starts_with("https://"),
                "public_url must start with http:// or https:// (got {url})"
            );
        }
        anyhow::ensure!(settings.max_body_mb >= 1, "max_body_mb must be at least 1");
        anyhow::ensure!(
            settings.sqlite.connections >= 1,
            "db_connections must be at least 1"
        );
        anyhow::ensure!(
            settings.max_upload_mb >= 1,
            "max_upload_mb must be at least 1"
        );
        warn_unknown_env();
        Ok(settings)
    }
}

fn tsa_config(
    overrides: TsaOverrides,
    file: &FileSettings,
) -> anyhow::Result<Option<cahier_trace::TsaConfig>> {
    let Some(url) = overrides.url.or(file.tsa_url.clone()) else {
        return Ok(None);
    };
    anyhow::ensure!(
        url.starts_with("http://") || url.starts_with("https://"),
        "tsa_url must start with http:// or https:// (got {url})"
    );
    let ca_file = overrides
        .ca_file
        .or(file.tsa_ca_file.clone())
        .context("tsa_url is set but tsa_ca_file is not: give the PEM bundle of the TSA's roots")?;
    let roots = std::fs::read_to_string(&ca_file)
        .with_context(|| format!("reading tsa_ca_file {}", ca_file.display()))?;
    anyhow::ensure!(
        roots.contains("-----BEGIN CERTIFICATE-----"),
        "tsa_ca_file {} holds no PEM certificate",
        ca_file.display()
    );
    let hash_name = overrides
        .hash
        .or(file.tsa_hash.clone())
        .unwrap_or_else(|| "sha256".into());
    let hash = cahier_trace::HashAlg::parse(&hash_name)
        .with_context(|| format!("tsa_hash must be sha256 or sha512 (got {hash_name})"))?;
    let password = match (
        overrides.password.or(file.tsa_password.clone()),
        &file.tsa_password_file,
    ) {
        (Some(password), _) => Some(password),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading tsa_password_file {}", path.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
        ),
        (None, None) => None,
    };
    Ok(Some(cahier_trace::TsaConfig {
        url,
        user: overrides.user.or(file.tsa_user.clone()),
        password: password.map(cahier_trace::Secret),
        ca_file,
        hash,
        timeout: std::time::Duration::from_secs(file.tsa_timeout_secs.unwrap_or(30).max(1)),
    }))
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
    "CAHIER_TSA_URL",
    "CAHIER_TSA_CA_FILE",
    "CAHIER_TSA_USER",
    "CAHIER_TSA_PASSWORD",
    "CAHIER_TSA_HASH",
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
