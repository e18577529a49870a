//! R2's limits, checked in one place, and the ETags S3 clients check.
//!
//! The numbers are Cloudflare's (R2 "Limits"): a key is at most 1,024 bytes of UTF-8,
//! metadata at most 8,192 bytes, a single PUT or a part at most 5 GiB − 5 MiB, an upload at
//! most 10,000 parts, each but the last at least 5 MiB and all of the same size.

use super::R2Error;
use md5::{Digest, Md5};

pub const MAX_KEY_BYTES: usize = 1024;
pub const MAX_METADATA_BYTES: usize = 8192;
pub const MAX_OBJECT_BYTES: u64 = 5 * (1 << 30) - 5 * (1 << 20);
pub const MAX_PART_BYTES: u64 = MAX_OBJECT_BYTES;
pub const MIN_PART_BYTES: u64 = 5 << 20;
pub const MAX_PARTS: u32 = 10_000;

/// A key: 1 to 1,024 bytes (a Rust `&str` is UTF-8 already).
pub fn check_key(key: &str) -> Result<(), R2Error> {
    if key.is_empty() {
        return Err(R2Error::InvalidKey);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(R2Error::KeyTooLong { len: key.len(), max: MAX_KEY_BYTES });
    }
    Ok(())
}

/// Custom and HTTP metadata together, as sent (names and values).
pub fn check_metadata<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<(), R2Error> {
    let len: usize = pairs.into_iter().map(|(name, value)| name.len() + value.len()).sum();
    if len > MAX_METADATA_BYTES {
        return Err(R2Error::MetadataTooLarge { len, max: MAX_METADATA_BYTES });
    }
    Ok(())
}

/// The declared size of a single PUT, before any byte is read.
pub fn check_object_size(size: u64) -> Result<(), R2Error> {
    if size > MAX_OBJECT_BYTES {
        return Err(R2Error::EntityTooLarge { what: "the object", size, max: MAX_OBJECT_BYTES });
    }
    Ok(())
}

/// One part as it is uploaded: its number and size.
pub fn check_part(part: u32, size: u64) -> Result<(), R2Error> {
    if part == 0 || part > MAX_PARTS {
        return Err(R2Error::InvalidPartNumber { part, max: MAX_PARTS });
    }
    if size > MAX_PART_BYTES {
        return Err(R2Error::EntityTooLarge { what: "a part", size, max: MAX_PART_BYTES });
    }
    Ok(())
}

/// The parts a completion lists, as (part number, size): ascending, each but the last at
/// least 5 MiB, and all but the last of one size (R2's rule, stricter than S3's).
pub fn check_completion(parts: &[(u32, u64)]) -> Result<(), R2Error> {
    let Some((&(last_part, last_size), leading)) = parts.split_last() else { return Err(R2Error::NoParts) };
    if parts.windows(2).any(|pair| pair[1].0 <= pair[0].0) {
        return Err(R2Error::InvalidPartOrder);
    }
    let part_size = leading.first().map_or(last_size, |&(_, size)| size);
    for &(part, size) in leading {
        check_part(part, size)?;
        if size < MIN_PART_BYTES {
            return Err(R2Error::EntityTooSmall { part, size, min: MIN_PART_BYTES });
        }
        if size != part_size {
            return Err(R2Error::UnequalParts { part, size, expected: part_size });
        }
    }
    check_part(last_part, last_size)?;
    if last_size > part_size {
        return Err(R2Error::UnequalParts { part: last_part, size: last_size, expected: part_size });
    }
    Ok(())
}

/// The ETag of a single PUT: the hex MD5 of its bytes.
pub fn etag(md5: &[u8; 16]) -> String {
    hex::encode(md5)
}

/// The ETag of a multipart object: the MD5 of the parts' binary MD5s, one after the other,
/// then `-` and the number of parts (what S3 and R2 answer, and what the aws CLI checks).
pub fn multipart_etag(part_md5s: &[[u8; 16]]) -> String {
    let mut all = Md5::new();
    for md5 in part_md5s {
        all.update(md5);
    }
    format!("{}-{}", hex::encode(all.finalize()), part_md5s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn keys_and_metadata_are_held_to_r2s_sizes() {
        assert!(check_key("a").is_ok());
        assert!(check_key(&"é".repeat(512)).is_ok(), "1,024 bytes of UTF-8");
        assert_eq!(check_key(&"é".repeat(513)).map_err(|e| e.s3_code()), Err("KeyTooLongError"));
        assert!(matches!(check_key(""), Err(R2Error::InvalidKey)));
        let value = "v".repeat(8000);
        assert!(check_metadata([("content-type", "text/plain"), ("x", value.as_str())]).is_ok());
        let value = "v".repeat(8192);
        assert!(matches!(check_metadata([("x", value.as_str())]), Err(R2Error::MetadataTooLarge { len: 8193, .. })));
        assert_eq!(check_object_size(MAX_OBJECT_BYTES + 1).map_err(|e| e.s3_code()), Err("EntityTooLarge"));
        assert!(check_object_size(MAX_OBJECT_BYTES).is_ok());
    }

    #[test]
    fn completions_follow_r2s_part_rules() {
        assert!(check_completion(&[(1, 1)]).is_ok(), "a lone part may be small");
        assert!(check_completion(&[(1, 5 * MIB), (2, 5 * MIB), (3, 1)]).is_ok());
        assert!(check_completion(&[(1, 8 * MIB), (4, 8 * MIB), (9, 8 * MIB)]).is_ok(), "gaps are allowed");
        assert!(matches!(check_completion(&[]), Err(R2Error::NoParts)));
        assert!(matches!(check_completion(&[(2, 5 * MIB), (1, 1)]), Err(R2Error::InvalidPartOrder)));
        assert!(matches!(check_completion(&[(1, 5 * MIB), (1, 1)]), Err(R2Error::InvalidPartOrder)));
        assert!(matches!(check_completion(&[(1, MIB), (2, 1)]), Err(R2Error::EntityTooSmall { part: 1, .. })));
        let unequal = check_completion(&[(1, 6 * MIB), (2, 5 * MIB), (3, 1)]);
        assert!(matches!(unequal, Err(R2Error::UnequalParts { part: 2, .. })));
        assert_eq!(unequal.map_err(|e| e.s3_code()), Err("InvalidPart"));
        assert!(matches!(check_completion(&[(1, 5 * MIB), (2, 6 * MIB)]), Err(R2Error::UnequalParts { part: 2, .. })));
        assert!(matches!(check_completion(&[(10_001, 1)]), Err(R2Error::InvalidPartNumber { .. })));
        assert!(matches!(check_completion(&[(0, 1)]), Err(R2Error::InvalidPartNumber { .. })));
    }

    #[test]
    fn etags_are_what_s3_clients_compute() {
        // md5("") and md5("hello"), as `md5sum` prints them.
        let empty: [u8; 16] = Md5::digest(b"").into();
        assert_eq!(etag(&empty), "d41d8cd98f00b204e9800998ecf8427e");
        let hello: [u8; 16] = Md5::digest(b"hello").into();
        assert_eq!(etag(&hello), "5d41402abc4b2a76b9719d911017c592");
        // Two parts "a" and "b": md5(md5("a") ‖ md5("b")) then "-2", as Python's hashlib
        // computes it.
        let a: [u8; 16] = Md5::digest(b"a").into();
        let b: [u8; 16] = Md5::digest(b"b").into();
        assert_eq!(multipart_etag(&[a, b]), "96e024ba2074fe77e8e965ba43a704be-2");
        assert!(multipart_etag(&[a]).ends_with("-1"));
    }
}
