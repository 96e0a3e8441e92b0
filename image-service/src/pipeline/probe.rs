//! Reads dimensions and orientation from the header, and enforces the size
//! limits, before anything is decoded.
use super::Format;
use image::{ImageDecoder, ImageReader};
use serde::{Deserialize, Serialize};
use std::io::Cursor;

/// Upload and decode limits.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_pixels: u64,
    pub max_side: u32,
    /// Memory the decoder may allocate for one image.
    pub max_decode_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 25 * 1024 * 1024,
            max_pixels: 50_000_000,
            max_side: 16_384,
            max_decode_bytes: 512 * 1024 * 1024,
        }
    }
}

impl Limits {
    pub(crate) fn decoder_limits(&self) -> image::Limits {
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(self.max_side);
        limits.max_image_height = Some(self.max_side);
        limits.max_alloc = Some(self.max_decode_bytes);
        limits
    }
}

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Width as displayed, after EXIF orientation.
    pub width: u32,
    /// Height as displayed, after EXIF orientation.
    pub height: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    TooLarge(String),
    #[error("the image header cannot be read: {0}")]
    Unreadable(String),
}

/// Reads the header of `bytes` (already sniffed as `format`). A panic in a
/// header reader is caught and reported as an unreadable header: uploads
/// are probed on the request's own thread.
pub fn probe(bytes: &[u8], format: Format, limits: &Limits) -> Result<Probe, ProbeError> {
    std::panic::catch_unwind(|| read_header(bytes, format, limits)).unwrap_or_else(|_| {
        Err(ProbeError::Unreadable(
            "the header reader crashed on this file".into(),
        ))
    })
}

fn read_header(bytes: &[u8], format: Format, limits: &Limits) -> Result<Probe, ProbeError> {
    if format == Format::Gif {
        if let Some((width, height)) = first_gif_frame(bytes) {
            // The logical screen can be small while a frame declares a huge
            // size: the frame is what gets decoded.
            check_dimensions(width, height, limits)?;
        }
    }
    let Some(image_format) = format.image_format() else {
        // AVIF/HEIF: libheif reads the boxes only, and reports the size as
        // displayed (its transforms included).
        let file = heif::HeifFile::read(bytes, limits.max_side).map_err(ProbeError::Unreadable)?;
        let (width, height) = file.dimensions();
        check_dimensions(width, height, limits)?;
        if width == 0 || height == 0 {
            return Err(ProbeError::Unreadable("zero-sized image".into()));
        }
        return Ok(Probe { width, height });
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), image_format);
    reader.limits(limits.decoder_limits());
    let mut decoder = reader.into_decoder().map_err(classify)?;
    let (width, height) = decoder.dimensions();
    check_dimensions(width, height, limits)?;
    if width == 0 || height == 0 {
        return Err(ProbeError::Unreadable("zero-sized image".into()));
    }
    let orientation = orientation(&mut decoder);
    let (width, height) = if swaps_sides(orientation) {
        (height, width)
    } else {
        (width, height)
    };
    Ok(Probe { width, height })
}

fn check_dimensions(width: u32, height: u32, limits: &Limits) -> Result<(), ProbeError> {
    if width > limits.max_side || height > limits.max_side {
        return Err(ProbeError::TooLarge(format!(
            "{width}x{height} exceeds the limit of {} pixels per side",
            limits.max_side
        )));
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(ProbeError::TooLarge(format!(
            "{width}x{height} is {pixels} pixels, over the limit of {}",
            limits.max_pixels
        )));
    }
    Ok(())
}

