//! Builds the resized, re-encoded variants of one image: decode within the
//! memory budget, apply EXIF orientation, resize (never upscaling, aspect
//! kept) and encode lossy WebP. Metadata is not carried over.
use super::{color::ToSrgb, placeholder, probe::Limits, Format};
use fast_image_resize::{images::Image, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{metadata::Orientation, DynamicImage, ImageDecoder, ImageReader};
use serde::{Deserialize, Serialize};
use std::io::Cursor;

/// A variant preset: a name and a target width.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preset {
    pub name: String,
    pub width: u32,
}

/// Everything built from one image.
#[derive(Debug, Clone)]
pub struct Built {
    pub variants: Vec<BuiltVariant>,
    /// ThumbHash, base64.
    pub placeholder: Option<String>,
    /// The resized sRGB pixels of each variant, for encoders that run
    /// later (AVIF); dropped by callers that do not need them.
    pub resized: Vec<Resized>,
}

/// One variant's pixels: RGB or RGBA rows, 8 bits per channel, sRGB.
#[derive(Debug, Clone)]
pub struct Resized {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub has_alpha: bool,
    pub pixels: Vec<u8>,
}

/// One encoded variant.
#[derive(Debug, Clone)]
pub struct BuiltVariant {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub webp: Vec<u8>,
}

/// Decodes `bytes` and builds every preset. An error means the image cannot
/// be processed at all (a permanent failure), with a reason for the user.
pub fn build_variants(
    bytes: &[u8],
    format: Format,
    presets: &[Preset],
    quality: f32,
    limits: &Limits,
) -> Result<Built, String> {
    let decoding = std::time::Instant::now();
    let (image, icc, orientation) =
        tracing::info_span!("decode", ?format).in_scope(|| decode(bytes, format, limits))?;
    infra::metrics::IMAGE_PROCESSING
        .with_label_values(&["decode", "", ""])
        .observe(decoding.elapsed().as_secs_f64());
    let has_alpha = image.color().has_alpha();
    let (pixel_type, channels) = if has_alpha {
        (PixelType::U8x4, 4)
    } else {
        (PixelType::U8x3, 3)
    };
    // Resizing works in the stored frame; each variant is turned upright
    // after it has been made small (rotating the full-size source would cost
    // more than resizing it).
    let (width, height) = (image.width(), image.height());
    let swaps = super::probe::swaps_sides(orientation);
    let (shown_w, shown_h) = if swaps {
        (height, width)
    } else {
        (width, height)
    };
    let pixels = if has_alpha {
        image.into_rgba8().into_raw()
    } else {
        image.into_rgb8().into_raw()
    };
    let source =
        Image::from_vec_u8(width, height, pixels, pixel_type).map_err(|e| e.to_string())?;
    // Colour is converted on the largest output, not the full-size source:
    // the smaller variants are resized from it, already in sRGB.
    let mut to_srgb = ToSrgb::from_icc(icc.as_deref(), has_alpha);

    // Largest first, each resized from the previous (smaller) result: the
    // big source is read once, and each step shrinks by a modest factor.
    let mut order: Vec<&Preset> = presets.iter().collect();
    order.sort_by_key(|p| std::cmp::Reverse(p.width));
    let mut resizer = Resizer::new();
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    let mut built = Vec::with_capacity(order.len());
    let mut resized: Vec<Resized> = Vec::with_capacity(order.len());
    let mut current: Option<Image> = None;
    for preset in order {
        let input = current.as_ref().unwrap_or(&source);
        let (w, h) = target_size(shown_w, shown_h, preset.width);
        let (stored_w, stored_h) = if swaps { (h, w) } else { (w, h) };
        let resizing = tracing::info_span!("resize", variant = %preset.name, width = w, height = h);
        let (output, mut upright) = resizing.in_scope(|| {
            let mut output = if (stored_w, stored_h) == (input.width(), input.height()) {
                input.copy()
            } else {
                let mut out = Image::new(stored_w, stored_h, pixel_type);
                resizer
                    .resize(input, &mut out, &options)
                    .map_err(|e| e.to_string())?;
                out
            };
            if let Some(convert) = to_srgb.take() {
                convert.apply(output.buffer_mut());
            }
            let upright = orient(&output, has_alpha, orientation)?;
            Ok::<_, String>((output, upright))
        })?;
        let _encode =
            tracing::info_span!("encode", variant = %preset.name, format = "webp").entered();
        let encoding = std::time::Instant::now();
        let encoder = if channels == 4 {
            keep_alpha_channel(&mut upright);
            webp::Encoder::from_rgba(&upright, w, h)
        } else {
            webp::Encoder::from_rgb(&upright, w, h)
        };
        let webp = encoder.encode(quality).to_vec();
        infra::metrics::IMAGE_PROCESSING
            .with_label_values(&["encode", preset.name.as_str(), "webp"])
            .observe(encoding.elapsed().as_secs_f64());
        built.push(BuiltVariant {
            name: preset.name.clone(),
            width: w,
            height: h,
            webp,
        });
        resized.push(Resized {
            name: preset.name.clone(),
            width: w,
            height: h,
            has_alpha: channels == 4,
            pixels: upright,
        });
        current = Some(output);
    }
    // Report in the configured order.
    built.sort_by_key(|v| presets.iter().position(|p| p.name == v.name));
    let placeholder = resized.last().and_then(|smallest| {
        let image = Image::from_vec_u8(
            smallest.width,
            smallest.height,
            smallest.pixels.clone(),
            pixel_type,
        )
        .ok()?;
        placeholder::thumbhash(&image)
    });
    Ok(Built {
        variants: built,
        placeholder,
        resized,
    })
}

