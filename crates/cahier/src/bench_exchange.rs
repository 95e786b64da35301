//! `cahier bench-exchange`: the `.eln` exchange at scale. Three phases, each in its own child
//! process so that each one's peak memory (VmHWM) and CPU time are its own:
//!
//! 1. `seed`: a fresh data directory with N experiments in one team, each with one attachment,
//!    the attachments totalling the asked size (incompressible bytes, all different);
//! 2. `export`: the whole team notebook to `.eln` through the background-job code path
//!    (`Store::create_export_job` + `Store::run_export_job`);
//! 3. `import`: that archive into another fresh data directory (`Store::import_eln`).
//!
//! Everything goes under `--dir`, removed at the end unless `--keep`.

use anyhow::{Context, bail};
use cahier_store::Store;
use cahier_store::accounts::NewUser;
use cahier_store::export_jobs::ExportScope;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What to measure.
#[derive(Debug, Clone)]
pub struct ExchangeArgs {
    /// Working folder (created; must not exist yet or be empty).
    pub dir: PathBuf,
    /// Number of experiments.
    pub experiments: usize,
    /// Total attachment size, MiB.
    pub attachment_mb: u64,
    /// Size of each body, bytes.
    pub body_bytes: usize,
    /// Keep the data afterwards.
    pub keep: bool,
}

/// What one phase measured of itself.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PhaseReport {
    /// seed, export or import.
    pub phase: String,
    /// Wall time, seconds.
    pub wall_s: f64,
    /// User + system CPU time of the process, seconds.
    pub cpu_s: f64,
    /// Peak resident memory of the process, KiB.
    pub peak_rss_kb: u64,
    /// Bytes produced (attachments seeded, archive written, blobs imported).
    pub bytes: u64,
    /// Entities handled.
    pub entities: usize,
}

const PREFIX: &str = "PHASE-REPORT ";

fn store_settings(data: &Path) -> anyhow::Result<crate::settings::Settings> {
    let mut settings = crate::settings::Settings::load(crate::settings::Overrides {
        data: Some(data.to_path_buf()),
        ..Default::default()
    })?;
    // Large single archives must pass the per-file limit of the blob store.
    settings.max_upload_mb = settings.max_upload_mb.max(64 * 1024);
    Ok(settings)
}

fn proc_self_peak_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or_default()
}

/// User + system CPU seconds of this process (`/proc/self/stat`, clock ticks of 1/100 s).
fn proc_self_cpu_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_default()
    };
    (tick(11) + tick(12)) as f64 / 100.0
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or_default(),
            Err(_) => 0,
        })
        .sum()
}

/// Runs the three phases as child processes and returns the report.
pub async fn run(args: ExchangeArgs) -> anyhow::Result<String> {
    if args.dir.exists()
        && std::fs::read_dir(&args.dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} is not empty; name a new folder for the benchmark data",
            args.dir.display()
        );
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let exe = std::env::current_exe().context("finding the cahier executable")?;
    let load_before = crate::bench::load_average();
    let mut reports = Vec::new();
    for phase in ["seed", "export", "import"] {
        let output = std::process::Command::new(&exe)
            .arg("bench-exchange-phase")
            .arg("--phase")
            .arg(phase)
            .arg("--dir")
            .arg(&args.dir)
            .arg("--experiments")
            .arg(args.experiments.to_string())
            .arg("--attachment-mb")
            .arg(args.attachment_mb.to_string())
            .arg("--body-bytes")
            .arg(args.body_bytes.to_string())
            .env("CAHIER_LOG", "warn")
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("running the {phase} phase"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!("the {phase} phase failed ({}): {stdout}", output.status);
        }
        let report: PhaseReport = stdout
            .lines()
            .find_map(|l| l.strip_prefix(PREFIX))
            .context("the phase printed no report")
            .and_then(|l| serde_json::from_str(l).context("reading the phase report"))?;
        reports.push(report);
    }
    let load_after = crate::bench::load_average();
    let mut out = format!(
        "bench-exchange: {} experiments, {} MiB of attachments, bodies of {} bytes\n\
         load average before: {load_before}; after: {load_after}\n\
         | phase | wall (s) | CPU (s) | peak RSS (MiB) | entities | bytes |\n|---|---|---|---|---|---|\n",
        args.experiments, args.attachment_mb, args.body_bytes
    );
    for r in &reports {
        out.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:.1} | {} | {} |\n",
            r.phase,
            r.wall_s,
            r.cpu_s,
            r.peak_rss_kb as f64 / 1024.0,
            r.entities,
            r.bytes
        ));
    }
    if !args.keep {
        std::fs::remove_dir_all(&args.dir)
            .with_context(|| format!("removing {}", args.dir.display()))?;
    }
    Ok(out)
}