/// Width and height of the first frame's image descriptor (covering its
/// offset on the canvas), found by walking the GIF blocks without decoding.
fn first_gif_frame(bytes: &[u8]) -> Option<(u32, u32)> {
    let u16_at = |i: usize| Some(u16::from_le_bytes([*bytes.get(i)?, *bytes.get(i + 1)?]) as u32);
    let flags = *bytes.get(10)?;
    let mut at = 13;
    if flags & 0x80 != 0 {
        at += 3 << ((flags & 0x07) + 1);
    }
    loop {
        match *bytes.get(at)? {
            0x2C => {
                let (left, top) = (u16_at(at + 1)?, u16_at(at + 3)?);
                let (width, height) = (u16_at(at + 5)?, u16_at(at + 7)?);
                return Some((left + width, top + height));
            }
            0x21 => {
                // Extension: label, then data sub-blocks up to a zero length.
                at += 2;
                loop {
                    let len = *bytes.get(at)? as usize;
                    at += 1 + len;
                    if len == 0 {
                        break;
                    }
                }
            }
            _ => return None,
        }
    }
}

fn classify(error: image::ImageError) -> ProbeError {
    match error {
        image::ImageError::Limits(e) => {
            ProbeError::TooLarge(format!("the image exceeds a limit: {e}"))
        }
        other => ProbeError::Unreadable(other.to_string()),
    }
}

/// The EXIF orientation; malformed EXIF is ignored (the image is shown as
/// stored). Some writers (Pillow, for WebP) keep the JPEG APP1 prefix
/// `Exif\0\0` in front of the TIFF data; it is skipped.
pub(crate) fn orientation(decoder: &mut impl ImageDecoder) -> image::metadata::Orientation {
    use image::metadata::Orientation;
    match decoder.orientation() {
        Ok(found) if found != Orientation::NoTransforms => found,
        _ => decoder
            .exif_metadata()
            .ok()
            .flatten()
            .and_then(|exif| {
                exif.strip_prefix(b"Exif\0\0")
                    .and_then(Orientation::from_exif_chunk)
            })
            .unwrap_or(Orientation::NoTransforms),
    }
}

pub(crate) fn swaps_sides(orientation: image::metadata::Orientation) -> bool {
    use image::metadata::Orientation::*;
    matches!(
        orientation,
        Rotate90 | Rotate270 | Rotate90FlipH | Rotate270FlipH
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        image::RgbImage::new(width, height)
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn dimensions_come_from_the_header() {
        let probe = probe(&png(30, 20), Format::Png, &Limits::default()).unwrap();
        assert_eq!(
            probe,
            Probe {
                width: 30,
                height: 20
            }
        );
    }

    #[test]
    fn images_over_the_pixel_or_side_limit_are_too_large() {
        let limits = Limits {
            max_pixels: 500,
            ..Limits::default()
        };
        assert!(matches!(
            probe(&png(30, 20), Format::Png, &limits),
            Err(ProbeError::TooLarge(_))
        ));
        let limits = Limits {
            max_side: 25,
            ..Limits::default()
        };
        assert!(matches!(
            probe(&png(30, 20), Format::Png, &limits),
            Err(ProbeError::TooLarge(_))
        ));
    }

    #[test]
    fn a_gif_frame_larger_than_its_screen_is_checked_against_the_limits() {
        // 1x1 screen, no colour table, one frame declaring 60000x60000.
        let mut gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00".to_vec();
        gif.extend_from_slice(&[0x21, 0xF9, 4, 0, 0, 0, 0, 0]);
        gif.extend_from_slice(&[0x2C, 0, 0, 0, 0, 0x60, 0xEA, 0x60, 0xEA, 0]);
        assert_eq!(first_gif_frame(&gif), Some((60_000, 60_000)));
        assert!(matches!(
            probe(&gif, Format::Gif, &Limits::default()),
            Err(ProbeError::TooLarge(_))
        ));
    }

    #[test]
    fn a_corrupt_header_is_unreadable() {
        let mut bytes = png(4, 4);
        bytes.truncate(20);
        assert!(matches!(
            probe(&bytes, Format::Png, &Limits::default()),
            Err(ProbeError::Unreadable(_))
        ));
    }
}
