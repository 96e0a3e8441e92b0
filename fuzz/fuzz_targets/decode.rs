//! The path every uploaded byte takes: sniff the format, read the header
//! within the limits, then decode, orient, convert colour, resize and encode
//! one small variant. Any panic, hang or out-of-memory is a finding; errors
//! are the expected outcome for most inputs.
#![no_main]
use image_service::pipeline::{build_variants, probe, sniff, Limits, Preset};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(format) = sniff(data) else { return };
    // Smaller than the service's defaults so that each run stays fast; the
    // checks are the same.
    let limits = Limits {
        max_bytes: 1 << 20,
        max_pixels: 4_000_000,
        max_side: 4096,
        max_decode_bytes: 64 << 20,
    };
    if probe(data, format, &limits).is_err() {
        return;
    }
    let presets = [Preset {
        name: "1x".into(),
        width: 64,
    }];
    let _ = build_variants(data, format, &presets, 50.0, &limits);
});