/// libwebp leaves the alpha channel out when every pixel is opaque. The
/// source has one (an RGBA PNG, say), so its variants keep one too: the last
/// pixel is made 254/255 opaque, which no eye can tell apart.
fn keep_alpha_channel(rgba: &mut [u8]) {
    if rgba.chunks_exact(4).all(|pixel| pixel[3] == u8::MAX) {
        if let Some(alpha) = rgba.last_mut() {
            *alpha = u8::MAX - 1;
        }
    }
}

/// Target size for a preset width: never wider than the source, aspect kept.
pub fn target_size(width: u32, height: u32, preset_width: u32) -> (u32, u32) {
    let w = preset_width.min(width).max(1);
    let h = ((u64::from(height) * u64::from(w) + u64::from(width) / 2) / u64::from(width)).max(1);
    (w, h as u32)
}

/// Decodes the image as stored; returns it with its ICC profile, if any, and
/// the orientation to show it upright (AVIF/HEIF come out of libheif
/// already upright).
fn decode(
    bytes: &[u8],
    format: Format,
    limits: &Limits,
) -> Result<(DynamicImage, Option<Vec<u8>>, Orientation), String> {
    let Some(image_format) = format.image_format() else {
        let file = heif::HeifFile::read(bytes, limits.max_side)
            .map_err(|e| format!("cannot decode: {e}"))?;
        let image = file.decode().map_err(|e| format!("cannot decode: {e}"))?;
        return Ok((image, file.icc_profile(), Orientation::NoTransforms));
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), image_format);
    reader.limits(limits.decoder_limits());
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| format!("cannot decode: {e}"))?;
    let orientation = super::probe::orientation(&mut decoder);
    // A malformed profile is ignored like malformed EXIF.
    let icc = decoder.icc_profile().ok().flatten();
    let image = DynamicImage::from_decoder(decoder).map_err(|e| format!("cannot decode: {e}"))?;
    Ok((image, icc, orientation))
}

