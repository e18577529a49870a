//! Object bodies as chunks: cutting a stream into chunks as it arrives (with the digests S3
//! clients check, computed on the way), and finding the chunks a byte range covers.
//!
//! Memory is bounded by the caller's loop: [`Chunker::push`] hands back each chunk as soon as
//! it is full, so a PUT holds at most one chunk being filled plus what it is sending.

use super::R2Error;
use md5::{Digest, Md5};
use sha2::Sha256;

/// The size of every chunk of a body but its last.
pub const CHUNK_BYTES: usize = 4 << 20;

/// What the whole body hashed to, once it has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub size: u64,
    pub md5: [u8; 16],
    /// `None` from a chunker made [`Chunker::without_sha256`].
    pub sha256: Option<[u8; 32]>,
}

/// Cuts a body into [`CHUNK_BYTES`] chunks as its bytes arrive.
pub struct Chunker {
    chunk_bytes: usize,
    filling: Vec<u8>,
    size: u64,
    md5: Md5,
    /// Only when someone will check it (a declared SHA-256): every pass over the bytes costs.
    sha256: Option<Sha256>,
}

impl Default for Chunker {
    fn default() -> Self {
        Chunker::with_chunk_bytes(CHUNK_BYTES)
    }
}

impl Chunker {
    /// A chunker with another chunk size (tests use small ones).
    pub fn with_chunk_bytes(chunk_bytes: usize) -> Self {
        let chunk_bytes = chunk_bytes.max(1);
        Chunker { chunk_bytes, filling: Vec::new(), size: 0, md5: Md5::new(), sha256: Some(Sha256::new()) }
    }

    /// The same chunker without the whole body's SHA-256 (its digests carry `None`).
    pub fn without_sha256(mut self) -> Self {
        self.sha256 = None;
        self
    }

    /// Takes the next bytes of the body; returns the chunks they completed, in order.
    pub fn push(&mut self, mut data: &[u8]) -> Vec<Vec<u8>> {
        self.size += data.len() as u64;
        self.md5.update(data);
        if let Some(sha256) = &mut self.sha256 {
            sha256.update(data);
        }
        let mut full = Vec::new();
        while !data.is_empty() {
            if self.filling.capacity() == 0 {
                self.filling.reserve_exact(self.chunk_bytes);
            }
            let room = self.chunk_bytes - self.filling.len();
            let (now, rest) = data.split_at(room.min(data.len()));
            self.filling.extend_from_slice(now);
            data = rest;
            if self.filling.len() == self.chunk_bytes {
                full.push(std::mem::take(&mut self.filling));
            }
        }
        full
    }

    /// The body has ended: its last, shorter chunk (none if the body was empty or ended on a
    /// chunk boundary) and its digests.
    pub fn finish(self) -> (Option<Vec<u8>>, Digests) {
        let last = (!self.filling.is_empty()).then_some(self.filling);
        let digests = Digests {
            size: self.size,
            md5: self.md5.finalize().into(),
            sha256: self.sha256.map(|sha256| sha256.finalize().into()),
        };
        (last, digests)
    }
}

/// A byte range of an object, both ends included (HTTP's form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub first: u64,
    pub last: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Never: a range holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// `Content-Range`'s value for an object of `size` bytes.
    pub fn content_range(&self, size: u64) -> String {
        format!("bytes {}-{}/{size}", self.first, self.last)
    }
}

/// A `Range` header as S3 reads it, for an object of `size` bytes: `bytes=a-b`, `bytes=a-`,
/// `bytes=-n`. A last byte past the end is clamped; a range that starts past the end, or a
/// suffix of 0, is `InvalidRange` (416). Several ranges are not supported by S3 either: the
/// header is refused rather than half served.
pub fn parse_range(header: &str, size: u64) -> Result<ByteRange, R2Error> {
    let invalid = || R2Error::InvalidRange { size };
    let spec = header.trim().strip_prefix("bytes=").ok_or_else(invalid)?;
    if spec.contains(',') {
        return Err(invalid());
    }
    let (first, last) = spec.split_once('-').ok_or_else(invalid)?;
    let number = |text: &str| text.trim().parse::<u64>().map_err(|_| invalid());
    let range = match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, true) => return Err(invalid()),
        (true, false) => {
            let suffix = number(last)?;
            if suffix == 0 || size == 0 {
                return Err(invalid());
            }
            ByteRange { first: size.saturating_sub(suffix), last: size - 1 }
        }
        (false, open_ended) => {
            let first = number(first)?;
            let last = if open_ended { u64::MAX } else { number(last)? };
            if first >= size || last < first {
                return Err(invalid());
            }
            ByteRange { first, last: last.min(size - 1) }
        }
    };
    Ok(range)
}

/// The part of one chunk a range needs: the chunk's index in the object and the bytes of it
/// to send (`start..end`, offsets within the chunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSlice {
    pub index: usize,
    pub start: u64,
    pub end: u64,
}

