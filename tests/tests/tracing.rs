//! One trace from request to variant: the three programs export their spans
//! over OTLP/HTTP to a receiver run by this test, and one `POST /v1/posts`
//! with an image gives one trace across the three processes, each span
//! under the right parent.
use e2e::{corpus, Stack};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};
use prost::Message;
use serde_json::json;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One received span.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace: Vec<u8>,
    id: Vec<u8>,
    parent: Vec<u8>,
    attributes: HashMap<String, String>,
}

/// A minimal OTLP/HTTP receiver: HTTP/1.1 with keep-alive, every POST body
/// decoded as an `ExportTraceServiceRequest`, answered `200` with no body.
fn start_receiver() -> (u16, Arc<Mutex<Vec<Span>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let spans = Arc::new(Mutex::new(Vec::new()));
    let store = spans.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                while let Some(body) = read_request(&mut reader) {
                    if let Ok(request) = ExportTraceServiceRequest::decode(body.as_slice()) {
                        store.lock().unwrap().extend(spans_of(request));
                    }
                    let answer = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if writer.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, spans)
}

fn read_request(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut length = 0;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

fn text(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .filter_map(|kv| {
            let value = match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) => s.clone(),
                Value::IntValue(i) => i.to_string(),
                Value::BoolValue(b) => b.to_string(),
                Value::DoubleValue(d) => d.to_string(),
                _ => return None,
            };
            Some((kv.key.clone(), value))
        })
        .collect()
}

fn spans_of(request: ExportTraceServiceRequest) -> Vec<Span> {
    let mut out = Vec::new();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .map(|r| text(&r.attributes))
            .and_then(|a| a.get("service.name").cloned())
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                out.push(Span {
                    service: service.clone(),
                    name: span.name,
                    trace: span.trace_id,
                    id: span.span_id,
                    parent: span.parent_span_id,
                    attributes: text(&span.attributes),
                });
            }
        }
    }
    out
}

/// The spans of one trace, by (service, name); several under one key when
/// a step repeats (one per variant).
struct Trace(Vec<Span>);

impl Trace {
    fn all(&self, service: &str, name: &str) -> Vec<&Span> {
        self.0
            .iter()
            .filter(|s| s.service == service && s.name == name)
            .collect()
    }

    fn one(&self, service: &str, name: &str) -> &Span {
        let found = self.all(service, name);
        assert!(
            !found.is_empty(),
            "no `{name}` span from {service}; the trace has:\n{}",
            self.describe()
        );
        found[0]
    }

    /// Whether `span` descends from `ancestor`.
    fn under(&self, span: &Span, ancestor: &Span) -> bool {
        let mut current = span;
        for _ in 0..64 {
            if current.parent == ancestor.id {
                return true;
            }
            match self.0.iter().find(|s| s.id == current.parent) {
                Some(parent) => current = parent,
                None => return false,
            }
        }
        false
    }

    fn describe(&self) -> String {
        self.0
            .iter()
            .map(|s| format!("  {} / {}", s.service, s.name))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_post_with_an_image_is_one_trace_across_the_three_programs() {
    let (port, received) = start_receiver();
    let stack = Stack::start_exporting_traces(&format!("http://127.0.0.1:{port}")).await;
    let token = stack.token("alice");
    let image_id = stack
        .upload(&token, std::fs::read(corpus("odd/hopper.jpg")).unwrap())
        .await;
    let created = stack
        .client
        .post(stack.post_url("/v1/posts"))
        .bearer_auth(&token)
        .json(&json!({"title": "traced", "image_ids": [image_id]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let post: serde_json::Value = created.json().await.unwrap();
    let post_id = post["id"].as_str().unwrap().to_owned();

    // Everything the trace must hold, once the variants are ready and the
    // post service has recorded it.
    let expected: &[(&str, &str)] = &[
        ("post-service", "POST /v1/posts"),
        ("post-service", "transaction"),
        ("post-service", "outbox write"),
        ("outbox-relay", "post.created publish"),
        ("image-service", "post.created process"),
        ("image-service", "decode"),
        ("image-service", "resize"),
        ("image-service", "encode"),
        ("image-service", "s3 put"),
        ("image-service", "outbox write"),
        ("outbox-relay", "image.processed publish"),
        ("post-service", "image.processed process"),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    let trace = loop {
        let spans = received.lock().unwrap().clone();
        let root = spans
            .iter()
            .find(|s| s.service == "post-service" && s.name == "POST /v1/posts");
        if let Some(root) = root {
            let trace = Trace(
                spans
                    .iter()
                    .filter(|s| s.trace == root.trace)
                    .cloned()
                    .collect(),
            );
            if expected
                .iter()
                .all(|(service, name)| !trace.all(service, name).is_empty())
            {
                break trace;
            }
            assert!(
                Instant::now() < deadline,
                "the trace is incomplete after 60 s; it has:\n{}\n{}",
                trace.describe(),
                stack.logs()
            );
        } else {
            assert!(
                Instant::now() < deadline,
                "no POST /v1/posts span arrived ({} spans in all)\n{}",
                spans.len(),
                stack.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Parent links across the processes, through the stored contexts.
    let request = trace.one("post-service", "POST /v1/posts");
    assert!(request.parent.is_empty(), "the request starts the trace");
    let written = trace.all("post-service", "outbox write");
    let written = written.iter().find(|s| trace.under(s, request)).unwrap();
    let published = trace.one("outbox-relay", "post.created publish");
    assert_eq!(
        published.parent, written.id,
        "the relay's publish continues the outbox row's context"
    );
    let consumed = trace.one("image-service", "post.created process");
    assert_eq!(consumed.parent, published.id, "consumed under the publish");
    for step in ["decode", "resize", "encode", "s3 put", "outbox write"] {
        for span in trace.all("image-service", step) {
            assert!(
                trace.under(span, consumed),
                "image-service `{step}` is not under the consume span:\n{}",
                trace.describe()
            );
        }
    }
    assert_eq!(
        trace.all("image-service", "encode").len(),
        3,
        "one per preset"
    );
    let reported = trace.one("image-service", "outbox write");
    let republished = trace.one("outbox-relay", "image.processed publish");
    assert_eq!(republished.parent, reported.id);
    let recorded = trace.one("post-service", "image.processed process");
    assert_eq!(recorded.parent, republished.id);
    // Every span of the trace hangs under the request.
    for span in &trace.0 {
        assert!(
            span.id == request.id || trace.under(span, request),
            "{} / {} is not under the request",
            span.service,
            span.name
        );
    }

    // The identifiers that join spans to logs and rows.
    assert_eq!(published.attributes.get("aggregate_id"), Some(&post_id));
    assert!(published.attributes.contains_key("event_id"));
    assert_eq!(consumed.attributes.get("aggregate_id"), Some(&post_id));
    assert!(consumed.attributes.contains_key("event_id"));
    let processed = trace
        .0
        .iter()
        .find(|s| s.attributes.get("image_id") == Some(&image_id));
    assert!(
        processed.is_some(),
        "no span carries the image id:\n{}",
        trace.describe()
    );
    stack.stop().await;
}