/// The pixels of `image` turned upright (a copy; as is when nothing to do).
fn orient(image: &Image<'_>, has_alpha: bool, orientation: Orientation) -> Result<Vec<u8>, String> {
    let pixels = image.buffer().to_vec();
    if orientation == Orientation::NoTransforms {
        return Ok(pixels);
    }
    let (w, h) = (image.width(), image.height());
    let mut image = if has_alpha {
        image::RgbaImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgba8)
    } else {
        image::RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8)
    }
    .ok_or("resized buffer of the wrong size")?;
    image.apply_orientation(orientation);
    Ok(image.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presets() -> Vec<Preset> {
        [("1x", 400), ("2x", 800), ("large", 1600)]
            .into_iter()
            .map(|(name, width)| Preset {
                name: name.into(),
                width,
            })
            .collect()
    }

    fn encode(image: DynamicImage, format: image::ImageFormat) -> Vec<u8> {
        let mut out = Vec::new();
        image.write_to(&mut Cursor::new(&mut out), format).unwrap();
        out
    }

    #[test]
    fn target_sizes_keep_the_aspect_and_never_upscale() {
        assert_eq!(target_size(4032, 3024, 400), (400, 300));
        assert_eq!(target_size(3024, 4032, 800), (800, 1067));
        assert_eq!(target_size(300, 200, 1600), (300, 200));
        assert_eq!(target_size(10_000, 1, 400), (400, 1));
    }

    #[test]
    fn variants_are_lossy_webp_of_the_preset_widths() {
        let source = DynamicImage::ImageRgb8(image::RgbImage::from_fn(1000, 500, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        }));
        let bytes = encode(source, image::ImageFormat::Png);
        let built =
            build_variants(&bytes, Format::Png, &presets(), 80.0, &Limits::default()).unwrap();
        assert!(
            built.placeholder.is_some(),
            "every decodable image gets a placeholder"
        );
        let built = built.variants;
        let sizes: Vec<_> = built
            .iter()
            .map(|v| (v.name.as_str(), v.width, v.height))
            .collect();
        assert_eq!(
            sizes,
            vec![("1x", 400, 200), ("2x", 800, 400), ("large", 1000, 500)]
        );
        for variant in &built {
            assert_eq!(&variant.webp[..4], b"RIFF");
            assert_eq!(&variant.webp[12..16], b"VP8 ", "lossy WebP, not VP8L");
            let decoded =
                image::load_from_memory_with_format(&variant.webp, image::ImageFormat::WebP)
                    .unwrap();
            assert_eq!(
                (decoded.width(), decoded.height()),
                (variant.width, variant.height)
            );
        }
    }

    #[test]
    fn alpha_is_kept() {
        let source = DynamicImage::ImageRgba8(image::RgbaImage::from_fn(64, 64, |x, _| {
            image::Rgba([255, 0, 0, if x < 32 { 0 } else { 255 }])
        }));
        let bytes = encode(source, image::ImageFormat::Png);
        let built =
            build_variants(&bytes, Format::Png, &presets(), 80.0, &Limits::default()).unwrap();
        let decoded = image::load_from_memory(&built.variants[0].webp).unwrap();
        assert!(decoded.color().has_alpha());
        assert_eq!(decoded.to_rgba8().get_pixel(5, 5)[3], 0);
    }

    #[test]
    fn an_opaque_alpha_channel_is_kept() {
        let source = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            64,
            64,
            image::Rgba([0, 90, 200, 255]),
        ));
        let bytes = encode(source, image::ImageFormat::Png);
        let built =
            build_variants(&bytes, Format::Png, &presets(), 80.0, &Limits::default()).unwrap();
        let decoded = image::load_from_memory(&built.variants[0].webp).unwrap();
        assert!(decoded.color().has_alpha());
        let opaque = decoded.to_rgba8().pixels().filter(|p| p[3] == 255).count();
        assert!(opaque >= 64 * 64 - 1, "{opaque} opaque pixels");
    }

    #[test]
    fn garbage_after_a_valid_signature_fails_with_a_reason() {
        let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
        bytes.extend_from_slice(&[7; 64]);
        let err =
            build_variants(&bytes, Format::Png, &presets(), 80.0, &Limits::default()).unwrap_err();
        assert!(err.contains("cannot decode"), "{err}");
    }
}

#[cfg(test)]
mod orientation {
    use super::*;
    use image::{codecs::png::PngEncoder, ExtendedColorType, ImageEncoder, Rgb, RgbImage};

    /// A big-endian TIFF block with one IFD entry: Orientation = `value`.
    fn exif(value: u16) -> Vec<u8> {
        let mut tiff = b"MM\0*\0\0\0\x08\0\x01".to_vec();
        tiff.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1]);
        tiff.extend_from_slice(&value.to_be_bytes());
        tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        tiff
    }

    #[test]
    fn each_of_the_eight_exif_orientations_gives_the_upright_pixels() {
        let source = RgbImage::from_fn(48, 24, |x, y| {
            Rgb([(x * 5) as u8, (y * 10) as u8, if x < 20 { 200 } else { 30 }])
        });
        let presets = [Preset {
            name: "1x".into(),
            width: 400,
        }];
        for value in 1..=8u16 {
            let mut png = Vec::new();
            let mut encoder = PngEncoder::new(&mut png);
            encoder.set_exif_metadata(exif(value)).unwrap();
            encoder
                .write_image(source.as_raw(), 48, 24, ExtendedColorType::Rgb8)
                .unwrap();
            let built =
                build_variants(&png, Format::Png, &presets, 90.0, &Limits::default()).unwrap();
            let mut expected = DynamicImage::ImageRgb8(source.clone());
            expected.apply_orientation(Orientation::from_exif(value as u8).unwrap());
            let variant = &built.resized[0];
            assert_eq!(
                (variant.width, variant.height),
                (expected.width(), expected.height()),
                "orientation {value}"
            );
            assert!(
                variant.pixels == expected.to_rgb8().into_raw(),
                "orientation {value}: pixels differ from the upright source"
            );
            assert_eq!(
                (built.variants[0].width, built.variants[0].height),
                (variant.width, variant.height)
            );
        }
    }
}

#[cfg(test)]
mod corpus_pixels {
    use super::*;

