//! Hostile files. A file that declares more pixels than the limits allow is
//! refused from its header: the answer comes back at once, nothing is
//! stored, and the process's peak memory does not move. A decompression bomb
//! in a text chunk is processed within bounded memory.
//!
//! nextest runs every test in its own process, so the process's peak RSS
//! (VmHWM, reset through /proc/self/clear_refs) is this test's alone.
use crate::helpers::{apply_created, post_created, read_corpus, spawn_app};
use std::time::{Duration, Instant};

const MIB: u64 = 1024;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Resets the peak to the current RSS; returns that RSS in KiB.
fn reset_peak() -> u64 {
    std::fs::write("/proc/self/clear_refs", "5").expect("clear_refs");
    status_kib("VmRSS")
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut checked = kind.to_vec();
    checked.extend_from_slice(data);
    out.extend_from_slice(&crc32(&checked).to_be_bytes());
    out
}

/// A valid PNG header declaring `width`x`height` RGB, with no pixel data.
fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(png_chunk(b"IHDR", &ihdr));
    out.extend(png_chunk(
        b"IDAT",
        &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    out.extend(png_chunk(b"IEND", &[]));
    out
}

/// An extended WebP header (VP8X) declaring a `width`x`height` canvas.
fn webp_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut vp8x = vec![0u8; 4];
    vp8x.extend_from_slice(&(width - 1).to_le_bytes()[..3]);
    vp8x.extend_from_slice(&(height - 1).to_le_bytes()[..3]);
    let mut body = b"WEBPVP8X".to_vec();
    body.extend_from_slice(&10u32.to_le_bytes());
    body.extend(vp8x);
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend(body);
    out
}

/// The HEIC hopper with its `ispe` box claiming `width`x`height`.
fn heic_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = read_corpus("odd/avif_hopper.heif");
    let at = bytes
        .windows(4)
        .position(|w| w == b"ispe")
        .expect("ispe box");
    bytes[at + 8..at + 12].copy_from_slice(&width.to_be_bytes());
    bytes[at + 12..at + 16].copy_from_slice(&height.to_be_bytes());
    bytes
}

#[tokio::test]
async fn files_declaring_too_many_pixels_are_refused_at_once_without_memory_growth() {
    let app = spawn_app().await;
    let cases = [
        (
            "GIF frame 65535x65535",
            read_corpus("odd/decompression_bomb.gif"),
        ),
        ("PNG 60000x60000", png_declaring(60_000, 60_000)),
        ("PNG 16000x16000 (256 MP)", png_declaring(16_000, 16_000)),
        ("WebP canvas 20000x20000", webp_declaring(20_000, 20_000)),
        ("HEIC ispe 60000x60000", heic_declaring(60_000, 60_000)),
    ];
    // Warm up the connection and the handler's first-use allocations.
    app.upload("alice", png_declaring(60_000, 60_000)).await;
    for (name, bytes) in cases {
        let before = reset_peak();
        let started = Instant::now();
        let response = app.upload("alice", bytes).await;
        let elapsed = started.elapsed();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        let grew = status_kib("VmHWM").saturating_sub(before);
        assert!(
            status == 413 || status == 422,
            "{name}: answered {status}: {body}"
        );
        assert!(
            elapsed < Duration::from_millis(500),
            "{name}: the refusal took {elapsed:?}"
        );
        assert!(
            grew < 32 * MIB,
            "{name}: peak RSS grew by {} MiB",
            grew / MIB
        );
    }
    assert_eq!(app.count("images").await, 0);
    assert!(app.keys().await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_text_chunk_bomb_is_processed_within_bounded_memory() {
    let app = spawn_app().await;
    let before = reset_peak();
    let response = app
        .upload("alice", read_corpus("odd/png_decompression_dos.png"))
        .await;
    let status = response.status().as_u16();
    assert!(status == 201 || status == 422, "answered {status}");
    if status == 201 {
        let body: serde_json::Value = response.json().await.unwrap();
        let id = body["id"].as_str().unwrap().to_owned();
        apply_created(&app.processor(), &post_created("alice", &[&id])).await;
        let image = app.get_image(&id).await;
        let last = image["process_status"].as_str().unwrap();
        assert!(last == "ready" || last == "failed", "{image}");
    }
    let grew = status_kib("VmHWM").saturating_sub(before);
    assert!(grew < 64 * MIB, "peak RSS grew by {} MiB", grew / MIB);
    app.stop().await;
}
