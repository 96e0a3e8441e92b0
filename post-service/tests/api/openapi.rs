//! The OpenAPI document: served at `/openapi.json`, equal to the committed
//! `docs/api/post-service.json` (`UPDATE_DOCS=1` rewrites it), and complete.
use crate::helpers::spawn_app;
use serde_json::Value;

#[tokio::test]
async fn the_served_openapi_document_is_the_committed_one_and_describes_every_endpoint() {
    let app = spawn_app().await;
    let served = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let path =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/api/post-service.json");
    if std::env::var("UPDATE_DOCS").is_ok() {
        std::fs::write(&path, format!("{served}\n")).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed.trim_end() == served,
        "docs/api/post-service.json differs from /openapi.json; rerun with UPDATE_DOCS=1"
    );

    let doc: Value = serde_json::from_str(&served).unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for (path, methods) in [
        ("/v1/posts", &["get", "post"][..]),
        ("/v1/posts/{id}", &["get", "patch", "delete"][..]),
    ] {
        for method in methods {
            let operation = &doc["paths"][path][method];
            assert!(operation.is_object(), "{method} {path} is described");
            assert!(
                operation["responses"]["401"]["content"]["application/problem+json"].is_object(),
                "{method} {path} describes its problem+json errors"
            );
        }
    }
    app.stop().await;
}
