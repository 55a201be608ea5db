//! `sluice simulate`: seeded usage events to stdout, a file, or the collector.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use sluice_simulator::{SimConfig, Simulator};

#[derive(clap::Args, Clone)]
pub struct SimulateArgs {
    /// Events to generate (all kinds counted).
    #[arg(long, default_value_t = 10_000)]
    pub events: u64,
    /// Seed; the same seed gives the same events.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Accounts simulated.
    #[arg(long, default_value_t = 200)]
    pub accounts: u32,
    /// Users per account.
    #[arg(long, default_value_t = 5)]
    pub users_per_account: u32,
    /// Days of event time the events span.
    #[arg(long, default_value_t = 3)]
    pub days: u32,
    /// Fraction of events re-sent with the same event_id.
    #[arg(long, default_value_t = 0.0)]
    pub duplicate_fraction: f64,
    /// Fraction of events delivered late (out of order).
    #[arg(long, default_value_t = 0.0)]
    pub late_fraction: f64,
    /// Fraction of malformed lines.
    #[arg(long, default_value_t = 0.0)]
    pub malformed_fraction: f64,
    /// Where to send events: a file path, `http://host:port` (the collector),
    /// `kafka://host:port/topic` (keyed by user_id), `eventhubs://[namespace/]hub`
    /// (over AMQP, one partition per user_id), or `-` for stdout.
    #[arg(long, default_value = "-")]
    pub to: String,
    /// Events per second (0: as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Events per HTTP request when posting to the collector.
    #[arg(long, default_value_t = 1_000)]
    pub request_events: usize,
    /// HTTP requests kept in flight at once (each waits for its bronze
    /// commit, so one at a time cannot reach a high rate).
    #[arg(long, default_value_t = 8)]
    pub in_flight: usize,
    /// With a Kafka target: create the topic with this many partitions if it
    /// is missing (0: never create it).
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
}

impl SimulateArgs {
    pub fn sim_config(&self) -> SimConfig {
        SimConfig {
            seed: self.seed,
            events: self.events,
            accounts: self.accounts,
            users_per_account: self.users_per_account,
            days: self.days,
            duplicate_fraction: self.duplicate_fraction,
            late_fraction: self.late_fraction,
            malformed_fraction: self.malformed_fraction,
            ..SimConfig::default()
        }
    }
}

/// `kafka` is the config's `[kafka]` section: its security settings apply to
/// a `kafka://` target; `eventhubs` names the connection string variable of
/// an `eventhubs://` target.
pub async fn run(
    args: &SimulateArgs,
    kafka: &sluice::sources::kafka::KafkaConfig,
    eventhubs: &sluice::sources::eventhubs::EventHubsConfig,
) -> anyhow::Result<ExitCode> {
    let simulator = Simulator::new(args.sim_config())?;
    if args.to.starts_with("eventhubs://") {
        let target = super::simulate_eventhubs::parse_target(&args.to, eventhubs)?;
        let sent = super::simulate_eventhubs::produce(&target, simulator, args.rate).await?;
        eprintln!("sluice: produced {sent} events to {}", args.to);
    } else if args.to.starts_with("kafka://") {
        let target = super::simulate_kafka::parse_target(&args.to, kafka)?;
        let partitions = (args.partitions > 0).then_some(args.partitions);
        let sent =
            super::simulate_kafka::produce(&target, simulator, partitions, args.rate).await?;
        eprintln!("sluice: produced {sent} events to {}", args.to);
    } else if args.to.starts_with("http://") {
        post_to_collector(args, simulator).await?;
    } else if args.to == "-" {
        let stdout = std::io::stdout();
        write_lines(&mut stdout.lock(), simulator, args.rate, None)?;
    } else {
        write_file(&PathBuf::from(&args.to), simulator, args.rate, args.events)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn progress(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {wide_bar} {pos}/{len} events ({per_sec}, eta {eta})",
        )
        .expect("valid progress template"),
    );
    bar
}

/// Writes the simulator's lines to `path`.
pub fn write_file(
    path: &PathBuf,
    simulator: Simulator,
    rate: f64,
    total: u64,
) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let bar = progress(total);
    write_lines(&mut out, simulator, rate, Some(&bar))?;
    out.flush()?;
    bar.finish_and_clear();
    Ok(())
}

