//! Walks `odd/EXPECTED.tsv`: every file gets the upload status and final
//! processing status it lists, so a file added there is tested without code.
use crate::helpers::{apply_created, corpus, post_created, spawn_app};
use serde_json::Value;

struct Expected {
    file: String,
    upload: Vec<u16>,
    last: Vec<String>,
    display: Option<(u64, u64)>,
    alpha: Option<bool>,
}

fn expectations() -> Vec<Expected> {
    let text = std::fs::read_to_string(corpus("odd/EXPECTED.tsv")).expect("EXPECTED.tsv");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            let display = cols[3]
                .split_once('x')
                .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)));
            Expected {
                file: cols[0].to_owned(),
                upload: cols[1].split('|').map(|s| s.parse().unwrap()).collect(),
                last: cols[2].split('|').map(str::to_owned).collect(),
                display,
                alpha: match cols[4] {
                    "yes" => Some(true),
                    "no" => Some(false),
                    _ => None,
                },
            }
        })
        .collect()
}

#[tokio::test]
async fn every_odd_file_gets_the_status_its_expectation_lists() {
    let app = spawn_app().await;
    let processor = app.processor();
    let mut failures = Vec::new();
    for expected in expectations() {
        let bytes = std::fs::read(corpus(&format!("odd/{}", expected.file))).unwrap();
        let before = app.keys().await.len();
        let response = app.upload("alice", bytes).await;
        let status = response.status().as_u16();
        if !expected.upload.contains(&status) {
            failures.push(format!(
                "{}: upload answered {status}, expected {:?}",
                expected.file, expected.upload
            ));
            continue;
        }
        let body: Value = response.json().await.unwrap();
        if status != 201 {
            if app.keys().await.len() != before {
                failures.push(format!("{}: refused upload left an object", expected.file));
            }
            continue;
        }
        let id = body["id"].as_str().unwrap().to_owned();
        let event = post_created("alice", &[&id]);
        apply_created(&processor, &event).await;
        let image = app.get_image(&id).await;
        let last = image["process_status"].as_str().unwrap().to_owned();
        if !expected.last.contains(&last) {
            failures.push(format!(
                "{}: ended {last}, expected {:?} ({})",
                expected.file, expected.last, image["error"]
            ));
            continue;
        }
        if last != "ready" {
            continue;
        }
        if let Some((w, h)) = expected.display {
            if (body["width"].as_u64(), body["height"].as_u64()) != (Some(w), Some(h)) {
                failures.push(format!(
                    "{}: upload reported {}x{}, expected {w}x{h}",
                    expected.file, body["width"], body["height"]
                ));
            }
            let largest = image["variants"]
                .as_array()
                .unwrap()
                .iter()
                .max_by_key(|v| v["width"].as_u64())
                .unwrap();
            if (largest["width"].as_u64(), largest["height"].as_u64())
                != (Some(w.min(1600)), Some(h * w.min(1600) / w))
            {
                failures.push(format!(
                    "{}: largest variant {}x{}, expected {w}x{h}",
                    expected.file, largest["width"], largest["height"]
                ));
            }
        }
        let url = image["variants"][0]["url"].as_str().unwrap();
        let bytes = app
            .client
            .get(url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        if [&b"EXIF"[..], b"ICCP", b"XMP "]
            .iter()
            .any(|c| bytes.windows(4).any(|w| w == *c))
        {
            failures.push(format!("{}: metadata copied into a variant", expected.file));
        }
        if image["placeholder"].as_str().is_none() {
            failures.push(format!("{}: no placeholder", expected.file));
        }
        if let Some(alpha) = expected.alpha {
            let decoded = image::load_from_memory(&bytes).unwrap();
            if decoded.color().has_alpha() != alpha {
                failures.push(format!(
                    "{}: variant alpha {}, expected {alpha}",
                    expected.file,
                    decoded.color().has_alpha()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} files off their expectation:\n{}",
        failures.len(),
        failures.join("\n")
    );
    app.stop().await;
}
