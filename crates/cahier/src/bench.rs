//! `cahier bench`: the HTTP benchmark recorded in BENCHMARKS.md. It owns the load generator and
//! its report: it starts `cahier serve` as a child process on a free loopback port over a
//! seeded data directory (so the memory measured is the server's alone), signs in a UI client,
//! makes an API key, runs each scenario with C concurrent clients after a warm-up, and returns
//! latency percentiles, throughput and the server's resident memory as Markdown.

use crate::settings::{Overrides, Settings};
use anyhow::{Context, bail};
use cahier_core::EntityKind;
use cahier_store::listing::{ListQuery, Order};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, HOST, HeaderValue};
use hyper::{Method, Request};
use reqwest::StatusCode;
use reqwest::cookie::CookieStore;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The user `cahier seed` creates first; the benchmark acts as them.
pub(crate) const BENCH_EMAIL: &str = "bench1@example.org";
/// The password `cahier seed` gives its users.
pub(crate) const BENCH_PASSWORD: &str = "bench-password";
/// Pages followed from the first list page to reach the "later page" measured.
const LATER_PAGE: usize = 50;
/// Longest wait for the server to answer `/healthz`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// What `cahier bench` was asked to do.
#[derive(Debug, Clone)]
pub struct BenchArgs {
    /// A data directory filled by `cahier seed`.
    pub data: PathBuf,
    /// Configuration file passed on to the server, if any.
    pub config: Option<PathBuf>,
    /// Requests measured per scenario (the heavy `limit=5000` list uses a twentieth).
    pub requests: usize,
    /// Concurrent clients.
    pub concurrency: usize,
    /// The groups of scenarios to run; empty runs them all.
    pub only: Vec<Group>,
}

/// A group of scenarios, chosen with `cahier bench --only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Group {
    /// The UI's list, search and experiment pages.
    Ui,
    /// `GET /api/v2/experiments/{id}`.
    ApiGet,
    /// `GET /api/v2/experiments?limit=15`.
    ApiList,
    /// `POST /api/v2/experiments` (writes 2,000 experiments).
    ApiCreate,
    /// `GET /api/v2/experiments?limit=5000`.
    ApiBulk,
}

impl BenchArgs {
    fn runs(&self, group: Group) -> bool {
        self.only.is_empty() || self.only.contains(&group)
    }
}

/// Builds the request number `i` of a scenario.
type MakeRequest = Box<dyn Fn(usize) -> Request<Full<Bytes>> + Send + Sync>;

/// One line of the results table.
struct Scenario {
    group: Group,
    name: String,
    /// A bulk request whose memory is reported apart from the others' (`limit=5000`).
    bulk: bool,
    requests: usize,
    expect: StatusCode,
    make: MakeRequest,
}

/// What one scenario measured.
struct Measured {
    name: String,
    bulk: bool,
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
    wall: Duration,
    bytes: u64,
    peak_rss_kb: Option<u64>,
    warmup_peak_kb: u64,
    /// CPU seconds the server and the load generator (this process) used in the measured run.
    server_cpu: f64,
    bench_cpu: f64,
}

/// The server child process; killed if the benchmark stops early.
pub(crate) struct Server {
    child: Child,
}

