//! The keep-bitmap a filter returns: bit `i % 8` of byte `i / 8` is event `i`.

/// A growable keep-bitmap.
///
/// ```
/// let mut keep = weir_layout::Bitmap::with_len(10);
/// keep.set(9);
/// assert!(weir_layout::Bitmap::get(keep.as_bytes(), 9));
/// assert!(!weir_layout::Bitmap::get(keep.as_bytes(), 0));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bitmap {
    bytes: Vec<u8>,
}

impl Bitmap {
    /// All bits clear, room for `n` events.
    pub fn with_len(n: usize) -> Self {
        Bitmap {
            bytes: vec![0; n.div_ceil(8)],
        }
    }

    #[inline]
    pub fn set(&mut self, i: usize) {
        let byte = i / 8;
        if byte >= self.bytes.len() {
            self.bytes.resize(byte + 1, 0);
        }
        self.bytes[byte] |= 1 << (i % 8);
    }

    /// Whether bit `i` is set in `bytes`; bits past the end are clear.
    #[inline]
    pub fn get(bytes: &[u8], i: usize) -> bool {
        bytes.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}
