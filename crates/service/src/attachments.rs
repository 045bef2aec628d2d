//! Attachments: evidence photos and documents. An upload is checked by its content (JPEG, PNG, WebP or
//! PDF, at most [`MAX_ATTACHMENT_BYTES`], whatever the client claims), stored once by SHA-256 — on the
//! local disk, or in the database when several app nodes share it — and described by its metadata:
//! the EXIF time and GPS position of a photo, its size in pixels, and a small JPEG thumbnail.
//!
//! An attachment belongs to its uploader until a report or a transition names it by id; the store links
//! it to that case in the same transaction, and from then on whoever may see the case may see it.

use std::io::Cursor;
use std::path::PathBuf;

use civicgrid_core::access::Actor;
use civicgrid_core::case::{Attachment, GeoPoint, MAX_ATTACHMENT_BYTES};
use civicgrid_store::StoredAttachment;
use jiff::Timestamp;

use crate::accounts::sha256_hex;
use crate::{ServiceError, ServiceResult, Services};

/// The longest side of a thumbnail, in pixels.
pub const THUMB_SIZE: u32 = 320;
/// Images larger than this many pixels are not decoded (a decompression bomb guard).
const MAX_PIXELS: u64 = 50_000_000;

/// Where attachment content is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobStorage {
    /// Files under this folder, named by SHA-256 (one machine; the default with SQLite).
    Disk(PathBuf),
    /// The database's `blobs` table (several app nodes on one PostgreSQL).
    Database,
}

/// Content to send back.
#[derive(Debug)]
pub enum Content {
    /// A file to stream.
    File(tokio::fs::File),
    /// Bytes from the database.
    Bytes(Vec<u8>),
}

/// The content type of a file, from its first bytes; `None` for anything not accepted.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        [0xFF, 0xD8, 0xFF, ..] => Some("image/jpeg"),
        [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some("image/png"),
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Some("image/webp"),
        [b'%', b'P', b'D', b'F', b'-', ..] => Some("application/pdf"),
        _ => None,
    }
}

/// What a photo says about itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhotoFacts {
    /// EXIF DateTimeOriginal, read as China time when it carries no offset.
    pub taken_at: Option<Timestamp>,
    /// EXIF GPS position.
    pub location: Option<GeoPoint>,
}

/// Reads the EXIF time and GPS position of a photo, when it has them.
pub fn photo_facts(bytes: &[u8]) -> PhotoFacts {
    let Ok(exif) = exif::Reader::new().read_from_container(&mut Cursor::new(bytes)) else {
        return PhotoFacts::default();
    };
    let field = |tag| exif.get_field(tag, exif::In::PRIMARY);
    let taken_at =
        field(exif::Tag::DateTimeOriginal).or_else(|| field(exif::Tag::DateTime)).and_then(|f| match &f.value {
            exif::Value::Ascii(v) => v.first().and_then(|raw| exif::DateTime::from_ascii(raw).ok()),
            _ => None,
        });
    let taken_at = taken_at.and_then(|d| {
        let small = |v: u8| i8::try_from(v).ok();
        let date = jiff::civil::Date::new(i16::try_from(d.year).ok()?, small(d.month)?, small(d.day)?).ok()?;
        let civil = date.at(small(d.hour)?, small(d.minute)?, small(d.second)?, 0);
        let offset_minutes = d.offset.map_or(8 * 60, i32::from);
        let offset = jiff::tz::Offset::from_seconds(offset_minutes * 60).ok()?;
        offset.to_timestamp(civil).ok()
    });
    let coordinate = |value_tag, ref_tag, negative: &[u8]| -> Option<f64> {
        let exif::Value::Rational(parts) = &field(value_tag)?.value else { return None };
        let [d, m, s] = parts.as_slice() else { return None };
        let degrees = d.to_f64() + m.to_f64() / 60.0 + s.to_f64() / 3600.0;
        let sign = match &field(ref_tag).map(|f| &f.value) {
            Some(exif::Value::Ascii(v)) if v.first().is_some_and(|r| negative.contains(r.first().unwrap_or(&b' '))) => {
                -1.0
            }
            _ => 1.0,
        };
        Some(sign * degrees).filter(|v| v.is_finite())
    };
    let lat = coordinate(exif::Tag::GPSLatitude, exif::Tag::GPSLatitudeRef, b"S");
    let lon = coordinate(exif::Tag::GPSLongitude, exif::Tag::GPSLongitudeRef, b"W");
    let location = lat
        .zip(lon)
        .filter(|(lat, lon)| lat.abs() <= 90.0 && lon.abs() <= 180.0)
        // 0°, 0° is what a camera without a fix writes, not a place in a Chinese town.
        .filter(|(lat, lon)| *lat != 0.0 || *lon != 0.0)
        .map(|(lat, lon)| GeoPoint { lon, lat });
    PhotoFacts { taken_at, location }
}

