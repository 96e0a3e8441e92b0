//! AVIF and HEIF/HEIC input through libheif (Debian's `libheif1`, 1.15 or
//! newer, with its libde265, dav1d and aom decoders). Only the handful of
//! calls needed to read the primary image are bound here; they have been in
//! libheif's C API since 1.x.
//!
//! libheif applies the container's transforms (`irot`, `imir`, `clap`) while
//! decoding, and the width and height it reports for a handle are the
//! transformed ones, so callers see the image as browsers show it.
use image::{DynamicImage, RgbImage, RgbaImage};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::marker::PhantomData;

#[allow(non_camel_case_types)]
mod ffi {
    use super::*;

    #[repr(C)]
    pub struct heif_context {
        _private: [u8; 0],
    }
    #[repr(C)]
    pub struct heif_image_handle {
        _private: [u8; 0],
    }
    #[repr(C)]
    pub struct heif_image {
        _private: [u8; 0],
    }

    #[repr(C)]
    pub struct heif_error {
        pub code: c_int,
        pub subcode: c_int,
        pub message: *const c_char,
    }

    /// Only the fields up to `convert_hdr_to_8bit` (version 2) are touched;
    /// the struct itself always comes from `heif_decoding_options_alloc`.
    #[repr(C)]
    pub struct heif_decoding_options {
        pub version: u8,
        pub ignore_transformations: u8,
        pub start_progress: *const c_void,
        pub on_progress: *const c_void,
        pub end_progress: *const c_void,
        pub progress_user_data: *mut c_void,
        pub convert_hdr_to_8bit: u8,
    }

    pub const COLORSPACE_RGB: c_int = 1;
    pub const CHROMA_INTERLEAVED_RGB: c_int = 10;
    pub const CHROMA_INTERLEAVED_RGBA: c_int = 11;
    pub const CHANNEL_INTERLEAVED: c_int = 10;

    #[link(name = "heif")]
    extern "C" {
        pub fn heif_context_alloc() -> *mut heif_context;
        pub fn heif_context_free(ctx: *mut heif_context);
        pub fn heif_context_set_maximum_image_size_limit(ctx: *mut heif_context, max: c_int);
        pub fn heif_context_set_max_decoding_threads(ctx: *mut heif_context, threads: c_int);
        pub fn heif_context_read_from_memory_without_copy(
            ctx: *mut heif_context,
            mem: *const c_void,
            size: usize,
            options: *const c_void,
        ) -> heif_error;
        pub fn heif_context_get_primary_image_handle(
            ctx: *mut heif_context,
            handle: *mut *mut heif_image_handle,
        ) -> heif_error;
        pub fn heif_image_handle_release(handle: *const heif_image_handle);
        pub fn heif_image_handle_get_width(handle: *const heif_image_handle) -> c_int;
        pub fn heif_image_handle_get_height(handle: *const heif_image_handle) -> c_int;
        pub fn heif_image_handle_has_alpha_channel(handle: *const heif_image_handle) -> c_int;
        pub fn heif_image_handle_get_raw_color_profile_size(
            handle: *const heif_image_handle,
        ) -> usize;
        pub fn heif_image_handle_get_raw_color_profile(
            handle: *const heif_image_handle,
            out: *mut c_void,
        ) -> heif_error;
        pub fn heif_decoding_options_alloc() -> *mut heif_decoding_options;
        pub fn heif_decoding_options_free(options: *mut heif_decoding_options);
        pub fn heif_decode_image(
            handle: *const heif_image_handle,
            out: *mut *mut heif_image,
            colorspace: c_int,
            chroma: c_int,
            options: *const heif_decoding_options,
        ) -> heif_error;
        pub fn heif_image_get_width(image: *const heif_image, channel: c_int) -> c_int;
        pub fn heif_image_get_height(image: *const heif_image, channel: c_int) -> c_int;
        pub fn heif_image_get_plane_readonly(
            image: *const heif_image,
            channel: c_int,
            stride: *mut c_int,
        ) -> *const u8;
        pub fn heif_image_release(image: *const heif_image);
    }
}

/// `Err` with libheif's message unless the call succeeded.
fn check(error: ffi::heif_error) -> Result<(), String> {
    if error.code == 0 {
        return Ok(());
    }
    let message = if error.message.is_null() {
        String::new()
    } else {
        // SAFETY: libheif's messages are static, NUL-terminated strings.
        unsafe { CStr::from_ptr(error.message) }
            .to_string_lossy()
            .into_owned()
    };
    Err(format!("{message} (libheif error {})", error.code))
}

/// The primary image of an AVIF or HEIF file, read from memory. Reading
/// parses the boxes only; pixels are decoded by [`HeifFile::decode`].
pub struct HeifFile<'a> {
    context: *mut ffi::heif_context,
    handle: *mut ffi::heif_image_handle,
    /// libheif reads `bytes` in place: they must outlive the context.
    _bytes: PhantomData<&'a [u8]>,
}

