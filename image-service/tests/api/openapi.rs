//! The OpenAPI document: served at `/openapi.json`, equal to the committed
//! `docs/api/image-service.json` (`UPDATE_DOCS=1` rewrites it), and complete.
use crate::helpers::spawn_app;

#[tokio::test]
async fn the_served_openapi_document_is_the_committed_one_and_describes_every_endpoint() {
    let app = spawn_app().await;
    let path =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/api/image-service.json");
    let doc = infra::testing::assert_committed_document(&app.address, &path).await;
    for (path, method, errors) in [
        ("/v1/uploads", "post", &["401", "413", "415", "422"][..]),
        ("/v1/uploads/presign", "post", &["401"][..]),
        (
            "/v1/uploads/{id}/complete",
            "post",
            &["401", "404", "409"][..],
        ),
        ("/v1/images/{id}", "get", &["401", "404"][..]),
        ("/v1/images/{id}/reprocess", "post", &["403", "409"][..]),
        ("/v1/images/{id}/original", "get", &["401", "404"][..]),
        ("/v1/images/{id}/variants/{file}", "get", &["404"][..]),
    ] {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is described");
        for status in errors {
            assert!(
                operation["responses"][status]["content"]["application/problem+json"].is_object(),
                "{method} {path} describes its {status} problem"
            );
        }
    }
    // Variants are public: that operation asks for no token.
    assert_eq!(
        doc["paths"]["/v1/images/{id}/variants/{file}"]["get"]["security"],
        serde_json::json!([{}])
    );
    app.stop().await;
}