/// The pixel size of an image and a JPEG thumbnail of it, or `None` when it cannot be decoded.
pub fn thumbnail(bytes: &[u8]) -> Option<(u32, u32, Vec<u8>)> {
    let reader = image::ImageReader::new(Cursor::new(bytes)).with_guessed_format().ok()?;
    let (w, h) = reader.into_dimensions().ok()?;
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return None;
    }
    let img = image::load_from_memory(bytes).ok()?;
    let thumb = img.thumbnail(THUMB_SIZE, THUMB_SIZE).to_rgb8();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80).encode_image(&thumb).ok()?;
    Some((w, h, out))
}

impl Services {
    async fn put_content(&self, sha256: &str, bytes: &[u8]) -> ServiceResult<()> {
        match &self.config.blobs {
            BlobStorage::Database => Ok(self.store.put_blob(sha256, bytes).await?),
            BlobStorage::Disk(root) => {
                let dir = root.join(&sha256[..2]);
                let path = dir.join(sha256);
                if tokio::fs::try_exists(&path).await.unwrap_or(false) {
                    return Ok(());
                }
                let io = |e: std::io::Error| ServiceError::Internal(format!("attachment storage: {e}"));
                tokio::fs::create_dir_all(&dir).await.map_err(io)?;
                // Write beside, sync, rename: a file under its hash is always whole.
                let tmp = dir.join(format!("{sha256}.tmp{}", std::process::id()));
                let mut file = tokio::fs::File::create(&tmp).await.map_err(io)?;
                tokio::io::AsyncWriteExt::write_all(&mut file, bytes).await.map_err(io)?;
                file.sync_all().await.map_err(io)?;
                tokio::fs::rename(&tmp, &path).await.map_err(io)
            }
        }
    }

