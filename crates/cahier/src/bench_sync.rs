//! `cahier bench-sync`: the field replica's sync measured over a seeded lab data directory
//! (BENCHMARKS.md, "Sync"). It starts `cahier serve` as a child process, puts a counting
//! loopback TCP proxy in front of it (bytes both ways, HTTP requests), creates a replica as
//! `cahier replica init` does (encrypted database and files) and times, in this order: the
//! initial copy, edits made on the replica then synced (push), edits made at the lab then
//! synced (pull), syncs with nothing to do, and attachment files fetched by a sync, compared
//! with `curl` fetching the same files from the same server. The data directory is changed
//! (edits and files are added): run it on a copy. `scripts/bench-sync` runs it beside PouchDB.

use crate::bench::{BENCH_EMAIL, BENCH_PASSWORD, BenchArgs, free_port, load_average, start_server};
use anyhow::{Context, bail};
use cahier_sync::http::TlsOptions;
use cahier_sync::{SyncReport, sync_once};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What `cahier bench-sync` was asked to do.
#[derive(Debug, Clone)]
pub struct SyncBenchArgs {
    /// A lab data directory filled by `cahier seed` (changed by the run: use a copy).
    pub data: PathBuf,
    /// An empty directory for the replica.
    pub replica: PathBuf,
    /// Documents edited on each side.
    pub edits: usize,
    /// Syncs with nothing to do (the median is reported).
    pub noop_runs: usize,
    /// Megabytes of attachment files fetched by the replica (0: skip).
    pub blob_mb: usize,
    /// Rounds of edits each way (the median round is reported).
    pub rounds: usize,
}