fn write_lines(
    out: &mut impl Write,
    simulator: Simulator,
    rate: f64,
    bar: Option<&ProgressBar>,
) -> anyhow::Result<()> {
    let pacer = Pacer::new(rate);
    for (i, event) in simulator.enumerate() {
        out.write_all(event.line.as_bytes())?;
        out.write_all(b"\n")?;
        if i % 1024 == 0 {
            if let Some(bar) = bar {
                bar.set_position(i as u64);
            }
            pacer.wait_for(i as u64);
        }
    }
    Ok(())
}

/// Sleeps so that event `n` is not sent before `n / rate` seconds.
struct Pacer {
    start: Instant,
    rate: f64,
}

impl Pacer {
    fn new(rate: f64) -> Self {
        Pacer {
            start: Instant::now(),
            rate,
        }
    }

    fn due(&self, n: u64) -> Option<Duration> {
        (self.rate > 0.0).then(|| Duration::from_secs_f64(n as f64 / self.rate))
    }

    fn wait_for(&self, n: u64) {
        if let Some(due) = self.due(n) {
            std::thread::sleep(due.saturating_sub(self.start.elapsed()));
        }
    }
}

/// Posts the events in bodies of `request_events`, `in_flight` requests at a
/// time, paced to `rate`; prints the rate reached and the acknowledgement
/// latencies (each request is answered once its events are in bronze).
async fn post_to_collector(args: &SimulateArgs, simulator: Simulator) -> anyhow::Result<()> {
    let url: std::sync::Arc<str> = format!("{}/v1/events", args.to.trim_end_matches('/')).into();
    let client = reqwest::Client::new();
    let bar = progress(args.events);
    let pacer = Pacer::new(args.rate);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(args.in_flight.max(1)));
    let mut requests = tokio::task::JoinSet::new();
    let mut body = String::new();
    let mut in_body = 0;
    let mut sent = 0u64;
    let started = Instant::now();
    let mut events = simulator.peekable();
    while let Some(event) = events.next() {
        body.push_str(&event.line);
        body.push('\n');
        in_body += 1;
        if in_body < args.request_events && events.peek().is_some() {
            continue;
        }
        let permit = slots.clone().acquire_owned().await?;
        let (client, url, body) = (client.clone(), url.clone(), std::mem::take(&mut body));
        requests.spawn(async move {
            let sent_at = Instant::now();
            let result = post(&client, &url, body).await;
            drop(permit);
            result.map(|()| sent_at.elapsed())
        });
        sent += in_body as u64;
        in_body = 0;
        bar.set_position(sent);
        if let Some(due) = pacer.due(sent) {
            tokio::time::sleep(due.saturating_sub(pacer.start.elapsed())).await;
        }
    }
    let mut acks = Vec::new();
    while let Some(done) = requests.join_next().await {
        acks.push(done??);
    }
    bar.finish_and_clear();
    eprintln!("{}", AckReport::new(sent, started.elapsed(), acks));
    Ok(())
}

/// What posting to the collector achieved.
struct AckReport {
    events: u64,
    elapsed: Duration,
    acks: Vec<Duration>,
}

impl AckReport {
    fn new(events: u64, elapsed: Duration, mut acks: Vec<Duration>) -> AckReport {
        acks.sort();
        AckReport {
            events,
            elapsed,
            acks,
        }
    }

    fn percentile(&self, p: f64) -> Duration {
        let last = self.acks.len().saturating_sub(1);
        let at = ((last as f64) * p).round() as usize;
        self.acks.get(at).copied().unwrap_or_default()
    }
}

impl std::fmt::Display for AckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        write!(
            f,
            "sluice: posted {} events in {} requests in {:.2} s: {:.0} events/s, {:.0} requests/s; \
             ack p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.events,
            self.acks.len(),
            secs,
            self.events as f64 / secs,
            self.acks.len() as f64 / secs,
            self.percentile(0.5).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
            self.percentile(1.0).as_secs_f64() * 1e3,
        )
    }
}

async fn post(client: &reqwest::Client, url: &str, body: String) -> anyhow::Result<()> {
    let response = client
        .post(url)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .with_context(|| format!("posting to {url}"))?;
    let status = response.status();
    anyhow::ensure!(
        status.as_u16() == 202,
        "collector answered {status}: {}",
        response.text().await.unwrap_or_default()
    );
    Ok(())
}
