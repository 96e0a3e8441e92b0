//! A load generator for bench/run: `--clients` concurrent clients each send
//! `--requests` requests (stopping early at `--max-seconds`) over keep-alive
//! connections, and one JSON object with the latency distribution,
//! requests/s and errors is printed.
//!
//! Closed loop by default: each client sends its next request as soon as
//! the last one is answered, which finds the throughput but makes the mean
//! latency `clients / throughput` (Little's law). With `--rate R` the load
//! is open: requests are due at R per second in all, spread evenly over the
//! clients, and each latency is measured from the moment its request was
//! due, so time spent waiting behind a slow answer counts (no coordinated
//! omission).
//!
//! Scenarios (`--scenario`):
//! - `upload-create`: upload `--photo` to the image service, then create a
//!   post naming it (one request = both calls);
//! - `post`: `POST /v1/posts` alone; each client first uploads `--photo`
//!   once per request it will send (not timed), and each post names a
//!   fresh image, as a product's posts do;
//! - `baseline`: the synchronous baseline's multipart `POST /v1/posts` with
//!   `--photo`.
//!
//! The bearer token comes from `BENCH_TOKEN`.
use anyhow::{bail, Context};
use std::time::{Duration, Instant};

struct Args {
    scenario: String,
    clients: usize,
    requests: usize,
    max_seconds: f64,
    posts: String,
    images: String,
    baseline: String,
    photo: String,
    /// Requests per second over all clients (open loop); `None`: closed loop.
    rate: Option<f64>,
}

const USAGE: &str = "usage: loadgen --scenario upload-create|post|baseline --photo PATH
  [--clients 200] [--requests 10] [--max-seconds 300] [--rate REQ_PER_S]
  [--posts http://127.0.0.1:8080] [--images http://127.0.0.1:8081]
  [--baseline http://127.0.0.1:8090]   (token in BENCH_TOKEN)";

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        scenario: String::new(),
        clients: 200,
        requests: 10,
        max_seconds: 300.0,
        posts: "http://127.0.0.1:8080".into(),
        images: "http://127.0.0.1:8081".into(),
        baseline: "http://127.0.0.1:8090".into(),
        photo: String::new(),
        rate: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--scenario" => args.scenario = value,
            "--clients" => args.clients = value.parse().context("--clients")?,
            "--requests" => args.requests = value.parse().context("--requests")?,
            "--max-seconds" => args.max_seconds = value.parse().context("--max-seconds")?,
            "--posts" => args.posts = value,
            "--images" => args.images = value,
            "--baseline" => args.baseline = value,
            "--photo" => args.photo = value,
            "--rate" => args.rate = Some(value.parse().context("--rate")?),
            other => bail!("unknown option {other}\n{USAGE}"),
        }
    }
    if !["upload-create", "post", "baseline"].contains(&args.scenario.as_str()) {
        bail!("--scenario must be upload-create, post or baseline\n{USAGE}");
    }
    if args.photo.is_empty() || args.clients == 0 || args.requests == 0 {
        bail!("--photo, and positive --clients and --requests, are needed\n{USAGE}");
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        bail!("--rate must be a positive number of requests per second\n{USAGE}");
    }
    Ok(args)
}

/// One client's view of the services.
#[derive(Clone)]
struct Target {
    http: reqwest::Client,
    token: String,
    args: std::sync::Arc<Args>,
    /// Shared by every client without copying.
    photo: bytes::Bytes,
}

impl Target {
    async fn upload(&self) -> anyhow::Result<String> {
        let answer = self
            .http
            .post(format!("{}/v1/uploads", self.args.images))
            .bearer_auth(&self.token)
            .header("content-type", "application/octet-stream")
            .body(self.photo.clone())
            .send()
            .await?;
        let answer = expect(answer, 201).await?;
        answer["id"]
            .as_str()
            .map(str::to_owned)
            .context("upload answer without id")
    }

