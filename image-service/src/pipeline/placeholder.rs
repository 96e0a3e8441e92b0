//! A ThumbHash of the image (about 25 bytes, base64 in the API), so clients
//! paint a blurred preview before the first byte of a variant arrives.
use base64::Engine;
use fast_image_resize::{images::Image, PixelType, ResizeAlg, ResizeOptions, Resizer};

/// ThumbHash works on at most 100x100 pixels.
const MAX_SIDE: u32 = 100;

/// The placeholder of an interleaved RGB or RGBA image.
pub fn thumbhash(source: &Image<'_>) -> Option<String> {
    let (w, h) = (source.width(), source.height());
    let scale = (MAX_SIDE as f64 / w.max(h) as f64).min(1.0);
    let (tw, th) = (
        ((w as f64 * scale).round() as u32).max(1),
        ((h as f64 * scale).round() as u32).max(1),
    );
    let mut small = Image::new(tw, th, source.pixel_type());
    Resizer::new()
        .resize(
            source,
            &mut small,
            &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(
                fast_image_resize::FilterType::Bilinear,
            )),
        )
        .ok()?;
    let rgba: Vec<u8> = match source.pixel_type() {
        PixelType::U8x4 => small.into_vec(),
        PixelType::U8x3 => small
            .buffer()
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        _ => return None,
    };
    let hash = thumbhash::rgba_to_thumb_hash(tw as usize, th as usize, &rgba);
    Some(base64::engine::general_purpose::STANDARD.encode(hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placeholder_is_short_and_decodes_to_the_average_colour() {
        let pixels: Vec<u8> = std::iter::repeat_n([200u8, 40, 40], 640 * 480)
            .flatten()
            .collect();
        let image = Image::from_vec_u8(640, 480, pixels, PixelType::U8x3).unwrap();
        let hash = thumbhash(&image).unwrap();
        assert!(hash.len() < 48, "{hash}");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&hash)
            .unwrap();
        let (r, g, b, a) = thumbhash::thumb_hash_to_average_rgba(&bytes).unwrap();
        assert!(
            (r - 200.0 / 255.0).abs() < 0.05 && g < 0.25 && b < 0.25 && a > 0.99,
            "{r} {g} {b} {a}"
        );
    }
}