    fn corpus(name: &str) -> Option<Vec<u8>> {
        let root = std::env::var("CORPUS_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| {
                std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus")
            });
        std::fs::read(root.join("odd").join(name)).ok()
    }

    fn variant(name: &str) -> Option<image::RgbImage> {
        let bytes = corpus(name)?;
        let format = super::super::sniff(&bytes).unwrap();
        let presets = vec![Preset {
            name: "1x".into(),
            width: 400,
        }];
        let built = build_variants(&bytes, format, &presets, 90.0, &Limits::default()).unwrap();
        Some(
            image::load_from_memory(&built.variants[0].webp)
                .unwrap()
                .to_rgb8(),
        )
    }

    #[test]
    fn colours_match_a_colour_managed_reference_decode() {
        // Means of Pillow 12 decodes (CMYK converted by Pillow; ICC files
        // converted to sRGB with ImageCms), per EXPECTED.tsv within 8/255.
        for (name, reference) in [
            ("pil_sample_cmyk.jpg", [30.2, 5.4, 7.4]),
            ("flower2.jpg", [116.4, 78.9, 77.2]),
            ("icc_profile.png", [200.8, 182.3, 170.5]),
        ] {
            let Some(image) = variant(name) else { continue };
            let mean = {
                let n = f64::from(image.width() * image.height());
                let mut sum = [0f64; 3];
                for p in image.pixels() {
                    for (c, s) in sum.iter_mut().enumerate() {
                        *s += f64::from(p[c]);
                    }
                }
                sum.map(|s| s / n)
            };
            for c in 0..3 {
                assert!(
                    (mean[c] - reference[c]).abs() <= 8.0,
                    "{name}: mean {mean:?}, reference {reference:?}"
                );
            }
        }
    }

    fn mean_difference(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
        a.pixels()
            .zip(b.pixels())
            .map(|(a, b)| (0..3).map(|c| f64::from(a[c].abs_diff(b[c]))).sum::<f64>())
            .sum::<f64>()
            / f64::from(a.width() * a.height() * 3)
    }

    #[test]
    fn a_heic_photo_decodes_to_the_pixels_of_its_jpeg() {
        let (Some(jpeg), Some(heic)) = (variant("hopper.jpg"), variant("avif_hopper.heif")) else {
            return;
        };
        assert_eq!(heic.dimensions(), jpeg.dimensions());
        let diff = mean_difference(&heic, &jpeg);
        assert!(diff < 12.0, "mean difference {diff:.1} from hopper.jpg");
    }

    #[test]
    fn truncated_or_damaged_avif_and_heic_fail_with_a_reason() {
        for name in ["avif_hopper.heif", "avif_rot1mir0.avif"] {
            let Some(bytes) = corpus(name) else { continue };
            let format = super::super::sniff(&bytes).unwrap();
            let presets = [Preset {
                name: "1x".into(),
                width: 400,
            }];
            let mut refused = 0;
            for cut in (16..bytes.len()).step_by(bytes.len() / 40) {
                let mut damaged = bytes.clone();
                // Cut short, and with the byte at the cut flipped further in.
                damaged.truncate(cut);
                if let Some(b) = damaged.get_mut(cut / 2) {
                    *b ^= 0x5A;
                }
                let probed = super::super::probe(&damaged, format, &Limits::default());
                let built = build_variants(&damaged, format, &presets, 80.0, &Limits::default());
                if let Err(e) = &built {
                    assert!(e.starts_with("cannot decode"), "{name} cut at {cut}: {e}");
                }
                refused += usize::from(probed.is_err() || built.is_err());
            }
            assert!(refused > 0, "{name}: no damaged copy was refused");
        }
    }

    #[test]
    fn avif_rotation_and_mirror_are_applied_as_browsers_show_them() {
        let Some(image) = variant("avif_rot1mir0.avif") else {
            return;
        };
        // Stored 427x640 and rotated a quarter turn by `irot`: shown as a
        // landscape with the sky at the top.
        assert_eq!(image.dimensions(), (400, 267));
        let blue = |rows: std::ops::Range<u32>| {
            let mut sum = 0i64;
            for y in rows.clone() {
                for x in 0..image.width() {
                    let p = image.get_pixel(x, y);
                    sum += i64::from(p[2]) - i64::from(p[1]);
                }
            }
            sum / i64::from(image.width() * rows.len() as u32)
        };
        let (top, bottom) = (blue(0..20), blue(247..267));
        assert!(
            top > bottom + 20,
            "top rows should be sky: blue-green {top} at the top, {bottom} at the bottom"
        );
    }

    #[test]
    fn every_exif_orientation_gives_the_pixels_of_the_upright_image() {
        let Some(upright) = variant("hopper.jpg") else {
            return;
        };
        for name in [
            "hopper_orientation_2.jpg",
            "hopper_orientation_3.jpg",
            "hopper_orientation_4.jpg",
            "hopper_orientation_6.jpg",
            "hopper_orientation_8.jpg",
            "hopper_orientation_6.webp",
        ] {
            let Some(image) = variant(name) else { continue };
            assert_eq!(image.dimensions(), upright.dimensions(), "{name}");
            let diff = mean_difference(&image, &upright);
            assert!(
                diff < 12.0,
                "{name}: mean difference {diff:.1} from hopper.jpg"
            );
        }
    }
}
