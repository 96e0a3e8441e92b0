//! The image service's variant pipeline on files, timed, for `bench/variants`
//! (which runs libvips on the same files beside it and prints the table).
//!
//! `variants_bench [--threads N] [--rounds R] [--avif] FILE...`
//!
//! Each file is read into memory first; the timed work is what a worker does
//! for one image: sniff, decode, orient, convert colour, resize to the three
//! default presets, encode lossy WebP (quality 80) and the placeholder, and
//! with `--avif` also the AVIF variants (quality 60, speed 8). With one
//! thread every file is timed alone (median of the rounds); with more, the
//! threads take files from a shared queue (files × rounds) and only the
//! throughput is reported. Prints one JSON object.
use image_service::configuration::VariantSettings;
use image_service::pipeline::{self, avif::AvifSettings, Limits};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

struct Args {
    threads: usize,
    rounds: usize,
    avif: bool,
    files: Vec<String>,
}

fn args() -> Args {
    let mut parsed = Args {
        threads: 1,
        rounds: 3,
        avif: false,
        files: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> usize {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match arg.as_str() {
            "--threads" => parsed.threads = number("--threads").max(1),
            "--rounds" => parsed.rounds = number("--rounds").max(1),
            "--avif" => parsed.avif = true,
            "-h" | "--help" => {
                println!("variants_bench [--threads N] [--rounds R] [--avif] FILE...");
                std::process::exit(0);
            }
            _ => parsed.files.push(arg),
        }
    }
    parsed
}

/// One image's work; returns the bytes written (so nothing is optimised out).
fn process(bytes: &[u8], avif: bool) -> usize {
    let presets = VariantSettings::default().parsed();
    let format = pipeline::sniff(bytes).expect("an accepted format");
    let built = pipeline::build_variants(bytes, format, &presets, 80.0, &Limits::default())
        .expect("the file builds");
    let mut written: usize = built.variants.iter().map(|v| v.webp.len()).sum();
    if avif {
        let settings = AvifSettings {
            quality: 60.0,
            speed: 8,
        };
        for resized in &built.resized {
            written += pipeline::avif::encode(resized, settings)
                .expect("AVIF encodes")
                .len();
        }
    }
    written
}

fn main() {
    let args = args();
    let inputs: Vec<(String, Vec<u8>)> = args
        .files
        .iter()
        .map(|f| (f.clone(), std::fs::read(f).expect("readable file")))
        .collect();
    // Warm-up: first-touch allocations and lazily built tables.
    process(&inputs[0].1, false);

    if args.threads == 1 {
        let mut per_file = serde_json::Map::new();
        let started = Instant::now();
        for (name, bytes) in &inputs {
            let mut times: Vec<f64> = (0..args.rounds)
                .map(|_| {
                    let t = Instant::now();
                    process(bytes, args.avif);
                    t.elapsed().as_secs_f64() * 1000.0
                })
                .collect();
            times.sort_by(f64::total_cmp);
            per_file.insert(name.clone(), times[times.len() / 2].into());
        }
        let images = inputs.len() * args.rounds;
        let report = serde_json::json!({
            "threads": 1,
            "median_ms": per_file,
            "images_per_s": images as f64 / started.elapsed().as_secs_f64(),
        });
        println!("{report}");
        return;
    }

    let jobs = inputs.len() * args.rounds;
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..args.threads {
            scope.spawn(|| loop {
                let job = next.fetch_add(1, Ordering::Relaxed);
                if job >= jobs {
                    break;
                }
                process(&inputs[job % inputs.len()].1, args.avif);
            });
        }
    });
    let report = serde_json::json!({
        "threads": args.threads,
        "images_per_s": jobs as f64 / started.elapsed().as_secs_f64(),
    });
    println!("{report}");
}
