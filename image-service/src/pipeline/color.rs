//! Colour: pixels tagged with an RGB ICC profile (Display P3 from phones,
//! Adobe RGB from cameras) are converted to sRGB, because variants carry no
//! profile and browsers show untagged images as sRGB.
use moxcms::{ColorProfile, DataColorSpace, Layout, TransformOptions};

/// A conversion to sRGB, built once per image.
pub struct ToSrgb {
    transform: std::sync::Arc<moxcms::Transform8BitExecutor>,
}

impl ToSrgb {
    /// `None` when there is nothing to do: no profile, a profile that is not
    /// RGB (grey and CMYK sources are already converted by the decoder), or
    /// one that cannot be parsed (then the pixels are taken as sRGB).
    pub fn from_icc(icc: Option<&[u8]>, alpha: bool) -> Option<Self> {
        let profile = ColorProfile::new_from_slice(icc?)
            .inspect_err(|e| tracing::debug!(error = %format_args!("{e:#}"), "ignoring unreadable ICC profile"))
            .ok()?;
        if profile.color_space != DataColorSpace::Rgb {
            return None;
        }
        let layout = if alpha { Layout::Rgba } else { Layout::Rgb };
        let transform = profile
            .create_transform_8bit(
                layout,
                &ColorProfile::new_srgb(),
                layout,
                TransformOptions::default(),
            )
            .inspect_err(|e| tracing::debug!(error = %format_args!("{e:#}"), "ignoring unusable ICC profile"))
            .ok()?;
        Some(Self { transform })
    }

    /// Converts interleaved 8-bit pixels in place.
    pub fn apply(&self, pixels: &mut [u8]) {
        let source = pixels.to_vec();
        if let Err(e) = self.transform.transform(&source, pixels) {
            tracing::warn!(error = %format_args!("{e:#}"), "colour conversion failed; pixels kept as decoded");
            pixels.copy_from_slice(&source);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_profile_or_a_non_rgb_profile_means_no_conversion() {
        assert!(ToSrgb::from_icc(None, false).is_none());
        assert!(ToSrgb::from_icc(Some(b"not a profile"), false).is_none());
    }

    #[test]
    fn an_srgb_profile_leaves_pixels_nearly_unchanged() {
        let icc = ColorProfile::new_srgb().encode().unwrap();
        let convert = ToSrgb::from_icc(Some(&icc), false).expect("an RGB profile");
        let mut pixels = vec![10, 128, 250, 200, 30, 90];
        let before = pixels.clone();
        convert.apply(&mut pixels);
        for (a, b) in before.iter().zip(&pixels) {
            assert!(a.abs_diff(*b) <= 2, "{before:?} -> {pixels:?}");
        }
    }

    #[test]
    fn a_wide_gamut_profile_changes_saturated_colours() {
        let icc = ColorProfile::new_display_p3().encode().unwrap();
        let convert = ToSrgb::from_icc(Some(&icc), false).expect("an RGB profile");
        // Pure P3 green is outside sRGB: its red channel clips to 0 and the
        // green stays at the top, while a P3 mid-grey stays grey.
        let mut pixels = vec![0, 255, 0, 128, 128, 128];
        convert.apply(&mut pixels);
        assert_eq!(pixels[0], 0);
        assert!(pixels[1] >= 250);
        assert!(pixels[3].abs_diff(128) <= 2 && pixels[3].abs_diff(pixels[4]) <= 1);
    }
}
