//! Small generated photos for the demo and the tests: a JPEG of a flat colour with the EXIF a phone
//! camera writes — when it was taken (China time) and where (GPS, WGS84) — so that the upload path,
//! EXIF extraction and on-site checks work on real files without shipping any; and the upload of the
//! demo year's recent photos.

use jiff::Timestamp;

/// A `width`×`height` JPEG of one colour, with EXIF DateTimeOriginal and GPS position when given.
pub fn jpeg(
    width: u32,
    height: u32,
    rgb: [u8; 3],
    taken_at: Option<Timestamp>,
    lon_lat: Option<(f64, f64)>,
) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(width.max(1), height.max(1), image::Rgb(rgb));
    let mut plain = Vec::new();
    if image::codecs::jpeg::JpegEncoder::new_with_quality(&mut plain, 85).encode_image(&img).is_err() {
        return plain;
    }
    if taken_at.is_none() && lon_lat.is_none() {
        return plain;
    }
    let app1 = exif_segment(taken_at, lon_lat);
    // SOI, then our APP1, then the rest as the encoder wrote it.
    let mut out = Vec::with_capacity(plain.len() + app1.len());
    out.extend_from_slice(&plain[..2]);
    out.extend_from_slice(&app1);
    out.extend_from_slice(&plain[2..]);
    out
}

/// An APP1 segment holding a little-endian TIFF with IFD0 → Exif IFD (DateTimeOriginal) and GPS IFD.
fn exif_segment(taken_at: Option<Timestamp>, lon_lat: Option<(f64, f64)>) -> Vec<u8> {
    const ASCII: u16 = 2;
    const LONG: u16 = 4;
    const RATIONAL: u16 = 5;
    let mut tiff: Vec<u8> = b"II\x2a\x00\x08\x00\x00\x00".to_vec();
    let entry = |t: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: u32| {
        t.extend_from_slice(&tag.to_le_bytes());
        t.extend_from_slice(&kind.to_le_bytes());
        t.extend_from_slice(&count.to_le_bytes());
        t.extend_from_slice(&value.to_le_bytes());
    };
    // Offsets, relative to the start of the TIFF header.
    let ifd0 = 8u32;
    let exif_ifd = ifd0 + 2 + 2 * 12 + 4;
    let date_at = exif_ifd + 2 + 12 + 4;
    let gps_ifd = date_at + 20;
    let lat_at = gps_ifd + 2 + 4 * 12 + 4;
    let lon_at = lat_at + 24;
    tiff.extend_from_slice(&2u16.to_le_bytes());
    entry(&mut tiff, 0x8769, LONG, 1, exif_ifd);
    entry(&mut tiff, 0x8825, LONG, 1, gps_ifd);
    tiff.extend_from_slice(&0u32.to_le_bytes());
    tiff.extend_from_slice(&1u16.to_le_bytes());
    entry(&mut tiff, 0x9003, ASCII, 20, date_at);
    tiff.extend_from_slice(&0u32.to_le_bytes());
    let local = taken_at.map(civicgrid_core::calendar::local).map(|d| {
        format!("{:04}:{:02}:{:02} {:02}:{:02}:{:02}\0", d.year(), d.month(), d.day(), d.hour(), d.minute(), d.second())
    });
    tiff.extend_from_slice(local.as_deref().unwrap_or("0000:00:00 00:00:00\0").as_bytes());
    let (lon, lat) = lon_lat.unwrap_or((0.0, 0.0));
    tiff.extend_from_slice(&4u16.to_le_bytes());
    let ns = if lat < 0.0 { b'S' } else { b'N' };
    let ew = if lon < 0.0 { b'W' } else { b'E' };
    entry(&mut tiff, 0x0001, ASCII, 2, u32::from(ns));
    entry(&mut tiff, 0x0002, RATIONAL, 3, lat_at);
    entry(&mut tiff, 0x0003, ASCII, 2, u32::from(ew));
    entry(&mut tiff, 0x0004, RATIONAL, 3, lon_at);
    tiff.extend_from_slice(&0u32.to_le_bytes());
    for value in [lat.abs(), lon.abs()] {
        let degrees = value.trunc();
        let minutes = ((value - degrees) * 60.0).trunc();
        let seconds = ((value - degrees) * 60.0 - minutes) * 60.0;
        for (num, den) in [(degrees as u32, 1u32), (minutes as u32, 1), ((seconds * 10_000.0).round() as u32, 10_000)] {
            tiff.extend_from_slice(&num.to_le_bytes());
            tiff.extend_from_slice(&den.to_le_bytes());
        }
    }
    let mut seg = vec![0xFF, 0xE1];
    let len = u16::try_from(2 + 6 + tiff.len()).unwrap_or(u16::MAX);
    seg.extend_from_slice(&len.to_be_bytes());
    seg.extend_from_slice(b"Exif\0\0");
    seg.extend_from_slice(&tiff);
    seg
}

/// Replaces the described photos of a generated case (the report's before photo, every step's
/// evidence) by generated JPEGs stored through `photos`, each uploaded by whoever took it, with the
/// EXIF time it was taken and the GPS position of the case.
pub async fn upload_case_photos(
    case: &mut civicgrid_store::ImportCase,
    photos: &dyn crate::PhotoStore,
) -> Result<(), String> {
    let place = (case.facts.location.lon, case.facts.location.lat);
    let reporter = case.events.first().and_then(|e| e.actor.user_id);
    let reported_at = case.facts.reported_at;
    for a in case.facts.attachments.iter_mut().filter(|a| a.id.is_none() && a.mime.starts_with("image/")) {
        if let Some(user) = reporter {
            *a = upload(photos, user, a, reported_at, place).await?;
        }
    }
    for e in &mut case.events {
        let (Some(user), at) = (e.actor.user_id, e.at) else { continue };
        for a in e.evidence.iter_mut().filter(|a| a.id.is_none() && a.mime.starts_with("image/")) {
            *a = upload(photos, user, a, at, place).await?;
        }
    }
    Ok(())
}

async fn upload(
    photos: &dyn crate::PhotoStore,
    user: i64,
    described: &civicgrid_core::case::Attachment,
    at: Timestamp,
    place: (f64, f64),
) -> Result<civicgrid_core::case::Attachment, String> {
    let taken_at = described.taken_at.unwrap_or(at);
    // A muted colour that differs from photo to photo.
    let k = taken_at.as_second().unsigned_abs();
    let rgb = [90 + (k % 97) as u8, 100 + (k / 97 % 89) as u8, 80 + (k / 8633 % 101) as u8];
    photos.store(user, &described.name, jpeg(64, 48, rgb, Some(taken_at), Some(place))).await
}