    async fn content(&self, sha256: &str) -> ServiceResult<Content> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ServiceError::Internal(format!("stored hash {sha256:?} is malformed")));
        }
        match &self.config.blobs {
            BlobStorage::Database => {
                Ok(Content::Bytes(self.store.blob(sha256).await?.ok_or(ServiceError::NotFound("attachment content"))?))
            }
            BlobStorage::Disk(root) => {
                let path = root.join(&sha256[..2]).join(sha256);
                tokio::fs::File::open(&path)
                    .await
                    .map(Content::File)
                    .map_err(|_| ServiceError::NotFound("attachment content"))
            }
        }
    }

    /// Stores an upload and describes it. The content type comes from the bytes; photos get their
    /// EXIF time and position and a thumbnail.
    pub async fn upload_attachment(
        &self,
        actor: &Actor,
        name: &str,
        bytes: Vec<u8>,
    ) -> ServiceResult<StoredAttachment> {
        Ok(self.upload_attachment_once(actor, name, bytes, None).await?.value)
    }

    /// Like [`Services::upload_attachment`], once per `idempotency_key` of this actor: a phone that
    /// retries an upload after a lost answer gets the first attachment back (`replayed`).
    pub async fn upload_attachment_once(
        &self,
        actor: &Actor,
        name: &str,
        bytes: Vec<u8>,
        idempotency_key: Option<&str>,
    ) -> ServiceResult<civicgrid_store::Created<StoredAttachment>> {
        if let Some(key) = idempotency_key {
            crate::idempotency::check_key(key)?;
        }
        let name = civicgrid_core::text::file_name("name", name)?;
        if bytes.is_empty() || bytes.len() as u64 > MAX_ATTACHMENT_BYTES {
            return Err(ServiceError::invalid("file", format!("1 byte to {} MiB", MAX_ATTACHMENT_BYTES >> 20)));
        }
        let mime = sniff(&bytes)
            .ok_or_else(|| ServiceError::invalid("file", "attachments are JPEG, PNG or WebP images, or PDF"))?;
        let (sha256, facts, thumb, bytes) = tokio::task::spawn_blocking(move || {
            let sha = sha256_hex(&bytes);
            let image = mime.starts_with("image/");
            let facts = if image { photo_facts(&bytes) } else { PhotoFacts::default() };
            let thumb = if image { thumbnail(&bytes) } else { None };
            (sha, facts, thumb, bytes)
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        if mime.starts_with("image/") && thumb.is_none() {
            return Err(ServiceError::invalid("file", "the image cannot be decoded (damaged, or over 50 megapixels)"));
        }
        self.put_content(&sha256, &bytes).await?;
        let (width, height, thumb_sha256) = match thumb {
            Some((w, h, t)) => {
                let sha = sha256_hex(&t);
                self.put_content(&sha, &t).await?;
                (Some(w), Some(h), Some(sha))
            }
            None => (None, None, None),
        };
        let row = StoredAttachment {
            id: 0,
            sha256,
            name,
            mime: mime.to_owned(),
            size: bytes.len() as u64,
            uploaded_by: actor.idempotency_scope(),
            // Stored to the microsecond: answer what a later read will say.
            uploaded_at: Timestamp::from_microsecond(self.clock.now().as_microsecond())
                .map_err(|e| ServiceError::Internal(e.to_string()))?,
            taken_at: facts.taken_at,
            location: facts.location,
            width,
            height,
            thumb_sha256,
            case_id: None,
        };
        let key = crate::idempotency::key_for(actor, idempotency_key, &(&row.sha256, &row.name))?;
        let created = match key {
            Some(key) => self.store.insert_attachment_once(&row, &key).await?,
            None => civicgrid_store::Created { value: self.store.insert_attachment(&row).await?, replayed: false },
        };
        let stored = &created.value;
        tracing::debug!(
            id = stored.id,
            mime,
            size = stored.size,
            replayed = created.replayed,
            by = actor.username,
            "attachment uploaded"
        );
        Ok(created)
    }

    /// An attachment's metadata, if the actor uploaded it or may see its case.
    pub async fn attachment(&self, actor: &Actor, id: i64) -> ServiceResult<StoredAttachment> {
        let a = self.store.attachment(id).await?.ok_or(ServiceError::NotFound("attachment"))?;
        let visible = match a.case_id {
            Some(case_id) => self.case(actor, case_id).await.is_ok(),
            None => a.uploaded_by == actor.idempotency_scope(),
        };
        if visible { Ok(a) } else { Err(ServiceError::NotFound("attachment")) }
    }

    /// An attachment's content (or its thumbnail), for whoever may see it.
    pub async fn attachment_content(
        &self,
        actor: &Actor,
        id: i64,
        thumb: bool,
    ) -> ServiceResult<(StoredAttachment, Content)> {
        let a = self.attachment(actor, id).await?;
        let sha =
            if thumb { a.thumb_sha256.clone().ok_or(ServiceError::NotFound("thumbnail"))? } else { a.sha256.clone() };
        let content = self.content(&sha).await?;
        Ok((a, content))
    }

    /// The attachments of a case the actor may see.
    pub async fn case_attachments(&self, actor: &Actor, case_id: i64) -> ServiceResult<Vec<StoredAttachment>> {
        self.case(actor, case_id).await?;
        Ok(self.store.case_attachments(case_id).await?)
    }

    /// Replaces attachments named by id with what was uploaded (name, type, size, hash, photo time),
    /// after checking the actor uploaded them and no other case has them. Items without an id are
    /// descriptions of files kept elsewhere and pass as they are.
    pub(crate) async fn resolve_attachments(
        &self,
        actor: &Actor,
        field: &str,
        items: &[Attachment],
        case: Option<i64>,
    ) -> ServiceResult<Vec<Attachment>> {
        let mut out = Vec::with_capacity(items.len());
        let mut seen = std::collections::BTreeSet::new();
        for item in items {
            let Some(id) = item.id else {
                out.push(item.clone());
                continue;
            };
            if !seen.insert(id) {
                return Err(ServiceError::invalid(field, format!("attachment {id} is named twice")));
            }
            let stored = self.store.attachment(id).await?;
            let usable = stored.as_ref().is_some_and(|a| {
                a.uploaded_by == actor.idempotency_scope() && (a.case_id.is_none() || a.case_id == case)
            });
            let Some(a) = stored.filter(|_| usable) else {
                return Err(ServiceError::invalid(field, format!("attachment {id} is not one of your uploads")));
            };
            out.push(a.as_evidence());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_come_from_the_bytes() {
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0]), Some("image/jpeg"));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"%PDF-1.7\n"), Some("application/pdf"));
        assert_eq!(sniff(b"<html><script>"), None);
        assert_eq!(sniff(b"GIF89a"), None);
    }
}
