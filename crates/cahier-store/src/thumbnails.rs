//! Thumbnails of image attachments, for lists and previews: at most [`THUMB_PIXELS`] on the
//! longer side, JPEG (PNG when the image has transparency). Made on first request from the
//! blob, then kept under `<blobs>/thumbs/` — except in an encrypted store (a field replica),
//! where nothing derived from a file is written in clear, so they are made each time. A
//! thumbnail is a cache: deleting the folder loses nothing; the sweep removes those whose file
//! is gone.

use crate::blobs::BlobError;
use crate::uploads::UploadRow;
use crate::{Result, Store, StoreError};
use std::io::Cursor;

/// Longer side of a thumbnail, in pixels.
pub const THUMB_PIXELS: u32 = 256;
/// Largest file a thumbnail is made of (decoding costs memory in proportion).
pub const THUMB_SOURCE_MAX_BYTES: i64 = 50 * 1024 * 1024;
/// Largest image, in pixels per side, a thumbnail is made of.
const MAX_SIDE: u32 = 20_000;

/// Media types a thumbnail is made for.
pub const THUMB_MEDIA_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// A thumbnail's bytes and media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    /// Encoded image.
    pub bytes: Vec<u8>,
    /// `image/jpeg` or `image/png`.
    pub media_type: &'static str,
}

fn io(error: std::io::Error) -> StoreError {
    StoreError::Conflict(format!("thumbnail storage: {error}"))
}

/// Whether an attachment of this type and size gets a thumbnail.
pub fn has_thumbnail(media_type: &str, size: i64) -> bool {
    THUMB_MEDIA_TYPES.contains(&media_type) && size <= THUMB_SOURCE_MAX_BYTES
}

fn make(bytes: &[u8]) -> Option<Thumbnail> {
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(1024 * 1024 * 1024);
    reader.limits(limits);
    let picture = reader.decode().ok()?;
    let small = picture.thumbnail(THUMB_PIXELS, THUMB_PIXELS);
    let mut out = Cursor::new(Vec::new());
    if small.color().has_alpha() {
        small
            .to_rgba8()
            .write_to(&mut out, image::ImageFormat::Png)
            .ok()?;
        Some(Thumbnail {
            bytes: out.into_inner(),
            media_type: "image/png",
        })
    } else {
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
            .encode_image(&small.to_rgb8())
            .ok()?;
        Some(Thumbnail {
            bytes: out.into_inner(),
            media_type: "image/jpeg",
        })
    }
}

impl Store {
    /// The thumbnail of an attachment the caller has already been allowed to read (its row
    /// came through the access policy); `None` for files that get none or do not decode.
    pub async fn thumbnail(&self, row: &UploadRow) -> Result<Option<Thumbnail>> {
        if !has_thumbnail(&row.media_type, row.size) {
            return Ok(None);
        }
        let blobs = self.blob_store()?;
        let cache = blobs.root().join("thumbs");
        let cached = |ext: &str| cache.join(format!("{}.{ext}", row.sha256));
        if !blobs.is_encrypted() {
            for (ext, media_type) in [("jpg", "image/jpeg"), ("png", "image/png")] {
                match tokio::fs::read(cached(ext)).await {
                    Ok(bytes) => return Ok(Some(Thumbnail { bytes, media_type })),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => return Err(io(error)),
                }
            }
        }
        let mut reader = match blobs.open(&row.sha256).await {
            Ok(reader) => reader,
            Err(BlobError::NotFound | BlobError::Unreadable) => return Ok(None),
            Err(error) => return Err(StoreError::Conflict(error.to_string())),
        };
        let mut bytes = Vec::new();
        loop {
            match reader.next_chunk().await {
                Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(BlobError::Unreadable) => return Ok(None),
                Err(error) => return Err(StoreError::Conflict(error.to_string())),
            }
        }
        let thumbnail = tokio::task::spawn_blocking(move || make(&bytes))
            .await
            .map_err(|e| StoreError::Conflict(format!("making a thumbnail: {e}")))?;
        let Some(thumbnail) = thumbnail else {
            return Ok(None);
        };
        if !blobs.is_encrypted() {
            // Written whole under a temporary name, then renamed: a reader never sees half.
            tokio::fs::create_dir_all(&cache).await.map_err(io)?;
            let ext = if thumbnail.media_type == "image/png" {
                "png"
            } else {
                "jpg"
            };
            let tmp = cache.join(format!(".{}-{}", row.sha256, crate::random_hex(8)));
            tokio::fs::write(&tmp, &thumbnail.bytes).await.map_err(io)?;
            tokio::fs::rename(&tmp, cached(ext)).await.map_err(io)?;
        }
        Ok(Some(thumbnail))
    }
}