impl<'a> HeifFile<'a> {
    /// Parses the container. `max_side` is also handed to libheif, which
    /// refuses larger images before allocating anything for them.
    pub fn read(bytes: &'a [u8], max_side: u32) -> Result<Self, String> {
        // SAFETY: every pointer passed is valid for the call; the context
        // and handle are owned by the returned value and released in Drop.
        unsafe {
            let context = ffi::heif_context_alloc();
            if context.is_null() {
                return Err("libheif could not allocate a context".into());
            }
            let mut file = Self {
                context,
                handle: std::ptr::null_mut(),
                _bytes: PhantomData,
            };
            ffi::heif_context_set_maximum_image_size_limit(
                context,
                c_int::try_from(max_side).unwrap_or(c_int::MAX),
            );
            // Images are already decoded in parallel, one per pool thread.
            ffi::heif_context_set_max_decoding_threads(context, 0);
            check(ffi::heif_context_read_from_memory_without_copy(
                context,
                bytes.as_ptr().cast(),
                bytes.len(),
                std::ptr::null(),
            ))?;
            check(ffi::heif_context_get_primary_image_handle(
                context,
                &mut file.handle,
            ))?;
            Ok(file)
        }
    }

    /// Width and height as displayed (after `irot`/`imir`/`clap`).
    pub fn dimensions(&self) -> (u32, u32) {
        // SAFETY: the handle is valid while self lives.
        let (w, h) = unsafe {
            (
                ffi::heif_image_handle_get_width(self.handle),
                ffi::heif_image_handle_get_height(self.handle),
            )
        };
        (w.max(0) as u32, h.max(0) as u32)
    }

    pub fn has_alpha(&self) -> bool {
        // SAFETY: the handle is valid while self lives.
        unsafe { ffi::heif_image_handle_has_alpha_channel(self.handle) != 0 }
    }

    /// The embedded ICC profile (`colr` of type `prof`/`rICC`), if any.
    pub fn icc_profile(&self) -> Option<Vec<u8>> {
        // SAFETY: the buffer is exactly the size libheif asked for.
        unsafe {
            let size = ffi::heif_image_handle_get_raw_color_profile_size(self.handle);
            if size == 0 {
                return None;
            }
            let mut profile = vec![0u8; size];
            check(ffi::heif_image_handle_get_raw_color_profile(
                self.handle,
                profile.as_mut_ptr().cast(),
            ))
            .ok()?;
            Some(profile)
        }
    }

    /// Decodes to 8-bit sRGB-or-tagged RGB(A), transforms applied.
    pub fn decode(&self) -> Result<DynamicImage, String> {
        let alpha = self.has_alpha();
        let chroma = if alpha {
            ffi::CHROMA_INTERLEAVED_RGBA
        } else {
            ffi::CHROMA_INTERLEAVED_RGB
        };
        let channels = if alpha { 4 } else { 3 };
        // SAFETY: the options come from libheif and are freed here; the
        // decoded image is released before returning, after its plane has
        // been copied row by row within the bounds libheif reported.
        unsafe {
            let options = ffi::heif_decoding_options_alloc();
            if !options.is_null() && (*options).version >= 2 {
                (*options).convert_hdr_to_8bit = 1;
            }
            let mut image: *mut ffi::heif_image = std::ptr::null_mut();
            let decoded = check(ffi::heif_decode_image(
                self.handle,
                &mut image,
                ffi::COLORSPACE_RGB,
                chroma,
                options,
            ));
            if !options.is_null() {
                ffi::heif_decoding_options_free(options);
            }
            decoded?;
            let _release = Release(image);
            let width = ffi::heif_image_get_width(image, ffi::CHANNEL_INTERLEAVED);
            let height = ffi::heif_image_get_height(image, ffi::CHANNEL_INTERLEAVED);
            let mut stride: c_int = 0;
            let plane =
                ffi::heif_image_get_plane_readonly(image, ffi::CHANNEL_INTERLEAVED, &mut stride);
            let row = usize::try_from(width).unwrap_or(0) * channels;
            if plane.is_null() || width <= 0 || height <= 0 || (stride as usize) < row {
                return Err("libheif returned no pixels".into());
            }
            let (width, height) = (width as u32, height as u32);
            let mut pixels = Vec::with_capacity(row * height as usize);
            for y in 0..height as usize {
                let start = plane.add(y * stride as usize);
                pixels.extend_from_slice(std::slice::from_raw_parts(start, row));
            }
            let image = if alpha {
                RgbaImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgba8)
            } else {
                RgbImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgb8)
            };
            image.ok_or_else(|| "libheif returned a short plane".into())
        }
    }
}

impl Drop for HeifFile<'_> {
    fn drop(&mut self) {
        // SAFETY: both were allocated by libheif and are released once.
        unsafe {
            if !self.handle.is_null() {
                ffi::heif_image_handle_release(self.handle);
            }
            ffi::heif_context_free(self.context);
        }
    }
}

/// Releases a decoded image when it goes out of scope.
struct Release(*mut ffi::heif_image);

impl Drop for Release {
    fn drop(&mut self) {
        // SAFETY: the image came from heif_decode_image and is released once.
        unsafe { ffi::heif_image_release(self.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_with_libheifs_reason() {
        let error = HeifFile::read(b"\0\0\0\x18ftypheic\0\0\0\0heicmif1", 16_384)
            .err()
            .expect("not a HEIF file");
        assert!(error.contains("libheif error"), "{error}");
    }

    #[test]
    fn an_empty_buffer_is_an_error() {
        assert!(HeifFile::read(b"", 16_384).is_err());
    }
}