    async fn create(&self, image: &str) -> anyhow::Result<()> {
        let answer = self
            .http
            .post(format!("{}/v1/posts", self.args.posts))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({"title": "load", "body": "", "image_ids": [image]}))
            .send()
            .await?;
        expect(answer, 201).await.map(drop)
    }

    async fn baseline(&self) -> anyhow::Result<()> {
        let form = reqwest::multipart::Form::new().text("title", "load").part(
            "file",
            reqwest::multipart::Part::stream_with_length(
                self.photo.clone(),
                self.photo.len() as u64,
            )
            .file_name("photo.jpg"),
        );
        let answer = self
            .http
            .post(format!("{}/v1/posts", self.args.baseline))
            .multipart(form)
            .send()
            .await?;
        expect(answer, 201).await.map(drop)
    }
}

async fn expect(answer: reqwest::Response, status: u16) -> anyhow::Result<serde_json::Value> {
    let got = answer.status().as_u16();
    let body = answer.bytes().await?;
    if got != status {
        bail!("status {got}: {}", String::from_utf8_lossy(&body));
    }
    Ok(serde_json::from_slice(&body)?)
}

/// What one client measured.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
}

/// When request `n` of client `index` is due in an open-loop run: the
/// clients take turns, so the requests of all are `1 / rate` apart.
fn due(start: Instant, rate: f64, clients: usize, index: usize, n: usize) -> Instant {
    start + Duration::from_secs_f64((index + n * clients) as f64 / rate)
}

/// Sends one client's requests; `images` are the uploads its posts name,
/// one per request (scenario `post`), and `start` the moment the run began.
async fn client(
    target: Target,
    index: usize,
    images: Vec<String>,
    start: Instant,
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::default();
    for n in 0..target.args.requests {
        let started = match target.args.rate {
            Some(rate) => {
                let at = due(start, rate, target.args.clients, index, n);
                tokio::time::sleep_until(at.into()).await;
                at
            }
            None => Instant::now(),
        };
        if Instant::now() >= deadline {
            break;
        }
        let result = match (target.args.scenario.as_str(), images.get(n)) {
            ("post", Some(image)) => target.create(image).await,
            ("baseline", _) => target.baseline().await,
            _ => match target.upload().await {
                Ok(id) => target.create(&id).await,
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(()) => tally.latencies.push(started.elapsed()),
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    tally
}

fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let token = std::env::var("BENCH_TOKEN").context("BENCH_TOKEN must hold a bearer token")?;
    let photo = std::fs::read(&args.photo).with_context(|| format!("read {}", args.photo))?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .timeout(Duration::from_secs(120))
        .build()?;
    let target = Target {
        http,
        token,
        photo: bytes::Bytes::from(photo),
        args: std::sync::Arc::new(args),
    };
    let args = target.args.clone();
    // Scenario `post`: every post's image is uploaded before the clock starts.
    let mut images = vec![Vec::new(); args.clients];
    if args.scenario == "post" {
        let uploads = (0..args.clients).map(|_| async {
            let mut ids = Vec::with_capacity(args.requests);
            for _ in 0..args.requests {
                ids.push(target.upload().await?);
            }
            anyhow::Ok(ids)
        });
        for (slot, ids) in images
            .iter_mut()
            .zip(futures::future::join_all(uploads).await)
        {
            *slot = ids.context("upload before the run")?;
        }
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.max_seconds);
    let clients: Vec<_> = images
        .into_iter()
        .enumerate()
        .map(|(index, images)| {
            tokio::spawn(client(target.clone(), index, images, started, deadline))
        })
        .collect();
    let mut latencies = Vec::new();
    let (mut errors, mut first_error) = (0, None);
    for handle in clients {
        let tally = handle.await?;
        latencies.extend(tally.latencies);
        errors += tally.errors;
        first_error = first_error.or(tally.first_error);
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort();
    let ok = latencies.len();
    let mean = latencies.iter().map(Duration::as_secs_f64).sum::<f64>() / ok.max(1) as f64;
    let report = serde_json::json!({
        "scenario": args.scenario,
        "clients": args.clients,
        "rate": args.rate,
        "requests": ok + errors,
        "ok": ok,
        "errors": errors,
        "first_error": first_error,
        "seconds": seconds,
        "rps": ok as f64 / seconds,
        "mean_ms": mean * 1000.0,
        "p50_ms": quantile_ms(&latencies, 0.50),
        "p99_ms": quantile_ms(&latencies, 0.99),
        "max_ms": quantile_ms(&latencies, 1.0),
    });
    println!("{report}");
    Ok(())
}
