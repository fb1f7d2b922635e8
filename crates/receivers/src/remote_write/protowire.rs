//! The protobuf wire format, just enough to read and write remote-write messages without
//! copying strings. Hand-written because prost decodes into owned `String`s, which alone
//! caps ingest near the peers' whole rate (see the commit that added this file).

use super::decode::DecodeError;

pub const WIRE_VARINT: u8 = 0;
pub const WIRE_FIXED64: u8 = 1;
pub const WIRE_LEN: u8 = 2;
pub const WIRE_FIXED32: u8 = 5;

/// A cursor over one message's bytes. Offsets in errors are relative to the whole request.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            base: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn err(&self, what: &'static str) -> DecodeError {
        DecodeError::Malformed {
            offset: self.offset(),
            what,
        }
    }

    #[inline]
    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        // Fast path: single byte.
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(b as u64);
        }
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err("truncated varint"));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(self.err("varint overflows 64 bits"));
            }
            v |= ((b & 0x7f) as u64) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    /// Returns (field number, wire type).
    #[inline]
    pub fn key(&mut self) -> Result<(u32, u8), DecodeError> {
        let k = self.varint()?;
        let field = k >> 3;
        if field == 0 || field > u32::MAX as u64 {
            return Err(self.err("invalid field number"));
        }
        Ok((field as u32, (k & 7) as u8))
    }

    #[inline]
    pub fn fixed64(&mut self) -> Result<u64, DecodeError> {
        let Some(bytes) = self.buf.get(self.pos..self.pos + 8) else {
            return Err(self.err("truncated fixed64"));
        };
        self.pos += 8;
        Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }

    /// A length-delimited field's bytes as a sub-reader.
    #[inline]
    pub fn sub(&mut self) -> Result<Reader<'a>, DecodeError> {
        let len = self.varint()?;
        let start = self.pos;
        if len > (self.buf.len() - start) as u64 {
            return Err(self.err("length-delimited field runs past the end of its message"));
        }
        let end = start + len as usize;
        self.pos = end;
        Ok(Reader {
            buf: &self.buf[start..end],
            pos: 0,
            base: self.base + start,
        })
    }

    #[inline]
    pub fn str(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        let sub = self.sub()?;
        std::str::from_utf8(sub.buf).map_err(|_| DecodeError::InvalidUtf8 {
            offset: sub.base,
            what,
        })
    }

    /// Skips a field of a type this decoder does not read.
    pub fn skip(&mut self, wire: u8) -> Result<(), DecodeError> {
        match wire {
            WIRE_VARINT => {
                self.varint()?;
            }
            WIRE_FIXED64 => {
                self.fixed64()?;
            }
            WIRE_LEN => {
                self.sub()?;
            }
            WIRE_FIXED32 => {
                if self.buf.len() - self.pos < 4 {
                    return Err(self.err("truncated fixed32"));
                }
                self.pos += 4;
            }
            _ => return Err(self.err("unsupported wire type (groups are not allowed)")),
        }
        Ok(())
    }

    pub fn expect_wire(&self, got: u8, want: u8, what: &'static str) -> Result<(), DecodeError> {
        if got != want {
            return Err(DecodeError::WrongWireType {
                offset: self.offset(),
                what,
                got,
                want,
            });
        }
        Ok(())
    }
}

/// Appends protobuf fields to a buffer.
pub struct Writer<'a>(pub &'a mut Vec<u8>);

impl Writer<'_> {
    pub fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    pub fn key(&mut self, field: u32, wire: u8) {
        self.varint(((field as u64) << 3) | wire as u64);
    }

    pub fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, WIRE_LEN);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    pub fn double(&mut self, field: u32, v: f64) {
        self.key(field, WIRE_FIXED64);
        self.0.extend_from_slice(&v.to_bits().to_le_bytes());
    }

    pub fn int64(&mut self, field: u32, v: i64) {
        self.key(field, WIRE_VARINT);
        self.varint(v as u64);
    }

    /// Writes a nested message: `fill` writes its fields into a scratch buffer first,
    /// because the length prefix comes before the contents.
    pub fn message(
        &mut self,
        field: u32,
        scratch: &mut Vec<u8>,
        fill: impl FnOnce(&mut Writer<'_>),
    ) {
        scratch.clear();
        fill(&mut Writer(scratch));
        self.bytes(field, scratch);
    }
}