/// Traffic counted by the proxy since it started.
#[derive(Debug, Default)]
struct Counters {
    up: AtomicU64,
    down: AtomicU64,
    requests: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Traffic {
    up: u64,
    down: u64,
    requests: u64,
}

impl Counters {
    fn read(&self) -> Traffic {
        Traffic {
            up: self.up.load(Ordering::SeqCst),
            down: self.down.load(Ordering::SeqCst),
            requests: self.requests.load(Ordering::SeqCst),
        }
    }
}

impl std::ops::Sub for Traffic {
    type Output = Traffic;
    fn sub(self, other: Traffic) -> Traffic {
        Traffic {
            up: self.up.saturating_sub(other.up),
            down: self.down.saturating_sub(other.down),
            requests: self.requests.saturating_sub(other.requests),
        }
    }
}

/// Counts HTTP/1.1 request lines in a byte stream cut into arbitrary chunks (a request line
/// ends with ` HTTP/1.1\r\n`; JSON and base64 bodies never hold a CR LF).
#[derive(Default)]
struct RequestCounter {
    tail: Vec<u8>,
}

const REQUEST_LINE_END: &[u8] = b" HTTP/1.1\r\n";

impl RequestCounter {
    fn feed(&mut self, chunk: &[u8]) -> u64 {
        let mut window = std::mem::take(&mut self.tail);
        window.extend_from_slice(chunk);
        let count = window
            .windows(REQUEST_LINE_END.len())
            .filter(|w| *w == REQUEST_LINE_END)
            .count() as u64;
        let keep = REQUEST_LINE_END.len() - 1;
        self.tail = window[window.len().saturating_sub(keep)..].to_vec();
        count
    }
}

/// A loopback TCP proxy to `upstream` that counts what crosses it. Returns its address.
async fn counting_proxy(upstream: String, counters: Arc<Counters>) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("starting the counting proxy")?;
    let address = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            let counters = counters.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let up_counters = counters.clone();
                let up = async move {
                    let mut counter = RequestCounter::default();
                    let mut buffer = vec![0u8; 256 * 1024];
                    loop {
                        let n = match client_read.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        up_counters.up.fetch_add(n as u64, Ordering::SeqCst);
                        up_counters
                            .requests
                            .fetch_add(counter.feed(&buffer[..n]), Ordering::SeqCst);
                        if server_write.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = server_write.shutdown().await;
                };
                let down = async move {
                    let mut buffer = vec![0u8; 256 * 1024];
                    loop {
                        let n = match server_read.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        counters.down.fetch_add(n as u64, Ordering::SeqCst);
                        if client_write.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = client_write.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    Ok(address)
}

/// One measured step.
struct Step {
    name: String,
    time: Duration,
    traffic: Traffic,
    report: String,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

async fn timed_sync(
    name: &str,
    store: &cahier_store::Store,
    transport: &cahier_sync::http::HttpTransport,
    counters: &Counters,
) -> anyhow::Result<(Step, SyncReport)> {
    eprintln!("bench-sync: {name}");
    let before = counters.read();
    let started = Instant::now();
    let report = sync_once(store, transport)
        .await
        .with_context(|| format!("sync ({name})"))?;
    let time = started.elapsed();
    let traffic = counters.read() - before;
    if report.waiting > 0 || report.rejected > 0 || report.files_missing > 0 {
        bail!("{name}: the sync did not complete: {report}");
    }
    Ok((
        Step {
            name: name.to_owned(),
            time,
            traffic,
            report: report.to_string(),
        },
        report,
    ))
}

/// The median of `list` by time, named for the rounds it stands for.
fn median_step(mut list: Vec<Step>, rounds: usize, what: &str) -> anyhow::Result<Step> {
    list.sort_by_key(|s| s.time);
    let len = list.len();
    if len == 0 {
        bail!("no {what} step was measured");
    }
    let mut median = list.swap_remove(len / 2);
    if rounds > 1 {
        median.name = format!("{} (median of {rounds} rounds)", median.name);
    }
    Ok(median)
}

/// An edited body: the first line gains a marker, so the change is one small splice.
fn edited(body: &str, marker: &str) -> String {
    match body.split_once('\n') {
        Some((first, rest)) => format!("{first} {marker}\n{rest}"),
        None => format!("{body} {marker}"),
    }
}

/// Runs the sync benchmark; returns the report (Markdown).
pub async fn run(args: SyncBenchArgs) -> anyhow::Result<String> {
    if args.replica.join("cahier.db").exists() {
        bail!(
            "{} already holds a replica; give an empty directory",
            args.replica.display()
        );
    }
    let settings = crate::settings::Settings::load(crate::settings::Overrides {
        data: Some(args.data.clone()),
        ..Default::default()
    })?;
    if !settings.data.join("cahier.db").exists() {
        bail!(
            "{} has no database; fill it first with `cahier seed --data {}`",
            settings.data.display(),
            settings.data.display()
        );
    }
    // An API key to edit at the lab, made before the server starts.
    let store = crate::open_store(&settings).await?;
    let user = store
        .user_by_email(BENCH_EMAIL)
        .await
        .with_context(|| format!("no user {BENCH_EMAIL}: run `cahier seed` first"))?;
    let team = user
        .current_team
        .with_context(|| format!("{BENCH_EMAIL} belongs to no team"))?;
    let (_, api_key) = store
        .create_api_key(user.id, team, "cahier bench-sync", true)
        .await
        .context("creating an API key")?;
    // A lab from before migration 26 builds its fast-path indexes in the background once,
    // after the upgrade (`serve`): done here first, so that it does not run during the
    // measurements (it would take CPU from them, and pushes to entries not yet reached would
    // rebuild their index).
    let built = store
        .build_missing_indexes(0)
        .await
        .context("building the fast-path indexes")?;
    if built > 0 {
        eprintln!("bench-sync: built {built} fast-path indexes of older entries first");
    }
    store.close().await;

    let port = free_port()?;
    let bench_args = BenchArgs {
        data: settings.data.clone(),
        config: None,
        requests: 0,
        concurrency: 1,
        only: Vec::new(),
    };
    let (server, base) = start_server(&bench_args, port).await?;
    let outcome = tokio::select! {
        outcome = run_against(&args, &base, port, &api_key) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    server.stop().await?;
    outcome
}

async fn run_against(
    args: &SyncBenchArgs,
    base: &str,
    port: u16,
    api_key: &str,
) -> anyhow::Result<String> {
    let load_before = load_average();
    let counters = Arc::new(Counters::default());
    let proxy = counting_proxy(format!("127.0.0.1:{port}"), counters.clone()).await?;
    let via_proxy = format!("http://{proxy}");
    let passphrase = "bench-sync passphrase";
    let (replica, transport) = crate::replica::create(
        &via_proxy,
        &args.replica,
        BENCH_EMAIL,
        BENCH_PASSWORD,
        &TlsOptions::default(),
        passphrase,
    )
    .await?;
    let mut steps = Vec::new();

    // 1. Initial copy.
    let (step, first) = timed_sync("initial copy", &replica, &transport, &counters).await?;
    steps.push(step);
    // What `replica serve` does in the background after a sync that pulled entries: merge the
    // search rows the pull left for later and merge the index built in bulk, store the
    // rendered bodies the pull left out.
    eprintln!("bench-sync: background work after the copy");
    let started = Instant::now();
    replica.finish_search_bulk().await?;
    let merged = started.elapsed();
    replica.render_pending_html().await?;
    replica.checkpoint_wal().await?;
    steps.push(Step {
        name: format!(
            "after the copy, in the background: search rows written and index merged ({:.2} s), rendered bodies stored, database log checkpointed (not a sync)",
            merged.as_secs_f64()
        ),
        time: started.elapsed(),
        traffic: Traffic::default(),
        report: String::new(),
    });
    let user_id: i64 = replica
        .replica_get("user_id")
        .await?
        .and_then(|v| v.parse().ok())
        .context("the replica does not know its user")?;
    let subject = replica.subject(user_id).await?;
    let mut ids = Vec::new();
    crate::bench::count_matching(
        &replica,
        &subject,
        cahier_store::listing::ListQuery::new(cahier_core::EntityKind::Experiment),
        |id| ids.push(id),
    )
    .await?;
    if ids.len() < args.edits * 2 {
        bail!(
            "the replica holds {} experiments; at least {} are needed",
            ids.len(),
            args.edits * 2
        );
    }

    // A client to edit at the lab (API v2).
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        api_key
            .parse()
            .context("the API key is not a header value")?,
    );
    let api = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(600))
        .build()?;
    // Steps 2 and 3, `rounds` times (each round edits the same entries again): the median
    // round of each is reported.
    let (mut saves, mut pushes, mut pulls, mut after_pulls) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..args.rounds.max(1) {
        // 2. Edits on the replica (timed: local saves), then a sync (push).
        eprintln!("bench-sync: {} local saves on the replica", args.edits);
        let saves_started = Instant::now();
        for (i, id) in ids.iter().take(args.edits).enumerate() {
            let entity = replica.entity(&subject, *id).await?;
            let patch = cahier_core::EntityPatch {
                body: Some(edited(&entity.body, &format!("field edit {round}.{i}"))),
                ..Default::default()
            };
            replica
                .update_entity(&subject, *id, None, &patch, "bench")
                .await?;
        }
        saves.push(Step {
            name: format!(
                "{} local saves on the replica (read, then save; not a sync)",
                args.edits
            ),
            time: saves_started.elapsed(),
            traffic: Traffic::default(),
            report: String::new(),
        });
        let (step, pushed) = timed_sync(
            &format!("{} edits made on the replica", args.edits),
            &replica,
            &transport,
            &counters,
        )
        .await?;
        if pushed.pushed != args.edits {
            bail!("expected {} documents pushed: {}", args.edits, step.report);
        }
        pushes.push(step);

        // 3. Edits at the lab (API v2), then a sync (pull).
        eprintln!("bench-sync: editing {} experiments at the lab", args.edits);
        for (i, id) in ids.iter().skip(args.edits).take(args.edits).enumerate() {
            let url = format!("{base}/api/v2/experiments/{id}");
            let current: serde_json::Value = api
                .get(&url)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let body = current["body"].as_str().unwrap_or_default();
            api.patch(&url)
                .json(&serde_json::json!({"body": edited(body, &format!("lab edit {round}.{i}"))}))
                .send()
                .await?
                .error_for_status()
                .with_context(|| format!("editing experiment {id} at the lab"))?;
        }
        let (step, pulled) = timed_sync(
            &format!("{} edits made at the lab", args.edits),
            &replica,
            &transport,
            &counters,
        )
        .await?;
        if pulled.pulled != args.edits {
            bail!("expected {} documents pulled: {}", args.edits, step.report);
        }
        pulls.push(step);
        // What `replica serve` does in the background after a sync that pulled entries.
        let started = Instant::now();
        replica.render_pending_html().await?;
        replica.merge_search_segments().await?;
        replica.checkpoint_wal().await?;
        after_pulls.push(Step {
            name: "after the pull, in the background: rendered bodies stored, search rows written and segments merged, database log checkpointed (not a sync)".into(),
            time: started.elapsed(),
            traffic: Traffic::default(),
            report: String::new(),
        });
    }
    let rounds = args.rounds.max(1);
    for (list, what) in [
        (saves, "local saves"),
        (pushes, "push"),
        (pulls, "pull"),
        (after_pulls, "after the pull"),
    ] {
        steps.push(median_step(list, rounds, what)?);
    }

    // 4. Syncs with nothing to do.
    let mut noop = Vec::new();
    for _ in 0..args.noop_runs.max(1) {
        let (step, report) = timed_sync("nothing to do", &replica, &transport, &counters).await?;
        if report.pushed + report.pulled + report.files_received > 0 {
            bail!("a sync with nothing to do moved something: {report}");
        }
        noop.push(step);
    }
    noop.sort_by_key(|s| s.time);
    let median = noop.swap_remove(noop.len() / 2);
    steps.push(Step {
        name: format!("nothing to do (median of {})", args.noop_runs.max(1)),
        ..median
    });

    // 5. Attachment files: made at the lab, fetched by a sync, and by curl.
    let mut files = String::new();
    if args.blob_mb > 0 {
        let file_mb = 10usize;
        let count = args.blob_mb.div_ceil(file_mb);
        let target = ids[args.edits * 2 - 1];
        let mut hashes = Vec::new();
        eprintln!("bench-sync: attaching {count} files of {file_mb} MiB at the lab");
        for n in 0..count {
            let mut bytes = vec![0u8; file_mb * 1024 * 1024];
            rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
            let hash = {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(&bytes))
            };
            let form = reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(format!("data-{n}.bin")),
            );
            api.post(format!("{base}/api/v2/experiments/{target}/uploads"))
                .multipart(form)
                .send()
                .await?
                .error_for_status()
                .context("attaching a file at the lab")?;
            hashes.push(hash);
        }
        // The files are fetched straight from the server, as curl does below (the counting
        // proxy, in this process, would take CPU from the replica: its own row follows).
        let token = std::fs::read_to_string(args.replica.join("device.key"))
            .context("reading the device credential")?;
        let direct =
            cahier_sync::http::HttpTransport::new(base, &TlsOptions::default(), token.trim())?;
        let (step, got) = timed_sync(
            &format!("{} MiB of files", count * file_mb),
            &replica,
            &direct,
            &counters,
        )
        .await?;
        if got.files_received != count {
            bail!("expected {count} files received: {}", step.report);
        }
        let total = (count * file_mb * 1024 * 1024) as u64;
        let sync_rate = mib(total) / step.time.as_secs_f64();
        steps.push(step);
        // The same files again through the counting proxy: removed from the replica first.
        let blobs = replica
            .blobs()
            .context("the replica has no file store")?
            .clone();
        for hash in &hashes {
            tokio::fs::remove_file(blobs.path_of(hash)?).await?;
        }
        let (proxied, again) = timed_sync(
            "the same files through the counting proxy",
            &replica,
            &transport,
            &counters,
        )
        .await?;
        if again.files_received != count {
            bail!("expected {count} files received: {}", proxied.report);
        }
        let proxied_rate = mib(total) / proxied.time.as_secs_f64();
        if let Some(step) = steps.last_mut() {
            // Fetched straight from the server: the traffic is the proxied run's.
            step.traffic = proxied.traffic;
            step.name
                .push_str(" (bytes and requests counted on the same fetch through the proxy)");
        }
        let mut rows = Vec::new();
        for (label, host) in [
            ("curl, direct", base.to_owned()),
            ("curl, through the proxy", via_proxy.clone()),
        ] {
            let mut command = tokio::process::Command::new("curl");
            command
                .arg("--silent")
                .arg("--fail")
                .arg("--header")
                .arg(format!("Authorization: Device {}", token.trim()));
            for hash in &hashes {
                command
                    .arg("--output")
                    .arg("/dev/null")
                    .arg(format!("{host}/api/sync/v1/blobs/{hash}"));
            }
            let started = Instant::now();
            let status = command.status().await.context("running curl")?;
            let time = started.elapsed();
            if !status.success() {
                bail!("curl failed ({status})");
            }
            rows.push((label, time, mib(total) / time.as_secs_f64()));
        }
        let _ = writeln!(
            files,
            "\n| files ({} × {file_mb} MiB) | time | MiB/s | share of curl direct |",
            count
        );
        let _ = writeln!(files, "|---|---:|---:|---:|");
        let curl_rate = rows.first().map_or(1.0, |r| r.2);
        let _ = writeln!(
            files,
            "| replica sync (download, SHA-256 check, encrypted at rest) | {:.2} s | {sync_rate:.0} | {:.0} % |",
            steps.last().map_or(0.0, |s| s.time.as_secs_f64()),
            100.0 * sync_rate / curl_rate
        );
        let _ = writeln!(
            files,
            "| replica sync through the counting proxy | {:.2} s | {proxied_rate:.0} | {:.0} % |",
            proxied.time.as_secs_f64(),
            100.0 * proxied_rate / curl_rate
        );
        for (label, time, rate) in rows {
            let _ = writeln!(
                files,
                "| {label} | {:.2} s | {rate:.0} | {:.0} % |",
                time.as_secs_f64(),
                100.0 * rate / curl_rate
            );
        }
    }

    replica.close().await;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Cahier sync: {} experiments copied ({}), {} edits each way; load average {} before, {} after\n",
        first.added,
        first,
        args.edits,
        load_before,
        load_average()
    );
    let _ = writeln!(out, "| step | time | bytes up | bytes down | requests |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    for step in &steps {
        let time = if step.time < Duration::from_secs(1) {
            format!("{:.1} ms", step.time.as_secs_f64() * 1000.0)
        } else {
            format!("{:.2} s", step.time.as_secs_f64())
        };
        let _ = writeln!(
            out,
            "| {} | {time} | {} | {} | {} |",
            step.name, step.traffic.up, step.traffic.down, step.traffic.requests
        );
    }
    out.push_str(&files);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_counted_across_chunk_boundaries() {
        let stream =
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
        for cut in 0..stream.len() {
            let mut counter = RequestCounter::default();
            let n = counter.feed(&stream[..cut]) + counter.feed(&stream[cut..]);
            assert_eq!(n, 2, "cut at {cut}");
        }
    }

    #[test]
    fn an_edit_changes_the_first_line_only() {
        assert_eq!(edited("# T\nbody\n", "x"), "# T x\nbody\n");
        assert_eq!(edited("one", "x"), "one x");
    }
}
