//! Starts the whole system as separate processes (the release-shaped
//! binaries built by the workspace) against fresh databases, a fresh vhost
//! and a fresh bucket, and stops it gracefully.
use infra::{auth::AuthSettings, s3::S3Settings};
use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const SECRET: &str = "end-to-end-test-secret-0123456789";

pub struct Program {
    pub name: &'static str,
    pub port: u16,
    child: Child,
    log: PathBuf,
}

/// The three programs, running.
pub struct Stack {
    pub relay_db: String,
    pub posts_db: String,
    pub images_db: String,
    pub post: Program,
    pub image: Program,
    pub relay: Program,
    pub s3: S3Settings,
    pub amqp_url: String,
    auth: AuthSettings,
    pub client: reqwest::Client,
    /// More instances started with [`Stack::add_image_service`],
    /// [`Stack::add_post_service`] and [`Stack::add_relay`].
    extras: Vec<Program>,
    image_env: Vec<(&'static str, String)>,
    post_env: Vec<(&'static str, String)>,
    relay_env: Vec<(&'static str, String)>,
    logs: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where cargo put the workspace's binaries: next to this test's `deps/`.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target profile dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing; run the tests through `cargo nextest run --workspace`, which builds every binary",
        path.display()
    );
    path
}

impl Stack {
    pub async fn start() -> Stack {
        Self::start_with(&[]).await
    }

    /// Starts with extra image-service settings (e.g. a short sweeper grace).
    pub async fn start_with(image_settings: &[(&'static str, &str)]) -> Stack {
        Self::start_configured(image_settings, &[]).await
    }

    /// Starts with every program exporting its spans over OTLP/HTTP to
    /// `endpoint` (e.g. `http://127.0.0.1:4318`), in batches every 100 ms.
    pub async fn start_exporting_traces(endpoint: &str) -> Stack {
        let otel = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ];
        Self::start_configured(&[], &otel).await
    }

    async fn start_configured(
        image_settings: &[(&'static str, &str)],
        common: &[(&'static str, String)],
    ) -> Stack {
        let posts_db = infra::testing::fresh_database("e2e_posts").await;
        let images_db = infra::testing::fresh_database("e2e_images").await;
        let relay_db = infra::testing::fresh_database("e2e_relay").await;
        let amqp_url = infra::testing::fresh_vhost().await;
        // Declared once before the programs start, as a deployment would
        // (deploy/local/up.sh starts the relay first for the same reason).
        let connection = infra::amqp::connect(&amqp_url, "e2e-setup")
            .await
            .expect("RabbitMQ");
        infra::amqp::declare_topology(&connection)
            .await
            .expect("declare topology");
        let _ = connection.close(200, "declared").await;
        let s3 = infra::testing::fresh_bucket().await;
        let auth = AuthSettings {
            jwt_secret: SECRET.into(),
            ..AuthSettings::default()
        };
        let logs = std::env::temp_dir().join(format!("e2e-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&logs).unwrap();

        let image_port = free_port();
        let image_base = format!("http://127.0.0.1:{image_port}");
        let mut image_env = vec![
            ("IMAGE_APPLICATION__PUBLIC_BASE_URL", image_base.clone()),
            ("IMAGE_DATABASE__URL", images_db.clone()),
            ("IMAGE_AMQP__URL", amqp_url.clone()),
            ("IMAGE_AUTH__JWT_SECRET", SECRET.into()),
            ("IMAGE_S3__ENDPOINT", s3.endpoint.clone()),
            ("IMAGE_S3__BUCKET", s3.bucket.clone()),
            ("IMAGE_S3__ACCESS_KEY_ID", s3.access_key_id.clone()),
            ("IMAGE_S3__SECRET_ACCESS_KEY", s3.secret_access_key.clone()),
        ];
        image_env.extend(image_settings.iter().map(|(k, v)| (*k, v.to_string())));
        image_env.extend_from_slice(common);
        let image = spawn_image(image_port, &logs, &image_env, 0);
        let post_port = free_port();
        let mut post_env = vec![
            ("POST_DATABASE__URL", posts_db.clone()),
            ("POST_AMQP__URL", amqp_url.clone()),
            ("POST_AUTH__JWT_SECRET", SECRET.into()),
            ("POST_IMAGES__PUBLIC_BASE_URL", image_base),
        ];
        post_env.extend_from_slice(common);
        let post = spawn_post(post_port, &logs, &post_env, 0);
        let relay_port = free_port();
        let mut relay_env = vec![
            ("RELAY_AMQP__URL", amqp_url.clone()),
            (
                "RELAY_OUTBOX__DATABASE_URLS",
                format!("{posts_db},{images_db}"),
            ),
            ("RELAY_DEAD_LETTERS__DATABASE_URL", relay_db.clone()),
        ];
        relay_env.extend_from_slice(common);
        let relay = spawn_relay(relay_port, &logs, &relay_env, 0);
        let mut stack = Stack {
            relay_db,
            posts_db,
            images_db,
            post,
            image,
            relay,
            s3,
            amqp_url,
            auth,
            client: reqwest::Client::new(),
            extras: Vec::new(),
            image_env,
            post_env,
            relay_env,
            logs,
        };
        for which in 0..3 {
            stack.wait_ready(which).await;
        }
        stack
    }

    /// Starts one more image service on the same database, vhost and bucket.
    pub async fn add_image_service(&mut self) {
        self.add(spawn_image, self.image_env.clone()).await;
    }

    /// Starts one more post service on the same database and vhost.
    pub async fn add_post_service(&mut self) {
        self.add(spawn_post, self.post_env.clone()).await;
    }

    /// Starts one more instance with `start` on a free port and waits until
    /// it is ready.
    async fn add(&mut self, start: Spawner, env: Vec<(&'static str, String)>) {
        let program = start(free_port(), &self.logs, &env, self.extras.len() + 1);
        self.extras.push(program);
        self.wait_ready(2 + self.extras.len()).await;
    }

    /// Stops the first relay (SIGTERM) and waits for it to exit; returns
    /// its exit code.
    /// Sends SIGTERM to the first image service; returns its exit code
    /// (`None` if it had not exited after 30 s and was killed).
    pub async fn stop_image_service(&mut self) -> Option<i32> {
        self.image.terminate();
        self.image.exit_code().await
    }

    pub async fn stop_relay(&mut self) -> Option<i32> {
        self.relay.terminate();
        self.relay.exit_code().await
    }

    /// The ports of every running instance of `name`, first one first.
    pub fn ports(&self, name: &str) -> Vec<u16> {
        [&self.image, &self.post, &self.relay]
            .into_iter()
            .chain(&self.extras)
            .filter(|p| p.name == name)
            .map(|p| p.port)
            .collect()
    }

    /// The sum of the samples of metric `name` on the program at `port`
    /// whose labels include every one of `labels` (e.g. `stage="decode"`).
    pub async fn metric(&self, port: u16, name: &str, labels: &[&str]) -> f64 {
        let text = self
            .client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .expect("scrape /metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .filter(|line| labels.iter().all(|label| line.contains(label)))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Starts one more relay over the same outboxes.
    pub async fn add_relay(&mut self) {
        self.add(spawn_relay, self.relay_env.clone()).await;
    }

    fn program(&mut self, which: usize) -> &mut Program {
        match which {
            0 => &mut self.image,
            1 => &mut self.post,
            2 => &mut self.relay,
            n => &mut self.extras[n - 3],
        }
    }

    fn count(&self) -> usize {
        3 + self.extras.len()
    }

    async fn wait_ready(&mut self, which: usize) {
        let client = self.client.clone();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let program = self.program(which);
            let url = format!("http://127.0.0.1:{}/readyz", program.port);
            if let Ok(response) = client.get(&url).send().await {
                if response.status().is_success() {
                    return;
                }
            }
            if let Ok(Some(status)) = program.child.try_wait() {
                panic!(
                    "{} exited with {status}:\n{}",
                    program.name,
                    program.log_tail()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} not ready within 60 s:\n{}",
                    program.name,
                    program.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn post_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.post.port)
    }

    pub fn image_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.image.port)
    }

    pub fn token(&self, user: &str) -> String {
        infra::auth::issue_token(&self.auth, user, 600)
    }

    /// `GET` of a JSON resource with a bearer token.
    pub async fn get_json(&self, url: &str, token: &str) -> serde_json::Value {
        self.client
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("JSON body")
    }

    /// Uploads `bytes` to the first image service; returns the image id.
    pub async fn upload(&self, token: &str, bytes: Vec<u8>) -> String {
        let response = self
            .client
            .post(self.image_url("/v1/uploads"))
            .bearer_auth(token)
            .body(bytes)
            .send()
            .await
            .expect("upload");
        assert_eq!(response.status().as_u16(), 201);
        let body: serde_json::Value = response.json().await.expect("JSON body");
        body["id"].as_str().expect("an id").to_owned()
    }

    /// Runs `image-service reconcile` against this stack's database and
    /// bucket; returns its exit code and output.
    pub fn reconcile(&self) -> (Option<i32>, String) {
        let output = Command::new(binary("image-service"))
            .arg("reconcile")
            .env_clear()
            .env("IMAGE_DATABASE__URL", &self.images_db)
            .env("IMAGE_AUTH__JWT_SECRET", SECRET)
            .env("IMAGE_S3__ENDPOINT", &self.s3.endpoint)
            .env("IMAGE_S3__BUCKET", &self.s3.bucket)
            .env("IMAGE_S3__ACCESS_KEY_ID", &self.s3.access_key_id)
            .env("IMAGE_S3__SECRET_ACCESS_KEY", &self.s3.secret_access_key)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run image-service reconcile");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }

    /// Runs `outbox-relay dlq ARGS` against this stack; returns its exit
    /// code and output.
    pub fn dlq(&self, args: &[&str]) -> (Option<i32>, String) {
        let output = Command::new(binary("outbox-relay"))
            .arg("dlq")
            .args(args)
            .env_clear()
            .env("RELAY_DEAD_LETTERS__DATABASE_URL", &self.relay_db)
            .output()
            .expect("run outbox-relay dlq");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }

    /// Logs of all three programs, for failure messages.
    pub fn logs(&self) -> String {
        [&self.image, &self.post, &self.relay]
            .into_iter()
            .chain(&self.extras)
            .map(|p| format!("--- {} ---\n{}", p.name, p.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Sends SIGTERM to every program and returns how each exited.
    pub async fn stop(mut self) -> Vec<(&'static str, Option<i32>)> {
        let mut outcomes = Vec::new();
        for which in 0..self.count() {
            self.program(which).terminate();
        }
        for which in 0..self.count() {
            let program = self.program(which);
            let code = program.exit_code().await;
            outcomes.push((program.name, code));
        }
        infra::testing::drop_vhost(&self.amqp_url).await;
        outcomes
    }
}

impl Program {
    /// Sends SIGTERM.
    fn terminate(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
    }

    /// Waits up to 30 s for the program to exit; kills it (and answers
    /// `None`) when it does not.
    async fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.code(),
                _ if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    return None;
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts one instance of a program: port, log directory, settings, instance number.
type Spawner = fn(u16, &Path, &[(&'static str, String)], usize) -> Program;

fn spawn_image(port: u16, logs: &Path, env: &[(&'static str, String)], instance: usize) -> Program {
    spawn_listening(
        "image-service",
        "IMAGE_APPLICATION__PORT",
        port,
        logs,
        env,
        instance,
    )
}

fn spawn_post(port: u16, logs: &Path, env: &[(&'static str, String)], instance: usize) -> Program {
    spawn_listening(
        "post-service",
        "POST_APPLICATION__PORT",
        port,
        logs,
        env,
        instance,
    )
}

fn spawn_relay(port: u16, logs: &Path, env: &[(&'static str, String)], instance: usize) -> Program {
    spawn_listening(
        "outbox-relay",
        "RELAY_ADMIN__PORT",
        port,
        logs,
        env,
        instance,
    )
}

/// Starts `name` with `env` plus its port setting `port_var` = `port`.
fn spawn_listening(
    name: &'static str,
    port_var: &'static str,
    port: u16,
    logs: &Path,
    env: &[(&'static str, String)],
    instance: usize,
) -> Program {
    let mut env = env.to_vec();
    env.push((port_var, port.to_string()));
    spawn(name, port, logs, &env, instance)
}

fn spawn(
    name: &'static str,
    port: u16,
    logs: &Path,
    env: &[(&str, String)],
    instance: usize,
) -> Program {
    let log = logs.join(format!("{name}-{instance}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let mut command = Command::new(binary(name));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .env("HOSTNAME", format!("{name}-{instance}"))
        .stdout(Stdio::null())
        .stderr(file);
    for (key, value) in env {
        command.env(key, value);
    }
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    Program {
        name,
        port,
        child,
        log,
    }
}

/// The shared test images (`CORPUS_DIR`, or `../shared/corpus` beside the repository).
pub fn corpus(path: &str) -> PathBuf {
    let root = std::env::var("CORPUS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"));
    root.join(path)
}
