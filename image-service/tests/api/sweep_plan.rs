use crate::helpers::spawn_app;
use image_service::store::images::{SWEEP_ABANDONED, SWEEP_UNCLAIMED};

#[tokio::test]
async fn the_sweep_queries_read_their_partial_indexes_not_the_table() {
    let app = spawn_app().await;
    // A table where almost every file is in use, as in production.
    sqlx::query(
        "INSERT INTO images (id, uploader_id, state, process_status, owner_type, owner_id, content_type,
                             width, height, bytes, original_key, abandoned_at, created_at)
         SELECT gen_random_uuid(), 'u',
                CASE WHEN n % 1000 = 0 THEN 'abandoned' WHEN n % 1000 = 1 THEN 'uploaded' ELSE 'attached' END,
                'ready', 'post', gen_random_uuid(), 'image/jpeg', 10, 10, 100, 'originals/' || n,
                CASE WHEN n % 1000 = 0 THEN now() - interval '2 hours' END,
                now() - interval '2 days'
         FROM generate_series(1, 50000) AS n",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE images")
        .execute(&app.pool)
        .await
        .unwrap();
    for (condition, index) in [
        (SWEEP_ABANDONED, "images_abandoned"),
        (SWEEP_UNCLAIMED, "images_unclaimed"),
    ] {
        let plan: Vec<String> = sqlx::query_scalar(&format!(
            "EXPLAIN SELECT id FROM images WHERE {}",
            condition.replace("$1", "3600").replace("$2", "100")
        ))
        .fetch_all(&app.pool)
        .await
        .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains(index), "expected {index}:\n{plan}");
        assert!(
            !plan.contains("Seq Scan"),
            "the sweep scans the table:\n{plan}"
        );
    }
    app.stop().await;
}
