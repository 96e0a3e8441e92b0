//! Format detection from magic bytes. The declared content type and file name
//! are never trusted.

/// Formats accepted as uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    Webp,
    Gif,
    /// AV1 in HEIF (`ftyp` brand `avif`/`avis`), decoded by libheif.
    Avif,
    /// HEVC in HEIF (HEIC, from phones), decoded by libheif.
    Heif,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Webp => "image/webp",
            Format::Gif => "image/gif",
            Format::Avif => "image/avif",
            Format::Heif => "image/heif",
        }
    }

    pub fn from_content_type(value: &str) -> Option<Self> {
        [
            Format::Jpeg,
            Format::Png,
            Format::Webp,
            Format::Gif,
            Format::Avif,
            Format::Heif,
        ]
        .into_iter()
        .find(|f| f.content_type() == value)
    }

    /// The `image` crate's decoder for it; `None` for the HEIF family,
    /// which libheif decodes.
    pub(crate) fn image_format(self) -> Option<image::ImageFormat> {
        match self {
            Format::Jpeg => Some(image::ImageFormat::Jpeg),
            Format::Png => Some(image::ImageFormat::Png),
            Format::Webp => Some(image::ImageFormat::WebP),
            Format::Gif => Some(image::ImageFormat::Gif),
            Format::Avif | Format::Heif => None,
        }
    }
}

/// Why the bytes are not an accepted format; names what was recognised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

/// Identifies the format from the first bytes.
pub fn sniff(bytes: &[u8]) -> Result<Format, Unsupported> {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return Ok(Format::Jpeg);
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Ok(Format::Png);
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return Ok(Format::Gif);
    }
    if bytes.len() >= 12 && starts(b"RIFF") && &bytes[8..12] == b"WEBP" {
        return Ok(Format::Webp);
    }
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        match &bytes[8..12] {
            b"avif" | b"avis" => return Ok(Format::Avif),
            b"heic" | b"heix" | b"mif1" | b"msf1" | b"heim" | b"heis" | b"hevc" | b"hevx" => {
                return Ok(Format::Heif)
            }
            _ => {}
        }
    }
    let named = if starts(b"II*\0") || starts(b"MM\0*") {
        "TIFF"
    } else if starts(b"BM") {
        "BMP"
    } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        "an ISO media file that is neither AVIF nor HEIF"
    } else {
        "an unknown format"
    };
    Err(Unsupported(format!(
        "the content is {named}; accepted formats are JPEG, PNG, WebP, GIF, AVIF and HEIF"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_recognised_by_their_magic_bytes() {
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Ok(Format::Jpeg));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Ok(Format::Png));
        assert_eq!(sniff(b"GIF89a..."), Ok(Format::Gif));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Ok(Format::Webp));
        assert_eq!(sniff(b"\0\0\0\x20ftypavif...."), Ok(Format::Avif));
        assert_eq!(sniff(b"\0\0\0\x18ftypheic...."), Ok(Format::Heif));
    }

    #[test]
    fn other_formats_are_refused_and_named() {
        assert!(sniff(b"BM....").unwrap_err().0.contains("BMP"));
        assert!(sniff(b"II*\0....").unwrap_err().0.contains("TIFF"));
        assert!(sniff(b"\0\0\0\x18ftypmp42....")
            .unwrap_err()
            .0
            .contains("neither AVIF nor HEIF"));
        assert!(sniff(b"").unwrap_err().0.contains("unknown"));
        assert!(sniff(b"RIFF\0\0\0\0WAVE").is_err());
    }
}