impl Server {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks the server to stop (SIGTERM, so it closes the database cleanly), then waits.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.pid().to_string();
        let asked = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map(|status| status.success())
            .unwrap_or(false);
        if asked {
            for _ in 0..100 {
                if self
                    .child
                    .try_wait()
                    .context("waiting for the server")?
                    .is_some()
                {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        self.child.kill().context("killing the server")?;
        self.child.wait().context("waiting for the server")?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn memory_kb(pid: u32) -> anyhow::Result<(u64, u64)> {
    let (rss, hwm, _) = memory_parts_kb(pid)?;
    Ok((rss, hwm))
}

/// `VmRSS`, `VmHWM` and `RssAnon` of a process, in KiB. `RssAnon` is the process's own memory
/// (heap, stacks); the rest of `VmRSS` is mostly file pages, such as the database's pages
/// read through SQLite's memory map (`db_mmap_mib`), which are the system's page cache.
fn memory_parts_kb(pid: u32) -> anyhow::Result<(u64, u64, u64)> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("no {name} in {path}"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?, field("RssAnon:")?))
}

/// Resets the peak resident size of a process to its current size (Linux `clear_refs` 5), so
/// each scenario's peak can be read on its own. Returns whether it worked.
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat` (clock ticks of
/// 1/100 s, the Linux default).
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the state.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// The machine's load averages over 1, 5 and 15 minutes, as `/proc/loadavg` shows them.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted latencies.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A deterministic spread of indices (SplitMix64), so runs pick the same "random" ids.
fn mix(i: usize) -> usize {
    let mut z = (i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as usize
}

/// A loopback port nobody listens on right now.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr().context("reading the port")?.port())
}

/// Reverses askama's HTML escaping of an attribute value.
fn unescape_html(s: &str) -> String {
    s.replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The `href` of the list page's "next" link.
fn next_link(html: &str) -> Option<String> {
    let marker = html.find("rel=\"next\"")?;
    let before = html.get(..marker)?;
    let start = before.rfind("href=\"")? + "href=\"".len();
    let end = start + before.get(start..)?.find('"')?;
    Some(unescape_html(before.get(start..end)?))
}

/// The value of the `cahier_csrf` cookie set by a response.
fn csrf_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("cahier_csrf="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

/// What the benchmark needs from the database before the server starts.
struct Prepared {
    api_key: String,
    readable_ids: Vec<i64>,
    experiments: i64,
    search_hits: Vec<(String, usize)>,
}

/// Words searched, from rarest to most common in data made by `cahier seed`.
fn search_words() -> Vec<String> {
    vec![
        // One experiment: its number appears in its title and first heading only. Seeded
        // experiment n goes to team n % teams, so a multiple of 4 is in the first user's team.
        "77776".to_owned(),
        // The tag `batch-8`: one experiment in fifty (n % 50 == 8).
        "batch-8".to_owned(),
        // Words of the generated prose (seed.rs's WORDS): a 5 KB body contains nearly all.
        "sédiment".to_owned(),
        "protocole forêt".to_owned(),
        // Typed fields (seed.rs): one site in fifty; a temperature above 39 (1 in 40) and
        // above 20 (half).
        "field:Site=\"site 8\"".to_owned(),
        "field:Temperature>39".to_owned(),
        "field:Temperature>20".to_owned(),
    ]
}

/// Counts the entries `subject` may read that match `query`, paging by id (bounded).
pub(crate) async fn count_matching(
    store: &cahier_store::Store,
    subject: &cahier_core::Subject,
    mut query: ListQuery,
    mut each: impl FnMut(i64),
) -> anyhow::Result<usize> {
    query.order = Order::Id;
    query.descending = false;
    // Pages of a thousand: a page of full rows (5 KB bodies and their HTML) stays small.
    query.limit = 1000;
    let mut count = 0;
    for _ in 0..100_000 {
        let page = store
            .list_entities(subject, &query)
            .await
            .context("listing experiments")?;
        count += page.rows.len();
        for row in &page.rows {
            each(row.id);
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(count),
        }
    }
    bail!("more pages than expected while counting experiments")
}

async fn prepare(settings: &Settings, with_searches: bool) -> anyhow::Result<Prepared> {
    let db = settings.data.join("cahier.db");
    if !db.exists() {
        bail!(
            "{} has no database; fill it first with `cahier seed --data {}`",
            settings.data.display(),
            settings.data.display()
        );
    }
    let store = crate::open_store(settings).await?;
    let user = store.user_by_email(BENCH_EMAIL).await.with_context(|| {
        format!("no user {BENCH_EMAIL}: fill the data directory with `cahier seed` first")
    })?;
    let subject = store.subject(user.id).await.context("loading the user")?;
    let team = user
        .current_team
        .or_else(|| subject.teams.first().map(|m| m.team_id))
        .with_context(|| format!("{BENCH_EMAIL} belongs to no team"))?;
    let (_, api_key) = store
        .create_api_key(user.id, team, "cahier bench", true)
        .await
        .context("creating an API key")?;
    let mut readable_ids = Vec::new();
    count_matching(
        &store,
        &subject,
        ListQuery::new(EntityKind::Experiment),
        |id| readable_ids.push(id),
    )
    .await?;
    let mut search_hits = Vec::new();
    for word in search_words().into_iter().filter(|_| with_searches) {
        let mut query = ListQuery::new(EntityKind::Experiment);
        let (words, fields) = cahier_store::field_filter::parse(&word)
            .map_err(|e| anyhow::anyhow!("search {word}: {e}"))?;
        query.q = words;
        query.fields = fields;
        let hits = count_matching(&store, &subject, query, |_| {}).await?;
        search_hits.push((word, hits));
    }
    let (_, _, experiments, _) = store
        .instance_counts()
        .await
        .context("counting experiments")?;
    store.close().await;
    if readable_ids.is_empty() {
        bail!("{BENCH_EMAIL} can read no experiment; run `cahier seed` first");
    }
    Ok(Prepared {
        api_key,
        readable_ids,
        experiments,
        search_hits,
    })
}

/// Starts `cahier serve` on `port` and waits until `/healthz` answers.
pub(crate) async fn start_server(args: &BenchArgs, port: u16) -> anyhow::Result<(Server, String)> {
    let exe = std::env::current_exe().context("finding the cahier executable")?;
    let mut command = Command::new(exe);
    command
        .arg("serve")
        .arg("--data")
        .arg(&args.data)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"));
    if let Some(config) = &args.config {
        command.arg("--config").arg(config);
    }
    let child = command
        // Slow statements are what the report measures; logging each would flood the terminal.
        .env("CAHIER_LOG", "warn,sqlx::query=error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting `cahier serve`")?;
    let mut server = Server { child };
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .context("building an HTTP client")?;
    let started = Instant::now();
    while started.elapsed() < STARTUP_TIMEOUT {
        if let Some(status) = server.child.try_wait().context("watching the server")? {
            bail!("`cahier serve` exited during startup ({status})");
        }
        if let Ok(response) = client.get(format!("{base}/healthz")).send().await
            && response.status() == StatusCode::OK
        {
            return Ok((server, base));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await?;
    bail!(
        "`cahier serve` did not answer /healthz within {} s",
        STARTUP_TIMEOUT.as_secs()
    )
}

/// A browser-like client (cookie jar) signed in as the bench user.
async fn sign_in(base: &str) -> anyhow::Result<(reqwest::Client, Arc<reqwest::cookie::Jar>)> {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(Arc::clone(&jar))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("building the UI client")?;
    let page = client
        .get(format!("{base}/login"))
        .send()
        .await
        .context("opening the sign-in page")?;
    let csrf = csrf_cookie(&page).context("the sign-in page set no cahier_csrf cookie")?;
    let response = client
        .post(format!("{base}/login"))
        .form(&[
            ("email", BENCH_EMAIL),
            ("password", BENCH_PASSWORD),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .context("signing in")?;
    if response.status() != StatusCode::SEE_OTHER {
        bail!(
            "signing in as {BENCH_EMAIL} answered {} instead of a redirect",
            response.status()
        );
    }
    Ok((client, jar))
}

/// The URL of the list page reached by following "next" `LATER_PAGE` times.
async fn later_page(client: &reqwest::Client, base: &str) -> anyhow::Result<(String, usize)> {
    let mut path = "/experiments".to_owned();
    for followed in 0..LATER_PAGE {
        let response = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .context("opening a list page")?;
        if response.status() != StatusCode::OK {
            bail!("GET {path} answered {}", response.status());
        }
        let html = response.text().await.context("reading a list page")?;
        match next_link(&html) {
            Some(next) => path = next,
            None => return Ok((path, followed + 1)),
        }
    }
    Ok((path, LATER_PAGE + 1))
}

/// What one client connection brought back.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
    bytes: u64,
}

impl Tally {
    fn error(&mut self, message: String) {
        self.errors += 1;
        self.first_error.get_or_insert(message);
    }
}

/// One keep-alive HTTP/1.1 connection to the server (no pool, no redirects, no cookie jar).
async fn connect(
    addr: std::net::SocketAddr,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .context("connecting to the server")?;
    stream.set_nodelay(true).context("setting TCP_NODELAY")?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .context("starting HTTP/1.1")?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends one request and reads its whole body; returns the body's size, or what went wrong.
async fn exchange(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
    expect: StatusCode,
) -> Result<u64, String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("connection: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let status = response.status();
    let mut body = response.into_body();
    let mut bytes = 0u64;
    let mut start = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the response: {e}"))?;
        if let Some(data) = frame.data_ref() {
            bytes += data.len() as u64;
            if status.as_u16() != expect.as_u16() && start.len() < 200 {
                start.extend_from_slice(&data[..data.len().min(200 - start.len())]);
            }
        }
    }
    if status.as_u16() == expect.as_u16() {
        Ok(bytes)
    } else {
        Err(format!("{status}: {}", String::from_utf8_lossy(&start)))
    }
}

/// Sends `count` requests of a scenario over `concurrency` clients, each with its own
/// connection; the loop is bounded by `count`. The clients run on one thread of their own
/// (a current-thread runtime), so the load generator uses at most one core and its share of
/// the CPU can be told apart from the server's.
async fn drive(
    scenario: &Arc<Scenario>,
    addr: std::net::SocketAddr,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<(Tally, Duration)> {
    let scenario = Arc::clone(scenario);
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the load generator's runtime")?;
        runtime.block_on(async move {
            let next = Arc::new(AtomicUsize::new(0));
            let started = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..concurrency.max(1) {
                let scenario = Arc::clone(&scenario);
                let next = Arc::clone(&next);
                tasks.push(tokio::spawn(async move {
                    let mut tally = Tally::default();
                    let mut sender = None;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            break;
                        }
                        let sent = Instant::now();
                        let outcome = match sender.as_mut() {
                            Some(s) => Ok(s),
                            None => connect(addr)
                                .await
                                .map(|s| sender.insert(s))
                                .map_err(|e| format!("{e:#}")),
                        };
                        let outcome = match outcome {
                            Ok(s) => exchange(s, (scenario.make)(i), scenario.expect).await,
                            Err(e) => Err(e),
                        };
                        tally.latencies.push(sent.elapsed());
                        match outcome {
                            Ok(bytes) => tally.bytes += bytes,
                            Err(message) => {
                                // A fresh connection for the next request.
                                sender = None;
                                tally.error(message);
                            }
                        }
                    }
                    tally
                }));
            }
            let mut all = Tally {
                latencies: Vec::with_capacity(count),
                ..Tally::default()
            };
            for task in tasks {
                let tally = task.await.context("benchmark client task")?;
                all.latencies.extend(tally.latencies);
                all.errors += tally.errors;
                all.bytes += tally.bytes;
                if all.first_error.is_none() {
                    all.first_error = tally.first_error;
                }
            }
            Ok((all, started.elapsed()))
        })
    })
    .await
    .context("the load generator's thread")?
}

async fn measure(
    scenario: Scenario,
    addr: std::net::SocketAddr,
    concurrency: usize,
    pid: u32,
    peaks: bool,
) -> anyhow::Result<Measured> {
    let scenario = Arc::new(scenario);
    let warmup = (scenario.requests / 10)
        .min(200)
        .max(concurrency.clamp(1, 200));
    let (tally, _) = drive(&scenario, addr, warmup, concurrency).await?;
    // The warm-up's peak (and anything since the last reset) counts towards the overall peak.
    let warmup_peak_kb = memory_kb(pid)?.1;
    if tally.errors == warmup {
        bail!(
            "{}: every warm-up request failed ({})",
            scenario.name,
            tally.first_error.unwrap_or_default()
        );
    }
    let peaks = peaks && reset_peak(pid);
    let server = pid.to_string();
    let (server_before, bench_before) = (cpu_seconds(&server), cpu_seconds("self"));
    let (mut tally, wall) = drive(&scenario, addr, scenario.requests, concurrency).await?;
    let (server_cpu, bench_cpu) = (
        cpu_seconds(&server) - server_before,
        cpu_seconds("self") - bench_before,
    );
    tally.latencies.sort_unstable();
    let peak_rss_kb = if peaks { Some(memory_kb(pid)?.1) } else { None };
    Ok(Measured {
        name: scenario.name.clone(),
        bulk: scenario.bulk,
        latencies: tally.latencies,
        errors: tally.errors,
        first_error: tally.first_error,
        wall,
        bytes: tally.bytes,
        peak_rss_kb,
        warmup_peak_kb,
        server_cpu,
        bench_cpu,
    })
}

/// How the scenarios' requests are made: the server's address and each client's credentials.
#[derive(Clone)]
struct Target {
    host: HeaderValue,
    /// The UI session's cookies (`None` when no UI scenario runs).
    cookies: Option<HeaderValue>,
    api_key: HeaderValue,
}

impl Target {
    fn request(
        &self,
        method: Method,
        path: &str,
        ui: bool,
        body: Option<Bytes>,
    ) -> Request<Full<Bytes>> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host.clone());
        if ui {
            if let Some(cookies) = &self.cookies {
                builder = builder.header(COOKIE, cookies.clone());
            }
        } else {
            builder = builder.header(AUTHORIZATION, self.api_key.clone());
        }
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        // The parts are valid by construction; an invalid one would show as an error row.
        builder
            .body(Full::new(body.unwrap_or_default()))
            .unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
    }
}

fn scenarios(
    args: &BenchArgs,
    target: &Target,
    prepared: &Prepared,
    later: &str,
    later_pages: usize,
) -> Vec<Scenario> {
    let n = args.requests.max(1);
    let ids = Arc::new(prepared.readable_ids.clone());
    let mut list = Vec::new();
    // A bulk request costs about as much as twenty small ones: it runs a twentieth as often.
    let get = |group: Group, name: String, path: String, bulk: bool| {
        let target = target.clone();
        let ui = group == Group::Ui;
        Scenario {
            group,
            name,
            bulk,
            requests: if bulk { (n / 20).max(1) } else { n },
            expect: StatusCode::OK,
            make: Box::new(move |_| target.request(Method::GET, &path, ui, None)),
        }
    };
    list.push(get(
        Group::Ui,
        "UI list, first page `GET /experiments`".into(),
        "/experiments".into(),
        false,
    ));
    list.push(get(
        Group::Ui,
        format!("UI list, page {later_pages} (keyset `after=`)"),
        later.to_owned(),
        false,
    ));
    for (word, hits) in &prepared.search_hits {
        let query = serde_urlencoded_pair("q", word);
        list.push(get(
            Group::Ui,
            format!("UI search `q={word}` ({hits} hits)"),
            format!("/experiments?{query}"),
            false,
        ));
    }
    {
        let target = target.clone();
        let ids = Arc::clone(&ids);
        list.push(Scenario {
            group: Group::Ui,
            bulk: false,
            name: "UI experiment page `GET /experiments/{id}`, random ids".into(),
            requests: n,
            expect: StatusCode::OK,
            make: Box::new(move |i| {
                let id = ids[mix(i) % ids.len()];
                target.request(Method::GET, &format!("/experiments/{id}"), true, None)
            }),
        });
    }
    {
        let target = target.clone();
        let ids = Arc::clone(&ids);
        list.push(Scenario {
            group: Group::ApiGet,
            bulk: false,
            name: "API `GET /api/v2/experiments/{id}`, random ids".into(),
            requests: n,
            expect: StatusCode::OK,
            make: Box::new(move |i| {
                let id = ids[mix(i) % ids.len()];
                target.request(
                    Method::GET,
                    &format!("/api/v2/experiments/{id}"),
                    false,
                    None,
                )
            }),
        });
    }
    list.push(get(
        Group::ApiList,
        "API list `GET /api/v2/experiments?limit=15`".into(),
        "/api/v2/experiments?limit=15".into(),
        false,
    ));
    {
        let target = target.clone();
        let body = crate::seed::body(7, 5000);
        list.push(Scenario {
            group: Group::ApiCreate,
            bulk: false,
            name: "API create `POST /api/v2/experiments`, 5 KB body".into(),
            requests: n,
            expect: StatusCode::CREATED,
            make: Box::new(move |i| {
                let json = serde_json::json!({
                    "title": format!("Bench create {i}"),
                    "body": body,
                    "tags": ["bench"],
                });
                target.request(
                    Method::POST,
                    "/api/v2/experiments",
                    false,
                    Some(Bytes::from(json.to_string())),
                )
            }),
        });
    }
    list.push(get(
        Group::ApiBulk,
        "API list `GET /api/v2/experiments?limit=5000`".into(),
        "/api/v2/experiments?limit=5000".into(),
        true,
    ));
    list.retain(|scenario| args.runs(scenario.group));
    list
}

/// `name=value`, form-encoded for a query string.
fn serde_urlencoded_pair(name: &str, value: &str) -> String {
    reqwest::Url::parse_with_params("http://localhost/", [(name, value)])
        .ok()
        .and_then(|url| url.query().map(str::to_owned))
        .unwrap_or_default()
}

fn report(
    args: &BenchArgs,
    prepared: &Prepared,
    results: &[Measured],
    memory: &[(String, u64, u64, Option<u64>)],
    later_pages: usize,
    peaks: bool,
    load: &str,
) -> String {
    let mut out = String::new();
    let db_bytes: u64 = ["cahier.db", "cahier.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(args.data.join(f)).ok())
        .map(|m| m.len())
        .sum();
    let _ = writeln!(
        out,
        "Data: `{}` — {} experiments ({} readable by {BENCH_EMAIL}), database {:.0} MB. \
         Concurrency {} (one keep-alive connection per client), {} measured requests per scenario (the `limit=5000` list: {}), \
         after a warm-up of a tenth of that (at least {}, at most 200). Later list page: page {later_pages}. \
         Load average (1, 5, 15 min): {load}.",
        args.data.display(),
        prepared.experiments,
        prepared.readable_ids.len(),
        db_bytes as f64 / 1_000_000.0,
        args.concurrency,
        args.requests,
        (args.requests / 20).max(1),
        args.concurrency.max(1),
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| scenario | requests | errors | p50 ms | p90 ms | p99 ms | max ms | req/s | KB/resp | server CPU % | bench CPU % | server peak RSS MB |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for m in results {
        let count = m.latencies.len();
        let rate = count as f64 / m.wall.as_secs_f64().max(f64::EPSILON);
        let per = if count == 0 {
            0.0
        } else {
            m.bytes as f64 / count as f64 / 1024.0
        };
        let peak = m
            .peak_rss_kb
            .map(|kb| format!("{:.0}", mb(kb)))
            .unwrap_or_else(|| "–".into());
        let wall = m.wall.as_secs_f64().max(f64::EPSILON);
        let _ = writeln!(
            out,
            "| {} | {count} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {rate:.0} | {per:.1} | {:.0} | {:.0} | {peak} |",
            m.name,
            m.errors,
            ms(percentile(&m.latencies, 50.0)),
            ms(percentile(&m.latencies, 90.0)),
            ms(percentile(&m.latencies, 99.0)),
            ms(percentile(&m.latencies, 100.0)),
            m.server_cpu / wall * 100.0,
            m.bench_cpu / wall * 100.0,
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "| server memory | VmRSS MB | VmHWM MB | RssAnon MB |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for (when, rss, hwm, anon) in memory {
        let anon = anon.map_or_else(|| "—".to_owned(), |kb| format!("{:.0}", mb(kb)));
        let _ = writeln!(
            out,
            "| {when} | {:.0} | {:.0} | {anon} |",
            mb(*rss),
            mb(*hwm)
        );
    }
    let _ = writeln!(
        out,
        "\nRssAnon is the server's own memory (heap, stacks); the rest of VmRSS is mostly the \
         database's pages read through SQLite's memory map (`db_mmap_mib`), which are the \
         system's page cache, shared and reclaimable."
    );
    if !peaks {
        let _ = writeln!(
            out,
            "\nThe peak could not be reset between scenarios (/proc/PID/clear_refs); VmHWM is the peak since start."
        );
    } else {
        let _ = writeln!(
            out,
            "\nVmHWM is reset before each measured run (/proc/PID/clear_refs), so each row's peak is its own; \
             the overall peak is the largest of them and of the warm-ups."
        );
    }
    let _ = writeln!(
        out,
        "\nCPU % is CPU time (user + system, /proc/PID/stat) over the measured run's wall time; \
         200 % is both cores of a 2-core machine. The load generator (bench) runs its clients on \
         one thread."
    );
    for m in results.iter().filter(|m| m.errors > 0) {
        let _ = writeln!(
            out,
            "\n{}: {} errors; first: {}",
            m.name,
            m.errors,
            m.first_error.as_deref().unwrap_or("")
        );
    }
    out
}

/// Runs the benchmark over a seeded data directory and returns the report (Markdown).
pub async fn run(args: BenchArgs) -> anyhow::Result<String> {
    let settings = Settings::load(Overrides {
        data: Some(args.data.clone()),
        config: args.config.clone(),
        ..Default::default()
    })?;
    eprintln!("bench: reading the data set in {}", args.data.display());
    let prepared = prepare(&settings, args.runs(Group::Ui)).await?;
    let port = free_port()?;
    let (server, base) = start_server(&args, port).await?;
    let pid = server.pid();
    let outcome = tokio::select! {
        outcome = run_against(&args, &prepared, &base, pid) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    server.stop().await?;
    outcome
}

async fn run_against(
    args: &BenchArgs,
    prepared: &Prepared,
    base: &str,
    pid: u32,
) -> anyhow::Result<String> {
    let load_before = load_average();
    let mut memory = Vec::new();
    let (rss, hwm, anon) = memory_parts_kb(pid)?;
    memory.push(("after startup".to_owned(), rss, hwm, Some(anon)));
    let runs_ui = args.runs(Group::Ui);
    let (cookies, later, later_pages) = if runs_ui {
        let (ui, jar) = sign_in(base).await?;
        let (later, later_pages) = later_page(&ui, base).await?;
        let url = reqwest::Url::parse(base).context("the server's address")?;
        (jar.cookies(&url), later, later_pages)
    } else {
        (None, String::new(), 0)
    };
    let addr: std::net::SocketAddr = base
        .trim_start_matches("http://")
        .parse()
        .context("the server's address")?;
    let target = Target {
        host: HeaderValue::from_str(&addr.to_string()).context("the server's address")?,
        cookies,
        api_key: HeaderValue::from_str(&prepared.api_key)
            .context("the API key is not a header value")?,
    };
    let peaks = reset_peak(pid);
    let mut overall_peak = 0;
    let mut peak_without_bulk = 0;
    let mut results = Vec::new();
    for scenario in scenarios(args, &target, prepared, &later, later_pages) {
        eprintln!("bench: {}", scenario.name);
        let measured = measure(scenario, addr, args.concurrency, pid, peaks).await?;
        let peak = measured
            .warmup_peak_kb
            .max(measured.peak_rss_kb.unwrap_or(0));
        overall_peak = overall_peak.max(peak);
        if !measured.bulk {
            peak_without_bulk = peak_without_bulk.max(peak);
        }
        results.push(measured);
    }
    let (rss, hwm, anon) = memory_parts_kb(pid)?;
    overall_peak = overall_peak.max(hwm);
    memory.push(("after all scenarios".to_owned(), rss, hwm, Some(anon)));
    if peaks {
        memory.push((
            "peak over every scenario but the bulk list".to_owned(),
            peak_without_bulk,
            peak_without_bulk,
            None,
        ));
        memory.push((
            "peak over the whole run".to_owned(),
            overall_peak,
            overall_peak,
            None,
        ));
    }
    let load = format!("{load_before} before, {} after", load_average());
    Ok(report(
        args,
        prepared,
        &results,
        &memory,
        later_pages,
        peaks,
        &load,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&sorted, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&sorted, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn next_link_is_found_and_unescaped() {
        let html = r#"<nav><a href="/experiments">First</a> <a href="/experiments?q=a&amp;after=12%3A34" rel="next" id="next-page">Next</a></nav>"#;
        assert_eq!(
            next_link(html).as_deref(),
            Some("/experiments?q=a&after=12%3A34")
        );
        assert_eq!(next_link("<p>no pager</p>"), None);
    }

    #[test]
    fn searched_words_come_from_the_seed() {
        for words in search_words().iter().skip(2) {
            if words.starts_with("field:") {
                // Typed-field searches: they must parse into a filter and no words.
                let (rest, filters) =
                    cahier_store::field_filter::parse(words).expect("a field filter");
                assert_eq!((rest, filters.len()), (None, 1), "{words}");
                continue;
            }
            for word in words.split(' ') {
                assert!(crate::seed::WORDS.contains(&word), "{word}");
            }
        }
    }
}
