//! The OpenAPI document: served at `/openapi.json`, equal to the committed
//! `docs/api/post-service.json` (`UPDATE_DOCS=1` rewrites it), and complete.
use crate::helpers::spawn_app;

#[tokio::test]
async fn the_served_openapi_document_is_the_committed_one_and_describes_every_endpoint() {
    let app = spawn_app().await;
    let path =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/api/post-service.json");
    let doc = infra::testing::assert_committed_document(&app.address, &path).await;
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
