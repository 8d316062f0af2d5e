//! Writing bytes that `arbitrary` reads back as chosen values, so that seed
//! inputs can say what they mean ("append, power cut, reopen") instead of
//! being random bytes. Mirrors `arbitrary` 1.x: integers are little-endian
//! and fixed-size, `bool` is the low bit of a byte, an enum variant is a
//! `u32` scaled onto the variant count, and each element of an
//! `arbitrary_iter` is preceded by a "more" `bool`. The unit tests of the
//! targets that use it decode what it writes, so a change in `arbitrary`
//! shows up as a failing test, not as silently meaningless seeds.

/// Bytes under construction.
#[derive(Debug, Default)]
pub(crate) struct ArbBytes(pub(crate) Vec<u8>);

impl ArbBytes {
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }

    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(crate) fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }

    /// Variant `index` of an enum with `count` variants (derived
    /// `Arbitrary` maps a `u32` `x` to `(x * count) >> 32`).
    pub(crate) fn variant(&mut self, index: u32, count: u32) -> &mut Self {
        debug_assert!(index < count);
        let x = (u64::from(index) << 32).div_ceil(u64::from(count));
        self.u32(u32::try_from(x).unwrap_or(u32::MAX))
    }

    /// Another element of an `arbitrary_iter` follows.
    pub(crate) fn more(&mut self) -> &mut Self {
        self.bool(true)
    }

    /// The end of an `arbitrary_iter`.
    pub(crate) fn done(&mut self) -> &mut Self {
        self.bool(false)
    }

    pub(crate) fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}
