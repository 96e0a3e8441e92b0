//! Image work that needs no I/O: sniffing the format, reading the header
//! within limits, and building variants. Everything here is CPU-bound and
//! synchronous; callers run it on the blocking pool.
pub mod avif;
pub mod color;
pub mod format;
pub mod placeholder;
pub mod probe;
pub mod variants;

pub use format::{sniff, Format};
pub use probe::{probe, Limits, Probe, ProbeError};
pub use variants::{build_variants, Built, BuiltVariant, Preset, Resized};
