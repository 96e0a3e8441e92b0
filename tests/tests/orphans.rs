//! Every way an orphaned object used to appear, through the real programs:
//! replaced images, a deleted post, an unused upload, a rolled-back create.
//! It ends with `image-service reconcile` finding nothing.
use e2e::{corpus, Stack};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

struct Client<'a> {
    stack: &'a Stack,
    token: String,
}

impl Client<'_> {
    async fn upload(&self) -> String {
        let response = self
            .stack
            .client
            .post(self.stack.image_url("/v1/uploads"))
            .bearer_auth(&self.token)
            .body(std::fs::read(corpus("odd/hopper.jpg")).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
        response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self
            .stack
            .client
            .request(method, self.stack.post_url(path))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    async fn post_when(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let post: Value = self
                .send(reqwest::Method::GET, &format!("/v1/posts/{id}"), None)
                .await
                .json()
                .await
                .unwrap();
            if done(&post) {
                return post;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: last seen {post:#}\n{}",
                self.stack.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn statuses(post: &Value) -> Vec<String> {
    post["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap().to_owned())
        .collect()
}

async fn object_count(stack: &Stack) -> usize {
    infra::testing::list_keys(&stack.s3).await.len()
}

#[tokio::test]
async fn no_path_leaves_an_object_that_reconcile_cannot_explain() {
    let stack = Stack::start_with(&[
        ("IMAGE_SWEEPER__INTERVAL_SECS", "1"),
        ("IMAGE_SWEEPER__ABANDONED_GRACE_SECS", "0"),
        ("IMAGE_SWEEPER__UPLOAD_TTL_SECS", "5"),
    ])
    .await;
    let alice = Client {
        stack: &stack,
        token: stack.token("alice"),
    };
    let bob = Client {
        stack: &stack,
        token: stack.token("bob"),
    };

    // A post with two images, then an update that replaces one of them.
    let (a, b, c) = (
        alice.upload().await,
        alice.upload().await,
        alice.upload().await,
    );
    let post: Value = alice
        .send(
            reqwest::Method::POST,
            "/v1/posts",
            Some(json!({"title": "t", "image_ids": [a, b]})),
        )
        .await
        .json()
        .await
        .unwrap();
    let post_id = post["id"]
        .as_str()
        .unwrap_or_else(|| panic!("the post was not created: {post}\n{}", stack.logs()))
        .to_owned();
    alice
        .post_when(&post_id, "both ready", |p| {
            statuses(p) == ["ready", "ready"]
        })
        .await;
    let patched = alice
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/posts/{post_id}"),
            Some(json!({"image_ids": [b, c]})),
        )
        .await;
    assert_eq!(patched.status().as_u16(), 200);
    alice
        .post_when(&post_id, "replacement ready", |p| {
            statuses(p) == ["ready", "ready"]
        })
        .await;

    // A second post of alice's, whose image bob then tries to take.
    let kept = alice.upload().await;
    let keeper: Value = alice
        .send(
            reqwest::Method::POST,
            "/v1/posts",
            Some(json!({"title": "k", "image_ids": [kept]})),
        )
        .await
        .json()
        .await
        .unwrap();
    let keeper_id = keeper["id"].as_str().unwrap().to_owned();
    alice
        .post_when(&keeper_id, "kept ready", |p| statuses(p) == ["ready"])
        .await;
    let theft: Value = bob
        .send(
            reqwest::Method::POST,
            "/v1/posts",
            Some(json!({"title": "mine", "image_ids": [kept]})),
        )
        .await
        .json()
        .await
        .unwrap();
    let stolen = bob
        .post_when(theft["id"].as_str().unwrap(), "theft refused", |p| {
            statuses(p) == ["failed"]
        })
        .await;
    assert!(
        stolen["images"][0]["error"]
            .as_str()
            .unwrap()
            .contains("author"),
        "{stolen}"
    );

    // A create that fails inside its transaction after naming an image.
    let failing = alice.upload().await;
    let pool = sqlx::PgPool::connect(&stack.posts_db).await.unwrap();
    sqlx::query(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.image_id = current_setting('e2e.refused')::uuid THEN RAISE EXCEPTION 'forced'; END IF;
         RETURN NEW; END $$",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(&format!(
        "ALTER DATABASE \"{}\" SET e2e.refused = '{failing}'",
        stack.posts_db.rsplit('/').next().unwrap()
    ))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse BEFORE INSERT ON post_images FOR EACH ROW EXECUTE FUNCTION refuse()",
    )
    .execute(&pool)
    .await
    .unwrap();
    let failed = alice
        .send(
            reqwest::Method::POST,
            "/v1/posts",
            Some(json!({"title": "f", "image_ids": [failing]})),
        )
        .await;
    assert_eq!(failed.status().as_u16(), 500);

    // An upload nobody uses, and the deletion of the first post.
    let _unused = alice.upload().await;
    let deleted = alice
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/posts/{post_id}"),
            None,
        )
        .await;
    assert_eq!(deleted.status().as_u16(), 204);

    let before = object_count(&stack).await;
    // Only the kept image's original and three variants may remain.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let count = object_count(&stack).await;
        if count == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bucket still holds {count} objects\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, report) = stack.reconcile();
    println!("objects before the sweep: {before}, after: 4\nreconcile:\n{report}");
    assert_eq!(code, Some(0), "{report}");
    assert!(
        report.contains("unexplained objects: 0") && report.contains("missing objects: 0"),
        "{report}"
    );
    let mut remaining = infra::testing::list_keys(&stack.s3).await;
    remaining.sort();
    assert!(remaining.iter().all(|k| k.contains(&kept)), "{remaining:?}");
    pool.close().await;
    let exits = stack.stop().await;
    assert!(exits.iter().all(|(_, code)| *code == Some(0)), "{exits:?}");
}
