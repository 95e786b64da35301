//! The `cahier` command: `serve` runs a lab instance; the other subcommands administer one.

use anyhow::{Context, bail};
use cahier::settings::{EXAMPLE, Overrides, Settings};
use clap::{Args, Parser, Subcommand};
use std::io::Read;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "cahier",
    version,
    about = "Cahier — electronic lab notebook (cahier de laboratoire électronique)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args, Clone)]
struct DataArgs {
    /// Data directory (database and files).
    #[arg(long, env = "CAHIER_DATA")]
    data: Option<PathBuf>,
    /// Configuration file (default: cahier.toml in the data directory).
    #[arg(long, env = "CAHIER_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    tsa: TsaArgs,
}

/// The timestamping authority (overrides `tsa_*` in cahier.toml).
#[derive(Debug, Args, Clone, Default)]
struct TsaArgs {
    /// URL of the RFC 3161 timestamping authority.
    #[arg(long, env = "CAHIER_TSA_URL")]
    tsa_url: Option<String>,
    /// PEM bundle of the TSA roots to trust.
    #[arg(long, env = "CAHIER_TSA_CA_FILE")]
    tsa_ca_file: Option<PathBuf>,
    /// Basic-auth user for the TSA.
    #[arg(long, env = "CAHIER_TSA_USER")]
    tsa_user: Option<String>,
    /// Basic-auth password for the TSA (prefer the variable or the file to the flag).
    #[arg(long, env = "CAHIER_TSA_PASSWORD", hide_env_values = true)]
    tsa_password: Option<String>,
    /// Hash of the stamped export: sha256 or sha512.
    #[arg(long, env = "CAHIER_TSA_HASH")]
    tsa_hash: Option<String>,
}

