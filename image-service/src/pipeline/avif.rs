//! AVIF variants. AV1 encoding costs several times what WebP does, so AVIF
//! is encoded after an image's WebP variants are ready, from the same
//! resized sRGB pixels; clients use WebP (or the original) meanwhile.
use super::Resized;
use ravif::{Encoder, Img, RGB8, RGBA8};
use serde::{Deserialize, Serialize};

/// How AVIF variants are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AvifSettings {
    /// 1–100; about 60 looks like WebP at 80.
    pub quality: f32,
    /// rav1e speed, 1 (slow, smallest) to 10 (fast).
    pub speed: u8,
}

/// Encodes one variant; the error is a reason to log.
pub fn encode(variant: &Resized, settings: AvifSettings) -> Result<Vec<u8>, String> {
    let started = std::time::Instant::now();
    let encoder = Encoder::new()
        .with_quality(settings.quality)
        .with_alpha_quality(settings.quality)
        .with_speed(settings.speed)
        .with_num_threads(Some(1));
    let (w, h) = (variant.width as usize, variant.height as usize);
    let encoded = if variant.has_alpha {
        let pixels: Vec<RGBA8> = variant
            .pixels
            .chunks_exact(4)
            .map(|p| RGBA8::new(p[0], p[1], p[2], p[3]))
            .collect();
        encoder.encode_rgba(Img::new(&pixels[..], w, h))
    } else {
        let pixels: Vec<RGB8> = variant
            .pixels
            .chunks_exact(3)
            .map(|p| RGB8::new(p[0], p[1], p[2]))
            .collect();
        encoder.encode_rgb(Img::new(&pixels[..], w, h))
    }
    .map_err(|e| format!("AVIF encoding of {} failed: {e}", variant.name))?;
    infra::metrics::IMAGE_PROCESSING
        .with_label_values(&["encode", variant.name.as_str(), "avif"])
        .observe(started.elapsed().as_secs_f64());
    Ok(encoded.avif_file)
}

/// Width and height from an AVIF file's `ispe` box, for checks.
pub fn dimensions(avif: &[u8]) -> Option<(u32, u32)> {
    let at = avif.windows(4).position(|w| w == b"ispe")?;
    let field = |offset: usize| {
        let bytes = avif.get(at + offset..at + offset + 4)?;
        Some(u32::from_be_bytes(bytes.try_into().ok()?))
    };
    // box type, then version and flags (4 bytes), then width and height.
    Some((field(8)?, field(12)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(width: u32, height: u32, has_alpha: bool) -> Resized {
        let channels = if has_alpha { 4 } else { 3 };
        let pixels = (0..width * height)
            .flat_map(|i| {
                let (x, y) = ((i % width) as u8, (i / width) as u8);
                [x, y, 128, 200].into_iter().take(channels)
            })
            .collect();
        Resized {
            name: "1x".into(),
            width,
            height,
            has_alpha,
            pixels,
        }
    }

    #[test]
    fn variants_encode_as_avif_of_their_size() {
        let settings = AvifSettings {
            quality: 60.0,
            speed: 10,
        };
        for has_alpha in [false, true] {
            let avif = encode(&gradient(120, 80, has_alpha), settings).unwrap();
            assert_eq!(&avif[4..12], b"ftypavif");
            assert_eq!(dimensions(&avif), Some((120, 80)));
        }
    }
}