async fn bench_subject(store: &Store) -> anyhow::Result<(i64, cahier_core::Subject)> {
    let team_id = match store.team_by_name("Bench team 1").await {
        Ok(team) => team.id,
        Err(_) => store.create_team("Bench team 1").await?,
    };
    let email = "bench1@example.org";
    let user_id = match store.user_by_email(email).await {
        Ok(user) => user.id,
        Err(_) => {
            let id = store
                .create_user(NewUser {
                    email: email.into(),
                    firstname: "Bench".into(),
                    lastname: "User 1".into(),
                    password: Some("bench-password".into()),
                    is_sysadmin: false,
                })
                .await?;
            store.add_member(team_id, id, true).await?;
            id
        }
    };
    Ok((team_id, store.subject(user_id).await?))
}

/// One phase, in this process; prints its report on a `PHASE-REPORT {json}` line.
pub async fn phase(
    phase: &str,
    dir: &Path,
    experiments: usize,
    attachment_mb: u64,
    body_bytes: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let source = dir.join("source");
    let target = dir.join("target");
    let archive = dir.join("export.eln");
    let (bytes, entities) = match phase {
        "seed" => {
            let store = crate::open_store(&store_settings(&source)?).await?;
            crate::seed::seed(&store, experiments, 1, body_bytes).await?;
            let (team, subject) = bench_subject(&store).await?;
            let scope = ExportScope {
                team: Some(team),
                ..Default::default()
            };
            let ids = store.export_scope_ids(&subject, &scope).await?;
            let per_file = (attachment_mb * 1024 * 1024) / (ids.len().max(1) as u64);
            let mut total = 0u64;
            for (n, id) in ids.iter().enumerate() {
                total += attach_noise(&store, &subject, *id, n, per_file).await?;
            }
            store.close().await;
            (total, ids.len())
        }
        "export" => {
            let store = crate::open_store(&store_settings(&source)?).await?;
            let (team, subject) = bench_subject(&store).await?;
            let scope = ExportScope {
                team: Some(team),
                ..Default::default()
            };
            let job = store.create_export_job(&subject, &scope).await?;
            store.run_export_job(&subject, job).await?;
            let done = store.export_job(&subject, job).await?;
            let file = store.export_job_file(&subject, job).await?;
            tokio::fs::rename(&file, &archive).await?;
            store.close().await;
            (
                u64::try_from(done.file_size.unwrap_or_default()).unwrap_or_default(),
                usize::try_from(done.total).unwrap_or_default(),
            )
        }
        "import" => {
            let store = crate::open_store(&store_settings(&target)?).await?;
            let (team, subject) = bench_subject(&store).await?;
            let options = cahier_store::eln_import::ImportOptions {
                team_id: team,
                kind: None,
                category_id: None,
            };
            let report = store.import_eln(&subject, &archive, &options).await?;
            if !report.refused_files.is_empty() {
                bail!("the import refused files: {:?}", report.refused_files);
            }
            store.close().await;
            (dir_size(&target.join("blobs")), report.created.len())
        }
        other => bail!("unknown phase {other}; expected seed, export or import"),
    };
    let report = PhaseReport {
        phase: phase.to_owned(),
        wall_s: started.elapsed().as_secs_f64(),
        cpu_s: proc_self_cpu_s(),
        peak_rss_kb: proc_self_peak_kb(),
        bytes,
        entities,
    };
    println!("{PREFIX}{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Attaches `size` pseudo-random bytes (different for each `n`) to entity `id`.
async fn attach_noise(
    store: &Store,
    subject: &cahier_core::Subject,
    id: i64,
    n: usize,
    size: u64,
) -> anyhow::Result<u64> {
    let blobs = store.blob_store()?;
    let mut writer = blobs.writer().await?;
    let mut state = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut left = size;
    let mut chunk = vec![0u8; 64 * 1024];
    while left > 0 {
        let take = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        for word in chunk[..take].chunks_mut(8) {
            // xorshift64: fast, incompressible enough for a ZIP.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let bytes = state.to_le_bytes();
            word.copy_from_slice(&bytes[..word.len()]);
        }
        writer.write(&chunk[..take]).await?;
        left -= take as u64;
    }
    let (sha256, written) = writer.finish().await?;
    store
        .attach(
            subject,
            id,
            cahier_store::uploads::NewUpload {
                sha256,
                size: written,
                real_name: format!("raw-{n}.bin"),
                comment: String::new(),
                media_type: "application/octet-stream".into(),
            },
            None,
        )
        .await?;
    Ok(written)
}
