//! The synchronous design the seeds started from, kept only to be measured
//! against (bench/run). `POST /v1/posts` takes a multipart form (`title`,
//! one or more `file` parts) and, inside one database transaction, stores
//! each original in S3, builds the three WebP variants with the image
//! service's own pipeline, uploads them, writes the rows, commits and only
//! then answers `201 {"id"}`.
//!
//! Settings come from the environment: `BASELINE_PORT` (8090),
//! `BASELINE_DATABASE_URL`, and `BASELINE_S3_ENDPOINT`, `…_BUCKET`,
//! `…_ACCESS_KEY_ID`, `…_SECRET_ACCESS_KEY`.
use actix_multipart::Multipart;
use actix_web::{web, App, HttpResponse, HttpServer};
use futures::TryStreamExt;
use image_service::{
    pipeline::{build_variants, sniff, Limits, Preset},
    storage::ObjectStore,
};
use sqlx::PgPool;

struct State {
    pool: PgPool,
    store: ObjectStore,
    presets: Vec<Preset>,
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    if std::env::args().any(|a| a == "-h" || a == "--help") {
        println!("baseline: the synchronous upload-and-create design, for bench/run only");
        return Ok(());
    }
    let port: u16 = env("BASELINE_PORT", "8090").parse()?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(20)
        // Requests queue for a connection rather than fail: holding one
        // through the whole upload is the design measured here.
        .acquire_timeout(std::time::Duration::from_secs(600))
        .connect(&env(
            "BASELINE_DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/baseline",
        ))
        .await?;
    for statement in [
        "CREATE TABLE IF NOT EXISTS posts (id uuid PRIMARY KEY, title text NOT NULL,
             created_at timestamptz NOT NULL DEFAULT now())",
        "CREATE TABLE IF NOT EXISTS images (id uuid PRIMARY KEY, post_id uuid NOT NULL REFERENCES posts,
             position int NOT NULL, original_key text NOT NULL, variants jsonb NOT NULL)",
    ] {
        sqlx::query(statement).execute(&pool).await?;
    }
    let s3 = infra::s3::S3Settings {
        endpoint: env("BASELINE_S3_ENDPOINT", "http://127.0.0.1:9000"),
        bucket: env("BASELINE_S3_BUCKET", "baseline"),
        access_key_id: env("BASELINE_S3_ACCESS_KEY_ID", ""),
        secret_access_key: env("BASELINE_S3_SECRET_ACCESS_KEY", ""),
        ..Default::default()
    };
    let state = web::Data::new(State {
        pool,
        store: ObjectStore::new(s3.client(), s3.bucket.clone()),
        presets: [("1x", 400), ("2x", 800), ("large", 1600)]
            .map(|(name, width)| Preset {
                name: name.into(),
                width,
            })
            .into(),
    });
    HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(64 << 20))
            .route("/v1/posts", web::post().to(create))
            .route("/readyz", web::get().to(HttpResponse::Ok))
    })
    .bind(("127.0.0.1", port))?
    .run()
    .await?;
    Ok(())
}

async fn create(state: web::Data<State>, form: Multipart) -> HttpResponse {
    match create_post(&state, form).await {
        Ok(id) => HttpResponse::Created().json(serde_json::json!({ "id": id })),
        Err(e) => HttpResponse::InternalServerError().body(format!("{e:#}")),
    }
}

async fn create_post(state: &State, mut form: Multipart) -> anyhow::Result<uuid::Uuid> {
    let (mut title, mut files) = (String::new(), Vec::new());
    while let Some(mut field) = form.try_next().await.map_err(multipart_error)? {
        let mut bytes = Vec::new();
        while let Some(chunk) = field.try_next().await.map_err(multipart_error)? {
            bytes.extend_from_slice(&chunk);
        }
        match field.name() {
            Some("title") => title = String::from_utf8_lossy(&bytes).into_owned(),
            _ => files.push(bytes),
        }
    }
    let post = uuid::Uuid::now_v7();
    let mut tx = state.pool.begin().await?;
    sqlx::query("INSERT INTO posts (id, title) VALUES ($1, $2)")
        .bind(post)
        .bind(&title)
        .execute(&mut *tx)
        .await?;
    for (position, bytes) in files.into_iter().enumerate() {
        let image = uuid::Uuid::now_v7();
        let original_key = format!("originals/{image}");
        state
            .store
            .put(&original_key, bytes.clone(), "image/jpeg")
            .await?;
        let presets = state.presets.clone();
        let built = tokio::task::spawn_blocking(move || {
            let format = sniff(&bytes).map_err(|e| e.to_string())?;
            build_variants(&bytes, format, &presets, 80.0, &Limits::default())
        })
        .await?
        .map_err(anyhow::Error::msg)?;
        let mut variants = Vec::new();
        for variant in built.variants {
            let key = format!("variants/{image}/{}.webp", variant.name);
            state.store.put(&key, variant.webp, "image/webp").await?;
            variants.push(serde_json::json!({ "name": variant.name, "key": key }));
        }
        sqlx::query(
            "INSERT INTO images (id, post_id, position, original_key, variants)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(image)
        .bind(post)
        .bind(position as i32)
        .bind(&original_key)
        .bind(serde_json::Value::Array(variants))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(post)
}

fn multipart_error(e: actix_multipart::MultipartError) -> anyhow::Error {
    anyhow::anyhow!("reading the form: {e}")
}