/// The slices of `chunk_sizes` (an object's chunks, in order) that `range` covers; chunks
/// outside it are not read at all.
pub fn slices(chunk_sizes: &[u64], range: ByteRange) -> Vec<ChunkSlice> {
    let mut out = Vec::new();
    let mut offset = 0u64;
    for (index, &size) in chunk_sizes.iter().enumerate() {
        let (chunk_first, chunk_end) = (offset, offset + size);
        offset = chunk_end;
        if chunk_end <= range.first || size == 0 {
            continue;
        }
        if chunk_first > range.last {
            break;
        }
        let start = range.first.saturating_sub(chunk_first);
        let end = (range.last + 1).min(chunk_end) - chunk_first;
        out.push(ChunkSlice { index, start, end });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_cut_into_full_chunks_and_a_shorter_last_one_whatever_its_pieces() {
        let body: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        for piece in [1, 7, 1000, 4096, 10_000] {
            let mut chunker = Chunker::with_chunk_bytes(4096);
            let mut chunks = Vec::new();
            for part in body.chunks(piece) {
                chunks.extend(chunker.push(part));
            }
            let (last, digests) = chunker.finish();
            chunks.extend(last);
            assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), vec![4096, 4096, 1808], "pieces of {piece}");
            assert_eq!(chunks.concat(), body);
            assert_eq!(digests.size, 10_000);
            assert_eq!(digests.md5, <[u8; 16]>::from(Md5::digest(&body)));
            assert_eq!(digests.sha256, Some(<[u8; 32]>::from(Sha256::digest(&body))));
        }
        let mut exact = Chunker::with_chunk_bytes(4);
        assert_eq!(exact.push(b"abcdefgh").len(), 2);
        assert_eq!(exact.finish().0, None, "a body ending on a boundary has no short chunk");
        let (last, digests) = Chunker::default().finish();
        assert_eq!((last, digests.size), (None, 0));
        // md5("") as `md5sum` prints it.
        assert_eq!(hex::encode(digests.md5), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn range_headers_are_read_as_s3_reads_them() {
        let range = |first, last| Ok::<_, ()>(ByteRange { first, last });
        let parse = |h: &str, size| parse_range(h, size).map_err(|_| ());
        assert_eq!(parse("bytes=0-0", 10), range(0, 0));
        assert_eq!(parse("bytes=2-5", 10), range(2, 5));
        assert_eq!(parse("bytes=2-", 10), range(2, 9));
        assert_eq!(parse("bytes=5-100", 10), range(5, 9), "the end is clamped");
        assert_eq!(parse("bytes=-3", 10), range(7, 9));
        assert_eq!(parse("bytes=-30", 10), range(0, 9), "a suffix longer than the object is all of it");
        for bad in
            ["bytes=10-", "bytes=10-12", "bytes=5-2", "bytes=-0", "bytes=-", "items=0-1", "bytes=0-1,3-4", "bytes=a-b"]
        {
            assert!(matches!(parse_range(bad, 10), Err(R2Error::InvalidRange { size: 10 })), "{bad}");
        }
        assert!(parse_range("bytes=-1", 0).is_err(), "nothing to serve of an empty object");
        assert_eq!(parse_range("bytes=0-", 10).map(|r| r.content_range(10)).ok().as_deref(), Some("bytes 0-9/10"));
        assert_eq!(parse_range("bytes=0-", 10).map_err(|e| e.status()).map(|r| r.len()), Ok(10));
        assert_eq!(
            parse_range("bytes=10-", 10).map_err(|e| (e.s3_code(), e.status())).err(),
            Some(("InvalidRange", 416))
        );
    }

    #[test]
    fn a_range_reads_only_the_chunks_it_covers() {
        let sizes = [4, 4, 4, 2];
        let all = slices(&sizes, ByteRange { first: 0, last: 13 });
        assert_eq!(all.len(), 4);
        assert_eq!(all.iter().map(|s| s.end - s.start).sum::<u64>(), 14);
        assert_eq!(
            slices(&sizes, ByteRange { first: 5, last: 9 }),
            vec![ChunkSlice { index: 1, start: 1, end: 4 }, ChunkSlice { index: 2, start: 0, end: 2 }]
        );
        assert_eq!(slices(&sizes, ByteRange { first: 12, last: 13 }), vec![ChunkSlice { index: 3, start: 0, end: 2 }]);
        assert_eq!(slices(&sizes, ByteRange { first: 3, last: 4 }).len(), 2, "one byte of each side of a boundary");
        // Every single-byte range names exactly the byte it should.
        let body: Vec<u8> = (0..14).collect();
        let chunks: Vec<&[u8]> = vec![&body[0..4], &body[4..8], &body[8..12], &body[12..14]];
        for byte in 0..14u64 {
            let got = slices(&sizes, ByteRange { first: byte, last: byte });
            assert_eq!(got.len(), 1);
            let s = got[0];
            assert_eq!(chunks[s.index][s.start as usize..s.end as usize], [byte as u8]);
        }
    }
}