impl TsaArgs {
    fn into_overrides(self) -> cahier::settings::TsaOverrides {
        cahier::settings::TsaOverrides {
            url: self.tsa_url,
            ca_file: self.tsa_ca_file,
            user: self.tsa_user,
            password: self.tsa_password,
            hash: self.tsa_hash,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a lab instance: web interface, API v2, on embedded SQLite.
    Serve {
        #[command(flatten)]
        data: DataArgs,
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long, env = "CAHIER_LISTEN")]
        listen: Option<String>,
        /// URL people reach this instance at, when behind a proxy.
        #[arg(long, env = "CAHIER_PUBLIC_URL")]
        public_url: Option<String>,
    },
    /// Create or update the database schema, then exit.
    Migrate {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Check every attachment file against its SHA-256, every trusted timestamp against its
    /// token and the TSA roots, the audit log's hash chain and its anchors, every document's
    /// stored changes against its heads, and every signature; exit 1 if anything is missing,
    /// damaged or does not verify, naming it.
    Verify {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Back up a lab while its server runs: a consistent copy of the database (VACUUM INTO),
    /// then every attachment file (each checked against its SHA-256 as it is copied), the
    /// export files and cahier.toml, with a manifest. Written under DEST.incomplete-… and
    /// renamed to DEST once complete.
    Backup {
        /// The lab's data directory.
        #[arg(long, env = "CAHIER_DATA")]
        data: Option<PathBuf>,
        /// The backup folder to make (new, or empty), outside the data directory.
        #[arg(long)]
        to: PathBuf,
        /// Hard-link attachment files instead of copying them when DEST is on the same file
        /// system: fast and takes no room, but the backup then shares the lab's disk (it
        /// protects against mistakes, not against losing the disk).
        #[arg(long)]
        link: bool,
    },
    /// Put a backup made by `cahier backup` back into a lab's data directory, with its server
    /// stopped. The replaced database is kept aside under a dated name unless
    /// --discard-current. Field replicas send back what the lab lost at their next sync.
    Restore {
        /// The backup folder.
        #[arg(long)]
        from: PathBuf,
        /// The lab's data directory (its server stopped).
        #[arg(long, env = "CAHIER_DATA")]
        data: Option<PathBuf>,
        /// Remove the replaced database instead of keeping it aside.
        #[arg(long)]
        discard_current: bool,
    },
    /// Remove attachment files that no entry refers to (left by crashes or abandoned uploads)
    /// and have not changed for the grace period.
    Sweep {
        #[command(flatten)]
        data: DataArgs,
        /// Keep files changed within this many hours (uploads in progress).
        #[arg(long, default_value_t = 24)]
        grace_hours: u64,
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API keys.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// Field replica: work offline on a laptop and sync with the lab instance.
    Replica {
        #[command(subcommand)]
        command: ReplicaCommand,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Fill a data directory with generated experiments, for benchmarks.
    Seed {
        #[command(flatten)]
        data: DataArgs,
        /// Number of experiments.
        #[arg(long, default_value_t = 1000)]
        experiments: usize,
        /// Number of teams (each gets one user).
        #[arg(long, default_value_t = 4)]
        teams: usize,
        /// Size of each body in bytes.
        #[arg(long, default_value_t = 5000)]
        body_bytes: usize,
    },
    /// Measure HTTP speed and server memory over a seeded data directory (see BENCHMARKS.md).
    Bench {
        #[command(flatten)]
        data: DataArgs,
        /// Requests measured per scenario.
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Concurrent clients (one keep-alive connection each).
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Run only these groups of scenarios (comma-separated); all by default.
        #[arg(long, value_enum, value_delimiter = ',')]
        only: Vec<cahier::bench::Group>,
    },
    /// Measure the field replica's sync over a seeded data directory (changed: use a copy).
    BenchSync {
        #[command(flatten)]
        data: DataArgs,
        /// An empty directory for the replica made by the benchmark.
        #[arg(long)]
        replica: PathBuf,
        /// Documents edited on each side.
        #[arg(long, default_value_t = 500)]
        edits: usize,
        /// Syncs with nothing to do (the median is reported).
        #[arg(long, default_value_t = 20)]
        noop_runs: usize,
        /// Megabytes of attachment files fetched by the replica (0 skips that step).
        #[arg(long, default_value_t = 200)]
        blob_mb: usize,
        /// Rounds of edits each way (the median round is reported).
        #[arg(long, default_value_t = 1)]
        rounds: usize,
    },
    /// Measure .eln export and re-import at scale in a fresh folder (see BENCHMARKS.md).
    BenchExchange {
        /// Working folder (new or empty); removed at the end unless --keep.
        #[arg(long)]
        dir: PathBuf,
        /// Number of experiments.
        #[arg(long, default_value_t = 1000)]
        experiments: usize,
        /// Total size of the attachments, MiB (one file per experiment).
        #[arg(long, default_value_t = 100)]
        attachment_mb: u64,
        /// Size of each body in bytes.
        #[arg(long, default_value_t = 2000)]
        body_bytes: usize,
        /// Keep the data afterwards.
        #[arg(long)]
        keep: bool,
    },
    /// One phase of bench-exchange (run by it as a child process).
    #[command(hide = true)]
    BenchExchangePhase {
        #[arg(long)]
        phase: String,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        experiments: usize,
        #[arg(long)]
        attachment_mb: u64,
        #[arg(long)]
        body_bytes: usize,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create an account; the password is read from standard input.
    Add {
        #[command(flatten)]
        data: DataArgs,
        /// E-mail address (the sign-in name).
        #[arg(long)]
        email: String,
        /// Full name, "First Last".
        #[arg(long)]
        name: String,
        /// Make the user an instance administrator.
        #[arg(long)]
        sysadmin: bool,
        /// Add the user to this team (created if missing).
        #[arg(long)]
        team: Option<String>,
        /// Make the user an admin of --team.
        #[arg(long, requires = "team")]
        team_admin: bool,
        /// Read the password from standard input (required: passwords never go on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ApikeyCommand {
    /// Create an API key and print only the key.
    Add {
        #[command(flatten)]
        data: DataArgs,
        /// E-mail of the user the key acts as.
        #[arg(long)]
        user: String,
        /// Allow changes (default: read-only).
        #[arg(long)]
        write: bool,
        /// Team the key is bound to (default: the user's current team).
        #[arg(long)]
        team: Option<String>,
        /// Name shown in the user's settings.
        #[arg(long, default_value = "command line")]
        name: String,
    },
    /// List a user's API keys (id, access, team, name, created, last used); never the keys.
    List {
        #[command(flatten)]
        data: DataArgs,
        /// E-mail of the user.
        #[arg(long)]
        user: String,
    },
    /// Revoke one of a user's API keys at once (its id from `cahier apikey list`).
    Revoke {
        #[command(flatten)]
        data: DataArgs,
        /// E-mail of the user the key belongs to.
        #[arg(long)]
        user: String,
        /// The key's id.
        #[arg(long)]
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
enum ReplicaCommand {
    /// Register this device with a lab instance and take the first copy.
    Init {
        /// The lab instance, e.g. https://cahier.lab.example.
        #[arg(long)]
        server: String,
        /// Data directory for the replica (must be empty).
        #[arg(long)]
        data: PathBuf,
        /// Your e-mail on the lab instance.
        #[arg(long)]
        email: String,
        /// Read your password from standard input (required).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// The lab's own CA certificate(s), PEM, when its HTTPS certificate is not from a
        /// public authority. Kept in the replica; only these are then trusted.
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Which attachment files to keep on this laptop: `all` (default), `pinned` (entries
        /// marked available offline) or `teams=Ecology,Botany`. Entries always sync whole;
        /// other files are fetched when opened online.
        #[arg(long)]
        files: Option<String>,
    },
    /// Show or set which attachment files stay on this laptop.
    Files {
        /// The replica's data directory.
        #[arg(long)]
        data: PathBuf,
        /// `all`, `pinned` or `teams=Ecology,Botany`; without it, only shows the setting.
        policy: Option<String>,
    },
    /// Mark entries available offline on this laptop: their files are kept here.
    Pin {
        /// The replica's data directory.
        #[arg(long)]
        data: PathBuf,
        /// Entries: experiments/ID, resources/ID or a UUID.
        #[arg(required = true)]
        entries: Vec<String>,
    },
    /// Stop keeping entries' files on this laptop (files of unsent changes stay).
    Unpin {
        /// The replica's data directory.
        #[arg(long)]
        data: PathBuf,
        /// Entries: experiments/ID, resources/ID or a UUID.
        #[arg(required = true)]
        entries: Vec<String>,
    },
    /// Sync once with the lab instance; exit 0 when both sides agree.
    Sync {
        /// The replica's data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Serve the web UI and API locally and sync in the background.
    Serve {
        /// The replica's data directory.
        #[arg(long)]
        data: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8181")]
        listen: String,
        /// Lock again after this many seconds without a request.
        #[arg(long, default_value_t = 900)]
        lock_after: u64,
    },
    /// Print a key for the replica's local API v2, for scripts on the laptop.
    Apikey {
        /// The replica's data directory.
        #[arg(long)]
        data: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print a commented default cahier.toml.
    Example,
}

fn settings(data: DataArgs) -> anyhow::Result<Settings> {
    Settings::load(Overrides {
        data: data.data,
        config: data.config,
        tsa: data.tsa.into_overrides(),
        ..Default::default()
    })
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAHIER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn split_name(name: &str) -> (String, String) {
    let name = name.trim();
    match name.split_once(char::is_whitespace) {
        Some((first, last)) => (first.to_owned(), last.trim().to_owned()),
        None => (name.to_owned(), String::new()),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    init_tracing();
    let cli = Cli::parse();
    match run(cli.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve {
            data,
            listen,
            public_url,
        } => {
            let settings = Settings::load(Overrides {
                data: data.data,
                config: data.config,
                listen,
                public_url,
                tsa: data.tsa.into_overrides(),
            })?;
            let running = cahier::start(&settings).await?;
            println!("Cahier {} is running at {}", cahier::VERSION, running.url);
            println!("Data directory: {}", settings.data.display());
            if let Some(setup) = &running.setup_url {
                println!(
                    "No account exists yet. Open this one-time link to create the first administrator:"
                );
                println!("  {setup}");
            }
            running.wait().await
        }
        Command::Migrate { data } => {
            let settings = settings(data)?;
            let (_lock, store) = cahier::open_lab(&settings).await?;
            store.close().await;
            println!("database is up to date");
            Ok(())
        }
        Command::Verify { data } => {
            // The roots may be given without a TSA URL: checking needs no authority.
            let roots_flag = data.tsa.tsa_ca_file.clone();
            let settings = settings(data)?;
            let roots = settings
                .tsa
                .as_ref()
                .map(|tsa| tsa.ca_file.clone())
                .or(roots_flag);
            let (_lock, store) = cahier::open_lab(&settings).await?;
            let report = store.verify_blobs().await;
            let stamps = cahier_trace::verify_stored(&store, roots.as_deref()).await;
            let chain = store.verify_audit_chain().await;
            let anchors = cahier_trace::verify_anchors(&store, roots.as_deref()).await;
            let documents = store.verify_documents().await;
            let signatures = cahier_trace::signature::verify_signatures(&store).await;
            store.close().await;
            let report = report?;
            let (n_stamps, broken) = stamps.context("checking the trusted timestamps")?;
            let chain = chain.context("checking the audit log")?;
            let (n_anchors, broken_anchors) = anchors.context("checking the audit anchors")?;
            let documents = documents.context("checking the documents")?;
            let (n_signatures, broken_signatures) =
                signatures.context("checking the signatures")?;
            for hash in &report.missing {
                println!("missing: {hash}");
            }
            for hash in &report.corrupted {
                println!("corrupted: {hash}");
            }
            println!(
                "{} files checked, {} missing, {} corrupted",
                report.checked,
                report.missing.len(),
                report.corrupted.len()
            );
            for proof in &broken {
                println!(
                    "timestamp broken: entity {} upload {}: {}",
                    proof.entity_id, proof.upload_id, proof.reason
                );
            }
            println!(
                "{n_stamps} trusted timestamps checked, {} broken",
                broken.len()
            );
            for (seq, reason) in &chain.broken {
                println!("audit entry broken: {seq}: {reason}");
            }
            println!(
                "{} audit entries checked, {} broken",
                chain.checked,
                chain.broken.len()
            );
            for anchor in &broken_anchors {
                println!(
                    "audit anchor broken: {} (entry {}): {}",
                    anchor.anchor_id, anchor.seq, anchor.reason
                );
            }
            println!(
                "{n_anchors} audit anchors checked, {} broken",
                broken_anchors.len()
            );
            for doc in &documents.broken {
                match doc.change_seq {
                    Some(seq) => println!(
                        "document broken: entity {} change {seq}: {}",
                        doc.entity_id, doc.reason
                    ),
                    None => println!("document broken: entity {}: {}", doc.entity_id, doc.reason),
                }
            }
            println!(
                "{} documents and {} changes checked, {} broken",
                documents.checked,
                documents.changes,
                documents.broken.len()
            );
            for signature in &broken_signatures {
                println!(
                    "signature broken: entity {} signature {}: {}",
                    signature.entity_id, signature.signature_id, signature.reason
                );
            }
            println!(
                "{n_signatures} signatures checked, {} broken",
                broken_signatures.len()
            );
            anyhow::ensure!(chain.is_ok(), "the audit log's chain is broken");
            anyhow::ensure!(
                broken_signatures.is_empty(),
                "some signatures do not verify"
            );
            anyhow::ensure!(broken_anchors.is_empty(), "some audit anchors do not hold");
            anyhow::ensure!(
                documents.broken.is_empty(),
                "some documents do not match their stored changes"
            );
            anyhow::ensure!(
                report.is_ok(),
                "some attachment files are missing or damaged"
            );
            anyhow::ensure!(broken.is_empty(), "some trusted timestamps do not hold");
            Ok(())
        }
        Command::Backup { data, to, link } => {
            let data = data.unwrap_or_else(|| PathBuf::from(cahier::settings::DEFAULT_DATA));
            let options = cahier::backup::BackupOptions { data, to, link };
            let now_ms = cahier_core::Clock::now_ms(&cahier_core::SystemClock);
            let summary =
                cahier::backup::backup(&options, now_ms, &mut |line| eprintln!("{line}")).await?;
            println!("{summary}");
            let missing = &summary.manifest.missing_files;
            if let Some(first) = missing.first() {
                bail!(
                    "the backup is complete, but {} attachment files the database names were missing or damaged in the lab (first: {first}; all are listed in the manifest): run cahier verify --data {}",
                    missing.len(),
                    options.data.display()
                );
            }
            Ok(())
        }
        Command::Restore {
            from,
            data,
            discard_current,
        } => {
            let data = data.unwrap_or_else(|| PathBuf::from(cahier::settings::DEFAULT_DATA));
            let options = cahier::backup::RestoreOptions {
                from,
                data,
                discard_current,
            };
            let now_ms = cahier_core::Clock::now_ms(&cahier_core::SystemClock);
            let summary =
                cahier::backup::restore(&options, now_ms, &mut |line| eprintln!("{line}")).await?;
            println!("{summary}");
            Ok(())
        }
        Command::Sweep {
            data,
            grace_hours,
            dry_run,
        } => {
            let settings = settings(data)?;
            let (_lock, store) = cahier::open_lab(&settings).await?;
            let grace = std::time::Duration::from_secs(grace_hours.saturating_mul(3600));
            let report = store.sweep_orphans(grace, dry_run).await;
            store.close().await;
            let report = report?;
            let verb = if dry_run { "would remove" } else { "removed" };
            for hash in &report.removed {
                println!("{verb}: {hash}");
            }
            println!(
                "{} files checked, {} {verb} ({} bytes), {} interrupted uploads {verb}",
                report.checked,
                report.removed.len(),
                report.freed_bytes,
                report.removed_temporary
            );
            Ok(())
        }
        Command::User {
            command:
                UserCommand::Add {
                    data,
                    email,
                    name,
                    sysadmin,
                    team,
                    team_admin,
                    password_stdin,
                },
        } => {
            let settings = settings(data)?;
            if !password_stdin {
                bail!("pass --password-stdin and write the password on standard input");
            }
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\n', '\r']).to_owned();
            let (_lock, store) = cahier::open_lab(&settings).await?;
            let (firstname, lastname) = split_name(&name);
            let new = cahier_store::accounts::NewUser {
                email: email.clone(),
                firstname,
                lastname,
                password: Some(password),
                is_sysadmin: sysadmin,
            };
            let user_id = store
                .create_user(new)
                .await
                .with_context(|| format!("creating the user {email}"))?;
            if let Some(team) = team {
                let team_id = match store.team_by_name(&team).await {
                    Ok(found) => found.id,
                    Err(cahier_store::StoreError::NotFound(_)) => store
                        .create_team(&team)
                        .await
                        .context("creating the team")?,
                    Err(error) => return Err(error).context("finding the team"),
                };
                store
                    .add_member(team_id, user_id, team_admin)
                    .await
                    .context("adding the user to the team")?;
            }
            store.close().await;
            println!("created user {email} (id {user_id})");
            Ok(())
        }
        Command::Apikey {
            command:
                ApikeyCommand::Add {
                    data,
                    user,
                    write,
                    team,
                    name,
                },
        } => {
            let settings = settings(data)?;
            let (_lock, store) = cahier::open_lab(&settings).await?;
            let user = store
                .user_by_email(&user)
                .await
                .with_context(|| format!("no user with the e-mail {user}"))?;
            let team_id = match team {
                Some(team) => {
                    store
                        .team_by_name(&team)
                        .await
                        .with_context(|| format!("no team named {team}"))?
                        .id
                }
                None => match user.current_team {
                    Some(team) => team,
                    None => bail!(
                        "{} belongs to no team; add them to one first (cahier user add … --team NAME)",
                        user.email
                    ),
                },
            };
            let (_, key) = store
                .create_api_key(user.id, team_id, &name, write)
                .await
                .context("creating the key")?;
            store.close().await;
            println!("{key}");
            Ok(())
        }
        Command::Apikey {
            command: ApikeyCommand::List { data, user },
        } => {
            let settings = settings(data)?;
            let (_lock, store) = cahier::open_lab(&settings).await?;
            let user = store
                .user_by_email(&user)
                .await
                .with_context(|| format!("no user with the e-mail {user}"))?;
            let keys = store.api_keys(user.id).await.context("reading the keys")?;
            store.close().await;
            if keys.is_empty() {
                println!("{} has no API key", user.email);
            }
            for key in keys {
                println!(
                    "{}\t{}\tteam {}\tcreated {}\tlast used {}\t{}",
                    key.id,
                    if key.can_write {
                        "read-write"
                    } else {
                        "read-only"
                    },
                    key.team_id,
                    cahier_core::clock::format_date(key.created_at),
                    key.last_used_at
                        .map_or_else(|| "never".to_owned(), cahier_core::clock::format_date),
                    key.name
                );
            }
            Ok(())
        }
        Command::Apikey {
            command: ApikeyCommand::Revoke { data, user, id },
        } => {
            let settings = settings(data)?;
            let (_lock, store) = cahier::open_lab(&settings).await?;
            let user = store
                .user_by_email(&user)
                .await
                .with_context(|| format!("no user with the e-mail {user}"))?;
            let revoked = store.delete_api_key(user.id, id).await;
            store.close().await;
            match revoked {
                Ok(()) => {
                    println!("API key {id} of {} revoked", user.email);
                    Ok(())
                }
                Err(cahier_store::StoreError::NotFound(_)) => bail!(
                    "{} has no API key with id {id} (see cahier apikey list --user {})",
                    user.email,
                    user.email
                ),
                Err(error) => Err(error).context("revoking the key"),
            }
        }
        Command::Replica {
            command:
                ReplicaCommand::Init {
                    server,
                    data,
                    email,
                    password_stdin,
                    ca_file,
                    files,
                },
        } => {
            if !password_stdin {
                bail!("pass --password-stdin and write the password on standard input");
            }
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\n', '\r']);
            println!(
                "{}",
                cahier::replica::init(
                    &server,
                    &data,
                    &email,
                    password,
                    ca_file.as_deref(),
                    files.as_deref()
                )
                .await?
            );
            Ok(())
        }
        Command::Replica {
            command: ReplicaCommand::Files { data, policy },
        } => {
            println!(
                "{}",
                cahier::replica::files(&data, policy.as_deref()).await?
            );
            Ok(())
        }
        Command::Replica {
            command: ReplicaCommand::Pin { data, entries },
        } => {
            println!("{}", cahier::replica::pin(&data, &entries, true).await?);
            Ok(())
        }
        Command::Replica {
            command: ReplicaCommand::Unpin { data, entries },
        } => {
            println!("{}", cahier::replica::pin(&data, &entries, false).await?);
            Ok(())
        }
        Command::Replica {
            command: ReplicaCommand::Sync { data },
        } => {
            println!("{}", cahier::replica::sync(&data).await?);
            Ok(())
        }
        Command::Replica {
            command:
                ReplicaCommand::Serve {
                    data,
                    listen,
                    lock_after,
                },
        } => {
            let passphrase = cahier::replica::passphrase_from_env();
            let unlocked = passphrase.is_some();
            let running = cahier::replica_gate::serve(
                data,
                &listen,
                std::time::Duration::from_secs(lock_after.max(1)),
                passphrase,
            )
            .await?;
            println!("Cahier field replica is running at {}", running.url);
            if !unlocked {
                println!("Open it in your browser and enter the passphrase to unlock it.");
            }
            running.wait().await
        }
        Command::Replica {
            command: ReplicaCommand::Apikey { data },
        } => {
            println!("{}", cahier::replica::apikey(&data).await?);
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Example,
        } => {
            print!("{EXAMPLE}");
            Ok(())
        }
        Command::Seed {
            data,
            experiments,
            teams,
            body_bytes,
        } => {
            let settings = settings(data)?;
            let (_lock, store) = cahier::open_lab(&settings).await?;
            let report = cahier::seed::seed(&store, experiments, teams, body_bytes).await?;
            store.close().await;
            println!("{report}");
            Ok(())
        }
        Command::Bench {
            data,
            requests,
            concurrency,
            only,
        } => {
            let args = cahier::bench::BenchArgs {
                data: settings(data.clone())?.data,
                config: data.config,
                requests,
                concurrency,
                only,
            };
            println!("{}", cahier::bench::run(args).await?);
            Ok(())
        }
        Command::BenchSync {
            data,
            replica,
            edits,
            noop_runs,
            blob_mb,
            rounds,
        } => {
            let args = cahier::bench_sync::SyncBenchArgs {
                data: settings(data)?.data,
                replica,
                edits,
                noop_runs,
                blob_mb,
                rounds,
            };
            println!("{}", cahier::bench_sync::run(args).await?);
            Ok(())
        }
        Command::BenchExchange {
            dir,
            experiments,
            attachment_mb,
            body_bytes,
            keep,
        } => {
            let args = cahier::bench_exchange::ExchangeArgs {
                dir,
                experiments,
                attachment_mb,
                body_bytes,
                keep,
            };
            println!("{}", cahier::bench_exchange::run(args).await?);
            Ok(())
        }
        Command::BenchExchangePhase {
            phase,
            dir,
            experiments,
            attachment_mb,
            body_bytes,
        } => {
            cahier::bench_exchange::phase(&phase, &dir, experiments, attachment_mb, body_bytes)
                .await
        }
    }
}
